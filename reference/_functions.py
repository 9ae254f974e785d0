"""Elementwise math, comparisons and reductions.

Each function normalizes its arguments (Python scalars, dims) with torch's checks and error
messages, then applies one row of the op table (``_ops.OPS``), which holds the math.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference import _ops
from reference._arguments import (
    as_operand,
    broadcast_error,
    check_broadcast,
    reduction_dims,
    wrap_dim,
)
from reference._dtypes import DEFAULT_FLOAT, bool_, is_floating, result_type, scalar_type_name
from reference._shape import to_dtype
from reference._tensor import Tensor
from reference.return_types import max as MaxResult
from reference.return_types import min as MinResult


def binary_operator(name: str, self: Tensor, other: Any, **attrs: Any) -> Any:
    """``self <op> other`` for the Python operators; foreign operands give NotImplemented."""
    try:
        operand = as_operand(other)
    except TypeError:
        return NotImplemented
    return _binary(name, self, operand, **attrs)


def _binary(name: str, self: Tensor, other: Tensor, **attrs: Any) -> Tensor:
    try:
        result: Tensor = _ops.call(name, self, other, **attrs)
    except ValueError:
        check_broadcast(self, other)
        raise
    return result


def axpy(self: np.ndarray, other: np.ndarray, alpha: float, sign: int) -> np.ndarray:
    return _ops.axpy(self, other, alpha, sign)


def add(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    """``input + alpha * other``, broadcasting.

    >>> import reference
    >>> reference.add(reference.tensor([1.0]), reference.tensor([2.0]), alpha=3)
    tensor([7.])
    """
    return _binary("add", as_operand(input), as_operand(other), alpha=alpha)


def sub(input: Any, other: Any, *, alpha: float = 1) -> Tensor:
    """``input - alpha * other``, broadcasting.

    >>> import reference
    >>> reference.sub(reference.tensor([1.0]), 2.0)
    tensor([-1.])
    """
    first = as_operand(input)
    if first._wrapped:
        return _binary("rsub", as_operand(other), first, alpha=alpha)
    return _binary("sub", first, as_operand(other), alpha=alpha)


def mul(input: Any, other: Any) -> Tensor:
    """Elementwise product, broadcasting.

    >>> import reference
    >>> reference.mul(reference.tensor([1.0, 2.0]), 3.0)
    tensor([3., 6.])
    """
    first, second = as_operand(input), as_operand(other)
    if first._wrapped and not second._wrapped:
        first, second = second, first
    return _binary("mul", first, second)


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """True division, broadcasting; integer inputs give the default float dtype.

    >>> import reference
    >>> reference.div(reference.tensor([1, 2]), 2)
    tensor([0.5000, 1.0000])
    """
    if rounding_mode is not None:
        raise NotImplementedError("div(rounding_mode=...) is not supported by the reference")
    first, second = as_operand(input), as_operand(other)
    if first._wrapped:
        return mul(reciprocal(second), first)
    return _binary("div", first, second)


def neg(input: Tensor) -> Tensor:
    """``-input``.

    >>> import reference
    >>> reference.neg(reference.tensor([1.0]))
    tensor([-1.])
    """
    if input.dtype == bool_:
        raise RuntimeError(
            "Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
            "invert a mask, use the `~` or `logical_not()` operator instead."
        )
    return _ops.call("neg", input)


def reciprocal(input: Tensor) -> Tensor:
    """``1 / input`` (torch computes ``2.0 / x`` as ``reciprocal(x) * 2.0``).

    >>> import reference
    >>> reference.reciprocal(reference.tensor([4.0]))
    tensor([0.2500])
    """
    return _ops.call("reciprocal", input)


def pow(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent``; either side may be a Python number.

    >>> import reference
    >>> reference.pow(reference.tensor([3.0]), 2)
    tensor([9.])
    >>> reference.pow(2.0, reference.tensor([3.0]))
    tensor([8.])
    """
    if isinstance(input, Tensor) and isinstance(exponent, Tensor):
        return _binary("pow", input, exponent)
    if isinstance(input, Tensor):
        if not isinstance(exponent, (int, float, np.integer, np.floating)):
            return NotImplemented
        if not is_floating(input.dtype) and isinstance(exponent, (float, np.floating)):
            input = to_dtype(input, DEFAULT_FLOAT)
        return _ops.call("pow_scalar_exponent", input, exponent=exponent)
    if not isinstance(input, (int, float, np.integer, np.floating)):
        return NotImplemented
    if not is_floating(exponent.dtype) and isinstance(input, (float, np.floating)):
        exponent = to_dtype(exponent, DEFAULT_FLOAT)
    return _ops.call("pow_scalar_base", exponent, base=input)


