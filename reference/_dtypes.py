"""Dtypes and torch's type-promotion rule, for the four dtypes the reference supports.

The reference's dtypes are plain ``numpy.dtype`` objects. Promotion follows torch, not
NumPy: a dimensioned tensor outranks a 0-dim tensor, which outranks a Python scalar, and
only a higher *category* (bool < integer < floating) lets a lower-ranked operand win
(torch's ``c10::ResultTypeState``). NumPy 2 would instead let a 0-dim float64 array turn
a float32 vector into float64.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reference._tensor import Tensor

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

DEFAULT_FLOAT = float32

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}

# torch's names, used where the reference reproduces torch's messages verbatim.
_SCALAR_TYPE_NAMES = {
    "float32": "Float",
    "float64": "Double",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
    "float16": "Half",
}
# caffe2's TypeMeta names, which torch prints in the grad-assignment message.
_TYPE_META_NAMES = {
    "float32": "float",
    "float64": "double",
    "int64": "long int",
    "int32": "int",
    "int16": "short int",
    "int8": "signed char",
    "uint8": "unsigned char",
    "bool": "bool",
    "float16": "c10::Half",
}


def is_floating(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def scalar_type_name(dtype: np.dtype) -> str:
    """torch's ScalarType name: ``Float`` for float32."""
    return _SCALAR_TYPE_NAMES.get(dtype.name, dtype.name)


def type_meta_name(dtype: np.dtype) -> str:
    """caffe2's TypeMeta name: ``float`` for float32, ``long int`` for int64."""
    return _TYPE_META_NAMES.get(dtype.name, dtype.name)


def legacy_type_name(dtype: np.dtype, module: str = "torch") -> str:
    """torch's ``Tensor.type()`` string: ``torch.FloatTensor`` for float32."""
    return f"{module}.{scalar_type_name(dtype)}Tensor"


def dtype_repr(dtype: np.dtype) -> str:
    """How torch prints a dtype: ``torch.float64``."""
    return f"torch.{dtype.name}"


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """torch.promote_types: across categories the higher category's type wins as is.

    >>> promote_types(int64, float32)
    dtype('float32')
    """
    if a == b:
        return a
    category_a, category_b = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if category_a != category_b:
        return a if category_a > category_b else b
    return np.promote_types(a, b)


def _combine_categories(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    if higher is None:
        return lower
    if lower is None or is_floating(higher):
        return higher
    if higher == bool_ or is_floating(lower):
        return promote_types(higher, lower)
    return higher


def result_type(tensors: Iterable[Tensor]) -> np.dtype:
    """torch.result_type over tensors, where Python scalars arrive as wrapped 0-dim tensors."""
    dim_result: np.dtype | None = None
    zero_result: np.dtype | None = None
    wrapped_result: np.dtype | None = None
    for tensor in tensors:
        dtype = tensor._data.dtype
        if tensor._wrapped:
            # A Python float counts as the default dtype, not as float64.
            if is_floating(dtype):
                dtype = DEFAULT_FLOAT
            wrapped_result = dtype if wrapped_result is None else promote_types(wrapped_result, dtype)
        elif tensor._data.ndim > 0:
            dim_result = dtype if dim_result is None else promote_types(dim_result, dtype)
        else:
            zero_result = dtype if zero_result is None else promote_types(zero_result, dtype)
    result = _combine_categories(dim_result, _combine_categories(zero_result, wrapped_result))
    if result is None:
        raise ValueError("result_type needs at least one tensor")
    return result


def can_cast(source: np.dtype, target: np.dtype) -> bool:
    """torch.can_cast: an in-place result may not move to a lower category."""
    return _CATEGORY[source.kind] <= _CATEGORY[target.kind]
