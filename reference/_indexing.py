"""``x[key]`` the way torch reads it (torch/csrc/autograd/python_variable_indexing.cpp).

torch applies a key in two steps, and so does the reference:

1. the *basic* part (integers, slices, ``None``, ``...``) is applied left to right as views,
   which save nothing for backward;
2. the remaining *advanced* part (integer and bool tensors, arrays, lists) is one
   ``index`` op on that view, which saves its index tensors.

The split matters beyond autograd: NumPy treats an integer next to an advanced index as
advanced too (``y[0, :, [0, 1]]`` has shape (2, 3) in NumPy, (3, 2) in torch).
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference._tensor import Tensor

_SEQUENCE_AS_TUPLE_WARNING = (
    "Using a non-tuple sequence for multidimensional indexing is deprecated and will be changed "
    "in pytorch 2.9; use x[tuple(seq)] instead of x[seq]. In pytorch 2.9 this will be "
    "interpreted as tensor index, x[torch.tensor(seq)], which will result either in an error or "
    "a different result"
)
_BAD_INDEX_DTYPE = "tensors used as indices must be long, int, byte or bool tensors"


@dataclass(frozen=True)
class Advanced:
    """One advanced index: where it starts in the basic view, and its values."""

    position: int
    array: np.ndarray
    source: Tensor | None  # the user's tensor, which torch saves (and version-checks) as is

    @property
    def is_mask(self) -> bool:
        return self.array.dtype == np.bool_


@dataclass(frozen=True)
class IndexPlan:
    basic_key: tuple[Any, ...]
    basic_kind: str  # the op recording the basic part ("" when there is none to record)
    advanced: tuple[Advanced, ...]


def _treat_sequence_as_tuple(key: list[Any]) -> bool:
    # NumPy's old heuristic, which torch 2.13 still applies (with a deprecation warning).
    if len(key) >= 32:
        return False
    for item in key:
        if isinstance(item, (Tensor, np.ndarray, list, tuple, slice)) or item is None or item is Ellipsis:
            warnings.warn(_SEQUENCE_AS_TUPLE_WARNING, UserWarning, stacklevel=4)
            return True
    return False


def _items(key: Any) -> tuple[Any, ...]:
    if isinstance(key, tuple):
        return key
    if isinstance(key, list) and _treat_sequence_as_tuple(key):
        return tuple(key)
    return (key,)


def _invalid_index(item: Any) -> IndexError:
    return IndexError(
        "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
        f"valid indices (got {type(item).__name__})"
    )


def _classify(item: Any) -> tuple[str, Any, Tensor | None]:
    """(kind, value, source tensor) for one element of the key."""
    if item is None:
        return "none", None, None
    if item is Ellipsis:
        return "ellipsis", None, None
    if isinstance(item, (bool, np.bool_)):
        return "bool", bool(item), None
    if isinstance(item, (int, np.integer)):
        return "int", int(item), None
    if isinstance(item, slice):
        return "slice", _checked_slice(item), None
    source = item if isinstance(item, Tensor) else None
    if isinstance(item, (Tensor, np.ndarray)):
        array = item._data if isinstance(item, Tensor) else item
        if array.dtype.kind not in "biu":
            raise IndexError(_BAD_INDEX_DTYPE)
        if array.ndim == 0:
            # A 0-dim integer tensor is an integer (torch records a select, not an index).
            return ("bool", bool(array), None) if array.dtype == np.bool_ else ("int", int(array), None)
        if array.dtype == np.uint8:
            array = array.astype(np.bool_)
        return ("mask" if array.dtype == np.bool_ else "index"), array, source
    if isinstance(item, (list, tuple)):
        array = np.array(item)
        if array.dtype != np.bool_:
            # torch builds a long tensor from the data: floats are truncated, [] is empty.
            if array.dtype.kind not in "biuf":
                raise _invalid_index(item)
            array = array.astype(np.int64)
        return ("mask" if array.dtype == np.bool_ else "index"), array, None
    raise _invalid_index(item)


def _checked_slice(item: slice) -> slice:
    step = None if item.step is None else operator.index(item.step)
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if step is not None and step < 0:
        raise ValueError("step must be greater than zero")
    start = None if item.start is None else operator.index(item.start)
    stop = None if item.stop is None else operator.index(item.stop)
    return slice(start, stop, step)


def _width(kind: str, value: Any) -> int:
    if kind in ("int", "slice", "index"):
        return 1
    if kind == "mask":
        return int(value.ndim)
    return 0


def plan_index(shape: tuple[int, ...], key: Any) -> IndexPlan:
    """Split ``key`` into torch's basic views and advanced index, raising torch's errors."""
    items = [_classify(item) for item in _items(key)]
    ndim = len(shape)
    specified = sum(_width(kind, value) for kind, value, _ in items)
    if specified > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")

    basic: list[Any] = []
    advanced: list[Advanced] = []
    source_dim = view_dim = real_dim = 0  # real_dim is what torch names in its messages
    basic_kind = ""
    for kind, value, source in items:
        if kind == "int":
            size = shape[source_dim]
            if not -size <= value < size:
                raise IndexError(f"index {value} is out of bounds for dimension {real_dim} with size {size}")
            basic.append(value)
            source_dim += 1
            real_dim += 1
            basic_kind = "select"
        elif kind == "slice":
            basic.append(value)
            source_dim += 1
            view_dim += 1
            real_dim += 1
            basic_kind = "slice"
        elif kind == "none":
            basic.append(None)
            view_dim += 1
            real_dim += 1
            basic_kind = "unsqueeze_index"
        elif kind == "ellipsis":
            covered = min(ndim - specified, ndim - source_dim)
            basic.extend([slice(None)] * covered)
            source_dim += covered
            view_dim += covered
            real_dim += ndim - specified
            basic_kind = basic_kind or "alias_index"
        elif kind == "bool":
            # x[True] adds a dimension of size 1, x[False] one of size 0.
            basic.append(None)
            picked = np.zeros(1 if value else 0, dtype=np.int64)
            advanced.append(Advanced(view_dim, picked, None))
            view_dim += 1
            real_dim += 1
        else:
            width = _width(kind, value)
            basic.extend([slice(None)] * width)
            advanced.append(Advanced(view_dim, value, source))
            source_dim += width
            view_dim += width
            real_dim += width

    has_basic = any(not (isinstance(part, slice) and part == slice(None)) for part in basic)
    if advanced and not has_basic:
        basic_kind = ""
    elif not basic_kind:
        basic_kind = "slice"
    return IndexPlan(tuple(basic), basic_kind, tuple(advanced))


def check_advanced(view_shape: tuple[int, ...], advanced: tuple[Advanced, ...]) -> None:
    """torch's checks on the index list, in its order: masks, broadcasting, bounds."""
    for entry in advanced:
        if not entry.is_mask:
            continue
        for offset, size in enumerate(entry.array.shape):
            if size != view_shape[entry.position + offset]:
                raise IndexError(
                    f"The shape of the mask {list(entry.array.shape)} at index {offset} does not "
                    f"match the shape of the indexed tensor {list(view_shape)} at index "
                    f"{entry.position + offset}"
                )
    expanded: list[tuple[np.ndarray, int]] = []  # (index array, size of the dim it indexes)
    for entry in advanced:
        if entry.is_mask:
            for offset, coordinates in enumerate(np.nonzero(entry.array)):
                expanded.append((coordinates, view_shape[entry.position + offset]))
        else:
            expanded.append((entry.array, view_shape[entry.position]))
    try:
        np.broadcast_shapes(*(array.shape for array, _ in expanded))
    except ValueError:
        shapes = ", ".join(str(list(array.shape)) for array, _ in expanded)
        raise IndexError(
            f"shape mismatch: indexing tensors could not be broadcast together with shapes {shapes}"
        ) from None
    _check_bounds(expanded)


def _check_bounds(expanded: list[tuple[np.ndarray, int]]) -> None:
    out_of_bounds = [(array < -size) | (array >= size) for array, size in expanded]
    if not any(bool(np.any(bad)) for bad in out_of_bounds):
        return
    # torch reports the first offending element in iteration order, then the first dim.
    arrays = np.broadcast_arrays(*(array for array, _ in expanded))
    flags = np.broadcast_arrays(*out_of_bounds)
    flat_flags = np.stack([flag.reshape(-1) for flag in flags])
    element = int(np.argmax(flat_flags.any(axis=0)))
    dim = int(np.argmax(flat_flags[:, element]))
    value = int(arrays[dim].reshape(-1)[element])
    size = expanded[dim][1]
    raise IndexError(f"index {value} is out of bounds for dimension {dim} with size {size}")
