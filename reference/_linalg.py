"""``matmul``, composed like torch's (aten/src/ATen/native/LinearAlgebra.cpp).

torch builds matmul from dot, mv, mm and bmm plus views, choosing between folding a batch
into matrix rows and a real batched product (``should_fold``). The reference makes the same
choices from the same table ops, so each piece saves what torch's saves, errors come from the
same op with the same message, and batched gradients are summed in torch's order.
"""

from __future__ import annotations

import math

import numpy as np

from reference import _ops
from reference._arguments import broadcast_error, broadcast_failure
from reference._dtypes import scalar_type_name, type_meta_name
from reference._shape import clone, expand, reshape, squeeze, t, transpose_last, unsqueeze
from reference._tensor import Tensor


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with torch's rules for 1-D operands and batch broadcasting.

    Composed like torch's ``matmul`` (LinearAlgebra.cpp) from dot, mv, mm, bmm and views,
    so each piece saves what torch's does and batched gradients are summed in torch's order.

    >>> import reference
    >>> reference.matmul(reference.tensor([[1.0, 2.0]]), reference.tensor([[3.0], [4.0]]))
    tensor([[11.]])
    """
    if not isinstance(other, Tensor):
        return NotImplemented
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D"
        )
    if a.ndim == 1 and b.ndim == 1 and a.dtype != b.dtype:
        raise _matmul_dtype_error("dot", a, b)  # dot checks dtypes before sizes
    if a.ndim <= 2 and b.ndim <= 2:
        if a.ndim == 1 and b.ndim == 2:
            return _squeeze_in_place(_matmul_op("mm", unsqueeze(a, 0), b))
        return _matmul_op({(1, 1): "dot", (2, 1): "mv", (2, 2): "mm"}[(a.ndim, b.ndim)], a, b)
    if _should_fold(a, b):
        return _folded_matmul(a, b)
    return _batched_matmul(a, b)


def _squeeze_in_place(product: Tensor) -> Tensor:
    """torch's ``mm(...).squeeze_(0)``: an in-place op on the fresh product, so the result
    is no view, its grad_fn is SqueezeBackward4 and its version is 1."""
    result: Tensor = _ops.call("squeeze_dim_", product, dim=0)
    result._version_counter.value += 1
    return result


def _matmul_op(name: str, a: Tensor, b: Tensor) -> Tensor:
    """One ATen product (dot, mv, mm, bmm), with its own shape and then dtype checks."""
    _check_product_shapes(name, a.shape, b.shape)
    if a.dtype != b.dtype:
        raise _matmul_dtype_error(name, a, b)
    result: Tensor = _ops.call(name, a, b)
    return result


def _matmul_dtype_error(name: str, a: Tensor, b: Tensor) -> RuntimeError:
    """The message of the ATen op that rejects the dtypes (matmul has none of its own)."""
    first, second = scalar_type_name(a.dtype), scalar_type_name(b.dtype)
    if name == "dot":
        return RuntimeError(f"dot : expected both vectors to have same dtype, but found {first} and {second}")
    if name == "mv":
        return RuntimeError(
            f"addmv input tensors must have the same dtype, but got {second}, {first}, and {second}"
        )
    if name == "bmm":
        return RuntimeError(f"expected scalar type {first} but found {second}")
    return RuntimeError(
        "expected m1 and m2 to have the same dtype, but got: "
        f"{type_meta_name(a.dtype)} != {type_meta_name(b.dtype)}"
    )


def _should_fold(a: Tensor, b: Tensor) -> bool:
    """torch's should_fold: fold the larger operand's batch into matrix rows (mm, not bmm)."""
    a_larger = a.ndim >= b.ndim
    larger = a._data if a_larger else np.swapaxes(b._data, -1, -2)
    smaller = b if a_larger else a
    if not (larger.ndim >= 3 and smaller.ndim <= 2):
        return False
    if smaller._requires_grad:
        return True
    if a.ndim == 2:
        return False
    if larger.size == 0:
        return True
    strides = [stride // larger.itemsize for stride in larger.strides]
    return all(strides[i] == strides[i + 1] * larger.shape[i + 1] for i in range(larger.ndim - 2))


def _folded_matmul(a: Tensor, b: Tensor) -> Tensor:
    transpose_result = b.ndim > a.ndim
    big = transpose_last(b) if transpose_result else a
    small = (t(a) if a.ndim == 2 else a) if transpose_result else b
    output_shape = big.shape[:-1]
    folded = reshape(big, (math.prod(output_shape), big.shape[-1]))
    if small.ndim == 1:
        return _ops.call("unsafe_view", _matmul_op("mv", folded, small), shape=output_shape)
    product = _matmul_op("mm", folded, small)
    output = _ops.call("unsafe_view", product, shape=(*output_shape, small.shape[1]))
    return clone(transpose_last(output)) if transpose_result else output


def _batched_matmul(a: Tensor, b: Tensor) -> Tensor:
    rows = a.shape[-2] if a.ndim > 1 else 1
    inner_a = a.shape[-1]
    inner_b = b.shape[-2] if b.ndim > 1 else b.shape[-1]
    columns = b.shape[-1] if b.ndim > 1 else 1
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    if a.ndim == 3 and b.ndim == 3 and batch_a[0] != batch_b[0]:
        # torch squeezes a broadcast batch of one that requires grad, then folds.
        if batch_a[0] == 1 and a._requires_grad:
            return matmul(squeeze(a, 0), b)
        if batch_b[0] == 1 and b._requires_grad:
            return matmul(a, squeeze(b, 0))
    if broadcast_failure(batch_a, batch_b) is not None:
        raise broadcast_error(batch_a, batch_b)
    batch = tuple(np.broadcast_shapes(batch_a, batch_b))
    count = math.prod(batch)
    a_batched = reshape(expand(a, (*batch, rows, inner_a)), (count, rows, inner_a))
    if b.ndim == 1:
        b_batched = unsqueeze(reshape(expand(b, (*batch, inner_b)), (count, inner_b)), 2)
    else:
        b_batched = reshape(expand(b, (*batch, inner_b, columns)), (count, inner_b, columns))
    output_shape = batch + ((rows,) if a.ndim > 1 else ()) + ((columns,) if b.ndim > 1 else ())
    product = _matmul_op("bmm", a_batched, b_batched)
    if b.ndim == 1:
        product = squeeze(product, -1)
    return _ops.call("unsafe_view", product, shape=output_shape)


def _check_product_shapes(name: str, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    if name == "dot" and a[0] != b[0]:
        raise RuntimeError(
            f"inconsistent tensor size, expected tensor [{a[0]}] and src [{b[0]}] to have the "
            f"same number of elements, but got {a[0]} and {b[0]} elements respectively"
        )
    if name == "mv" and a[1] != b[0]:
        raise RuntimeError(f"size mismatch, got input ({a[0]}), mat ({a[0]}x{a[1]}), vec ({b[0]})")
    if name == "mm" and a[1] != b[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a[0]}x{a[1]} and {b[0]}x{b[1]})")
    if name == "bmm" and a[2] != b[1]:
        raise RuntimeError(
            "Expected size for first two dimensions of batch2 tensor to be: "
            f"[{a[0]}, {a[2]}] but got: [{b[0]}, {b[1]}]."
        )


def addmm(bias: Tensor, mat1: Tensor, mat2: Tensor) -> Tensor:
    """``bias + mat1 @ mat2`` as one op (torch's addmm with beta = alpha = 1)."""
    _check_product_shapes("mm", mat1.shape, mat2.shape)
    if mat1.dtype != mat2.dtype:
        raise _matmul_dtype_error("mm", mat1, mat2)
    out_shape = (mat1.shape[0], mat2.shape[1])
    if broadcast_failure(bias.shape, out_shape) is not None:
        raise broadcast_error(bias.shape, out_shape)
    result: Tensor = _ops.call("addmm", bias, mat1, mat2)
    return result


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``, composed as torch's ``aten::linear`` composes it.

    >>> import reference
    >>> x = reference.tensor([[1.0, 2.0]])
    >>> reference.nn.functional.linear(x, reference.tensor([[3.0, 4.0]]), reference.tensor([0.5]))
    tensor([[11.5000]])
    """
    if bias is not None and input.ndim == 2:
        return addmm(bias, input, t(weight))
    if bias is not None and input._data.flags.c_contiguous and (input.ndim == 3 or bias.ndim == 1):
        rows = math.prod(input.shape[:-1])
        product = addmm(bias, reshape(input, (rows, input.shape[-1])), t(weight))
        return product.view(*input.shape[:-1], product.shape[1])
    output = matmul(input, t(weight))
    return output if bias is None else output + bias
