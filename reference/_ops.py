"""The op table: each op's forward, its vector-Jacobian product per input, and what it saves.

What an op saves for backward is read off its derivative formulas, the way torch's codegen
reads derivatives.yaml: a formula's parameters after ``grad`` name what it needs, and the
op saves exactly the tensors named by the formulas of the inputs that require grad. So
``mul`` saves ``other`` only when ``self`` requires grad, and an op whose formulas need no
tensor (``add``, ``sum``, ``view``) saves nothing and can be backpropagated through twice.

Names a formula can take:

- an input name (``self``, ``other``, ...) or an output name (``result``): a saved tensor,
  unpacked as an array in the dtype the op computed in;
- ``<input>_shape`` (``self_shape``; ``tensors_shapes`` for a list input): the input's shape,
  which torch keeps as sizes, never as a tensor;
- any other name: one of the op's non-tensor arguments (``dim``, ``exponent``, ...); if such
  an argument is a tensor (index tensors) it is saved like an input.

Each formula returns the gradient at the *output's* shape and dtype; the walker
(``_autograd.run_backward``) reduces it to the input's shape and casts it once.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference import _numerics
from reference._autograd import FunctionNode, SavedTensor, _GradMode, gradient_edge
from reference._dtypes import DEFAULT_FLOAT, result_type
from reference._tensor import Tensor

Array = np.ndarray


@dataclass(frozen=True)
class Derivative:
    """One input's vector-Jacobian product and the names it reads."""

    formula: Callable[..., Any]
    uses: tuple[str, ...]

    @classmethod
    def of(cls, formula: Callable[..., Any]) -> Derivative:
        parameters = tuple(inspect.signature(formula).parameters)
        return cls(formula, parameters[1:])


@dataclass(frozen=True, eq=False)
class OpDef:
    """One row of the table.

    ``promotion`` says which dtype the op computes in: ``"inputs"`` (torch's result_type
    over the inputs named in ``promoted``), ``"true_divide"`` (the same, but integers give
    the default float), ``"float"`` (the input's dtype, integers become the default float),
    ``"same"`` (the first input's dtype, no casting).
    """

    grad_fn_name: str
    forward: Callable[..., Any]
    inputs: tuple[str, ...]
    derivatives: dict[str, Derivative]
    promotion: str = "same"
    promoted: tuple[str, ...] = ()
    # Saved inputs reach the formulas cast to the result dtype, which for every other op
    # equals torch's pairwise promotion with the grad; pow's formula promotes by itself.
    casts_saved: bool = True
    outputs: tuple[str, ...] = ("result",)
    is_view: bool = False
    variadic: bool = False
    # False where the formulas read saved tensors only through comparisons (masks of maxima,
    # of clamp's range): torch's grads then carry no history under create_graph.
    grad_reads_values: bool = True
    # Where the formulas return a constant for these attributes (pow's ``zeros_like`` at
    # exponent 0): torch's grads then carry no history under create_graph, whatever flows in.
    constant_grads: Callable[[dict[str, Any]], bool] | None = None
    saved_by_input: dict[str, tuple[str, ...]] = field(init=False)
    differentiable: tuple[bool, ...] = field(init=False)
    cast_mask: tuple[bool, ...] = field(init=False)

    def __post_init__(self) -> None:
        saved = {name: derivative.uses for name, derivative in self.derivatives.items()}
        object.__setattr__(self, "saved_by_input", saved)
        differentiable = tuple(name in self.derivatives for name in self.inputs)
        object.__setattr__(self, "differentiable", differentiable)
        cast = tuple(self.promotion != "same" and name in self.promoted for name in self.inputs)
        object.__setattr__(self, "cast_mask", cast)

    def vjp(self, node: FunctionNode, grad: Array) -> tuple[Array | None, ...]:
        values = self._unpack(node)
        if self.variadic:
            derivative = self.derivatives[self.inputs[0]]
            grads = derivative.formula(grad, *(values[name] for name in derivative.uses))
            return tuple(g if need else None for g, need in zip(grads, node.needs, strict=True))
        input_grads: list[Array | None] = []
        for name, need in zip(self.inputs, node.needs, strict=True):
            if not need:
                input_grads.append(None)
                continue
            derivative = self.derivatives[name]
            input_grads.append(derivative.formula(grad, *(values[n] for n in derivative.uses)))
        return tuple(input_grads)

    def grads_require_grad(self, node: FunctionNode, incoming: bool) -> tuple[bool, ...]:
        """Under ``create_graph``: an input's grad requires grad when the incoming grad does or
        its formula reads a saved tensor that requires grad (``mul`` by a param: yes; by a
        constant, ``sum``, ``view``, indexing: no), which is how torch's double-backward graph
        comes out (measured on torch 2.13, e.g. ``(p * p).sum()`` vs ``(p * 2).sum()``)."""
        def reads_history(derivative: Derivative) -> bool:
            if not self.grad_reads_values:
                return False
            for name in derivative.uses:
                saved = node.saved.get(name)
                items = saved if isinstance(saved, tuple) else (saved,)
                if any(item is not None and item.requires_grad for item in items):
                    return True
            return False

        if self.constant_grads is not None and self.constant_grads(node.attrs):
            return (False,) * len(node.next_nodes)
        if self.variadic:
            flag = incoming or reads_history(self.derivatives[self.inputs[0]])
            return (flag,) * len(node.next_nodes)
        return tuple(
            incoming or (name in self.derivatives and reads_history(self.derivatives[name]))
            for name in self.inputs
        )

    def _unpack(self, node: FunctionNode) -> dict[str, Any]:
        # Everything saved is unpacked before any formula runs, as torch's generated
        # apply() does, so a freed or modified tensor raises even if its value is unused.
        values: dict[str, Any] = dict(node.attrs)
        for name, saved in node.saved.items():
            if isinstance(saved, tuple):
                values[name] = tuple(item.unpack() for item in saved)
                continue
            array = saved.unpack()
            if self.casts_saved and name in self.promoted and array.dtype != node.compute_dtype:
                array = array.astype(node.compute_dtype)
            values[name] = array
        if self.variadic:
            values[f"{self.inputs[0]}_shapes"] = tuple(meta[0] for meta in node.input_meta)
        else:
            for name, meta in zip(self.inputs, node.input_meta, strict=True):
                values[f"{name}_shape"] = meta[0]
        return values


