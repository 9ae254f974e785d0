"""Shape and dtype bookkeeping for the graph generator: what each op produces.

Shapes are computed by running the op on NumPy zeros, whose broadcasting, reduction and
indexing rules agree with torch's for every op and index form the generator emits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def result_shape(op: str, shapes: Sequence[Shape | None], params: Mapping[str, Any]) -> Shape:
    """The shape ``op`` produces from operands of ``shapes`` (None: a Python scalar)."""
    arrays = [np.zeros(shape) if shape is not None else 0.0 for shape in shapes]
    first = arrays[0]
    if op in ("sum", "mean", "amax", "amin", "max_dim", "min_dim", "max", "min"):
        dim = params.get("dim")
        if dim is None:
            return ()
        return np.sum(first, axis=dim, keepdims=bool(params.get("keepdim"))).shape
    if op == "matmul":
        return np.matmul(first, arrays[1]).shape
    if op == "reshape":
        return np.reshape(first, params["shape"]).shape
    if op == "transpose":
        return np.swapaxes(first, params["dim0"], params["dim1"]).shape
    if op == "unsqueeze":
        return np.expand_dims(first, params["dim"]).shape
    if op == "getitem":
        return np.asarray(first)[params["index"]].shape  # NumPy reads every index form as torch
    if op == "cat":
        return np.concatenate(arrays, axis=params["dim"]).shape
    if op == "stack":
        return np.stack(arrays, axis=params["dim"]).shape
    if op == "linear":  # x (..., in), weight (out, in)
        return (*np.shape(first)[:-1], np.shape(arrays[1])[0])
    if op in ("mse_loss", "cross_entropy") and params.get("reduction", "mean") != "none":
        return ()
    if op == "cross_entropy":  # reduction="none": one loss per sample
        return np.shape(first)[:1] if np.ndim(first) == 2 else ()
    if op == "where":
        return np.broadcast_shapes(params["cond"].shape, *(np.shape(a) for a in arrays))
    return np.broadcast_shapes(*(np.shape(a) for a in arrays))


def stretching_shapes(shape: Shape) -> list[Shape]:
    """Shapes that broadcast against ``shape`` and *stretch* it: one of its size-1 dims made
    3, or a leading dim of 2 prepended. An operand so stretched gets a gradient summed over
    the stretched dims, the half of unbroadcasting that hand-written engines get wrong."""
    options: list[Shape] = [(2, *shape)] if len(shape) < 3 else []
    options += [(*shape[:i], 3, *shape[i + 1:]) for i, size in enumerate(shape) if size == 1]
    return options


def promote(dtypes: Sequence[np.dtype], shapes: Sequence[Shape]) -> np.dtype:
    """torch's result dtype for float tensors: tensors with dimensions outrank 0-dim ones."""
    dimensioned = [dtype for dtype, shape in zip(dtypes, shapes, strict=False) if len(shape) > 0]
    candidates = dimensioned or list(dtypes)
    return max(candidates, key=lambda dtype: dtype.itemsize)


def broadcastable_shapes(shape: Shape) -> list[Shape]:
    """Shapes that broadcast against ``shape`` without changing it: (), suffixes, size-1 dims."""
    options: list[Shape] = [()]
    for start in range(len(shape)):
        suffix = shape[start:]
        options.append(suffix)
        options.append(tuple(1 if i == 0 else size for i, size in enumerate(suffix)))
    options.append(shape)
    unique: list[Shape] = []
    for option in options:
        if option not in unique:
            unique.append(option)
    return unique
