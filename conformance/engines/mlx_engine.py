"""MLX (https://github.com/ml-explore/mlx), tested on the functional tier.

Written against mlx 0.32.4 with the ``mlx-cpu`` backend (``pip install 'mlx[cpu]'``).
docs/engines/mlx.md has the install steps, the translation table, the capability gaps and
every finding with a script that reproduces it.

MLX arrays have no ``.grad``: gradients come from function transforms (``mx.grad``,
``mx.vjp``) and optimizers take gradients as input (``opt.apply_gradients(grads, params)``),
so this is a :class:`~conformance.adapter.FunctionalEngine`. How the adapter writes each call
is what an MLX user writes:

- ``loss.backward()`` is ``mx.grad(loss_fn)(params)``; ``loss.backward(g)`` is
  ``mx.vjp(loss_fn, params, [g])``;
- ``torch.optim.SGD/Adam/AdamW(params, lr=...)`` is ``optim.SGD/Adam/AdamW(learning_rate=...)``
  followed by ``opt.init(params)`` (the params the torch constructor is given); several param
  groups are an ``optim.MultiOptimizer`` of one optimizer per group, each picking its params by
  name;
- ``opt.step()`` is ``opt.apply_gradients(grads, params)`` on a dict of the params that have a
  grad (a None grad is left out of the dict, so MLX neither moves that param nor touches its
  state), then ``mx.eval`` of the new params and the optimizer state, as MLX training loops do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import (
    Capabilities,
    FunctionalEngine,
    KnownDeviation,
)
from conformance.errors import ErrorKind
from conformance.ops import index_parts


def _mlx() -> tuple[Any, Any, Any]:
    """``mlx.core``, ``mlx.nn`` and ``mlx.optimizers``, imported on first use."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    return mx, nn, optim


Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]


def _axis(params: Mapping[str, Any]) -> dict[str, Any]:
    """torch's ``dim``/``keepdim`` as MLX's ``axis``/``keepdims``; nothing for a full
    reduction."""
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdims": bool(params.get("keepdim", False))}


def _reduce(function: str) -> Impl:
    return lambda a, p: getattr(_mlx()[0], function)(a[0], **_axis(p))


def _unary(function: str) -> Impl:
    return lambda a, p: getattr(_mlx()[0], function)(a[0])


def _reduction(params: Mapping[str, Any]) -> dict[str, Any]:
    """A loss's ``reduction`` exactly when the program passes one: MLX's own default is what
    a call that leaves it out gets."""
    return {"reduction": params["reduction"]} if "reduction" in params else {}


