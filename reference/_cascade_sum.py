"""torch's CPU float summation order (aten/src/ATen/native/cpu/SumKernel.cpp), in NumPy.

Float addition is not associative, so a sum is only reproducible bit for bit if the order
is. torch's order comes from two layers, both transcribed here:

1. TensorIterator lays the reduction out: dims sorted by stride with the reduced dims
   first, adjacent dims coalesced, then a 2-D kernel call per position of the outer dims,
   each call adding its results into the zero-filled output;
2. ``cascade_sum`` picks a kernel for the 2-D block (contiguous inner, contiguous outer,
   scalar inner, scalar outer) built from ``row_sum`` (four interleaved partial sums) and
   ``multi_row_sum`` (a four-level cascade over chunks of 16 or more rows).

The kernels see 32-byte vectors (8 float32 or 4 float64 lanes): measured on torch 2.13's
AVX2 and AVX512 builds alike. Reductions of 32768 elements or more may be split across
threads by torch; those are summed with NumPy instead (close, not bit-identical).
"""

from __future__ import annotations

import math

import numpy as np

VECTOR_BYTES = 32
ILP_FACTOR = 4
NUM_LEVELS = 4
PARALLEL_GRAIN = 32768


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else (x - 1).bit_length()


def _sequential(rows: np.ndarray) -> np.ndarray:
    """``0 + rows[0] + rows[1] + ...`` along axis 0, one addition at a time."""
    if rows.shape[0] == 0:
        return np.zeros(rows.shape[1:], dtype=rows.dtype)
    # accumulate is a strict scan; adding +0.0 reproduces the +0.0 start's sign of zero.
    return np.add.accumulate(rows, axis=0)[-1] + rows.dtype.type(0)


