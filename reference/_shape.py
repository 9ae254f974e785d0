"""Shape ops, copies and indexing: the views, ``reshape``, ``cat``/``stack``, ``x[key]``.

Views share their base's storage and version counter, as in torch; none of these ops saves
a tensor for backward except advanced indexing, which saves its index tensors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from reference import _indexing, _ops
from reference._arguments import as_operand, size_args, wrap_dim
from reference._dtypes import scalar_type_name
from reference._tensor import Tensor

_T_DEPRECATION = (
    "The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated "
    "and it will throw an error in a future release. Consider `x.mT` to transpose batches of "
    "matrices or `x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the dimensions of a "
    "tensor."
)


def _infer_shape(shape: Sequence[Any], numel: int) -> tuple[int, ...]:
    sizes = size_args(shape)
    inferred = [i for i, size in enumerate(sizes) if size == -1]
    if len(inferred) > 1:
        raise RuntimeError("only one dimension can be inferred")
    for size in sizes:
        if size < -1:
            raise RuntimeError(f"invalid shape dimension {size}")
    known = math.prod(size for size in sizes if size != -1)
    if inferred:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(sizes)}' is invalid for input of size {numel}")
        return tuple(numel // known if size == -1 else size for size in sizes)
    if known != numel:
        raise RuntimeError(f"shape '{list(sizes)}' is invalid for input of size {numel}")
    return sizes


def _viewable(input: Tensor, shape: tuple[int, ...]) -> bool:
    try:
        np.reshape(input._data, shape, copy=False)
    except ValueError:
        return False
    return True


def view(input: Tensor, shape: Sequence[Any]) -> Tensor:
    """The same storage seen with another shape (-1 is inferred).

    >>> import reference
    >>> reference.zeros(2, 3).view(3, -1).shape
    (3, 2)
    """
    target = _infer_shape(shape, input.numel())
    if not _viewable(input, target):
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead."
        )
    return _ops.call("view", input, shape=target)


def reshape(input: Tensor, shape: Sequence[Any]) -> Tensor:
    """A view when the strides allow it, otherwise a contiguous copy (as torch).

    >>> import reference
    >>> reference.reshape(reference.zeros(2, 3), (-1,)).shape
    (6,)
    """
    target = _infer_shape(shape, input.numel())
    if _viewable(input, target):
        return _ops.call("view", input, shape=target)
    return _ops.call("unsafe_view", clone(input), shape=target)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dims (a view).

    >>> import reference
    >>> reference.transpose(reference.zeros(2, 3), 0, 1).shape
    (3, 2)
    """
    first, second = wrap_dim(dim0, input.ndim), wrap_dim(dim1, input.ndim)
    if input.ndim == 0:
        return _ops.call("alias", input)
    return _ops.call("transpose", input, dim0=first, dim1=second)


def transpose_last(input: Tensor) -> Tensor:
    """``x.mT``: swap the last two dims (a view)."""
    return transpose(input, -2, -1)


def t(input: Tensor) -> Tensor:
    """Transpose a matrix; 0-D and 1-D tensors come back as they are.

    >>> import reference
    >>> reference.t(reference.zeros(2, 3)).shape
    (3, 2)
    """
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    if input.ndim < 2:
        return _ops.call("alias", input)
    return _ops.call("t", input, dim0=0, dim1=1)


def permute(input: Tensor, dims: Sequence[Any]) -> Tensor:
    """Reorder the dims (a view).

    >>> import reference
    >>> reference.permute(reference.zeros(2, 3, 4), (2, 0, 1)).shape
    (4, 2, 3)
    """
    order = tuple(wrap_dim(d, input.ndim) for d in size_args(dims))
    if sorted(order) != list(range(input.ndim)):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return _ops.call("permute", input, dims=order)


