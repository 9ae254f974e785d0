"""An adapter base for engines whose public API follows torch's names.

Subclasses set ``module`` (anything with torch's ``tensor``, ``optim.SGD``, ``where``, ...)
and, if the engine words its errors differently, extend ``error_patterns``.

>>> class MyEngine(TorchLikeEngine):
...     name = "mine"
...     module = importlib.import_module("mytorch")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Engine
from conformance.errors import ErrorKind
from conformance.ops import PYTHON_OPERATORS
from conformance.program import OPTIMIZERS

# Substrings of torch's own messages (torch-semantics.md), each naming one category.
TORCH_ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    (RuntimeError, "backward through the graph a second time", ErrorKind.FREED_GRAPH),
    (RuntimeError, "implicitly created only for scalar outputs", ErrorKind.NON_SCALAR_BACKWARD),
    (RuntimeError, "does not require grad and does not have a grad_fn", ErrorKind.NO_GRAD_FN),
    (RuntimeError, "Mismatch in shape", ErrorKind.GRADIENT_SHAPE),
    (RuntimeError, "modified by an inplace operation", ErrorKind.INPLACE_MODIFIED),
    # The same, for a saved view that a custom autograd.Function returned (its own message).
    (RuntimeError, "its base or another view of its base has been modified inplace",
     ErrorKind.INPLACE_MODIFIED),
    (IndexError, "", ErrorKind.INDEX_OUT_OF_RANGE),
    (ValueError, "Invalid learning rate", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid momentum value", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid weight_decay value", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Nesterov momentum requires", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid epsilon value", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid beta parameter", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "empty parameter list", ErrorKind.EMPTY_PARAMETER_LIST),
    (ValueError, "more than one parameter group", ErrorKind.DUPLICATE_PARAMETER),
    (ValueError, "can't optimize a non-leaf Tensor", ErrorKind.NON_LEAF_PARAMETER),
    # A hand-written update or grad edit while the grad is None: `lr * w.grad` and
    # `w.add_(w.grad, ...)` raise TypeError, `w.grad.zero_()` AttributeError.
    # Only these messages: torch's fused SGD raises a TypeError naming NoneType for its own
    # bug ("expected Tensor as element 1 in argument 2, but got NoneType"), a crash.
    (TypeError, "unsupported operand type(s) for *: 'float' and 'NoneType'", ErrorKind.NONE_GRAD),
    (TypeError, "must be Tensor, not NoneType", ErrorKind.NONE_GRAD),
    (AttributeError, "'NoneType' object has no attribute", ErrorKind.NONE_GRAD),
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


def _reduction(params: Mapping[str, Any]) -> dict[str, Any]:
    """A loss's ``reduction`` keyword exactly when the program passes one."""
    return {"reduction": params["reduction"]} if "reduction" in params else {}


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
    "linear": lambda m, a, p: m.nn.functional.linear(*a),
    "mse_loss": lambda m, a, p: m.nn.functional.mse_loss(a[0], a[1], **_reduction(p)),
    "cross_entropy": lambda m, a, p: m.nn.functional.cross_entropy(
        a[0], m.tensor(p["target"]), **_reduction(p)
    ),
}


def _torch_index(module: Any, index: Any) -> Any:
    """The index as the script writes it: the same int, slice, list or tuple; NumPy arrays
    (index tensors and masks) become the engine's tensors."""
    if isinstance(index, tuple):
        return tuple(_torch_index(module, part) for part in index)
    if isinstance(index, np.ndarray):
        return module.tensor(index)
    return index


def _byte_span(tensor: Any) -> tuple[int, int]:
    """The first and one past the last byte a (non-empty) view reaches."""
    start = tensor.data_ptr()
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(),
                                                          strict=True))
    return start, start + (last + 1) * tensor.element_size()


class TorchLikeEngine(Engine):
    """Everything of :class:`Engine` for a module that spells its API like torch."""

    module: ClassVar[Any]
    sgd_options: ClassVar[Mapping[str, Any]] = {}
    """Extra keyword arguments for ``module.optim.SGD``, e.g. ``{"foreach": True}``."""
    optimizer_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Extra keyword arguments per optimizer kind, e.g. ``{"adam": {"fused": True}}``
    (``sgd_options`` for SGD)."""
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

    def backward(self, loss: Any, **arguments: Any) -> None:
        positional: tuple[Any, ...] = ()
        if "gradient" in arguments:
            positional = (self.module.tensor(arguments.pop("gradient")),)
        with warnings.catch_warnings():
            # torch warns about a parameter/grad reference cycle on every create_graph backward
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
            loss.backward(*positional, **arguments)

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        param.grad = None

    def set_grad(self, param: Any, value: np.ndarray) -> None:
        param.grad = self.module.tensor(value)

    def shares_memory(self, first: Any, second: Any) -> bool:
        """Whether the two grads' elements overlap in memory, so that accumulating into one
        changes the other: one storage is not enough (stack's and cat's backward give each
        param a disjoint view of one buffer, which accumulate apart), as NumPy's
        ``may_share_memory`` over the byte spans the views reach."""
        if first.numel() == 0 or second.numel() == 0:
            return False
        if first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr():
            return False
        (a, b), (c, d) = _byte_span(first), _byte_span(second)
        return a < d and c < b

    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        options = {**defaults, **self.sgd_options}
        return self.module.optim.SGD([dict(group) for group in groups], **options)

    def optimizer(
        self, kind: str, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
    ) -> Any:
        if kind == "sgd":
            return self.sgd(groups, defaults)
        options = {**defaults, **self.optimizer_options.get(kind, {})}
        constructor = getattr(self.module.optim, OPTIMIZERS[kind])
        return constructor([dict(group) for group in groups], **options)

    def add_param_group(self, optimizer: Any, group: Mapping[str, Any]) -> None:
        optimizer.add_param_group(dict(group))

    def state_dict(self, optimizer: Any) -> Any:
        return optimizer.state_dict()

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        optimizer.load_state_dict(state)

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        optimizer.zero_grad(**arguments)

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        optimizer.param_groups[group][key] = value

    def update(self, param: Any, form: str, scalar: float) -> Any:
        # Each branch is the code conformance.program.UPDATE_FORMS prints for it.
        if form == "data":
            param.data.sub_(scalar * param.grad)
            return param
        with self.module.no_grad():
            if form == "isub":
                param -= scalar * param.grad
            elif form == "sub_":
                param.sub_(scalar * param.grad)
            elif form == "add_":
                param.add_(param.grad, alpha=-scalar)
            elif form == "mul_":
                param.mul_(scalar)
            else:
                raise ValueError(f"unknown update form {form!r}")
        return param

    def edit_grad(self, param: Any, form: str, scalar: float) -> None:
        # Each branch is the code conformance.program.GRAD_EDIT_FORMS prints for it.
        if form == "zero_":
            param.grad.zero_()
        elif form == "mul_":
            param.grad.mul_(scalar)
        elif form == "div_":
            param.grad.div_(scalar)
        else:
            raise ValueError(f"unknown grad edit {form!r}")

    def classify(self, error: Exception) -> ErrorKind | None:
        for error_type, fragment, kind in self.error_patterns:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None
