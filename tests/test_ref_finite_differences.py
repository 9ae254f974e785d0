"""Every op's vector-Jacobian product against central finite differences, on float64 inputs.

For each op, Hypothesis draws inputs and a random cotangent v; `out.backward(gradient=v)` must
give Jᵀv, which finite differences of φ(x) = Σ v·f(x) estimate with the engine's own forward
(FD is the oracle). Inputs are drawn away from kinks, ties and domain edges by construction,
since the derivative is undefined there (the conventions at those points are tested in
test_ref_semantics.py). The torch run is a sanity pass of the oracle itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_cases import OP_NAMES, engine_fixture, engine_name, leaf, to_numpy

tl_fixture = engine_fixture

# Central differences: truncation error h²/6·|φ'''| and rounding error ≈ eps·Σ|v·f| / h. With
# |inputs| ≤ 3, |f| ≲ 30 and at most 27 outputs, Σ|v·f| ≲ 1e3, so at h = 1e-6 (near the optimum
# (eps/|φ'''|)^(1/3) for float64) the error is ≲ 1e-12 + 2.2e-16·1e3/1e-6 ≈ 2e-7.
H = 1e-6
# 50x the error bound above; a wrong rule (a lost factor, a sign, a missed branch) is off by O(1).
ATOL, RTOL = 1e-5, 1e-6
# Distinct values are at least this far apart, and inputs stay this far from kinks: much more
# than H, so FD never straddles a kink or a tie.
GAP = 1e-2

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
NONSCALAR_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)


class Inputs(NamedTuple):
    arrays: tuple[np.ndarray, ...]  # the differentiable inputs, as float64 leaves
    aux: dict[str, Any]  # everything else the op takes: dims, indices, masks


# --- Element and array strategies ------------------------------------------------------------


def reals(*, min_value: float = -2.0, max_value: float = 2.0) -> st.SearchStrategy[float]:
    return st.floats(min_value, max_value, allow_nan=False, allow_infinity=False)


def avoiding(
    *kinks: float, min_value: float = -2.5, max_value: float = 2.5, margin: float = 0.1
) -> st.SearchStrategy[float]:
    """Reals in [min_value, max_value] at least `margin` from every kink."""
    edges = [min_value, *sorted(kinks), max_value]
    pieces = [
        reals(min_value=lo + margin * (lo != min_value), max_value=hi - margin * (hi != max_value))
        for lo, hi in itertools.pairwise(edges)
    ]
    return st.one_of(*pieces)


def arrays_of(
    shape: Any, *, elements: st.SearchStrategy[float] | None = None
) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=reals() if elements is None else elements)


@st.composite
def distinct_values(
    draw: Any, shape: tuple[int, ...], *, min_value: float = -2.0, min_gap: float = GAP
) -> np.ndarray:
    """Floats in [min_value, min_value + 4] that differ pairwise by at least `min_gap`."""
    slots = hnp.arrays(np.int64, shape, elements=st.integers(0, int(4 / min_gap)), unique=True)
    jitter = hnp.arrays(np.float64, shape, elements=reals(min_value=0.0, max_value=min_gap / 4))
    values = min_value + draw(slots, label="slots") * min_gap + draw(jitter, label="jitter")
    return np.asarray(values, dtype=np.float64)


@st.composite
def unary(
    draw: Any, *, shapes: st.SearchStrategy = SHAPES, elements: st.SearchStrategy | None = None
) -> Inputs:
    shape = draw(shapes, label="shape")
    return Inputs((draw(arrays_of(shape, elements=elements), label="x"),), {})


@st.composite
def distinct_unary(draw: Any, *, shapes: st.SearchStrategy = SHAPES) -> Inputs:
    """One array without ties (for max/min and friends)."""
    shape = draw(shapes, label="shape")
    return Inputs((draw(distinct_values(shape), label="x"),), {})


@st.composite
def broadcasting(
    draw: Any, *, count: int = 2, elements: Sequence[st.SearchStrategy | None] | None = None
) -> Inputs:
    """`count` arrays whose shapes broadcast together (with 0-dim and size-1 dims)."""
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=count, min_dims=0, max_dims=3, max_side=3),
        label="shapes",
    )
    elements = elements or [None] * count
    arrays = tuple(
        draw(arrays_of(shape, elements=el), label=f"input {i}")
        for i, (shape, el) in enumerate(zip(shapes.input_shapes, elements, strict=True))
    )
    return Inputs(arrays, {})


@st.composite
def distinct_broadcasting(draw: Any) -> Inputs:
    """Two broadcasting arrays with no value in common (no ties for maximum/minimum)."""
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
        label="shapes",
    )
    a_shape, b_shape = shapes.input_shapes
    a_size = int(np.prod(a_shape))
    pool = draw(distinct_values((a_size + int(np.prod(b_shape)),)), label="values")
    return Inputs((pool[:a_size].reshape(a_shape), pool[a_size:].reshape(b_shape)), {})


@st.composite
def with_dim(
    draw: Any,
    *,
    shapes: st.SearchStrategy = NONSCALAR_SHAPES,
    distinct: bool = False,
    keepdim: bool = False,
) -> Inputs:
    """One array and a `dim` (negative too); `keepdim` drawn when asked for."""
    shape = draw(shapes, label="shape")
    x = draw(distinct_values(shape) if distinct else arrays_of(shape), label="x")
    aux = {"dim": draw(st.integers(-len(shape), len(shape) - 1), label="dim")}
    if keepdim:
        aux["keepdim"] = draw(st.booleans(), label="keepdim")
    return Inputs((x,), aux)


@st.composite
def matmul_operands(draw: Any, *, left_dims: int, right_dims: int) -> Inputs:
    n, k, m, batch = (draw(st.integers(1, 3), label=name) for name in ("n", "k", "m", "batch"))
    left = {1: (k,), 2: (n, k), 3: (batch, n, k)}[left_dims]
    right = {1: (k,), 2: (k, m)}[right_dims]
    return Inputs((draw(arrays_of(left), label="a"), draw(arrays_of(right), label="b")), {})


@st.composite
def linear_operands(draw: Any, *, bias: bool) -> Inputs:
    n, k, m = (draw(st.integers(1, 3), label=name) for name in ("n", "in", "out"))
    shapes = [(n, k), (m, k), *([(m,)] if bias else [])]
    return Inputs(tuple(draw(arrays_of(s), label=f"input {s}") for s in shapes), {})


@st.composite
def same_shape_pair(draw: Any) -> Inputs:
    """Two arrays of one shape (mse_loss's input and target)."""
    shape = draw(SHAPES, label="shape")
    return Inputs((draw(arrays_of(shape), label="input"), draw(arrays_of(shape), label="target")), {})


@st.composite
def classified(draw: Any, *, batched: bool) -> Inputs:
    """Logits (N, C) with class indices (N,), or (C,) with a 0-dim class index."""
    classes = draw(st.integers(1, 4), label="classes")
    shape = (draw(st.integers(1, 3), label="batch"), classes) if batched else (classes,)
    target = draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, classes - 1)))
    return Inputs((draw(arrays_of(shape), label="logits"),), {"target": target})


