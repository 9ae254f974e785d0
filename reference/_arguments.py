"""Arguments as torch reads them: Python scalars as operands, dims, shapes, broadcasting.

The error messages are torch's, word for word, so that a differential test can compare them.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from reference._dtypes import bool_, int64
from reference._tensor import Tensor


def as_operand(value: Any) -> Tensor:
    """A Tensor for an op's argument; Python and NumPy scalars become wrapped 0-dim tensors."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, np.bool_)):
        array = np.array(value, dtype=bool_)
    elif isinstance(value, (int, np.integer)):
        array = np.array(value, dtype=int64)
    elif isinstance(value, (float, np.floating)):
        array = np.array(value, dtype=np.float64)
    elif isinstance(value, np.ndarray):
        return Tensor._wrap(np.array(value, copy=True))
    else:
        raise TypeError(f"unsupported operand type: {type(value).__name__}")
    wrapped = Tensor._wrap(array)
    wrapped._wrapped = True
    return wrapped


def broadcast_failure(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> int | None:
    ndim = builtins.max(len(shape_a), len(shape_b))
    for dim in range(ndim - 1, -1, -1):
        offset = ndim - 1 - dim
        size_a = shape_a[len(shape_a) - 1 - offset] if offset < len(shape_a) else 1
        size_b = shape_b[len(shape_b) - 1 - offset] if offset < len(shape_b) else 1
        if size_a != size_b and size_a != 1 and size_b != 1:
            return dim
    return None


def broadcast_error(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> RuntimeError:
    """torch's message for shapes that do not broadcast (the rightmost clash is named)."""
    dim = broadcast_failure(shape_a, shape_b)
    if dim is None:
        return RuntimeError(f"shapes {list(shape_a)} and {list(shape_b)} cannot be broadcast")
    ndim = builtins.max(len(shape_a), len(shape_b))
    offset = ndim - 1 - dim
    size_a = shape_a[len(shape_a) - 1 - offset] if offset < len(shape_a) else 1
    size_b = shape_b[len(shape_b) - 1 - offset] if offset < len(shape_b) else 1
    return RuntimeError(
        f"The size of tensor a ({size_a}) must match the size of tensor b ({size_b}) at "
        f"non-singleton dimension {dim}"
    )


def check_broadcast(*tensors: Tensor) -> None:
    for i, first in enumerate(tensors):
        for second in tensors[i + 1 :]:
            if broadcast_failure(first.shape, second.shape) is not None:
                raise broadcast_error(first.shape, second.shape)


def wrap_dim(dim: int, ndim: int) -> int:
    """A non-negative dim, or torch's IndexError (a 0-dim tensor accepts -1 and 0)."""
    extent = builtins.max(ndim, 1)
    if not -extent <= dim < extent:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-extent}, {extent - 1}], but got {dim})"
        )
    return dim % extent


def reduction_dims(dim: Any, ndim: int) -> tuple[int, ...]:
    """Sorted non-negative dims; None and () mean every dim, as in torch."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    if not dims:
        return tuple(range(ndim))
    wrapped: list[int] = []
    for d in dims:
        axis = wrap_dim(int(d), ndim)
        if axis in wrapped:
            raise RuntimeError(f"dim {axis} appears multiple times in the list of dims")
        wrapped.append(axis)
    if ndim == 0:
        return ()
    return tuple(sorted(wrapped))


def size_args(size: Sequence[Any]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(int(s) for s in size[0])
    return tuple(int(s) for s in size)