def reverse_dims(input: Tensor) -> Tensor:
    """``x.T``: reverse all dims (torch warns for anything but a matrix)."""
    if input.ndim != 2:
        warnings.warn(_T_DEPRECATION, UserWarning, stacklevel=3)
    return _ops.call("permute", input, dims=tuple(range(input.ndim - 1, -1, -1)))


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a dim of size 1 (a view).

    >>> import reference
    >>> reference.unsqueeze(reference.zeros(3), 0).shape
    (1, 3)
    """
    return _ops.call("unsqueeze", input, dim=wrap_dim(dim, input.ndim + 1))


def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    """Drop dims of size 1 (all of them, or those in ``dim`` that have size 1).

    >>> import reference
    >>> reference.squeeze(reference.zeros(3, 1)).shape
    (3,)
    """
    if dim is None:
        dims = tuple(i for i, size in enumerate(input.shape) if size == 1)
    else:
        chosen = (dim,) if isinstance(dim, int) else tuple(dim)
        dims = tuple(
            axis
            for axis in (wrap_dim(d, input.ndim) for d in chosen)
            if input.ndim and input.shape[axis] == 1
        )
        if isinstance(dim, int):
            return _ops.call("squeeze_dim", input, dim=dims)
    return _ops.call("squeeze", input, dim=dims)


def expand(input: Tensor, sizes: Sequence[Any]) -> Tensor:
    """Broadcast to ``sizes`` without copying (-1 keeps a dim).

    >>> import reference
    >>> reference.tensor([1.0, 2.0]).expand(2, -1)
    tensor([[1., 2.],
            [1., 2.]])
    """
    requested = list(size_args(sizes))
    target = list(requested)
    leading = len(target) - input.ndim
    if leading < 0:
        raise RuntimeError(
            f"expand({_legacy_name(input)}{{{list(input.shape)}}}, size={requested}): the "
            f"number of sizes provided ({len(requested)}) must be greater or equal to the number "
            f"of dimensions in the tensor ({input.ndim})"
        )
    for i, size in enumerate(target):
        if i < leading:
            if size < 0:
                raise RuntimeError(
                    f"The expanded size of the tensor ({size}) isn't allowed in a leading, "
                    f"non-existing dimension {i}"
                )
            continue
        existing = input.shape[i - leading]
        if size == -1:
            target[i] = existing
        elif existing != 1 and size != existing:
            raise RuntimeError(
                f"The expanded size of the tensor ({size}) must match the existing size "
                f"({existing}) at non-singleton dimension {i}.  Target sizes: {requested}.  "
                f"Tensor sizes: {list(input.shape)}"
            )
    return _ops.call("expand", input, shape=tuple(target))


def _legacy_name(input: Tensor) -> str:
    return f"torch.{scalar_type_name(input.dtype)}Tensor"


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dim (1-D empty tensors are skipped, as in torch).

    >>> import reference
    >>> reference.cat([reference.zeros(1, 2), reference.ones(1, 2)]).shape
    (2, 2)
    """
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for position, item in enumerate(tensors):
        if item.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {position}) cannot be concatenated")
    taking_part = [(i, item) for i, item in enumerate(tensors) if item.shape != (0,)]
    if taking_part:
        _, first = taking_part[0]
        axis = wrap_dim(dim, first.ndim)
        for position, item in taking_part[1:]:
            if item.ndim != first.ndim:
                raise RuntimeError(
                    f"Tensors must have same number of dimensions: got {first.ndim} and {item.ndim}"
                )
            for d in range(first.ndim):
                if d != axis and item.shape[d] != first.shape[d]:
                    raise RuntimeError(
                        f"Sizes of tensors must match except in dimension {axis}. Expected size "
                        f"{first.shape[d]} but got size {item.shape[d]} for tensor number "
                        f"{position} in the list."
                    )
    else:
        axis = wrap_dim(dim, 1)
    result: Tensor = _ops.call("cat", *tensors, dim=axis)
    return result


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack equal-shaped tensors along a new dim.

    >>> import reference
    >>> reference.stack([reference.zeros(2), reference.ones(2)], dim=1).shape
    (2, 2)
    """
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    first = tensors[0]
    for position, item in enumerate(tensors[1:], start=1):
        if item.shape != first.shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(first.shape)} at "
                f"entry 0 and {list(item.shape)} at entry {position}"
            )
    axis = wrap_dim(dim, first.ndim + 1)
    result: Tensor = _ops.call("stack", *tensors, dim=axis)
    return result


def clone(input: Tensor) -> Tensor:
    """A copy with its own storage, still in the graph.

    >>> import reference
    >>> reference.clone(reference.tensor([1.0]))
    tensor([1.])
    """
    return _ops.call("clone", input)


def to_dtype(input: Tensor, dtype: np.dtype) -> Tensor:
    """A converted copy (``Tensor.to``); the gradient is converted back on the way in."""
    return _ops.call("to_copy", input, dtype=dtype)


def detach(input: Tensor) -> Tensor:
    """See :meth:`Tensor.detach`.

    >>> import reference
    >>> reference.detach(reference.tensor([1.0], requires_grad=True)).requires_grad
    False
    """
    return input.detach()


def _advanced_tensors(plan: _indexing.IndexPlan) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
    tensors = tuple(
        entry.source if entry.source is not None else Tensor._wrap(entry.array) for entry in plan.advanced
    )
    return tensors, tuple(entry.position for entry in plan.advanced)


def index(input: Tensor, key: Any) -> Tensor:
    """``input[key]`` with torch's semantics: basic parts are views, the rest one index op.

    >>> import reference
    >>> x = reference.zeros(3, 4, requires_grad=True)
    >>> x[[0, 0, 2]].sum().backward()
    >>> x.grad[:, 0]
    tensor([2., 0., 1.])
    """
    plan = _indexing.plan_index(input.shape, key)
    view_ = input
    if plan.basic_kind:
        view_ = _ops.call(plan.basic_kind, input, key=plan.basic_key)
    if not plan.advanced:
        return view_
    _indexing.check_advanced(view_.shape, plan.advanced)
    indices, positions = _advanced_tensors(plan)
    return _ops.call("index", view_, indices=indices, positions=positions)


def index_put_(input: Tensor, key: Any, value: Any) -> Tensor:
    """``input[key] = value`` in place (outside a graph, like every in-place op here)."""
    source = as_operand(value)
    input._check_in_place((source,))
    plan = _indexing.plan_index(input.shape, key)
    view_key = (*plan.basic_key, Ellipsis)
    target = input._data[view_key]
    if plan.advanced:
        _indexing.check_advanced(target.shape, plan.advanced)
        arrays = tuple(entry.array for entry in plan.advanced)
        positions = tuple(entry.position for entry in plan.advanced)
        target[_ops.advanced_key(arrays, positions, target.ndim)] = source._data
    else:
        target[...] = source._data
    input._version_counter.value += 1
    return input


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices of ``input`` at ``index`` along ``dim`` (repeats allowed).

    >>> import reference
    >>> reference.index_select(reference.tensor([[1.0, 2.0], [3.0, 4.0]]), 1, reference.tensor([1, 1]))
    tensor([[2., 2.],
            [4., 4.]])
    """
    if not isinstance(index, Tensor):
        raise TypeError(
            f"index_select(): argument 'index' (position 3) must be Tensor, not {type(index).__name__}"
        )
    if index.dtype not in (np.dtype("int32"), np.dtype("int64")):
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    axis = wrap_dim(dim, input.ndim)
    size = input.shape[axis] if input.ndim else 1
    for value in index._data.reshape(-1).tolist():
        if not 0 <= value < size:
            raise RuntimeError(f"INDICES element is out of DATA bounds, id={value} axis_dim={size}")
    return _ops.call("index_select", input, dim=axis, index=index)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[i][j] = input[i][index[i][j]]`` for ``dim=1`` (and likewise for other dims).

    >>> import reference
    >>> reference.gather(reference.tensor([[1.0, 2.0], [3.0, 4.0]]), 1, reference.tensor([[1], [0]]))
    tensor([[2.],
            [3.]])
    """
    if index.dtype != np.dtype("int64"):
        raise RuntimeError("gather(): Expected dtype int64 for index")
    axis = wrap_dim(dim, input.ndim)
    if index.ndim != input.ndim and not (index.ndim <= 1 and input.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for d in range(index.ndim):
        if d != axis and index.shape[d] > input.shape[d]:
            raise RuntimeError(
                f"Size does not match at dimension {d} expected index {list(index.shape)} to be "
                f"no larger than self {list(input.shape)} apart from dimension {axis}"
            )
    size = input.shape[axis] if input.ndim else 1
    for value in index._data.reshape(-1).tolist():
        if not 0 <= value < size:
            raise RuntimeError(f"index {value} is out of bounds for dimension {axis} with size {size}")
    return _ops.call("gather", input, dim=axis, index=index)