def _op(
    grad_fn_name: str,
    forward: Callable[..., Any],
    inputs: tuple[str, ...] = ("self",),
    promotion: str = "same",
    promoted: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] = ("result",),
    is_view: bool = False,
    variadic: bool = False,
    casts_saved: bool = True,
    grad_reads_values: bool = True,
    constant_grads: Callable[[dict[str, Any]], bool] | None = None,
    **derivatives: Callable[..., Any],
) -> OpDef:
    return OpDef(
        grad_fn_name=grad_fn_name,
        forward=forward,
        inputs=inputs,
        derivatives={name: Derivative.of(formula) for name, formula in derivatives.items()},
        promotion=promotion,
        promoted=inputs if promoted is None else promoted,
        outputs=outputs,
        is_view=is_view,
        variadic=variadic,
        casts_saved=casts_saved,
        grad_reads_values=grad_reads_values,
        constant_grads=constant_grads,
    )


# --------------------------------------------------------------------------- helpers
# Longer derivative rules, named after the FunctionsManual.cpp functions they transcribe.


def _maybe_multiply(grad: Array, alpha: float) -> Array:
    return grad if alpha == 1 else grad * alpha


def axpy(self: Array, other: Array, alpha: float, sign: int) -> Array:
    """``self + sign * alpha * other`` with torch's rounding: alpha is cast to the dtype."""
    if alpha == 1:
        return self + other if sign > 0 else self - other
    scaled = other * self.dtype.type(alpha)
    return self + scaled if sign > 0 else self - scaled


def _restore_reduced_dims(grad: Array, dim: tuple[int, ...], keepdim: bool) -> Array:
    return grad if keepdim else np.expand_dims(grad, dim)


def _sum_backward(grad: Array, self_shape: tuple[int, ...], dim: tuple[int, ...], keepdim: bool) -> Array:
    return np.broadcast_to(_restore_reduced_dims(grad, dim, keepdim), self_shape)


def _mean_backward(grad: Array, self_shape: tuple[int, ...], dim: tuple[int, ...], keepdim: bool) -> Array:
    count = math.prod(self_shape[axis] for axis in dim)
    return _sum_backward(grad, self_shape, dim, keepdim) / count


def _pow_backward(grad: Array, self: Array, exponent: float) -> Array:
    if exponent == 0:
        return np.zeros_like(self)
    return grad * (exponent * _numerics.pow_scalar(self, exponent - 1))


def _pow_backward_self(grad: Array, self: Array, exponent: Array) -> Array:
    # ``exponent - 1`` is taken in the exponent's own dtype, then promoted (grad has the
    # result dtype): a float32 exponent of a float64 base is lowered in float32.
    lowered = (exponent - exponent.dtype.type(1)).astype(grad.dtype)
    self, exponent = self.astype(grad.dtype), exponent.astype(grad.dtype)
    power = grad * (exponent * _numerics.pow_tensor(self, lowered))
    return np.where(exponent == 0, grad.dtype.type(0), power)


def _pow_backward_exponent(grad: Array, self: Array, exponent: Array, result: Array) -> Array:
    base_is_zero = (self == 0) & (exponent >= 0)
    log_self = _numerics.log(self.astype(grad.dtype))
    return grad * np.where(base_is_zero, grad.dtype.type(0), result * log_self)


def _pow_backward_exponent_scalar_base(grad: Array, base: float, exponent: Array, result: Array) -> Array:
    # torch takes Scalar::log() in double, then casts it to the tensor's dtype.
    log_base = float(np.log(np.float64(base)))
    if base == 0:
        return grad * np.where(exponent >= 0, grad.dtype.type(0), result * log_base)
    return grad * (result * log_base)


def _clamp_backward(grad: Array, self: Array, min: float | None, max: float | None) -> Array:
    # Bounds are inclusive: the subgradient at min and at max is 1.
    keep = np.ones(self.shape, dtype=bool)
    if min is not None:
        keep &= self >= self.dtype.type(min)
    if max is not None:
        keep &= self <= self.dtype.type(max)
    return np.where(keep, grad, grad.dtype.type(0))


def _evenly_distribute_backward(grad: Array, self: Array, result: Array) -> Array:
    mask = np.isnan(self) if np.isnan(result) else self == result
    share = grad / int(np.count_nonzero(mask))
    return np.where(mask, share, grad.dtype.type(0))