def _multi_row_sum(rows: np.ndarray) -> np.ndarray:
    """The cascade over axis 0 of ``rows``; the other axes are independent lanes."""
    size = rows.shape[0]
    level_power = max(4, _ceil_log2(size) // NUM_LEVELS)
    level_step = 1 << level_power
    if size < level_step:
        return _sequential(rows)  # the cascade only starts after a full chunk
    level_mask = level_step - 1
    acc = np.zeros((NUM_LEVELS, *rows.shape[1:]), dtype=rows.dtype)
    i = 0
    while i + level_step <= size:
        acc[0] = _sequential(np.concatenate((acc[0][None], rows[i : i + level_step])))
        i += level_step
        for j in range(1, NUM_LEVELS):
            acc[j] += acc[j - 1]
            acc[j - 1] = 0
            if i & (level_mask << (j * level_power)):
                break
    acc[0] = _sequential(np.concatenate((acc[0][None], rows[i:])))
    for j in range(1, NUM_LEVELS):
        acc[0] += acc[j]
    return acc[0]


def _row_sum(rows: np.ndarray) -> np.ndarray:
    """Four interleaved partial sums (rows k, k+4, k+8, ...), then the tail, then combined."""
    size = rows.shape[0]
    if size < ILP_FACTOR:
        return _sequential(rows)
    size_ilp = size // ILP_FACTOR
    grouped = rows[: size_ilp * ILP_FACTOR].reshape((size_ilp, ILP_FACTOR, *rows.shape[1:]))
    partial = _multi_row_sum(grouped)
    # partial[0] + tail..., then + partial[1] + partial[2] + partial[3], one at a time
    return _sequential(np.concatenate((partial[:1], rows[size_ilp * ILP_FACTOR :], partial[1:])))


def _vectorized_inner_sum(columns: np.ndarray, lanes: int) -> np.ndarray:
    """Each output's elements are contiguous: V-wide vectors, then the scalar tail, then lanes."""
    size0, size1 = columns.shape
    vec_size = size0 // lanes
    vectors = columns[: vec_size * lanes].reshape(vec_size, lanes, size1)
    lane_sums = _row_sum(vectors)  # (lanes, size1)
    return _sequential(np.concatenate((columns[vec_size * lanes :], lane_sums)))


def _kernel_2d(columns: np.ndarray, in_strides: tuple[int, int]) -> np.ndarray:
    """cascade_sum's kernel for one 2-D block ``columns[i, j]``: i reduced, j one per store.

    Outputs are independent lanes, so the vector kernels reduce to which rows get the
    level cascade (``multi_row_sum``) and which the interleaved ``row_sum``.
    """
    itemsize = columns.dtype.itemsize
    lanes = VECTOR_BYTES // itemsize
    size0, size1 = columns.shape
    if in_strides[0] == itemsize and size0 >= lanes:
        return _vectorized_inner_sum(columns, lanes)
    if in_strides[1] == itemsize and size1 >= lanes:
        # vectorized_outer_sum: blocks of 4 vectors cascade, single vectors and scalars interleave
        cascaded = size1 // (ILP_FACTOR * lanes) * ILP_FACTOR * lanes
    elif in_strides[0] < in_strides[1]:
        cascaded = 0  # scalar_inner_sum: row_sum per output
    else:
        cascaded = size1 // ILP_FACTOR * ILP_FACTOR  # scalar_outer_sum: groups of 4 outputs
    return np.concatenate((_multi_row_sum(columns[:, :cascaded]), _row_sum(columns[:, cascaded:])))


def _should_swap(dim0: int, dim1: int, shape: list[int], strides: tuple[list[int], list[int]]) -> int:
    # TensorIterator::reorder_dimensions: reduced dims first, then by stride, then by size.
    for position, operand in enumerate(strides):
        stride0, stride1 = operand[dim0], operand[dim1]
        if position == 0 and (stride0 == 0) != (stride1 == 0):
            return 1 if stride1 == 0 else -1
        if stride0 == 0 or stride1 == 0:
            continue
        if stride0 != stride1:
            return -1 if stride0 < stride1 else 1
        if shape[dim0] > shape[dim1]:
            return 1
    return 0


def _layout(
    array: np.ndarray, dim: tuple[int, ...]
) -> tuple[list[int], list[list[int]], list[tuple[int, int]]]:
    """TensorIterator's dim order (original axes, fastest first), coalesced groups of axes,
    and each group's (input, output) stride in elements."""
    ndim = array.ndim
    itemsize = array.dtype.itemsize
    out_shape = [1 if axis in dim else size for axis, size in enumerate(array.shape)]
    out_strides = [0] * ndim
    running = 1
    for axis in range(ndim - 1, -1, -1):
        out_strides[axis] = 0 if axis in dim else running
        running *= out_shape[axis]
    in_strides = [stride // itemsize for stride in array.strides]
    shape = list(array.shape)
    strides = (out_strides, in_strides)
    # Iterator dims start reversed (fastest first), then get insertion-sorted.
    perm = list(range(ndim - 1, -1, -1))
    for i in range(1, ndim):
        moving = i
        for before in range(i - 1, -1, -1):
            comparison = _should_swap(perm[before], perm[moving], shape, strides)
            if comparison > 0:
                perm[before], perm[moving] = perm[moving], perm[before]
                moving = before
            elif comparison < 0:
                break
    groups: list[list[int]] = []
    group_strides: list[tuple[int, int]] = []
    size = 0
    for axis in perm:
        axis_size = shape[axis]
        if groups:
            in_stride, out_stride = group_strides[-1]
            if (
                size == 1
                or axis_size == 1
                or (size * out_stride == out_strides[axis] and size * in_stride == in_strides[axis])
            ):
                if size == 1:  # torch keeps the stride of the dim that is not of size 1
                    group_strides[-1] = (in_strides[axis], out_strides[axis])
                groups[-1].append(axis)
                size *= axis_size
                continue
        groups.append([axis])
        group_strides.append((in_strides[axis], out_strides[axis]))
        size = axis_size
    return perm, groups, group_strides


def cascade_sum(array: np.ndarray, dim: tuple[int, ...]) -> np.ndarray:
    """Sum of a float ``array`` over ``dim`` (sorted, non-negative), keeping the reduced dims."""
    out_shape = tuple(1 if axis in dim else size for axis, size in enumerate(array.shape))
    if array.size >= PARALLEL_GRAIN or any(stride < 0 for stride in array.strides):
        return np.sum(array, axis=dim, keepdims=True)
    if array.size == 0 or not dim:
        return np.sum(array, axis=dim, keepdims=True) + array.dtype.type(0)
    if len(dim) == array.ndim and array.flags.c_contiguous:
        # A full reduction of contiguous memory: one dim, summed as one column.
        flat = array.reshape(-1, 1)
        return _kernel_2d(flat, (array.dtype.itemsize, 0)).reshape(out_shape)
    perm, groups, group_strides = _layout(array, dim)
    sizes = [math.prod(array.shape[axis] for axis in group) for group in groups]
    # Values in iterator order: the last axis is the fastest iterator dim.
    ordered = np.transpose(array, perm[::-1]).reshape(sizes[::-1])
    out_positions = np.arange(math.prod(out_shape)).reshape(out_shape)
    out_ordered = np.transpose(np.broadcast_to(out_positions, array.shape), perm[::-1])
    out_ordered = out_ordered.reshape(sizes[::-1])
    while len(groups) < 2:
        groups.append([])
        group_strides.append((0, 0))
        sizes.append(1)
        ordered = ordered[None]
        out_ordered = out_ordered[None]
    in_strides = [in_stride for in_stride, _ in group_strides]
    reduced = [out_stride == 0 for _, out_stride in group_strides]
    out = np.zeros(math.prod(out_shape), dtype=array.dtype)
    outer_count = math.prod(sizes[2:])
    blocks = ordered.reshape(outer_count, sizes[1], sizes[0])
    out_blocks = out_ordered.reshape(outer_count, sizes[1], sizes[0])
    itemsize = array.dtype.itemsize
    for block, out_block in zip(blocks, out_blocks, strict=True):
        columns, targets = block.T, out_block.T  # [dim0 index, dim1 index]
        strides = (in_strides[0] * itemsize, in_strides[1] * itemsize)
        if not reduced[0] and reduced[1]:  # move the reduction to be the first dim
            columns, targets = columns.T, targets.T
            strides = strides[::-1]
        elif not reduced[0]:
            # Not a true reduction in this block: an elementwise add into the output.
            np.add.at(out, targets, columns)
            continue
        # Stores add into the output, in column order (several columns may share an output).
        np.add.at(out, targets[0], _kernel_2d(columns, strides))
    return out.reshape(out_shape)
