"""tinygrad (https://github.com/tinygrad/tinygrad), tested through its own API.

Written against tinygrad 0.14.0; its CPU backend compiles kernels with clang. Without clang,
set ``DEV=PYTHON`` (tinygrad's pure-Python interpreter: slower, same semantics).

tinygrad's API differs from torch's in ways that shape this adapter (docs/engines/tinygrad.md
has the details and a reproduction script for every finding):

- There is no ``requires_grad`` and no leaf/non-leaf distinction: ``Tensor.backward`` writes a
  ``.grad`` for every live floating-point tensor with storage that the loss depends on. So
  ``tensor(value, requires_grad=...)`` is ``Tensor(value)`` either way.
- Graphs are immutable values that are never freed, so ``backward`` has no ``retain_graph``:
  the suite's ``retain_graph`` is not passed on, and tinygrad behaves as if it were always True.
- Tensors are lazy. Values are read with ``Tensor.numpy()``, which computes a copy and leaves
  the tensor itself unrealized (realizing it in place would change what later reads observe).
- ``nn.optim.SGD(params, lr, momentum, weight_decay, nesterov)`` has one set of
  hyperparameters; several param groups are several ``SGD`` objects combined with
  ``nn.optim.OptimizerGroup``, as tinygrad's own training scripts do. The optimizer refuses to
  step unless ``TRAINING`` is set, so ``step`` runs under ``Context(TRAINING=1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.adapter import Capabilities, Engine, KnownDeviation
from conformance.errors import ErrorKind

Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]


def _tinygrad() -> Any:
    import tinygrad

    return tinygrad


def _axis_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdim": bool(params.get("keepdim", False))}


def _reduce(method: str) -> Impl:
    return lambda a, p: getattr(a[0], method)(**_axis_kwargs(p))


def _method(method: str) -> Impl:
    return lambda a, p: getattr(a[0], method)()


def _index(index: tuple[Any, ...]) -> tuple[Any, ...]:
    """Integer lists stay lists (tinygrad's advanced indexing); bool masks become bool tensors."""
    from tinygrad import Tensor

    converted: list[Any] = []
    for part in index:
        if isinstance(part, tuple):
            converted.append(list(part))
        elif isinstance(part, np.ndarray):
            converted.append(Tensor(part))
        else:
            converted.append(part)
    return tuple(converted)


def _where(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    from tinygrad import Tensor

    return Tensor(p["cond"]).where(a[0], a[1])


# Binary ops go through Python operators so that a Python float works on either side.
# tinygrad's max(axis)/min(axis) return the values only: that is max_dim/min_dim's ``.values``.
OPS: dict[str, Impl] = {
    "add": lambda a, p: a[0] + a[1],
    "sub": lambda a, p: a[0] - a[1],
    "mul": lambda a, p: a[0] * a[1],
    "div": lambda a, p: a[0] / a[1],
    "pow": lambda a, p: a[0] ** a[1],
    "matmul": lambda a, p: a[0] @ a[1],
    "neg": lambda a, p: -a[0],
    "exp": _method("exp"),
    "log": _method("log"),
    "sqrt": _method("sqrt"),
    "tanh": _method("tanh"),
    "sigmoid": _method("sigmoid"),
    "relu": _method("relu"),
    "abs": _method("abs"),
    "clamp": lambda a, p: a[0].clamp(min_=p.get("min"), max_=p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("max"),
    "amin": _reduce("min"),
    "maximum": lambda a, p: a[0].maximum(a[1]),
    "minimum": lambda a, p: a[0].minimum(a[1]),
    "reshape": lambda a, p: a[0].reshape(tuple(p["shape"])),
    "transpose": lambda a, p: a[0].transpose(p["dim0"], p["dim1"]),
    "unsqueeze": lambda a, p: a[0].unsqueeze(p["dim"]),
    "getitem": lambda a, p: a[0][_index(p["index"])],
    "cat": lambda a, p: a[0].cat(*a[1:], dim=p["dim"]),
    "stack": lambda a, p: a[0].stack(*a[1:], dim=p["dim"]),
    "where": _where,
}

# (exception type, substring of tinygrad's message, category), found by triggering each one.
ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    # Tensor.gradient: `assert gradient is not None or self.shape == tuple()`
    (AssertionError, "backward must be called on a scalar tensor", ErrorKind.NON_SCALAR_BACKWARD),
    # Tensor._getitem / _normalize_indices on an int index past the end
    (IndexError, "is out of bounds", ErrorKind.INDEX_OUT_OF_RANGE),
    # Optimizer.__init__ and LARS.__init__ (the only two checks tinygrad's SGD makes)
    (ValueError, "Invalid learning rate", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid momentum value", ErrorKind.INVALID_HYPERPARAMETER),
    # Optimizer.__init__: `assert len(self.params) != 0, "optimizer must have at least one param"`
    (AssertionError, "optimizer must have at least one param", ErrorKind.EMPTY_PARAMETER_LIST),
)


class TinygradEngine(Engine):
    """tinygrad's ``Tensor`` and ``nn.optim.SGD`` on its default device."""

    name = "tinygrad"
    capabilities = Capabilities(unsupported={
        "hyper:dampening": "tinygrad.nn.optim.SGD(params, lr, momentum, weight_decay, nesterov, "
                           "classic, device, fused) has no dampening argument",
        "hyper:maximize": "tinygrad.nn.optim.SGD has no maximize argument",
        "zero_grad_keep": "Optimizer.zero_grad() takes no argument and always sets every "
                          "param's .grad to None",
    })
    known_deviations: Sequence[KnownDeviation] = ()

    def __init__(self) -> None:
        # tinygrad's scheduler calls sys.setrecursionlimit(10000) when it is first imported,
        # which happens lazily at the first realize. Hypothesis warns (an error under
        # filterwarnings=error) when the limit changes inside a test, so import it up front.
        import tinygrad.schedule.rangeify  # noqa: F401

    def version(self) -> str:
        from tinygrad import Device

        return f"{_tinygrad().__version__}, device {Device.DEFAULT}"

    # --- tensors ---------------------------------------------------------------------------
    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        from tinygrad import Tensor

        # tinygrad has no requires_grad: every float tensor with storage is differentiable.
        tensor = Tensor(np.array(value, copy=True))
        if requires_grad and tensor.device is None:
            # A 0-d value becomes a storage-less constant, which backward never gives a grad
            # (a finding, in docs/engines/tinygrad.md); clone() allocates its buffer.
            tensor = tensor.clone()
        return tensor

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.array(tensor.numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, loss: Any, *, gradient: np.ndarray | None, retain_graph: bool | None) -> None:
        from tinygrad import Tensor

        # No retain_graph in tinygrad: its graphs are never freed (see the module docstring).
        loss.backward(None if gradient is None else Tensor(np.array(gradient, copy=True)))

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        param.grad = None

    # --- optimizer ---------------------------------------------------------------------------
    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        from tinygrad.nn.optim import OptimizerGroup

        optimizers = [self._one_sgd(group, defaults) for group in groups]
        return optimizers[0] if len(optimizers) == 1 else OptimizerGroup(*optimizers)

    @staticmethod
    def _one_sgd(group: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
        from tinygrad.nn.optim import SGD

        options = {**defaults, **{k: v for k, v in group.items() if k != "params"}}
        # Declared unsupported, so the suite only ever passes their defaults.
        if options.pop("dampening", 0.0) != 0.0 or options.pop("maximize", False):
            raise NotImplementedError("tinygrad's SGD has no dampening or maximize")
        return SGD(list(group["params"]), **options)

    def step(self, optimizer: Any) -> None:
        from tinygrad import Context

        with Context(TRAINING=1):
            optimizer.step()

    def zero_grad(self, optimizer: Any, *, set_to_none: bool) -> None:
        if not set_to_none:
            raise NotImplementedError("tinygrad's zero_grad() always sets grads to None")
        optimizer.zero_grad()

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        target = optimizer.optimizers[group] if hasattr(optimizer, "optimizers") else optimizer
        if key == "lr":
            # lr is a tensor so that schedulers can change it without recompiling the step.
            target.lr.assign(type(target.lr)([value], dtype=target.lr.dtype))
        elif key == "momentum":
            target.momentum = value
        elif key == "weight_decay":
            target.wd = value
        else:
            raise NotImplementedError(f"tinygrad's SGD has no hyperparameter {key!r}")

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        for error_type, fragment, kind in ERROR_PATTERNS:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None