def _scale_grad_by_count(
    grad: Array, self: Array, result: Array, dim: tuple[int, ...], keepdim: bool
) -> Array:
    grad = _restore_reduced_dims(grad, dim, keepdim)
    mask = _restore_reduced_dims(result, dim, keepdim) == self
    count = np.sum(mask, axis=dim, keepdims=True).astype(grad.dtype)
    return (grad / count) * mask


def _value_selecting_backward(
    grad: Array, dim: int, indices: Array, self_shape: tuple[int, ...], keepdim: bool
) -> Array:
    if len(self_shape) == 0:
        return grad.copy()
    if not keepdim:
        grad = np.expand_dims(grad, dim)
        indices = np.expand_dims(indices, dim)
    grad_input = np.zeros(self_shape, dtype=grad.dtype)
    np.put_along_axis(grad_input, indices, grad, axis=dim)
    return grad_input


def _maximum_backward(grad: Array, self: Array, other: Array, zero_where: Array) -> Array:
    half_on_ties = np.where(self == other, grad / 2, grad)
    return np.where(zero_where, grad.dtype.type(0), half_on_ties)


def _matrix_grad(grad: Array, self_ndim: int, other_ndim: int) -> Array:
    """The output gradient with the dims torch squeezed away for 1-D operands restored."""
    if other_ndim == 1:
        grad = grad[..., None]
    if self_ndim == 1:
        grad = grad[..., None, :]
    return grad


def _matmul_backward_self(grad: Array, other: Array, self_shape: tuple[int, ...]) -> Array:
    # torch treats a 1-D operand as a matrix (a row on the left, a column on the right).
    other_matrix = other if other.ndim > 1 else other[:, None]
    grad = _matrix_grad(grad, len(self_shape), other.ndim)
    grad_self = _numerics.matmul(grad, np.swapaxes(other_matrix, -1, -2))
    return grad_self[..., 0, :] if len(self_shape) == 1 else grad_self


def _matmul_backward_other(grad: Array, self: Array, other_shape: tuple[int, ...]) -> Array:
    self_matrix = self if self.ndim > 1 else self[None, :]
    grad = _matrix_grad(grad, self.ndim, len(other_shape))
    grad_other = _numerics.matmul(np.swapaxes(self_matrix, -1, -2), grad)
    return grad_other[..., 0] if len(other_shape) == 1 else grad_other


def _outer_backward(grad: Array, other: Array) -> Array:
    return np.asarray(grad[:, None] * other[None, :])


def _basic_index_backward(grad: Array, self_shape: tuple[int, ...], key: tuple[Any, ...]) -> Array:
    grad_input = np.zeros(self_shape, dtype=grad.dtype)
    grad_input[key] = grad
    return grad_input


def advanced_key(indices: tuple[Array, ...], positions: tuple[int, ...], ndim: int) -> tuple[Any, ...]:
    """torch's ``Tensor?[]`` index list as a NumPy key; masks become their nonzero()."""
    key: list[Any] = [slice(None)] * ndim
    for index, position in zip(indices, positions, strict=True):
        if index.dtype == np.bool_:
            for offset, coordinates in enumerate(np.nonzero(index)):
                key[position + offset] = coordinates
        else:
            key[position] = index
    return tuple(key)


def _index_backward(
    grad: Array, self_shape: tuple[int, ...], indices: tuple[Array, ...], positions: tuple[int, ...]
) -> Array:
    # index_put_(accumulate=True): duplicate indices add up, in index order.
    grad_input = np.zeros(self_shape, dtype=grad.dtype)
    np.add.at(grad_input, advanced_key(indices, positions, len(self_shape)), grad)
    return grad_input


def _skipped_by_cat(shape: tuple[int, ...]) -> bool:
    # torch's legacy rule: a 1-D empty tensor takes no part in cat, whatever the others' shape.
    return shape == (0,)


def _cat(*tensors: Array, dim: int) -> Array:
    kept = [t for t in tensors if not _skipped_by_cat(t.shape)]
    if not kept:
        return np.zeros((0,), dtype=tensors[0].dtype)
    return np.concatenate(kept, axis=dim)


def _cat_backward(grad: Array, tensors_shapes: tuple[tuple[int, ...], ...], dim: int) -> tuple[Array, ...]:
    grads = []
    offset = 0
    for shape in tensors_shapes:
        if _skipped_by_cat(shape):
            grads.append(np.zeros((0,), dtype=grad.dtype))
            continue
        index = [slice(None)] * grad.ndim
        index[dim] = slice(offset, offset + shape[dim])
        grads.append(grad[tuple(index)])
        offset += shape[dim]
    return tuple(grads)


def _stack_backward(grad: Array, tensors_shapes: tuple[tuple[int, ...], ...], dim: int) -> tuple[Array, ...]:
    return tuple(np.take(grad, i, axis=dim) for i in range(len(tensors_shapes)))


def _softmax_backward(grad: Array, result: Array, dim: int) -> Array:
    # torch's _softmax_backward_data: y * (g - sum(g * y)).
    dot = _numerics.reduce_sum(grad * result, (dim,) if result.ndim else (), keepdim=True)
    return result * (grad - dot)


def _logsumexp_backward(
    grad: Array, self: Array, result: Array, dim: tuple[int, ...], keepdim: bool
) -> Array:
    grad = _restore_reduced_dims(grad, dim, keepdim)
    result = _restore_reduced_dims(result, dim, keepdim)
    return grad * _numerics.exp(self - result)