@st.composite
def reshaped(draw: Any) -> Inputs:
    shape = draw(SHAPES, label="shape")
    targets = [shape[::-1], (-1,), (1, *shape), (int(np.prod(shape)),)]
    return Inputs((draw(arrays_of(shape), label="x"),), {"shape": draw(st.sampled_from(targets))})


@st.composite
def transposed(draw: Any) -> Inputs:
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), label="shape")
    dims = st.integers(-len(shape), len(shape) - 1)
    aux = {"dim0": draw(dims, label="dim0"), "dim1": draw(dims, label="dim1")}
    return Inputs((draw(arrays_of(shape), label="x"),), aux)


@st.composite
def unsqueezed(draw: Any) -> Inputs:
    shape = draw(SHAPES, label="shape")
    dim = draw(st.integers(-len(shape) - 1, len(shape)), label="dim")
    return Inputs((draw(arrays_of(shape), label="x"),), {"dim": dim})


@st.composite
def expanded(draw: Any) -> Inputs:
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
        label="shapes",
    )
    x = draw(arrays_of(shapes.input_shapes[0]), label="x")
    return Inputs((x,), {"size": shapes.result_shape})


@st.composite
def concatenated(draw: Any, *, stack: bool) -> Inputs:
    shape = draw(NONSCALAR_SHAPES, label="shape")
    count = draw(st.integers(1, 3), label="count")
    if stack:
        shapes = [shape] * count
        dim = draw(st.integers(-len(shape) - 1, len(shape)), label="dim")
    else:
        dim = draw(st.integers(-len(shape), len(shape) - 1), label="dim")
        sizes = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count), label="sizes")
        axis = dim % len(shape)
        shapes = [(*shape[:axis], s, *shape[axis + 1 :]) for s in sizes]
    arrays = tuple(draw(arrays_of(s), label=f"input {i}") for i, s in enumerate(shapes))
    return Inputs(arrays, {"dim": dim})


