"""Creating tensors: ``tensor``, ``zeros``, ``ones`` and their ``_like`` forms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reference._arguments import size_args
from reference._dtypes import DEFAULT_FLOAT, int64, is_floating
from reference._tensor import Tensor


def _to_array(data: Any, dtype: np.dtype | None) -> np.ndarray:
    """A fresh array of ``data``, converted straight to ``dtype`` when one is given."""
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, (np.ndarray, np.generic)):
        return np.array(data, dtype=dtype, copy=True)
    if dtype is not None:
        return np.array(data, dtype=dtype)
    array = np.array(data)
    if array.dtype == np.float64:
        # Python floats become the default dtype; NumPy data keeps its own.
        return array.astype(DEFAULT_FLOAT)
    if array.dtype.kind == "i":
        return array.astype(int64)
    if array.dtype.kind not in "bfu":
        raise TypeError(f"Could not infer dtype of {type(data).__name__}")
    return array


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of ``data``.

    Python floats give float32 (torch's default dtype), NumPy arrays keep their dtype,
    Python ints give int64 and bools give bool; a ``dtype`` converts the data directly.

    >>> import reference
    >>> reference.tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    >>> reference.tensor([0, 2]).dtype
    dtype('int64')
    """
    array = _to_array(data, None if dtype is None else np.dtype(dtype))
    if requires_grad and not is_floating(array.dtype):
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    result = Tensor._wrap(array)
    result._requires_grad = requires_grad
    return result


def _filled(size: Sequence[Any], value: int, dtype: Any, requires_grad: bool) -> Tensor:
    array = np.full(size_args(size), value, dtype=DEFAULT_FLOAT if dtype is None else np.dtype(dtype))
    return tensor(array, requires_grad=requires_grad)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, float32 unless ``dtype`` says otherwise.

    >>> import reference
    >>> reference.zeros(2, 3).shape
    (2, 3)
    """
    return _filled(size, 0, dtype, requires_grad)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones, float32 unless ``dtype`` says otherwise.

    >>> import reference
    >>> reference.ones((2,))
    tensor([1., 1.])
    """
    return _filled(size, 1, dtype, requires_grad)


def zeros_like(input: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with ``input``'s shape and dtype.

    >>> import reference
    >>> reference.zeros_like(reference.tensor([1.0, 2.0]))
    tensor([0., 0.])
    """
    return _filled(input.shape, 0, input.dtype if dtype is None else dtype, requires_grad)


def ones_like(input: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with ``input``'s shape and dtype.

    >>> import reference
    >>> reference.ones_like(reference.tensor([[1.0]]))
    tensor([[1.]])
    """
    return _filled(input.shape, 1, input.dtype if dtype is None else dtype, requires_grad)
