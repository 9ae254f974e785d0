"""Array-level kernels whose rounding follows torch's CPU kernels as closely as NumPy allows.

Everything here takes and returns ``numpy.ndarray`` (never a NumPy scalar). Callers hand in
arrays already cast to the dtype the op computes in.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from reference._cascade_sum import cascade_sum
from reference._dtypes import float32, float64


def reduce_sum(array: np.ndarray, dim: tuple[int, ...], keepdim: bool) -> np.ndarray:
    """Sum over ``dim`` (non-negative, sorted) in torch's order; bool and int sum to int64."""
    if array.dtype.kind != "f":
        return np.asarray(np.sum(array, axis=dim, keepdims=keepdim, dtype=np.int64))
    total = cascade_sum(array, dim)
    if not keepdim:
        total = total.reshape(tuple(size for axis, size in enumerate(array.shape) if axis not in dim))
    return total


def sum_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reduce a broadcast gradient back to ``shape`` (torch's ``at::sum_to``)."""
    leading = array.ndim - len(shape)
    if leading < 0:
        raise RuntimeError(f"gradient of shape {list(array.shape)} cannot be reduced to {list(shape)}")
    axes = list(range(leading))
    for axis, size in enumerate(shape):
        grad_size = array.shape[leading + axis]
        if size == 1 and grad_size != 1:
            axes.append(leading + axis)
        elif size != grad_size:
            raise RuntimeError(f"gradient of shape {list(array.shape)} cannot be reduced to {list(shape)}")
    reduced = reduce_sum(array, tuple(axes), keepdim=True) if axes else array
    return reduced.reshape(shape)


def via_float64(function: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Evaluate a float32 transcendental in float64 and round once.

    Measured on 1000 random float32 inputs: NumPy's own float32 ``exp`` differs from torch's
    in 39% of elements, the rounded float64 result in about 1%.
    """

    def evaluate(array: np.ndarray) -> np.ndarray:
        if array.dtype == float32:
            return np.asarray(function(array.astype(float64)).astype(float32))
        return np.asarray(function(array))

    return evaluate


exp = via_float64(np.exp)
log = via_float64(np.log)
tanh = via_float64(np.tanh)
sin = via_float64(np.sin)
cos = via_float64(np.cos)


def sigmoid(array: np.ndarray) -> np.ndarray:
    """torch's kernel: ``1 / (1 + exp(-x))``, each step rounded in the input dtype."""
    one = array.dtype.type(1)
    return np.asarray(one / (one + exp(-array)))


def sign(array: np.ndarray) -> np.ndarray:
    """torch.sign: ``(0 < x) - (x < 0)``, so NaN maps to 0 (NumPy's sign gives NaN)."""
    return np.asarray((array > 0).astype(array.dtype) - (array < 0).astype(array.dtype))


def relu(array: np.ndarray) -> np.ndarray:
    """``x < 0 ? 0 : x``: -0.0 and NaN pass through unchanged, as in torch."""
    return np.asarray(np.where(array < 0, array.dtype.type(0), array))


def clamp(array: np.ndarray, min: float | None, max: float | None) -> np.ndarray:
    """torch's ``min(max(x, min), max)`` with std::max/std::min tie rules (keep x on ties)."""
    result = array
    if min is not None:
        result = np.where(result < min, array.dtype.type(min), result)
    if max is not None:
        result = np.where(array.dtype.type(max) < result, array.dtype.type(max), result)
    return np.asarray(result)


def pow_scalar(array: np.ndarray, exponent: float) -> np.ndarray:
    """``x ** exponent`` with torch's special cases (Pow.cpp, PowKernel.cpp).

    Exponents 0 and 1 are fills and copies; 0.5, -0.5, -1, 2, 3 and -2 are sqrt, 1/sqrt,
    reciprocal and products, so their rounding differs from a general ``pow``.
    """
    if exponent == 0:
        return np.ones_like(array)
    if exponent == 1:
        return array.copy()
    if array.dtype.kind != "f":
        if exponent < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        return np.asarray(np.power(array, int(exponent)))
    one = array.dtype.type(1)
    if exponent == 0.5:
        return np.sqrt(array)
    if exponent == -0.5:
        return np.asarray(one / np.sqrt(array))
    if exponent == -1:
        return np.asarray(one / array)
    if exponent == 2:
        return np.asarray(array * array)
    if exponent == 3:
        return np.asarray(array * array * array)
    if exponent == -2:
        return np.asarray(one / (array * array))
    return _general_pow(array, exponent)


def _general_pow(base: np.ndarray | float, exponent: np.ndarray | float) -> np.ndarray:
    # torch's scalar path calls std::pow(float, double), i.e. pow in double rounded once.
    dtype = base.dtype if isinstance(base, np.ndarray) else np.asarray(exponent).dtype
    if dtype == float32:
        wide = np.power(np.asarray(base, dtype=float64), np.asarray(exponent, dtype=float64))
        return np.asarray(wide.astype(float32))
    return np.asarray(np.power(base, exponent))


def pow_tensor(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Elementwise ``base ** exponent`` for two arrays of the same dtype."""
    if base.dtype.kind != "f":
        return _integer_pow(base, exponent)
    return _general_pow(base, exponent)


def _integer_pow(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """torch's powi: a negative exponent gives 0, except for bases 1 and -1."""
    base, exponent = np.broadcast_arrays(base, exponent)
    positive = np.power(base, np.maximum(exponent, 0))
    odd = (exponent % 2) != 0
    negative = np.where(base == 1, 1, np.where(base == -1, np.where(odd, -1, 1), 0))
    return np.asarray(np.where(exponent < 0, negative, positive).astype(base.dtype))


# Products with up to this many terms are summed left to right without FMA, which is what
# torch's CPU matmul (MKL) gives for tiny shapes: measured bit-identical for (2,3)@(3,4),
# (3,4)@(4,2), (4,8)@(8,3) and (8,32)@(32,8). Larger products go to NumPy's BLAS and agree
# with torch to a few ulps, as two BLAS libraries do.
SEQUENTIAL_MATMUL_TERMS = 16


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul`` semantics (1-D operands, batch broadcasting) in torch's rounding."""
    terms = a.shape[-1]
    if terms > SEQUENTIAL_MATMUL_TERMS or terms == 0:
        return np.asarray(np.matmul(a, b))
    left = a[None, :] if a.ndim == 1 else a
    right = b[:, None] if b.ndim == 1 else b
    total = left[..., :, 0:1] * right[..., 0:1, :]
    for k in range(1, terms):
        total = total + left[..., :, k : k + 1] * right[..., k : k + 1, :]
    total = total + total.dtype.type(0)
    if b.ndim == 1:
        total = total[..., 0]
    if a.ndim == 1:
        total = total[..., 0, :] if b.ndim > 1 else total[..., 0]
    return np.asarray(total)


def fused_multiply_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` with one rounding (IEEE fused multiply-add), elementwise, in the dtype of
    the three (float32 or float64): what torch's CPU ``lerp`` kernels compute (``fmadd``; on
    torch 2.13, 100000 float32 lerps matched this bit for bit and the unfused form in a quarter
    of them). NumPy has no fma, so each element is computed exactly (``Fraction``) and rounded
    once, to nearest, ties to even; non-finite operands take the unfused path, which gives the
    same infinities and NaNs."""
    dtype = np.result_type(a, b, c)
    a, b, c = np.broadcast_arrays(*(np.asarray(x, dtype=dtype) for x in (a, b, c)))
    with np.errstate(all="ignore"):  # inf * 0 is NaN here, as in torch, without a warning
        out = np.array(a * b + c, dtype=dtype)  # the non-finite cases, and the shape
    for index in np.ndindex(out.shape):
        x, y, z = a[index], b[index], c[index]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
            continue
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        if exact == 0:  # an exact zero is -0 only when both the product and c are -0
            negative = bool(np.signbit(x) != np.signbit(y)) and bool(np.signbit(z))
            out[index] = -0.0 if negative else 0.0
        else:
            out[index] = _rounded(exact, dtype)
    return out


def _rounded(exact: Fraction, dtype: np.dtype) -> np.floating:
    """``exact`` rounded to nearest in ``dtype``, ties to even (Python's ``float(Fraction)``
    rounds correctly to float64; float32 is chosen among the neighbours of that)."""
    try:
        nearest = float(exact)
    except OverflowError:
        return dtype.type(np.inf if exact > 0 else -np.inf)
    if dtype == float64:
        return dtype.type(nearest)
    guess = dtype.type(nearest)
    if not np.isfinite(guess):
        return guess
    candidates = [guess, np.nextafter(guess, dtype.type(-np.inf)),
                  np.nextafter(guess, dtype.type(np.inf))]
    finite = [v for v in candidates if np.isfinite(v)]
    return min(finite, key=lambda v: (abs(Fraction(float(v)) - exact),
                                      int(v.view(np.uint32)) & 1))