def _index_select_backward(grad: Array, self_shape: tuple[int, ...], dim: int, index: Array) -> Array:
    # index_add_ into zeros: repeated indices add up, in index order.
    grad_input = np.zeros(self_shape, dtype=grad.dtype)
    key: list[Any] = [slice(None)] * len(self_shape)
    key[dim] = index.reshape(-1)
    np.add.at(grad_input, tuple(key), grad)
    return grad_input


def _gather_key(index: Array, dim: int) -> tuple[Array, ...]:
    """Coordinates in ``self`` of every element gathered by ``index`` along ``dim``."""
    grids: tuple[Array, ...] = tuple(np.indices(index.shape, sparse=True))
    return tuple(index if axis == dim else grid for axis, grid in enumerate(grids))


def _gather_backward(grad: Array, self: Array, dim: int, index: Array) -> Array:
    # scatter_add_ into zeros (torch's formula names self, so self is saved).
    grad_input = np.zeros(self.shape, dtype=grad.dtype)
    if self.ndim == 0:
        return grad.reshape(()).copy()
    np.add.at(grad_input, _gather_key(index, dim), grad)
    return grad_input


# torch's Reduction enum (aten/src/ATen/core/Reduction.h).
_NONE, _MEAN, _SUM = 0, 1, 2


def _mse_loss_backward(grad: Array, self: Array, target: Array, reduction: int) -> Array:
    # torch's mse_backward kernel: norm * (self - target) * grad, norm = 2 / numel for a mean,
    # computed in double and cast to the dtype. target's grad is the same call, swapped.
    norm = (2.0 / self.size if self.size else math.inf) if reduction == _MEAN else 2.0
    return grad.dtype.type(norm) * (self - target) * grad


def _log_softmax_backward(grad: Array, result: Array, dim: int) -> Array:
    # torch's _log_softmax_backward_data: g - exp(y) * sum(g).
    total = _numerics.reduce_sum(grad, (dim,) if result.ndim else (), keepdim=True)
    return grad - _numerics.exp(result) * total


def _nll_loss_backward(
    grad: Array, self: Array, target: Array, total_weight: Array, reduction: int, ignore_index: int
) -> Array:
    # torch's nll_loss_backward_out_frame (no class weights): -grad (divided by the total weight
    # for a mean) at each sample's target class, zero elsewhere and on ignored samples.
    grad_input = np.zeros(self.shape, dtype=grad.dtype)
    targets = target.reshape(-1)
    if reduction == _NONE and self.ndim == 2:
        for row, cls in enumerate(targets):
            if cls != ignore_index:
                grad_input[row, cls] = -grad[row]
        return grad_input
    scalar = grad.reshape(())[()]
    value = -(scalar / total_weight.reshape(())[()] if reduction == _MEAN else scalar)
    if self.ndim == 1:
        if targets[0] != ignore_index:
            grad_input[targets[0]] = value
        return grad_input
    for row, cls in enumerate(targets):
        if cls != ignore_index:
            grad_input[row, cls] = value
    return grad_input


# --------------------------------------------------------------------------- forwards


def _max_dim(self: Array, dim: int, keepdim: bool, largest: bool) -> tuple[Array, Array]:
    if self.ndim == 0:
        return self.copy(), np.zeros((), dtype=np.int64)
    pick = np.argmax if largest else np.argmin
    indices = np.expand_dims(pick(self, axis=dim), dim)
    values = np.take_along_axis(self, indices, axis=dim)
    if not keepdim:
        values, indices = np.squeeze(values, dim), np.squeeze(indices, dim)
    return values, indices.astype(np.int64)


def _extreme(self: Array, dim: tuple[int, ...], keepdim: bool, largest: bool) -> Array:
    reduce = np.max if largest else np.min
    return np.asarray(reduce(self, axis=dim, keepdims=keepdim))


def _view(self: Array, shape: tuple[int, ...]) -> Array:
    return np.reshape(self, shape, copy=False)


def _pow_scalar_base(exponent: Array, base: float) -> Array:
    if base == 1:
        return np.ones_like(exponent)
    return _numerics.pow_tensor(np.asarray(base, dtype=exponent.dtype), exponent)


def _mean(self: Array, dim: tuple[int, ...], keepdim: bool) -> Array:
    # torch's CPU mean is sum(...).div_(count).
    count = math.prod(self.shape[axis] for axis in dim)
    return np.asarray(_numerics.reduce_sum(self, dim, keepdim) / count)


def _basic_index(self: Array, key: tuple[Any, ...]) -> Array:
    # The trailing Ellipsis makes NumPy return a 0-d view instead of a scalar copy.
    view_key = (*key, Ellipsis)
    return self[view_key]


def _index(self: Array, indices: tuple[Tensor, ...], positions: tuple[int, ...]) -> Array:
    arrays = tuple(index._data for index in indices)
    return np.asarray(self[advanced_key(arrays, positions, self.ndim)])


def _softmax(self: Array, dim: int) -> Array:
    # torch's CPU kernel: exp(x - max), then a multiplication by 1 / sum.
    if self.ndim == 0:
        return np.ones_like(self)
    shifted = _numerics.exp(self - np.max(self, axis=dim, keepdims=True))
    total = _numerics.reduce_sum(shifted, (dim,), keepdim=True)
    return np.asarray(shifted * (total.dtype.type(1) / total))


