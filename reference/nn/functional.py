"""``reference.nn.functional``: torch's functional forms of the reference's ops, and the losses.

The losses are composed as torch 2.13 composes them: ``mse_loss`` broadcasts its operands
(warning when their sizes differ) and is one node, MseLossBackward0; ``cross_entropy`` with
class indices is ``log_softmax`` over the class dim, then ``nll_loss`` (LogSoftmaxBackward0,
NllLossBackward0). Class weights, label smoothing, class-probability targets and the legacy
``size_average``/``reduce`` arguments are outside the reference and raise NotImplementedError.
"""

from __future__ import annotations

import warnings
from typing import Any

from reference import _ops
from reference._arguments import check_broadcast, wrap_dim
from reference._dtypes import is_floating, scalar_type_name
from reference._functions import relu, sigmoid, softmax, tanh
from reference._linalg import linear
from reference._shape import expand
from reference._tensor import Tensor

__all__ = [
    "cross_entropy",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _reduction_enum(reduction: str) -> int:
    """torch.nn._reduction.get_enum (without the deprecated 'elementwise_mean')."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return _REDUCTIONS[reduction]


def _unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(f"{what} is not supported by the reference")


def _check_legacy(size_average: Any, reduce: Any) -> None:
    if size_average is not None or reduce is not None:
        raise _unsupported("the legacy size_average/reduce arguments")


def _size(shape: tuple[int, ...]) -> str:
    return "torch.Size([" + ", ".join(str(size) for size in shape) + "])"


def log_softmax(input: Tensor, dim: int, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``x - log(sum(exp(x)))`` along ``dim``, computed around the maximum.

    >>> import reference
    >>> reference.nn.functional.log_softmax(reference.tensor([0.0, 0.0]), dim=0)
    tensor([-0.6931, -0.6931])
    """
    if dtype is not None:
        input = input.to(dtype)
    result: Tensor = _ops.call(
        "log_softmax", input, dim=wrap_dim(dim, input.ndim) if input.ndim else 0
    )
    return result


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """The mean (or sum, or elementwise) squared difference; one node, MseLossBackward0.

    >>> import reference
    >>> reference.nn.functional.mse_loss(reference.tensor([1.0, 2.0]), reference.tensor([0.0, 0.0]))
    tensor(2.5000)
    """
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({_size(target.shape)}) that is different to the input size "
            f"({_size(input.shape)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=2,
        )
    _check_legacy(size_average, reduce)
    expanded_input, expanded_target = _broadcast_tensors(input, target)
    if weight is not None:
        raise _unsupported("mse_loss's weight")
    result: Tensor = _ops.call(
        "mse_loss", expanded_input, expanded_target, reduction=_reduction_enum(reduction)
    )
    return result


def _broadcast_tensors(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """torch.broadcast_tensors: an operand already of the common shape is passed as it is."""
    check_broadcast(a, b)
    if a.shape == b.shape:
        return a, b
    shape = _broadcast_shape(a.shape, b.shape)
    return (a if a.shape == shape else expand(a, shape)), (b if b.shape == shape else expand(b, shape))


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max(len(a), len(b))
    a, b = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """The negative log-likelihood of class indices ``target`` under log-probabilities ``input``
    (N, C) or (C,); ``ignore_index`` samples count for nothing. One node, NllLossBackward0.

    >>> import reference
    >>> logp = reference.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    >>> reference.nn.functional.nll_loss(logp, reference.tensor([1, 0]))
    tensor(2.5000)
    """
    _check_legacy(size_average, reduce)
    return _nll_loss_nd(input, target, weight, _reduction_enum(reduction), ignore_index)


def _nll_loss_nd(
    input: Tensor, target: Tensor, weight: Tensor | None, reduction: int, ignore_index: int
) -> Tensor:
    """torch's nll_loss_nd for 1-D and 2-D inputs, with nll_loss's checks in torch's order."""
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim != 1 and target.ndim >= 1 and input.shape[0] != target.shape[0]:
        raise ValueError(
            f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
            f"({target.shape[0]})."
        )
    if input.ndim > 2:
        raise _unsupported("nll_loss of an input with more than 2 dims")
    if target.ndim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if input.ndim == 1 and target.ndim == 1 and target.shape[0] != 1:
        raise ValueError(
            f"For 1D input, 1D target must have size 1, but got target size: {target.shape[0]}"
        )
    if input.ndim == 2 and target.ndim == 0:
        raise _unsupported("a 0-dim target for a 2-dim input")
    if weight is not None:
        raise _unsupported("class weights")
    if target.dtype.name not in ("int64", "uint8"):
        raise RuntimeError(
            f"expected target dtype to be Long or Byte, but got {scalar_type_name(target.dtype)}"
        )
    result: Tensor = _ops.call(
        "nll_loss", input, target=target, reduction=reduction, ignore_index=ignore_index
    )[0]
    return result


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``nll_loss(log_softmax(input, class_dim), target)`` for class indices ``target``:
    logits (N, C) with target (N,), or (C,) with a 0-dim target.

    >>> import reference
    >>> reference.nn.functional.cross_entropy(reference.tensor([0.0, 0.0]), reference.tensor(1))
    tensor(0.6931)
    """
    _check_legacy(size_average, reduce)
    enum = _reduction_enum(reduction)
    if input.shape == target.shape:  # torch reads a target of the input's shape as probabilities
        if not is_floating(target.dtype):
            raise RuntimeError(
                "Expected floating point type for target with class probabilities, got "
                f"{scalar_type_name(target.dtype)}"
            )
        raise _unsupported("cross_entropy with class probabilities")
    if label_smoothing > 0.0:
        raise _unsupported("label_smoothing")
    class_dim = 0 if input.ndim == 1 else 1
    return _nll_loss_nd(log_softmax(input, class_dim), target, weight, enum, ignore_index)
