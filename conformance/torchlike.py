"""An adapter base for engines whose public API follows torch's names.

Subclasses set ``module`` (anything with torch's ``tensor``, ``optim.SGD``, ``where``, ...)
and, if the engine words its errors differently, extend ``error_patterns``.

>>> class MyEngine(TorchLikeEngine):
...     name = "mine"
...     module = importlib.import_module("mytorch")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Engine
from conformance.errors import ErrorKind
from conformance.ops import PYTHON_OPERATORS

# Substrings of torch's own messages (torch-semantics.md), each naming one category.
TORCH_ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    (RuntimeError, "backward through the graph a second time", ErrorKind.FREED_GRAPH),
    (RuntimeError, "implicitly created only for scalar outputs", ErrorKind.NON_SCALAR_BACKWARD),
    (RuntimeError, "does not require grad and does not have a grad_fn", ErrorKind.NO_GRAD_FN),
    (RuntimeError, "Mismatch in shape", ErrorKind.GRADIENT_SHAPE),
    (RuntimeError, "modified by an inplace operation", ErrorKind.INPLACE_MODIFIED),
    (IndexError, "", ErrorKind.INDEX_OUT_OF_RANGE),
    (ValueError, "Invalid learning rate", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid momentum value", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid weight_decay value", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Nesterov momentum requires", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "empty parameter list", ErrorKind.EMPTY_PARAMETER_LIST),
    (ValueError, "more than one parameter group", ErrorKind.DUPLICATE_PARAMETER),
    (ValueError, "can't optimize a non-leaf Tensor", ErrorKind.NON_LEAF_PARAMETER),
)

Impl = Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]


def _dim_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("dim") is None:
        return {}
    return {"dim": params["dim"], "keepdim": bool(params.get("keepdim", False))}


def _reduce(method: str) -> Impl:
    return lambda m, a, p: getattr(a[0], method)(**_dim_kwargs(p))


def _method(method: str) -> Impl:
    return lambda m, a, p: getattr(a[0], method)()


def _operator(function: Callable[..., Any]) -> Impl:
    return lambda m, a, p: function(*a)


TORCH_LIKE_OPS: dict[str, Impl] = {
    **{op: _operator(function) for op, function in PYTHON_OPERATORS.items()},
    "exp": _method("exp"),
    "log": _method("log"),
    "sqrt": _method("sqrt"),
    "tanh": _method("tanh"),
    "sigmoid": _method("sigmoid"),
    "relu": _method("relu"),
    "abs": _method("abs"),
    "clamp": lambda m, a, p: a[0].clamp(min=p.get("min"), max=p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "max_dim": lambda m, a, p: a[0].max(**_dim_kwargs(p)).values,
    "min_dim": lambda m, a, p: a[0].min(**_dim_kwargs(p)).values,
    "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "maximum": lambda m, a, p: m.maximum(a[0], a[1]),
    "minimum": lambda m, a, p: m.minimum(a[0], a[1]),
    "reshape": lambda m, a, p: a[0].reshape(tuple(p["shape"])),
    "transpose": lambda m, a, p: a[0].transpose(p["dim0"], p["dim1"]),
    "unsqueeze": lambda m, a, p: a[0].unsqueeze(p["dim"]),
    "getitem": lambda m, a, p: a[0][_torch_index(m, p["index"])],
    "cat": lambda m, a, p: m.cat(list(a), dim=p["dim"]),
    "stack": lambda m, a, p: m.stack(list(a), dim=p["dim"]),
    "where": lambda m, a, p: m.where(m.tensor(p["cond"]), a[0], a[1]),
}


def _torch_index(module: Any, index: tuple[Any, ...]) -> tuple[Any, ...]:
    """Integer lists become lists (torch's advanced indexing), masks become bool tensors."""
    converted: list[Any] = []
    for part in index:
        if isinstance(part, tuple):
            converted.append(list(part))
        elif isinstance(part, np.ndarray):
            converted.append(module.tensor(part))
        else:
            converted.append(part)
    return tuple(converted)


class TorchLikeEngine(Engine):
    """Everything of :class:`Engine` for a module that spells its API like torch."""

    module: ClassVar[Any]
    sgd_options: ClassVar[Mapping[str, Any]] = {}
    """Extra keyword arguments for ``module.optim.SGD``, e.g. ``{"foreach": True}``."""
    error_patterns: ClassVar[Sequence[tuple[type[Exception], str, ErrorKind]]] = (
        TORCH_ERROR_PATTERNS
    )

    def version(self) -> str:
        return str(getattr(self.module, "__version__", "unknown"))

    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        return self.module.tensor(value, requires_grad=requires_grad)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.array(tensor.detach().numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return TORCH_LIKE_OPS[op](self.module, operands, params)

    def backward(self, loss: Any, *, gradient: np.ndarray | None, retain_graph: bool | None) -> None:
        grad_tensor = None if gradient is None else self.module.tensor(gradient)
        loss.backward(grad_tensor, retain_graph=retain_graph)

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        param.grad = None

    def shares_memory(self, first: Any, second: Any) -> bool:
        if first.numel() == 0 or second.numel() == 0:
            return False
        storage = first.untyped_storage()
        return bool(storage.data_ptr() == second.untyped_storage().data_ptr())

    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        # Hyperparameters declared unsupported arrive only at their neutral value (0 or False):
        # leave them out, for engines whose SGD has no such argument.
        supported = {key: value for key, value in defaults.items()
                     if key == "lr" or self.capabilities.supports(f"hyper:{key}")}
        options = {**supported, **self.sgd_options}
        return self.module.optim.SGD([dict(group) for group in groups], **options)

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def zero_grad(self, optimizer: Any, *, set_to_none: bool) -> None:
        optimizer.zero_grad(set_to_none=set_to_none)

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        optimizer.param_groups[group][key] = value

    def classify(self, error: Exception) -> ErrorKind | None:
        for error_type, fragment, kind in self.error_patterns:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None