def _logsumexp(self: Array, dim: tuple[int, ...], keepdim: bool) -> Array:
    # torch: log(sum(exp(x - m))) + m, with m = amax(x) set to 0 where it is infinite.
    maxes = np.max(self, axis=dim, keepdims=True) if self.size else np.zeros_like(self)
    maxes = np.where(np.isinf(maxes), maxes.dtype.type(0), maxes)
    total = _numerics.reduce_sum(_numerics.exp(self - maxes), dim, keepdim=True)
    result = _numerics.log(total) + maxes
    return result if keepdim else np.squeeze(result, dim)


def _index_select(self: Array, dim: int, index: Tensor) -> Array:
    if self.ndim == 0:
        return self.copy()
    return np.take(self, index._data.reshape(-1), axis=dim)


def _gather(self: Array, dim: int, index: Tensor) -> Array:
    if self.ndim == 0:
        return self.copy()
    return np.asarray(self[_gather_key(index._data, dim)])


def _addmm(self: Array, mat1: Array, mat2: Array) -> Array:
    # F.linear's addmm: the product first, then the bias (measured bit-identical to torch).
    return np.asarray(_numerics.matmul(mat1, mat2) + self)


def _mse_loss(self: Array, target: Array, reduction: int) -> Array:
    # torch's mse kernel squares the difference, then mean_out (sum, then div) or sum_out.
    diff = self - target
    loss = diff * diff
    if reduction == _NONE:
        return loss
    dims = tuple(range(loss.ndim))
    if reduction == _MEAN:
        return _mean(loss, dims, keepdim=False)
    return _numerics.reduce_sum(loss, dims, keepdim=False)


def _log_softmax(self: Array, dim: int) -> Array:
    # torch's CPU kernel: (x - max) - log(sum(exp(x - max))).
    if self.ndim == 0:
        return np.zeros_like(self)
    shifted = self - np.max(self, axis=dim, keepdims=True)
    total = _numerics.reduce_sum(_numerics.exp(shifted), (dim,), keepdim=True)
    return np.asarray(shifted - _numerics.log(total))


# nll_loss sums its 2-D batch in cascaded partial sums of 2**4 samples per level (8 levels,
# ceil(log2(batch)) / 8 bits per level, at least 4: 4 below 2**32 samples).
_NLL_LEVELS, _NLL_LEVEL_POWER = 8, 4


def _check_target(cls: int, n_classes: int) -> None:
    if not 0 <= cls < n_classes:
        raise IndexError(f"Target {cls} is out of bounds.")


def _nll_loss(self: Array, target: Tensor, reduction: int, ignore_index: int) -> tuple[Array, Array]:
    """torch's nll_loss_out_frame without class weights: the loss and the total weight."""
    scalar = self.dtype.type
    targets = [int(cls) for cls in target._data.reshape(-1)]
    n_classes = self.shape[-1]
    if self.ndim == 2 and reduction == _NONE:
        losses = np.zeros(self.shape[0], dtype=self.dtype)
        for row, cls in enumerate(targets):
            if cls != ignore_index:
                _check_target(cls, n_classes)
                losses[row] = -self[row, cls]
        return losses, np.zeros((), dtype=self.dtype)
    if self.ndim == 1:
        output, total_weight = scalar(0), scalar(0)
        if targets[0] != ignore_index:
            _check_target(targets[0], n_classes)
            total_weight = scalar(1)
            output = -self[targets[0]] * total_weight
        if reduction == _MEAN and (total_weight != 0 or self.size == 0):
            output = output / total_weight
        return np.asarray(output, dtype=self.dtype), np.asarray(total_weight, dtype=self.dtype)
    partial = [scalar(0)] * _NLL_LEVELS
    mask = (1 << _NLL_LEVEL_POWER) - 1
    ignored = 0
    for row, cls in enumerate(targets):
        if cls == ignore_index:
            ignored += 1
            continue
        _check_target(cls, n_classes)
        partial[0] = partial[0] - self[row, cls]
        for level in range(_NLL_LEVELS - 1):
            if row & (mask << (level * _NLL_LEVEL_POWER)):
                break
            partial[level + 1] = partial[level + 1] + partial[level]
            partial[level] = scalar(0)
    total_weight = scalar(len(targets) - ignored)
    output = scalar(0)
    for part in partial:
        output = output + part
    if reduction == _MEAN:
        output = output / total_weight
    return np.asarray(output, dtype=self.dtype), np.asarray(total_weight, dtype=self.dtype)


def _zeros_like(grad: Array) -> Array:
    return np.zeros_like(grad)


# --------------------------------------------------------------------------- the table

_SELF_OTHER = ("self", "other")

