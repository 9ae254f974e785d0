"""PaddlePaddle (https://github.com/PaddlePaddle/Paddle), tested through its eager (dygraph) API.

Written against paddlepaddle 3.3.1 (the CPU wheel from PyPI). docs/engines/paddle.md has the
install steps, the capability gaps and every finding with a script that reproduces it.

Paddle's API differs from torch's in ways that shape this adapter:

- ``requires_grad`` is spelled ``stop_gradient`` (inverted). The params a program trains are
  made with ``paddle.create_parameter`` (what ``nn.Layer`` makes), not
  ``paddle.to_tensor(value, stop_gradient=False)``: Paddle's optimizers take param groups only
  for Parameters (``Optimizer._add_param_group`` writes ``param.optimize_attr``, which a plain
  eager Tensor lacks: ``AttributeError: 'Tensor' object has no attribute 'optimize_attr'``).
  Constants are ``paddle.to_tensor(value, stop_gradient=True)``.
- torch's SGD is two classes: ``paddle.optimizer.SGD`` (no momentum) and
  ``paddle.optimizer.Momentum`` (``momentum``, ``use_nesterov``). ``weight_decay`` is an L2
  regularizer that adds ``coeff * param`` to the gradient, torch's ``g + wd * p``; torch's
  ``weight_decay=0`` ("no decay") is Paddle's ``weight_decay=None``.
- A param group's ``learning_rate`` is a *scale* of the optimizer's ``learning_rate``. With
  param groups the optimizer gets ``learning_rate=1.0`` and each group its torch lr as scale:
  exact, and it also works when torch's default lr is 0 (a scale ``lr_g / lr`` would not).
- ``optimizer.clear_grad(set_to_zero=...)`` is torch's ``zero_grad(set_to_none=...)``
  inverted (and its default, ``set_to_zero=True``, is the opposite of torch 2.x's).
- ``.grad`` returns a new Python wrapper on every read, so grad identity is the identity of
  the buffer (``same_object``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.adapter import Capabilities, Engine, KnownDeviation
from conformance.errors import ErrorKind

Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]

# torch.optim.SGD's defaults for what a MakeSGD may leave out.
TORCH_SGD_DEFAULTS: dict[str, Any] = {
    "lr": 0.001, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
    "maximize": False,
}


def _paddle() -> Any:
    with warnings.catch_warnings():
        # paddle.utils.cpp_extension warns at import when ccache is not installed; it is about
        # compiling C++ extensions, which this suite never does.
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle

    return paddle


class UnsafeIndex(Exception):
    """An index this adapter refuses to pass to Paddle because Paddle would corrupt memory.

    Deliberately not mapped to any ErrorKind: the run fails as an engine crash.
    """


def _axis_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdim": bool(params.get("keepdim", False))}


def _reduce(function: str) -> Impl:
    return lambda a, p: getattr(_paddle(), function)(a[0], **_axis_kwargs(p))


def _function(function: str) -> Impl:
    return lambda a, p: getattr(_paddle(), function)(a[0])


def _activation(function: str) -> Impl:
    return lambda a, p: getattr(_paddle().nn.functional, function)(a[0])


def _transpose(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """torch's ``transpose(dim0, dim1)`` is Paddle's ``transpose(perm)`` with two axes swapped."""
    ndim = len(a[0].shape)
    perm = list(range(ndim))
    first, second = p["dim0"] % ndim, p["dim1"] % ndim
    perm[first], perm[second] = perm[second], perm[first]
    return _paddle().transpose(a[0], perm)


def _index(tensor: Any, index: tuple[Any, ...]) -> tuple[Any, ...]:
    """Integer lists stay lists (Paddle's advanced indexing), bool masks become bool tensors.

    Paddle 3.3.1 does not bounds-check integer lists on the CPU: ``x[[0, 3]]`` on a size-3
    axis reads past the end, and its backward writes past the end of the grad (glibc then
    aborts with "corrupted size vs. prev_size", or the process hangs). Such an index is
    refused with :class:`UnsafeIndex`, which the suite reports as an engine crash — a failure,
    recorded as a known deviation — instead of corrupting the test process.
    """
    converted: list[Any] = []
    dim = 0
    for part in index:
        if isinstance(part, tuple):
            size = tensor.shape[dim]
            bad = [i for i in part if not -size <= i < size]
            if bad:
                raise UnsafeIndex(
                    f"integer-list index {list(part)} has {bad} out of range for an axis of size "
                    f"{size}; Paddle {_paddle().__version__} reads and (in backward) writes out "
                    "of bounds instead of raising, so the adapter does not run it "
                    "(docs/engines/paddle.md, finding 'out-of-range integer lists')"
                )
            converted.append(list(part))
        elif isinstance(part, np.ndarray):
            converted.append(_paddle().to_tensor(part))
        else:
            converted.append(part)
        if part is not None and part is not Ellipsis:
            dim += part.ndim if isinstance(part, np.ndarray) else 1
    return tuple(converted)


# Binary ops go through Python operators so that a Python float works on either side.
# Paddle's max(x, axis) returns the values only: that is torch's max(dim).values.
OPS: dict[str, Impl] = {
    "add": lambda a, p: a[0] + a[1],
    "sub": lambda a, p: a[0] - a[1],
    "mul": lambda a, p: a[0] * a[1],
    "div": lambda a, p: a[0] / a[1],
    "pow": lambda a, p: a[0] ** a[1],
    "matmul": lambda a, p: a[0] @ a[1],
    "neg": lambda a, p: -a[0],
    "exp": _function("exp"),
    "log": _function("log"),
    "sqrt": _function("sqrt"),
    "tanh": _function("tanh"),
    "sigmoid": _activation("sigmoid"),
    "relu": _activation("relu"),
    "abs": _function("abs"),
    "clamp": lambda a, p: _paddle().clip(a[0], min=p.get("min"), max=p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "maximum": lambda a, p: _paddle().maximum(a[0], a[1]),
    "minimum": lambda a, p: _paddle().minimum(a[0], a[1]),
    "reshape": lambda a, p: _paddle().reshape(a[0], list(p["shape"])),
    "transpose": _transpose,
    "unsqueeze": lambda a, p: _paddle().unsqueeze(a[0], p["dim"]),
    "getitem": lambda a, p: a[0][_index(a[0], p["index"])],
    "cat": lambda a, p: _paddle().concat(list(a), axis=p["dim"]),
    "stack": lambda a, p: _paddle().stack(list(a), axis=p["dim"]),
    "where": lambda a, p: _paddle().where(_paddle().to_tensor(p["cond"]), a[0], a[1]),
}

# (exception type, substring of Paddle's message, category), found by triggering each one.
ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    # paddle/fluid/eager/backward.cc: "(Fatal) The TensorWrappers of MultiplyGradNode do not
    # exist. This may be because: You calculate backward twice for the same subgraph without
    # setting retain_graph=True. ..." (pybind turns Fatal into SystemError)
    (SystemError, "without setting retain_graph=True", ErrorKind.FREED_GRAPH),
    # paddle/base/dygraph/tensor_patch_methods.py, Tensor.backward:
    # `assert grad_tensor.shape == self.shape, "Tensor shape not match, ..."`
    (AssertionError, "Tensor shape not match", ErrorKind.GRADIENT_SHAPE),
    # "(PermissionDenied) Tensor '...' used in gradient computation has been modified by an
    # inplace operation. Its version is 1 but the expected version is 0. ..."
    (RuntimeError, "modified by an inplace operation", ErrorKind.INPLACE_MODIFIED),
    # paddle/fluid/pybind/slice_utils.h: "(OutOfRange) The starting index 3 of slice is out of
    # bounds in tensor 0-th axis, ..." and "(OutOfRange) The shape of boolean index 2 did not
    # match indexed tensor 3 along axis 0."
    (IndexError, "(OutOfRange)", ErrorKind.INDEX_OUT_OF_RANGE),
    # Optimizer._add_param_group, the same words as torch
    (ValueError, "some parameters appear in more than one parameter group",
     ErrorKind.DUPLICATE_PARAMETER),
)


class PaddleEngine(Engine):
    """Paddle's eager Tensors, ``paddle.optimizer.SGD`` and ``paddle.optimizer.Momentum``."""

    name = "paddle"
    capabilities = Capabilities(unsupported={
        "hyper:dampening": "paddle.optimizer.Momentum(learning_rate, momentum, parameters, "
                           "use_nesterov, weight_decay, grad_clip, multi_precision, "
                           "rescale_grad, use_multi_tensor, name) has no dampening: its "
                           "update is velocity = mu * velocity + grad",
        "hyper:maximize": "neither paddle.optimizer.SGD nor paddle.optimizer.Momentum has a "
                          "maximize argument",
        "set_hyperparameter": "Paddle optimizers have no public per-group setter: set_lr() "
                              "sets the one base learning rate (a group's learning_rate is a "
                              "fixed scale of it), and momentum, use_nesterov and weight_decay "
                              "are fixed at construction",
    })
    known_deviations: Sequence[KnownDeviation] = ()

    def __init__(self) -> None:
        self.paddle = _paddle()

    def version(self) -> str:
        paddle = self.paddle
        return f"{paddle.__version__} (commit {paddle.version.commit[:10]}), {paddle.get_device()}"

    # --- tensors ---------------------------------------------------------------------------
    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        paddle = self.paddle
        if not requires_grad:
            return paddle.to_tensor(value, stop_gradient=True)
        # Assign copies the values exactly (float64 and -0.0 included).
        return paddle.create_parameter(
            shape=list(value.shape), dtype=str(value.dtype),
            default_initializer=paddle.nn.initializer.Assign(value),
        )

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.array(tensor.numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, loss: Any, *, gradient: np.ndarray | None, retain_graph: bool | None) -> None:
        grad_tensor = None if gradient is None else self.paddle.to_tensor(gradient)
        if retain_graph is None:
            loss.backward(grad_tensor)
        else:
            loss.backward(grad_tensor, retain_graph=retain_graph)

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        # Positional on purpose: Paddle 3.3.1's Tensor.clear_gradient ignores the keyword
        # (clear_gradient(set_to_zero=False) zeroes the grad instead of removing it).
        param.clear_gradient(False)

    def same_object(self, first: Any, second: Any) -> bool:
        # Every read of `param.grad` is a new Python wrapper (`p.grad is p.grad` is False), so
        # `is` says nothing. The wrappers share the grad's DenseTensor: a user holding an old
        # wrapper sees later values exactly when both still point at the same allocation. The
        # interpreter holds the previous wrapper, so its allocation is alive and cannot be
        # reused by a new grad in between; an allocation Paddle released (clear_gradient,
        # grad = None) leaves the old wrapper uninitialized, which compares as different.
        return bool(first._is_shared_buffer_with(second))

    def shares_memory(self, first: Any, second: Any) -> bool:
        return bool(first._is_shared_buffer_with(second))

    # --- optimizer ---------------------------------------------------------------------------
    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        optimizer = self.paddle.optimizer
        base = {**TORCH_SGD_DEFAULTS, **defaults}
        settings = [{**base, **{k: v for k, v in g.items() if k != "params"}} for g in groups]
        for hyper in (base, *settings):
            _refuse_unsupported(hyper)
        use_momentum = any(s["momentum"] != 0 or s["nesterov"] for s in (base, *settings))
        plain = len(groups) == 1 and set(groups[0]) == {"params"}
        if plain:
            parameters: list[Any] = list(groups[0]["params"])
            learning_rate = float(base["lr"])
            weight_decay = _weight_decay(base["weight_decay"])
        else:
            parameters = [
                _paddle_group(group["params"], hyper, use_momentum)
                for group, hyper in zip(groups, settings)
            ]
            learning_rate = 1.0
            # Every group carries its own weight_decay. The optimizer's must be None: Paddle
            # applies it to every param whose group says None (Optimizer.
            # _create_regularization_of_grad falls back to it), so a group could not turn an
            # optimizer-wide decay off.
            weight_decay = None
        if use_momentum:
            return optimizer.Momentum(
                learning_rate=learning_rate, momentum=float(base["momentum"]),
                parameters=parameters, use_nesterov=bool(base["nesterov"]),
                weight_decay=weight_decay,
            )
        return optimizer.SGD(
            learning_rate=learning_rate, parameters=parameters, weight_decay=weight_decay
        )

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def zero_grad(self, optimizer: Any, *, set_to_none: bool) -> None:
        optimizer.clear_grad(set_to_zero=not set_to_none)

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        raise NotImplementedError("declared unsupported: set_hyperparameter")

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        for error_type, fragment, kind in ERROR_PATTERNS:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None


def _refuse_unsupported(hyper: Mapping[str, Any]) -> None:
    """The suite never draws declared gaps; a program that still asks for one must not pass."""
    if hyper["dampening"] != 0:
        raise NotImplementedError(f"Paddle has no dampening (got {hyper['dampening']!r})")
    if hyper["maximize"]:
        raise NotImplementedError("Paddle has no maximize")


def _weight_decay(value: float) -> float | None:
    """torch's ``weight_decay=0`` means no decay term at all: Paddle's ``None``."""
    return None if value == 0 else float(value)


def _paddle_group(params: Sequence[Any], hyper: Mapping[str, Any], momentum: bool) -> dict:
    group: dict[str, Any] = {
        "params": list(params),
        "learning_rate": float(hyper["lr"]),
        "weight_decay": _weight_decay(hyper["weight_decay"]),
    }
    if momentum:
        group["momentum"] = float(hyper["momentum"])
        group["use_nesterov"] = bool(hyper["nesterov"])
    return group