def _linear(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """``mlx.nn.Linear.__call__``'s own two forms: ``addmm(bias, x, weight.T)`` with a bias,
    ``x @ weight.T`` without."""
    mx = _mlx()[0]
    if len(a) == 3:
        return mx.addmm(a[2], a[0], a[1].T)
    return a[0] @ a[1].T


class UnsafeIndex(Exception):
    """An integer index outside its axis, which the adapter refuses to pass to MLX.

    MLX 0.32.4 does not bounds-check integer indices: ``x[3]`` on three elements reads past
    the buffer, ``x[-4]`` can end in a segmentation fault, and the backward of such an index
    scatters into memory outside the grad (OUT_OF_RANGE_INDEX_UNCHECKED). Deliberately mapped
    to no ErrorKind: the run fails as an engine crash, recorded as that deviation, instead of
    corrupting the worker's heap for the programs after it.
    """


def _dims_consumed(part: Any) -> int:
    return 0 if part is None or part is Ellipsis else 1


def _refuse_out_of_range(shape: tuple[int, ...], index: Any) -> None:
    parts = index_parts(index)
    consumed = [_dims_consumed(part) for part in parts]
    dim = 0
    for position, part in enumerate(parts):
        if part is Ellipsis:
            dim = len(shape) - sum(consumed[position + 1:])
            continue
        if isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            entries = [int(part)]
        elif isinstance(part, list) or (isinstance(part, np.ndarray) and part.dtype.kind == "i"):
            entries = [int(i) for i in np.asarray(part).ravel()]
        else:
            entries = []
        if entries and dim < len(shape):
            size = shape[dim]
            bad = [i for i in entries if not -size <= i < size]
            if bad:
                raise UnsafeIndex(
                    f"index {bad} is out of range for an axis of size {size}; MLX "
                    f"{_mlx()[0].__version__} does not bounds-check integer indices (it reads "
                    "and, in backward, writes outside the array), so the adapter does not run "
                    "it (docs/engines/mlx.md, OUT_OF_RANGE_INDEX_UNCHECKED)")
        dim += consumed[position]


def _mlx_index(index: Any) -> Any:
    """The index as the script writes it: ints, slices, ``None``, ``...`` and lists as they
    are; a NumPy index array becomes an ``mx.array`` (what an MLX user indexes with)."""
    if isinstance(index, tuple):
        return tuple(_mlx_index(part) for part in index)
    if isinstance(index, np.ndarray):
        return _mlx()[0].array(index)
    return index


def _getitem(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    _refuse_out_of_range(tuple(a[0].shape), p["index"])
    return a[0][_mlx_index(p["index"])]


OPS: dict[str, Impl] = {
    "add": lambda a, p: operator.add(*a),
    "sub": lambda a, p: operator.sub(*a),
    "mul": lambda a, p: operator.mul(*a),
    "div": lambda a, p: operator.truediv(*a),
    "pow": lambda a, p: operator.pow(*a),
    "matmul": lambda a, p: operator.matmul(*a),
    "neg": lambda a, p: operator.neg(a[0]),
    "exp": _unary("exp"),
    "log": _unary("log"),
    "sqrt": _unary("sqrt"),
    "tanh": _unary("tanh"),
    "sigmoid": _unary("sigmoid"),
    "relu": lambda a, p: _mlx()[1].relu(a[0]),
    "abs": _unary("abs"),
    "clamp": lambda a, p: _mlx()[0].clip(a[0], p.get("min"), p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    # MLX has one max: mx.max(x, axis) returns the values (torch's x.max(dim).values).
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("max"),
    "amin": _reduce("min"),
    "maximum": lambda a, p: _mlx()[0].maximum(a[0], a[1]),
    "minimum": lambda a, p: _mlx()[0].minimum(a[0], a[1]),
    "reshape": lambda a, p: _mlx()[0].reshape(a[0], tuple(p["shape"])),
    "transpose": lambda a, p: _mlx()[0].swapaxes(a[0], p["dim0"], p["dim1"]),
    "unsqueeze": lambda a, p: _mlx()[0].expand_dims(a[0], p["dim"]),
    "getitem": _getitem,
    "cat": lambda a, p: _mlx()[0].concatenate(list(a), axis=p["dim"]),
    "stack": lambda a, p: _mlx()[0].stack(list(a), axis=p["dim"]),
    "where": lambda a, p: _mlx()[0].where(_mlx()[0].array(p["cond"]), a[0], a[1]),
    "linear": _linear,
    "mse_loss": lambda a, p: _mlx()[1].losses.mse_loss(a[0], a[1], **_reduction(p)),
    "cross_entropy": lambda a, p: _mlx()[1].losses.cross_entropy(
        a[0], _mlx()[0].array(p["target"]), **_reduction(p)),
}

TORCH_DEFAULT_LR = 0.001
"""torch.optim.SGD's, Adam's and AdamW's default lr: MLX's optimizers have no default
learning rate, so a torch call that leaves lr out is written with torch's value."""

MLX_NAMES = {"lr": "learning_rate", "momentum": "momentum", "dampening": "dampening",
             "weight_decay": "weight_decay", "nesterov": "nesterov", "betas": "betas",
             "eps": "eps"}
"""torch's hyperparameter names as MLX's optimizers spell them (constructor arguments and the
attributes apply_single reads at every step)."""

CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


@dataclass
class MLXOptimizer:
    """What the suite holds as "the optimizer": the MLX optimizer, and the names under which
    each held param (in the groups' order) goes into its parameter and gradient dicts."""

    optimizer: Any
    keys: list[str]
    groups: list[Any]
    """The optimizer of each param group (the one optimizer itself for a single group)."""


def _key(position: int) -> str:
    # Not a bare digit: mlx.utils.tree_unflatten (MultiOptimizer splits trees with it) reads
    # "0" as a list index.
    return f"param{position}"


class MLXEngine(FunctionalEngine):
    """``mx.array``, ``mx.grad``/``mx.vjp`` and ``mlx.optimizers.SGD/Adam/AdamW``."""

    name: ClassVar[str] = "mlx"
    capabilities: ClassVar[Capabilities] = Capabilities(unsupported={
        "hyper:maximize": "none of mlx.optimizers.SGD(learning_rate, momentum, weight_decay, "
                          "dampening, nesterov), Adam and AdamW has a maximize argument",
        "hyper:amsgrad": "mlx.optimizers.Adam(learning_rate, betas, eps, bias_correction) and "
                         "AdamW have no amsgrad",
        "hyper:adam:weight_decay": "mlx.optimizers.Adam(learning_rate, betas, eps, "
                                   "bias_correction) has no weight_decay (torch's L2 term "
                                   "g + wd * p); AdamW's decoupled decay is another algorithm",
        "index:bool_mask": "MLX has no boolean-mask indexing: x[mx.array([True, False, True])] "
                           "raises ValueError 'boolean indices are not yet supported' (an "
                           "output shape that depends on values)",
        "add_param_group": "an MLX optimizer takes new params through init(), but with the "
                           "optimizer's own hyperparameters: there is no group with overrides "
                           "to add, and MultiOptimizer's optimizers are fixed at construction",
    })
    known_deviations: ClassVar[Sequence[KnownDeviation]] = ()

    def __init__(self) -> None:
        self.mx, self.nn, self.optim = _mlx()
        self.dtypes = {np.dtype("float32"): self.mx.float32,
                       np.dtype("float64"): self.mx.float64}

    def version(self) -> str:
        return f"{self.mx.__version__}, {self.mx.default_device()}"

    # --- arrays ------------------------------------------------------------------------------
    def array(self, value: np.ndarray) -> Any:
        # mx.array(a float64 ndarray) makes a float32 array unless the dtype is given.
        dtype = self.dtypes.get(value.dtype)
        return self.mx.array(value) if dtype is None else self.mx.array(value, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- gradients ---------------------------------------------------------------------------
    def vjp(self, forward: Callable[[Sequence[Any]], Any], params: Sequence[Any],
            cotangent: Any | None) -> Sequence[Any]:
        mx = self.mx
        if cotangent is None:
            grads = mx.grad(forward)(list(params))
        else:
            _, grads = mx.vjp(lambda *arrays: forward(list(arrays)), list(params), [cotangent])
        mx.eval(grads)
        return list(grads)

    # --- optimizers --------------------------------------------------------------------------
    def optimizer(self, kind: str, groups: Sequence[Mapping[str, Any]],
                  defaults: Mapping[str, Any]) -> Any:
        keys: list[str] = []
        params: dict[str, Any] = {}
        members: list[list[str]] = []
        for group in groups:
            names = [_key(len(keys) + i) for i in range(len(group["params"]))]
            keys += names
            params.update(zip(names, group["params"], strict=True))
            members.append(names)
        built = [self._build(kind, {**defaults, **{k: v for k, v in group.items()
                                                   if k != "params"}})
                 for group in groups]
        if len(built) == 1:
            optimizer = built[0]
        else:
            filters = [self._member_of(names) for names in members[:-1]]
            optimizer = self.optim.MultiOptimizer(built, filters)
        optimizer.init(params)
        return MLXOptimizer(optimizer, keys, built)

    @staticmethod
    def _member_of(names: list[str]) -> Callable[..., bool]:
        chosen = frozenset(names)
        return lambda path, gradient: path in chosen

    def _build(self, kind: str, hyperparameters: Mapping[str, Any]) -> Any:
        arguments = {"learning_rate": TORCH_DEFAULT_LR}
        for name, value in hyperparameters.items():
            if name not in MLX_NAMES:
                raise NotImplementedError(f"mlx.optimizers.{CLASSES[kind]} has no {name!r}")
            arguments[MLX_NAMES[name]] = value
        if kind != "sgd":
            # torch's Adam and AdamW always correct the moments' bias; MLX's do so only when
            # asked (bias_correction defaults to False): this is how MLX spells torch's Adam.
            arguments["bias_correction"] = True
        return getattr(self.optim, CLASSES[kind])(**arguments)

    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        held: MLXOptimizer = optimizer
        current = dict(zip(held.keys, params, strict=True))
        given = {key: grad for key, grad in zip(held.keys, grads, strict=True)
                 if grad is not None}
        updated = held.optimizer.apply_gradients(given, current)
        stepped = [updated.get(key, current[key]) for key in held.keys]
        self.mx.eval(stepped, held.optimizer.state)
        return stepped

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        target = optimizer.groups[group]
        if key == "lr":
            target.learning_rate = value
        elif key in MLX_NAMES:
            setattr(target, MLX_NAMES[key], value)
        else:
            raise NotImplementedError(f"MLX optimizers have no {key!r}")

    def state_dict(self, optimizer: Any) -> Any:
        # The optimizer's state tree (step, learning_rate, each param's buffers), as a
        # checkpoint saves it: mlx.utils.tree_flatten(opt.state) into mx.save_safetensors.
        return self._utils().tree_flatten(optimizer.optimizer.state)

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        optimizer.optimizer.state = self._utils().tree_unflatten(list(state))

    @staticmethod
    def _utils() -> Any:
        import mlx.utils

        return mlx.utils

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        message = str(error)
        if isinstance(error, ValueError):
            if "[vjp] Output shape" in message and "does not match cotangent shape ()." in message:
                return ErrorKind.NON_SCALAR_BACKWARD  # mx.grad's cotangent is a scalar 1
            if "[vjp] Output shape" in message:
                return ErrorKind.GRADIENT_SHAPE
            for fragment in ("Nesterov momentum requires", "Adam beta", "Adam epsilon"):
                if fragment in message:
                    return ErrorKind.INVALID_HYPERPARAMETER
        return None