OPS: dict[str, OpDef] = {
    # arithmetic
    "add": _op(
        "AddBackward0",
        lambda self, other, alpha: axpy(self, other, alpha, +1),
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad: grad,
        other=lambda grad, alpha: _maybe_multiply(grad, alpha),
    ),
    "sub": _op(
        "SubBackward0",
        lambda self, other, alpha: axpy(self, other, alpha, -1),
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad: grad,
        other=lambda grad, alpha: _maybe_multiply(-grad, alpha),
    ),
    "rsub": _op(  # scalar - tensor
        "RsubBackward1",
        lambda self, other, alpha: axpy(other, self, alpha, -1),
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad, alpha: _maybe_multiply(-grad, alpha),
    ),
    "mul": _op(
        "MulBackward0",
        np.multiply,
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad, other: grad * other,
        other=lambda grad, self: grad * self,
    ),
    "div": _op(
        "DivBackward0",
        np.true_divide,
        inputs=_SELF_OTHER,
        promotion="true_divide",
        self=lambda grad, other: grad / other,
        other=lambda grad, self, other: -grad * ((self / other) / other),
    ),
    "neg": _op("NegBackward0", np.negative, self=lambda grad: -grad),
    "reciprocal": _op(
        "ReciprocalBackward0",
        lambda self: self.dtype.type(1) / self,
        promotion="float",
        self=lambda grad, result: -grad * (result * result),
    ),
    "pow": _op(  # tensor ** tensor
        "PowBackward1",
        _numerics.pow_tensor,
        inputs=("self", "exponent"),
        promotion="inputs",
        casts_saved=False,
        self=_pow_backward_self,
        exponent=_pow_backward_exponent,
    ),
    "pow_scalar_exponent": _op(  # tensor ** number
        "PowBackward0", _numerics.pow_scalar, self=_pow_backward,
        constant_grads=lambda attrs: attrs["exponent"] == 0,
    ),
    "pow_scalar_base": _op(  # number ** tensor
        "PowBackward2",
        _pow_scalar_base,
        inputs=("exponent",),
        exponent=_pow_backward_exponent_scalar_base,
    ),
    # unary
    "exp": _op("ExpBackward0", _numerics.exp, promotion="float", self=lambda grad, result: grad * result),
    "log": _op("LogBackward0", _numerics.log, promotion="float", self=lambda grad, self: grad / self),
    "sqrt": _op("SqrtBackward0", np.sqrt, promotion="float", self=lambda grad, result: grad / (2 * result)),
    "tanh": _op(
        "TanhBackward0",
        _numerics.tanh,
        promotion="float",
        self=lambda grad, result: grad * (1 - result * result),
    ),
    "sigmoid": _op(
        "SigmoidBackward0",
        _numerics.sigmoid,
        promotion="float",
        self=lambda grad, result: grad * (1 - result) * result,
    ),
    "sin": _op(
        "SinBackward0",
        _numerics.sin,
        promotion="float",
        self=lambda grad, self: grad * _numerics.cos(self),
    ),
    "cos": _op(
        "CosBackward0",
        _numerics.cos,
        promotion="float",
        self=lambda grad, self: grad * -_numerics.sin(self),
    ),
    "relu": _op(
        "ReluBackward0",
        _numerics.relu,
        self=lambda grad, result: np.where(result <= 0, grad.dtype.type(0), grad),
    ),
    "abs": _op("AbsBackward0", np.abs, self=lambda grad, self: grad * _numerics.sign(self)),
    "sign": _op("SignBackward0", _numerics.sign, self=_zeros_like),
    "round": _op("RoundBackward0", np.round, self=_zeros_like),
    "floor": _op("FloorBackward0", np.floor, self=_zeros_like),
    "ceil": _op("CeilBackward0", np.ceil, self=_zeros_like),
    "clamp": _op("ClampBackward1", _numerics.clamp, grad_reads_values=False, self=_clamp_backward),
    # reductions; torch names the full reduction ...Backward0 and the one over dims ...Backward1
    **{
        key: _op(name, _numerics.reduce_sum, self=_sum_backward)
        for key, name in (("sum", "SumBackward0"), ("sum_dim", "SumBackward1"))
    },
    **{
        key: _op(name, _mean, self=_mean_backward)
        for key, name in (("mean", "MeanBackward0"), ("mean_dim", "MeanBackward1"))
    },
    "max": _op("MaxBackward1", lambda self: np.asarray(np.max(self)), grad_reads_values=False,
               self=_evenly_distribute_backward),
    "min": _op("MinBackward1", lambda self: np.asarray(np.min(self)), grad_reads_values=False,
               self=_evenly_distribute_backward),
    "max_dim": _op(
        "MaxBackward0",
        lambda self, dim, keepdim: _max_dim(self, dim, keepdim, largest=True),
        outputs=("values", "indices"),
        self=_value_selecting_backward,
    ),
    "min_dim": _op(
        "MinBackward0",
        lambda self, dim, keepdim: _max_dim(self, dim, keepdim, largest=False),
        outputs=("values", "indices"),
        self=_value_selecting_backward,
    ),
    "amax": _op(
        "AmaxBackward0",
        lambda self, dim, keepdim: _extreme(self, dim, keepdim, largest=True),
        self=_scale_grad_by_count,
        grad_reads_values=False,
    ),
    "amin": _op(
        "AminBackward0",
        lambda self, dim, keepdim: _extreme(self, dim, keepdim, largest=False),
        self=_scale_grad_by_count,
        grad_reads_values=False,
    ),
    # binary selections
    "maximum": _op(
        "MaximumBackward0",
        np.maximum,
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad, self, other: _maximum_backward(grad, self, other, self < other),
        other=lambda grad, self, other: _maximum_backward(grad, self, other, self > other),
        grad_reads_values=False,
    ),
    "minimum": _op(
        "MinimumBackward0",
        np.minimum,
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=lambda grad, self, other: _maximum_backward(grad, self, other, self > other),
        other=lambda grad, self, other: _maximum_backward(grad, self, other, self < other),
        grad_reads_values=False,
    ),
    "where": _op(
        "WhereBackward0",
        np.where,
        inputs=("condition", "self", "other"),
        promotion="inputs",
        promoted=("self", "other"),
        self=lambda grad, condition: np.where(condition, grad, grad.dtype.type(0)),
        other=lambda grad, condition: np.where(condition, grad.dtype.type(0), grad),
    ),
    # linear algebra: torch's matmul is composed from these (see _functions.matmul)
    **{
        key: _op(
            name,
            _numerics.matmul,
            inputs=_SELF_OTHER,
            promotion="inputs",
            self=_matmul_backward_self,
            other=_matmul_backward_other,
        )
        for key, name in (
            ("mm", "MmBackward0"),
            ("dot", "DotBackward0"),
            ("bmm", "BmmBackward0"),
        )
    },
    "mv": _op(
        "MvBackward0",
        _numerics.matmul,
        inputs=_SELF_OTHER,
        promotion="inputs",
        self=_outer_backward,
        other=_matmul_backward_other,
    ),
    "addmm": _op(
        "AddmmBackward0",
        _addmm,
        inputs=("self", "mat1", "mat2"),
        promotion="inputs",
        self=lambda grad: grad,
        mat1=lambda grad, mat2, mat1_shape: _matmul_backward_self(grad, mat2, mat1_shape),
        mat2=lambda grad, mat1, mat2_shape: _matmul_backward_other(grad, mat1, mat2_shape),
    ),
    # softmax and logsumexp over one dim / several dims
    "softmax": _op("SoftmaxBackward0", _softmax, promotion="float", self=_softmax_backward),
    "logsumexp": _op("LogsumexpBackward0", _logsumexp, promotion="float", self=_logsumexp_backward),
    "log_softmax": _op(
        "LogSoftmaxBackward0", _log_softmax, promotion="float", self=_log_softmax_backward
    ),
    # losses: one node each (cross_entropy is log_softmax, then nll_loss)
    "mse_loss": _op(
        "MseLossBackward0",
        _mse_loss,
        inputs=("self", "target"),
        promotion="inputs",
        self=_mse_loss_backward,
        target=lambda grad, self, target, reduction: _mse_loss_backward(grad, target, self, reduction),
    ),
    # The target (an index tensor) and the total weight (a second output) are saved; self is
    # saved too, though the formula reads only its shape, as torch's derivatives.yaml names it.
    "nll_loss": _op(
        "NllLossBackward0",
        _nll_loss,
        outputs=("result", "total_weight"),
        self=_nll_loss_backward,
    ),
    # selections along a dim: the index tensor is saved (gather's formula also names self)
    "index_select": _op("IndexSelectBackward0", _index_select, self=_index_select_backward),
    "gather": _op("GatherBackward0", _gather, self=_gather_backward),
    # shape and copies: nothing saved
    "view": _op("ViewBackward0", _view, is_view=True, self=lambda grad, self_shape: grad.reshape(self_shape)),
    "unsafe_view": _op("UnsafeViewBackward0", _view, self=lambda grad, self_shape: grad.reshape(self_shape)),
    **{
        key: _op(
            name,
            lambda self, dim0, dim1: np.swapaxes(self, dim0, dim1),
            is_view=True,
            self=lambda grad, dim0, dim1: np.swapaxes(grad, dim0, dim1),
        )
        for key, name in (("transpose", "TransposeBackward0"), ("t", "TBackward0"))
    },
    "permute": _op(
        "PermuteBackward0",
        lambda self, dims: np.transpose(self, dims),
        is_view=True,
        self=lambda grad, dims: np.transpose(grad, np.argsort(dims)),
    ),
    "unsqueeze": _op(
        "UnsqueezeBackward0",
        lambda self, dim: np.expand_dims(self, dim),
        is_view=True,
        self=lambda grad, dim: np.squeeze(grad, dim),
    ),
    **{
        key: _op(
            name,
            lambda self, dim: np.squeeze(self, dim),
            is_view=True,
            self=lambda grad, self_shape: grad.reshape(self_shape),
        )
        for key, name in (("squeeze", "SqueezeBackward0"), ("squeeze_dim", "SqueezeBackward1"))
    },
    # x.squeeze_(dim) on a fresh result (matmul's (k,) @ (k, m)): the same tensor, not a view.
    "squeeze_dim_": _op(
        "SqueezeBackward4",
        lambda self, dim: np.squeeze(self, dim),
        self=lambda grad, self_shape: grad.reshape(self_shape),
    ),
    # The walker sums the expanded gradient back to the input's shape.
    "expand": _op(
        "ExpandBackward0",
        lambda self, shape: np.broadcast_to(self, shape),
        is_view=True,
        self=lambda grad: grad,
    ),
    "alias": _op("AliasBackward0", lambda self: self.view(), is_view=True, self=lambda grad: grad),
    # x[1], x[1:3], x[None], x[...]: torch records the last view it applied.
    **{
        key: _op(name, _basic_index, is_view=True, self=_basic_index_backward)
        for key, name in (
            ("select", "SelectBackward0"),
            ("slice", "SliceBackward0"),
            ("unsqueeze_index", "UnsqueezeBackward0"),
            ("alias_index", "AliasBackward0"),
        )
    },
    "index": _op("IndexBackward0", _index, self=_index_backward),
    "clone": _op("CloneBackward0", lambda self: self.copy(), self=lambda grad: grad),
    # The walker casts the gradient back to the input's dtype.
    "to_copy": _op("ToCopyBackward0", lambda self, dtype: self.astype(dtype), self=lambda grad: grad),
    "cat": _op(
        "CatBackward0",
        _cat,
        inputs=("tensors",),
        promotion="inputs",
        variadic=True,
        tensors=_cat_backward,
    ),
    "stack": _op(
        "StackBackward0",
        lambda *tensors, dim: np.stack(tensors, axis=dim),
        inputs=("tensors",),
        promotion="inputs",
        variadic=True,
        tensors=_stack_backward,
    ),
}