def exp(input: Tensor) -> Tensor:
    """Elementwise e ** x.

    >>> import reference
    >>> reference.exp(reference.tensor([0.0]))
    tensor([1.])
    """
    return _ops.call("exp", input)


def log(input: Tensor) -> Tensor:
    """Natural logarithm; its gradient at 0 is inf.

    >>> import reference
    >>> reference.log(reference.tensor([1.0]))
    tensor([0.])
    """
    return _ops.call("log", input)


def sqrt(input: Tensor) -> Tensor:
    """Square root; its gradient at 0 is inf.

    >>> import reference
    >>> reference.sqrt(reference.tensor([4.0]))
    tensor([2.])
    """
    return _ops.call("sqrt", input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent.

    >>> import reference
    >>> reference.tanh(reference.tensor([0.0]))
    tensor([0.])
    """
    return _ops.call("tanh", input)


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``.

    >>> import reference
    >>> reference.sigmoid(reference.tensor([0.0]))
    tensor([0.5000])
    """
    return _ops.call("sigmoid", input)


def relu(input: Tensor) -> Tensor:
    """``max(x, 0)``; the gradient at 0 is 0.

    >>> import reference
    >>> reference.relu(reference.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    return _ops.call("relu", input)


def abs(input: Tensor) -> Tensor:
    """Absolute value; the gradient at 0 is 0.

    >>> import reference
    >>> reference.abs(reference.tensor([-1.5]))
    tensor([1.5000])
    """
    return _ops.call("abs", input)


def sin(input: Tensor) -> Tensor:
    """Sine.

    >>> import reference
    >>> reference.sin(reference.tensor([0.0]))
    tensor([0.])
    """
    return _ops.call("sin", input)


def cos(input: Tensor) -> Tensor:
    """Cosine.

    >>> import reference
    >>> reference.cos(reference.tensor([0.0]))
    tensor([1.])
    """
    return _ops.call("cos", input)


def sign(input: Tensor) -> Tensor:
    """-1, 0 or 1 (0 for NaN, as in torch); its gradient is 0.

    >>> import reference
    >>> reference.sign(reference.tensor([-2.0, 0.0, 3.0]))
    tensor([-1.,  0.,  1.])
    """
    return _ops.call("sign", input)


def round(input: Tensor) -> Tensor:
    """Round half to even; its gradient is 0.

    >>> import reference
    >>> reference.round(reference.tensor([0.5, 1.5]))
    tensor([0., 2.])
    """
    return _ops.call("round", input)


def floor(input: Tensor) -> Tensor:
    """Floor; its gradient is 0.

    >>> import reference
    >>> reference.floor(reference.tensor([1.5]))
    tensor([1.])
    """
    return _ops.call("floor", input)


def ceil(input: Tensor) -> Tensor:
    """Ceiling; its gradient is 0.

    >>> import reference
    >>> reference.ceil(reference.tensor([1.5]))
    tensor([2.])
    """
    return _ops.call("ceil", input)


def square(input: Tensor) -> Tensor:
    """``input ** 2`` (torch records it as a pow).

    >>> import reference
    >>> reference.square(reference.tensor([3.0]))
    tensor([9.])
    """
    return pow(input, 2)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """Clamp into ``[min, max]``; the bounds are inclusive, so the gradient there is 1.

    >>> import reference
    >>> reference.clamp(reference.tensor([-2.0, 0.5, 2.0]), min=-1, max=1)
    tensor([-1.0000,  0.5000,  1.0000])
    """
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        raise NotImplementedError("clamp with tensor bounds is not supported by the reference")
    if not is_floating(input.dtype) and any(isinstance(b, float) for b in (min, max)):
        input = to_dtype(input, DEFAULT_FLOAT)
    return _ops.call("clamp", input, min=min, max=max)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """Pick ``input`` where ``condition`` holds, else ``other``; either may be a number.

    >>> import reference
    >>> reference.where(reference.tensor([True, False]), reference.tensor([1.0, 2.0]), 0.0)
    tensor([1., 0.])
    """
    cond = as_operand(condition)
    if cond.dtype != bool_:
        raise RuntimeError(
            "where expected condition to be a boolean tensor, but got a tensor with dtype "
            f"{scalar_type_name(cond.dtype)}"
        )
    first, second = as_operand(input), as_operand(other)
    try:
        result: Tensor = _ops.call("where", cond, first, second)
    except ValueError:
        check_broadcast(cond, first, second)
        raise
    return result


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly.

    >>> import reference
    >>> reference.maximum(reference.tensor([1.0, 5.0]), reference.tensor([3.0, 2.0]))
    tensor([3., 5.])
    """
    return _binary("maximum", as_operand(input), as_operand(other))


def minimum(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly.

    >>> import reference
    >>> reference.minimum(reference.tensor([1.0, 5.0]), reference.tensor([3.0, 2.0]))
    tensor([1., 2.])
    """
    return _binary("minimum", as_operand(input), as_operand(other))


_COMPARISONS = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


_BITWISE = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}


def compare(name: str, input: Tensor, other: Any) -> Tensor:
    """A bool tensor, compared in the promoted dtype (never part of a graph)."""
    try:
        operand = as_operand(other)
    except TypeError:
        return NotImplemented
    dtype = result_type((input, operand))
    with np.errstate(all="ignore"):
        try:
            values = _COMPARISONS[name](input._data.astype(dtype), operand._data.astype(dtype))
        except ValueError:
            raise broadcast_error(input.shape, operand.shape) from None
    return Tensor._wrap(np.asarray(values))


def bitwise(name: str, input: Tensor, other: Any) -> Tensor:
    """``&``, ``|``, ``^`` on bool or integer tensors."""
    try:
        operand = as_operand(other)
    except TypeError:
        return NotImplemented
    dtype = result_type((input, operand))
    if is_floating(dtype):
        raise RuntimeError(f"\"bitwise_{name}_cpu\" not implemented for '{scalar_type_name(dtype)}'")
    try:
        values = _BITWISE[name](input._data.astype(dtype), operand._data.astype(dtype))
    except ValueError:
        raise broadcast_error(input.shape, operand.shape) from None
    return Tensor._wrap(np.asarray(values))


def logical_not(input: Tensor) -> Tensor:
    """``~mask`` for bool tensors (bitwise not for integers)."""
    if is_floating(input.dtype):
        raise TypeError("~ (bitwise_not) is only supported for integer and bool tensors")
    return Tensor._wrap(np.asarray(np.invert(input._data)))


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (an int, a tuple, or None for all); bool and int sum to int64.

    >>> import reference
    >>> reference.sum(reference.tensor([[1.0, 2.0], [3.0, 4.0]]), dim=0)
    tensor([4., 6.])
    """
    if dtype is not None:
        input = input.to(dtype)
    dims = reduction_dims(dim, input.ndim)
    name = "sum" if dim is None else "sum_dim"
    return _ops.call(name, input, dim=dims, keepdim=keepdim)


def mean(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim``: the sum divided by the count (torch's CPU order).

    >>> import reference
    >>> reference.mean(reference.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor(2.5000)
    """
    if not is_floating(input.dtype):
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or "
            f"complex dtype. Got: {scalar_type_name(input.dtype)}"
        )
    dims = reduction_dims(dim, input.ndim)
    name = "mean" if dim is None else "mean_dim"
    return _ops.call(name, input, dim=dims, keepdim=keepdim)


def _check_nonempty(name: str, input: Tensor, dims: tuple[int, ...] | None) -> None:
    """torch's errors for reducing nothing: over all dims (None), or over a dim of size 0."""
    if dims is None:
        if input.numel() == 0:
            raise RuntimeError(
                f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                "Specify the reduction dim with the 'dim' argument."
            )
        return
    for axis in dims:
        if input.shape[axis] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {axis} to have non-zero size.")


def _extreme(name: str, input: Tensor, dim: Any, keepdim: bool) -> Any:
    if isinstance(dim, Tensor):
        return maximum(input, dim) if name == "max" else minimum(input, dim)
    if dim is None:
        _check_nonempty(name, input, None)
        return _ops.call(name, input)
    axis = wrap_dim(int(dim), input.ndim)
    if input.ndim:
        _check_nonempty(name, input, (axis,))
    values, indices = _ops.call(f"{name}_dim", input, dim=axis, keepdim=keepdim)
    result_type_ = MaxResult if name == "max" else MinResult
    return result_type_(values, indices)


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``max(x)``: the largest element, ties splitting the gradient evenly.
    ``max(x, dim)``: ``(values, indices)``, the gradient going to the first maximum.
    ``max(x, y)``: ``maximum(x, y)``.

    >>> import reference
    >>> reference.max(reference.tensor([[1.0, 5.0], [3.0, 2.0]]), dim=1).values
    tensor([5., 3.])
    """
    return _extreme("max", input, dim, keepdim)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """The counterpart of :func:`max`.

    >>> import reference
    >>> reference.min(reference.tensor([1.0, -5.0]))
    tensor(-5.)
    """
    return _extreme("min", input, dim, keepdim)


def _amax_amin(name: str, input: Tensor, dim: Any, keepdim: bool) -> Tensor:
    dims = reduction_dims(dim, input.ndim)
    every_dim = dim is None or (not isinstance(dim, int) and len(tuple(dim)) == 0)
    _check_nonempty(name, input, None if every_dim else dims)
    return _ops.call(name, input, dim=dims, keepdim=keepdim)


def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Largest values over ``dim`` (default all); ties split the gradient evenly.

    >>> import reference
    >>> reference.amax(reference.tensor([[1.0, 5.0], [3.0, 2.0]]), dim=0)
    tensor([3., 5.])
    """
    return _amax_amin("amax", input, dim, keepdim)


def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Smallest values over ``dim`` (default all); ties split the gradient evenly.

    >>> import reference
    >>> reference.amin(reference.tensor([[1.0, 5.0], [3.0, 2.0]]), dim=1)
    tensor([1., 2.])
    """
    return _amax_amin("amin", input, dim, keepdim)


def softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``.

    >>> import reference
    >>> reference.softmax(reference.tensor([0.0, 0.0]), dim=0)
    tensor([0.5000, 0.5000])
    """
    if dtype is not None:
        input = input.to(dtype)
    return _ops.call("softmax", input, dim=wrap_dim(dim, input.ndim) if input.ndim else 0)


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``dim``, computed stably around the maximum.

    >>> import reference
    >>> reference.logsumexp(reference.tensor([0.0, 0.0]), dim=0)
    tensor(0.6931)
    """
    return _ops.call("logsumexp", input, dim=reduction_dims(dim, input.ndim), keepdim=keepdim)