@st.composite
def selected(draw: Any) -> Inputs:
    """x, y and a condition, all three broadcasting together."""
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
        label="shapes",
    )
    cond_shape, x_shape, y_shape = shapes.input_shapes
    cond = draw(hnp.arrays(np.bool_, cond_shape), label="condition")
    arrays = (draw(arrays_of(x_shape), label="x"), draw(arrays_of(y_shape), label="y"))
    return Inputs(arrays, {"cond": cond})


# --- Index strategies --------------------------------------------------------------------------


@st.composite
def int_index(draw: Any) -> Inputs:
    shape = draw(NONSCALAR_SHAPES, label="shape")
    i = draw(st.integers(-shape[0], shape[0] - 1), label="index")
    return Inputs((draw(arrays_of(shape), label="x"),), {"index": i})


@st.composite
def int_and_slice_index(draw: Any) -> Inputs:
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), label="shape")
    i = draw(st.integers(-shape[0], shape[0] - 1), label="row")
    sl = draw(st.slices(shape[1]).filter(lambda s: s.step is None or s.step > 0), label="slice")
    return Inputs((draw(arrays_of(shape), label="x"),), {"index": (i, sl)})


@st.composite
def stepped_slice_index(draw: Any) -> Inputs:
    """A slice with a step (torch allows positive steps only), possibly empty or out of range."""
    shape = draw(NONSCALAR_SHAPES, label="shape")
    bound = st.none() | st.integers(-shape[0] - 2, shape[0] + 2)
    start, stop = draw(bound, label="start"), draw(bound, label="stop")
    sl = slice(start, stop, draw(st.integers(1, 3), label="step"))
    return Inputs((draw(arrays_of(shape), label="x"),), {"index": sl})


@st.composite
def int_list_index(draw: Any, *, second_dim: bool = False) -> Inputs:
    """A list of ints, negative ones too; duplicates are likely with at most 3 rows."""
    shape = draw(hnp.array_shapes(min_dims=2 if second_dim else 1, max_dims=3, max_side=3))
    n = shape[1] if second_dim else shape[0]
    rows = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6), label="index list")
    index = (slice(None), rows) if second_dim else rows
    return Inputs((draw(arrays_of(shape), label="x"),), {"index": index})


@st.composite
def paired_lists_index(draw: Any) -> Inputs:
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), label="shape")
    size = draw(st.integers(1, 5), label="length")
    rows, cols = (
        draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size), label=f"dim {d}")
        for d, n in enumerate(shape[:2])
    )
    return Inputs((draw(arrays_of(shape), label="x"),), {"index": (rows, cols)})