# --------------------------------------------------------------------------- applying an op


def _compute_dtype(op: OpDef, inputs: Sequence[Tensor]) -> np.dtype:
    first = inputs[0]._data.dtype
    if op.promotion == "float":
        return first if first.kind == "f" else DEFAULT_FLOAT
    if op.variadic:
        return result_type(inputs)
    promoted = [t for t, cast in zip(inputs, op.cast_mask, strict=True) if cast]
    if len(promoted) == 2 and promoted[0]._data.dtype == promoted[1]._data.dtype:
        a, b = promoted
        dtype = a._data.dtype if not a._wrapped and not b._wrapped else result_type(promoted)
    else:
        dtype = result_type(promoted)
    if op.promotion == "true_divide" and dtype.kind != "f":
        return DEFAULT_FLOAT
    return dtype


def call(name: str, *inputs: Tensor, **attrs: Any) -> Any:
    """Apply the table's op ``name`` to ``inputs`` (see :func:`apply`)."""
    return apply(OPS[name], inputs, **attrs)


def apply(op: OpDef, inputs: Sequence[Tensor], **attrs: Any) -> Any:
    """Run ``op`` forward on ``inputs`` and, if any input requires grad, record its node.

    Returns the output Tensor, or a tuple of Tensors for ops with several outputs.
    """
    if op.promotion == "same":
        dtype = inputs[0]._data.dtype
        arrays = [t._data for t in inputs]
    else:
        dtype = _compute_dtype(op, inputs)
        mask = op.cast_mask * len(inputs) if op.variadic else op.cast_mask
        arrays = [
            t._data.astype(dtype, copy=False) if cast else t._data
            for t, cast in zip(inputs, mask, strict=True)
        ]
    with np.errstate(all="ignore"):
        out = op.forward(*arrays, **attrs)
    if len(op.outputs) == 1:
        result = Tensor._wrap(np.asarray(out))
        results: tuple[Tensor, ...] = (result,)
    else:
        results = tuple(Tensor._wrap(np.asarray(array)) for array in out)
        result = results[0]
    if op.is_view:
        base = inputs[0]
        result._version_counter = base._version_counter
        result._base = base._base if base._base is not None else base
    if _GradMode.enabled and any(t._requires_grad for t in inputs):
        differentiable = (True,) * len(inputs) if op.variadic else op.differentiable
        needs = tuple(
            t._requires_grad and can_have_grad
            for t, can_have_grad in zip(inputs, differentiable, strict=True)
        )
        if any(needs):
            _record(op, inputs, needs, attrs, results, dtype)
    return result if len(results) == 1 else results


def _record(
    op: OpDef,
    inputs: Sequence[Tensor],
    needs: tuple[bool, ...],
    attrs: dict[str, Any],
    results: tuple[Tensor, ...],
    dtype: np.dtype,
) -> None:
    node = FunctionNode(
        op,
        needs,
        tuple(gradient_edge(t) if need else None for t, need in zip(inputs, needs, strict=True)),
        tuple((t._data.shape, t._data.dtype) for t in inputs),
        dtype,
    )
    used: dict[str, None] = {}
    if op.variadic:
        used.update(dict.fromkeys(op.saved_by_input[op.inputs[0]]))
    else:
        for name, need in zip(op.inputs, needs, strict=True):
            if need:
                used.update(dict.fromkeys(op.saved_by_input[name]))
    for name in used:
        if name.endswith(("_shape", "_shapes")):
            continue  # sizes come from the node's input metadata
        saved = _saved_tensors(op, name, inputs, attrs, results)
        if saved is not None:
            node.saved[name] = saved
        else:
            node.attrs[name] = attrs[name]
    output = results[0]
    output._requires_grad = True
    output.grad_fn = node


def _forward_name(grad_fn_name: str) -> str:
    # torch's message names the node without "Backward": ExpBackward0 -> Exp, SumBackward1 -> Sum1.
    return re.sub(r"Backward0?", "", grad_fn_name)


def _producer(tensor: Tensor) -> str | None:
    """How torch's in-place error describes a saved non-leaf (None for a leaf)."""
    if tensor.grad_fn is None:
        return None
    if tensor._base is not None:
        # torch regenerates the grad_fn of a view whose base changed as AsStridedBackward0.
        return "output 0 of AsStrided"
    return f"output 0 of {_forward_name(tensor.grad_fn.name())}"


def _saved_tensors(
    op: OpDef,
    name: str,
    inputs: Sequence[Tensor],
    attrs: dict[str, Any],
    results: tuple[Tensor, ...],
) -> SavedTensor | tuple[SavedTensor, ...] | None:
    """The SavedTensor(s) behind ``name``, or None when it is a plain (non-tensor) argument."""
    if name in op.inputs:
        tensor = inputs[op.inputs.index(name)]
        return SavedTensor(tensor, _producer(tensor))
    if name in op.outputs:
        position = op.outputs.index(name)
        # Only the differentiable output (the first) has a grad_fn to name, and requires grad
        # (it is being recorded now, so its flag is not set yet).
        producer = f"output 0 of {_forward_name(op.grad_fn_name)}" if position == 0 else None
        return SavedTensor(results[position], producer, requires_grad=position == 0)
    value = attrs[name]
    if isinstance(value, Tensor):
        return SavedTensor(value, _producer(value))
    if isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
        return tuple(SavedTensor(v, _producer(v)) for v in value)
    return None