@st.composite
def mask_index(draw: Any, *, leading_dims: int | None = None) -> Inputs:
    """A bool mask over all dims of x, or over its first `leading_dims` dims."""
    shape = draw(NONSCALAR_SHAPES, label="shape")
    mask_shape = shape if leading_dims is None else shape[:leading_dims]
    mask = draw(hnp.arrays(np.bool_, mask_shape), label="mask")
    return Inputs((draw(arrays_of(shape), label="x"),), {"mask": mask})


@st.composite
def along_dim_index(draw: Any, *, gather: bool) -> Inputs:
    """x, a dim and an int64 index (duplicates likely) for index_select or gather."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    dim = draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    n = shape[dim]
    if gather:
        index_shape = tuple(
            draw(st.integers(1, 3)) if d == dim % len(shape) else draw(st.integers(1, side))
            for d, side in enumerate(shape)
        )
        index = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(0, n - 1)))
    else:
        index = np.array(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)))
    return Inputs((draw(arrays_of(shape), label="x"),), {"dim": dim, "index": index})


def fixed(*arrays: np.ndarray, **aux: Any) -> st.SearchStrategy[Inputs]:
    """Fixed inputs: for edges that must be reached on purpose, not by luck."""
    return st.just(Inputs(arrays, aux))


# --- The op table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FDCase:
    id: str
    op: str
    fn: Callable[..., Any]  # fn(tl, *leaves, **aux) -> output tensor
    inputs: st.SearchStrategy[Inputs]


def t(tl: Any, values: np.ndarray) -> Any:
    """A constant engine tensor (bool or int64 index data) from a NumPy array."""
    return tl.tensor(values.tolist())


def matmul(tl: Any, a: Any, b: Any) -> Any:
    return a @ b


POSITIVE = reals(min_value=0.25, max_value=3.0)
AWAY_FROM_ZERO = avoiding(0.0, min_value=-2.5, max_value=2.5, margin=0.25)
ROWS_3 = np.arange(12.0).reshape(3, 4) / 7.0

C = FDCase
FD_CASES = [
    C("x + y", "add", lambda tl, x, y: x + y, broadcasting()),
    C("x + 2.5", "add", lambda tl, x: x + 2.5, unary()),
    C("2.5 + x", "add", lambda tl, x: 2.5 + x, unary()),
    C("x - y", "sub", lambda tl, x, y: x - y, broadcasting()),
    C("x - 2.5", "sub", lambda tl, x: x - 2.5, unary()),
    C("2.5 - x", "sub", lambda tl, x: 2.5 - x, unary()),
    C("x * y", "mul", lambda tl, x, y: x * y, broadcasting()),
    C("x * -1.5", "mul", lambda tl, x: x * -1.5, unary()),
    C("-1.5 * x", "mul", lambda tl, x: -1.5 * x, unary()),
    C("x * x", "mul", lambda tl, x: x * x, unary()),
    C("x / y", "div", lambda tl, x, y: x / y, broadcasting(elements=[None, AWAY_FROM_ZERO])),
    C("x / 2.5", "div", lambda tl, x: x / 2.5, unary()),
    C("2.5 / x", "div", lambda tl, x: 2.5 / x, unary(elements=AWAY_FROM_ZERO)),
    C("-x", "neg", lambda tl, x: -x, unary()),
    C("x ** 2", "pow", lambda tl, x: x**2, unary()),
    C("x ** 3", "pow", lambda tl, x: x**3, unary()),
    C("x ** 0.5", "pow", lambda tl, x: x**0.5, unary(elements=POSITIVE)),
    C("x ** -1.5", "pow", lambda tl, x: x**-1.5, unary(elements=POSITIVE)),
    C("x.pow(-1)", "pow", lambda tl, x: x.pow(-1), unary(elements=AWAY_FROM_ZERO)),
    C("x ** y", "pow", lambda tl, x, y: x**y, broadcasting(elements=[POSITIVE, None])),
    C("pow(x, y)", "pow", lambda tl, x, y: tl.pow(x, y), broadcasting(elements=[POSITIVE, None])),
    C("2.0 ** x", "pow", lambda tl, x: 2.0**x, unary()),
    C("square", "square", lambda tl, x: x.square(), unary()),
    C("exp", "exp", lambda tl, x: tl.exp(x), unary()),
    C("x.exp()", "exp", lambda tl, x: x.exp(), unary()),
    C("log", "log", lambda tl, x: tl.log(x), unary(elements=POSITIVE)),
    C("sqrt", "sqrt", lambda tl, x: tl.sqrt(x), unary(elements=POSITIVE)),
    C("sin", "sin", lambda tl, x: tl.sin(x), unary()),
    C("cos", "cos", lambda tl, x: tl.cos(x), unary()),
    C("tanh", "tanh", lambda tl, x: tl.tanh(x), unary()),
    C("sigmoid", "sigmoid", lambda tl, x: tl.sigmoid(x), unary()),
    C("relu", "relu", lambda tl, x: tl.relu(x), unary(elements=AWAY_FROM_ZERO)),
    C("x.relu()", "relu", lambda tl, x: x.relu(), unary(elements=AWAY_FROM_ZERO)),
    C("abs", "abs", lambda tl, x: tl.abs(x), unary(elements=AWAY_FROM_ZERO)),
    C("clamp(min=0)", "clamp", lambda tl, x: tl.clamp(x, min=0.0), unary(elements=avoiding(0.0))),
    C("clamp(-1, 1)", "clamp", lambda tl, x: tl.clamp(x, -1.0, 1.0),
      unary(elements=avoiding(-1.0, 1.0))),
    C("clamp(max=0.5)", "clamp", lambda tl, x: x.clamp(max=0.5), unary(elements=avoiding(0.5))),
    C("sum()", "sum", lambda tl, x: x.sum(), unary()),
    C("sum(dim, keepdim)", "sum", lambda tl, x, dim, keepdim: x.sum(dim=dim, keepdim=keepdim),
      with_dim(keepdim=True)),
    C("sum(dims tuple)", "sum", lambda tl, x: x.sum(dim=(0, -1)), fixed(ROWS_3)),
    C("tl.sum(x)", "sum", lambda tl, x: tl.sum(x), unary()),
    C("mean()", "mean", lambda tl, x: x.mean(), unary()),
    C("mean(dim, keepdim)", "mean", lambda tl, x, dim, keepdim: x.mean(dim, keepdim=keepdim),
      with_dim(keepdim=True)),
    C("softmax(dim)", "softmax", lambda tl, x, dim: tl.softmax(x, dim=dim), with_dim()),
    C("logsumexp(dim)", "logsumexp", lambda tl, x, dim: tl.logsumexp(x, dim=dim), with_dim()),
    C("(n,k) @ (k,m)", "matmul", matmul, matmul_operands(left_dims=2, right_dims=2)),
    C("(k,) @ (k,m)", "matmul", matmul, matmul_operands(left_dims=1, right_dims=2)),
    C("(n,k) @ (k,)", "matmul", matmul, matmul_operands(left_dims=2, right_dims=1)),
    C("(k,) @ (k,)", "matmul", matmul, matmul_operands(left_dims=1, right_dims=1)),
    C("(b,n,k) @ (k,m)", "matmul", lambda tl, a, b: tl.matmul(a, b),
      matmul_operands(left_dims=3, right_dims=2)),
    C("linear(x, w, b)", "linear", lambda tl, x, w, b: tl.nn.functional.linear(x, w, b),
      linear_operands(bias=True)),
    C("linear(x, w)", "linear", lambda tl, x, w: tl.nn.functional.linear(x, w),
      linear_operands(bias=False)),
    C("log_softmax(dim)", "log_softmax",
      lambda tl, x, dim: tl.nn.functional.log_softmax(x, dim=dim), with_dim()),
    C("mse_loss", "mse_loss", lambda tl, x, y: tl.nn.functional.mse_loss(x, y), same_shape_pair()),
    C("mse_loss(sum)", "mse_loss",
      lambda tl, x, y: tl.nn.functional.mse_loss(x, y, reduction="sum"), same_shape_pair()),
    C("mse_loss(none)", "mse_loss",
      lambda tl, x, y: tl.nn.functional.mse_loss(x, y, reduction="none"), same_shape_pair()),
    C("nll_loss", "nll_loss", lambda tl, x, target: tl.nn.functional.nll_loss(x, t(tl, target)),
      classified(batched=True)),
    C("nll_loss(none)", "nll_loss",
      lambda tl, x, target: tl.nn.functional.nll_loss(x, t(tl, target), reduction="none"),
      classified(batched=True)),
    C("cross_entropy (N, C)", "cross_entropy",
      lambda tl, x, target: tl.nn.functional.cross_entropy(x, t(tl, target)),
      classified(batched=True)),
    C("cross_entropy (C,), sum", "cross_entropy",
      lambda tl, x, target: tl.nn.functional.cross_entropy(x, t(tl, target), reduction="sum"),
      classified(batched=False)),
    C("reshape", "reshape", lambda tl, x, shape: x.reshape(shape), reshaped()),
    C("view", "view", lambda tl, x, shape: x.view(shape), reshaped()),
    C("transpose", "transpose", lambda tl, x, dim0, dim1: x.transpose(dim0, dim1), transposed()),
    C(".T", "T", lambda tl, x: x.T, unary(shapes=hnp.array_shapes(min_dims=2, max_dims=2))),
    C("unsqueeze", "unsqueeze", lambda tl, x, dim: x.unsqueeze(dim), unsqueezed()),
    C("expand", "expand", lambda tl, x, size: x.expand(size), expanded()),
    C("clone", "clone", lambda tl, x: x.clone(), unary()),
    C("x[int]", "getitem", lambda tl, x, index: x[index], int_index()),
    C("x[int, slice]", "getitem", lambda tl, x, index: x[index], int_and_slice_index()),
    C("x[start:stop:step]", "getitem", lambda tl, x, index: x[index], stepped_slice_index()),
    C("x[int list]", "getitem", lambda tl, x, index: x[index], int_list_index()),
    C("x[[0, 0, -1, 2, -3]]", "getitem", lambda tl, x: x[[0, 0, -1, 2, -3]], fixed(ROWS_3)),
    C("x[:, int list]", "getitem", lambda tl, x, index: x[index], int_list_index(second_dim=True)),
    C("x[list, list]", "getitem", lambda tl, x, index: x[index], paired_lists_index()),
    C("x[mask]", "getitem", lambda tl, x, mask: x[t(tl, mask)], mask_index()),
    C("x[row mask]", "getitem", lambda tl, x, mask: x[t(tl, mask)], mask_index(leading_dims=1)),
    C("x[..., None]", "getitem", lambda tl, x: x[..., None], unary()),
    C("index_select", "index_select",
      lambda tl, x, dim, index: tl.index_select(x, dim, t(tl, index)),
      along_dim_index(gather=False)),
    C("gather", "gather", lambda tl, x, dim, index: tl.gather(x, dim, t(tl, index)),
      along_dim_index(gather=True)),
    C("cat", "cat", lambda tl, *xs, dim: tl.cat(list(xs), dim=dim), concatenated(stack=False)),
    C("stack", "stack", lambda tl, *xs, dim: tl.stack(list(xs), dim=dim), concatenated(stack=True)),
    C("where", "where", lambda tl, x, y, cond: tl.where(t(tl, cond), x, y), selected()),
    C("maximum", "maximum", lambda tl, x, y: tl.maximum(x, y), distinct_broadcasting()),
    C("minimum", "minimum", lambda tl, x, y: tl.minimum(x, y), distinct_broadcasting()),
    C("max()", "max", lambda tl, x: x.max(), distinct_unary()),
    C("max(dim).values", "max", lambda tl, x, dim, keepdim: x.max(dim, keepdim=keepdim).values,
      with_dim(distinct=True, keepdim=True)),
    C("min()", "min", lambda tl, x: x.min(), distinct_unary()),
    C("min(dim).values", "min", lambda tl, x, dim: x.min(dim=dim).values, with_dim(distinct=True)),
    C("amax()", "amax", lambda tl, x: tl.amax(x), distinct_unary()),
    C("amax(dim, keepdim)", "amax", lambda tl, x, dim, keepdim: x.amax(dim, keepdim=keepdim),
      with_dim(distinct=True, keepdim=True)),
    C("amin()", "amin", lambda tl, x: x.amin(), distinct_unary()),
    C("amin(dim)", "amin", lambda tl, x, dim: tl.amin(x, dim=dim), with_dim(distinct=True)),
]  # fmt: skip

# Ops finite differences cannot check, and why.
FD_EXEMPT = {
    # The only non-trivial `to` changes the dtype, and float32 rounding (1e-7 relative) over a
    # step of 1e-6 swamps the estimate. test_ref_semantics checks its gradient's dtype and value.
    "to": "a dtype change rounds far more than the FD step",
}


def test_fd_table_covers_every_op():
    missing = sorted(set(OP_NAMES) - {case.op for case in FD_CASES} - set(FD_EXEMPT))
    assert not missing, f"ops with no finite-difference case: {missing}"


def forward(tl: Any, case: FDCase, arrays: Sequence[np.ndarray], aux: dict) -> np.ndarray:
    constants = [leaf(tl, a, requires_grad=False) for a in arrays]
    return to_numpy(case.fn(tl, *constants, **aux))


def central_differences(
    phi: Callable[[list[np.ndarray]], float], arrays: Sequence[np.ndarray], which: int
) -> np.ndarray:
    """∂φ/∂arrays[which], elementwise, by (φ(x + h) - φ(x - h)) / (2h)."""
    estimate = np.zeros_like(arrays[which])
    for position in np.ndindex(arrays[which].shape):
        plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
        plus[which][position] += H
        minus[which][position] -= H
        step = plus[which][position] - minus[which][position]  # the step actually taken
        estimate[position] = (phi(plus) - phi(minus)) / step
    return estimate


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: c.id)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_vjp_matches_central_differences(tl, case, data):
    arrays, aux = data.draw(case.inputs, label="inputs")
    leaves = [leaf(tl, a) for a in arrays]
    for a, x in zip(arrays, leaves, strict=True):
        held = to_numpy(x)
        assert np.array_equal(held, a), (
            f"{engine_name(tl)}.tensor(float64 data) holds {held.tolist()}, not the drawn "
            f"{a.tolist()}: finite differences of steps of {H} would be meaningless"
        )
    out = case.fn(tl, *leaves, **aux)
    cotangents = arrays_of(tuple(out.shape), elements=reals(min_value=-1, max_value=1))
    v = data.draw(cotangents, label="cotangent")
    out.backward(gradient=leaf(tl, v, requires_grad=False))

    def phi(perturbed: list[np.ndarray]) -> float:
        return float(np.sum(v * forward(tl, case, perturbed, aux)))

    for i, x in enumerate(leaves):
        expected = central_differences(phi, arrays, i)
        assert x.grad is not None, f"{engine_name(tl)} {case.id}: input {i} got no grad"
        np.testing.assert_allclose(
            to_numpy(x.grad),
            expected,
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{engine_name(tl)} {case.id}: grad of input {i} vs central differences, "
            f"inputs={[a.tolist() for a in arrays]}, aux={aux}, cotangent={v.tolist()}",
        )
