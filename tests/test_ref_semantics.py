"""torch-semantics.md §2-§6 and §8, each rule written once and run on torch and on the reference."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
import torch
from ref_cases import (
    MODIFIED_INPLACE,
    assert_array_equal,
    assert_grad,
    engine_fixture,
    engine_name,
    grad_of,
    leaf,
    to_numpy,
)

tl_fixture = engine_fixture

# --- §2 Accumulation ---------------------------------------------------------------------------


def test_grad_is_none_until_the_first_backward(tl):
    x = leaf(tl, [1.0, 2.0])
    assert x.grad is None, f"fresh leaf: x.grad = {x.grad!r}, expected None"
    (x * 3.0).sum().backward()
    assert_grad(x, np.array([3.0, 3.0]), what="x.grad after (x*3).sum().backward()")


def test_second_contribution_is_added_in_place(tl):
    x = leaf(tl, [1.0, 2.0])
    (x * 3.0).sum().backward()
    held = x.grad
    (x * x).sum().backward()
    assert x.grad is held, "x.grad must stay the same object from the second backward on"
    assert_array_equal(to_numpy(held), np.array([5.0, 7.0]), what="a held reference to x.grad")


def test_user_assigned_grad_is_accumulated_in_place(tl):
    x = leaf(tl, [1.0, 2.0])
    assigned = tl.tensor([10.0, 20.0], dtype=tl.float64)
    x.grad = assigned
    (x * 3.0).sum().backward()
    assert x.grad is assigned, "backward must add into the user-assigned grad tensor itself"
    assert_array_equal(to_numpy(assigned), np.array([13.0, 23.0]), what="the assigned grad")


def test_leaf_used_twice_gets_the_sum_of_its_contributions(tl):
    x = leaf(tl, [1.0, 2.0])
    (x * 2.0 + x * 3.0).sum().backward()
    assert_grad(x, np.array([5.0, 5.0]), what="x.grad of (x*2 + x*3).sum()")


UNUSED_PARAM_CASES = [
    pytest.param(lambda a, b: (a * 2.0).sum(), None, id="b unused: None"),
    pytest.param(lambda a, b: (a * 2.0 + b * 0.0).sum(), np.zeros(2), id="b*0: zeros"),
    pytest.param(lambda a, b: (a * b.detach()).sum(), None, id="b.detach() only: None"),
]


@pytest.mark.parametrize(("loss_of", "expected"), UNUSED_PARAM_CASES)
def test_parameter_the_loss_does_not_reach(tl, loss_of, expected):
    a, b = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, 4.0])
    loss_of(a, b).backward()
    assert_grad(b, expected, what="b.grad")
    assert a.grad is not None, "a.grad must be set: the loss uses a"


def test_leaf_without_requires_grad_keeps_none(tl):
    x, c = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, 4.0], requires_grad=False)
    (x * c).sum().backward()
    assert_grad(c, None, what="c.grad of a requires_grad=False leaf")


def test_non_leaf_grad_is_none_and_warns(tl):
    x = leaf(tl, [1.0, 2.0])
    hidden = x * 2.0
    (hidden * hidden).sum().backward()
    with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
        got = hidden.grad
    assert got is None, f"non-leaf .grad without retain_grad(): {got!r}, expected None"


def test_retained_non_leaf_grad_accumulates_out_of_place(tl):
    x = leaf(tl, [1.0, 2.0])
    hidden = x * 3.0
    hidden.retain_grad()
    loss = (hidden * hidden).sum()
    loss.backward(retain_graph=True)
    first = hidden.grad
    assert_array_equal(to_numpy(first), np.array([6.0, 12.0]), what="retained hidden.grad")
    loss.backward()
    assert hidden.grad is not first, "a retained non-leaf grad is replaced, not added in place"
    assert_array_equal(to_numpy(first), np.array([6.0, 12.0]), what="the old hidden.grad object")
    assert_array_equal(to_numpy(hidden.grad), np.array([12.0, 24.0]), what="new hidden.grad")


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)], ids=str)
def test_one_element_outputs_need_no_gradient_argument(tl, shape):
    x = leaf(tl, np.full(shape, 3.0))
    (x * 2.0).backward()
    assert_grad(x, np.full(shape, 2.0), what=f"x.grad of x*2 with x of shape {shape}")


def test_gradient_argument_gives_the_vector_jacobian_product(tl):
    # Small integers: A @ g is exact in any summation order.
    a = np.array([[1.0, -2.0, 3.0, 0.5], [4.0, 0.0, -1.0, 2.0], [-3.0, 1.0, 2.0, -0.5]])
    g = np.array([2.0, -1.0, 0.5, 3.0])
    x = leaf(tl, [1.0, 2.0, 3.0])
    out = x @ leaf(tl, a, requires_grad=False)
    out.backward(gradient=tl.tensor(g.tolist(), dtype=tl.float64))
    assert_grad(x, a @ g, what="x.grad of (x @ A).backward(gradient=g), i.e. A @ g")


def test_grad_dtype_is_the_leaf_dtype_in_a_mixed_graph(tl):
    x32, y64 = leaf(tl, [1.5, 2.5], dtype="float32"), leaf(tl, [3.0, 4.0])
    out = x32 * y64
    assert out.dtype == tl.float64, f"float32 * float64 gave {out.dtype}, expected float64"
    out.sum().backward()
    assert x32.grad.dtype == tl.float32, f"x32.grad.dtype = {x32.grad.dtype}, expected float32"
    assert y64.grad.dtype == tl.float64, f"y64.grad.dtype = {y64.grad.dtype}, expected float64"
    assert_grad(x32, np.array([3.0, 4.0], np.float32), what="x32.grad")
    (x32.to(tl.float64) * y64).sum().backward()
    assert_grad(x32, np.array([6.0, 8.0], np.float32), what="x32.grad accumulated from float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensor_from_python_floats_rounds_once_to_the_requested_dtype(tl, dtype):
    values = [0.1, 1.000001, 1 / 3]
    t = tl.tensor(values, dtype=getattr(tl, dtype))
    expected = np.array(values, dtype=dtype)
    assert_array_equal(to_numpy(t), expected, what=f"tensor({values}, dtype={dtype})")


def test_zero_dim_float64_does_not_promote_a_float32_vector(tl):
    def run(engine: Any) -> tuple[Any, Any, Any]:
        s = leaf(engine, 0.1)
        v = leaf(engine, [0.1, 0.2, 0.7], dtype="float32")
        out = s * v
        out.sum().backward()
        return out, s, v

    out, s, v = run(tl)
    assert out.dtype == tl.float32, f"0-dim float64 * float32 vector: {out.dtype}, expected float32"
    assert s.grad.dtype == tl.float64, f"s.grad.dtype = {s.grad.dtype}, expected float64"
    assert v.grad.dtype == tl.float32, f"v.grad.dtype = {v.grad.dtype}, expected float32"
    t_out, t_s, t_v = run(torch)
    assert_array_equal(to_numpy(out), to_numpy(t_out), what="s * v, vs torch")
    assert_array_equal(grad_of(s), grad_of(t_s), what="s.grad, vs torch")
    assert_array_equal(grad_of(v), grad_of(t_v), what="v.grad, vs torch")


# 1 + 1e16 rounds to 1e16: the order of the three contributions decides the result.
CONTRIBUTIONS = (1.0, 1e16, -1e16)


def test_contributions_within_one_backward_are_summed_newest_branch_first(tl):
    x = leaf(tl, 1.0)
    a, b, c = CONTRIBUTIONS
    (x * a + x * b + x * c).backward()
    # Newest first: (c + b) + a = 1; oldest first would give (a + b) + c = 0.
    assert_grad(x, np.float64(1.0), what="x.grad of x*1 + x*1e16 + x*-1e16")


@pytest.mark.parametrize(
    ("order", "expected"),
    [((0, 1, 2), 0.0), ((1, 2, 0), 1.0)],
    ids=["1,1e16,-1e16", "1e16,-1e16,1"],
)
def test_contributions_of_separate_backward_calls_are_summed_in_call_order(tl, order, expected):
    x = leaf(tl, 1.0)
    for i in order:
        (x * CONTRIBUTIONS[i]).backward()
    assert_grad(x, np.float64(expected), what=f"x.grad after calls with {order}")


# --- §3 Indexing gradients ---------------------------------------------------------------------

ROW_MASK = np.array([True, False, True])
MASK = np.array(
    [[True, False, False, True], [False, False, True, False], [True, True, False, False]]
)

INDEX_CASES = [
    pytest.param(1, id="x[1]"),
    pytest.param(-1, id="x[-1]"),
    pytest.param((1, 2), id="x[1,2]"),
    pytest.param((slice(None), -1), id="x[:,-1]"),
    pytest.param(slice(1, 3), id="x[1:3]"),
    pytest.param(slice(None, None, 2), id="x[::2]"),
    pytest.param((slice(None), slice(None, None, 3)), id="x[:,::3]"),
    pytest.param(slice(-2, None), id="x[-2:]"),
    pytest.param(slice(0, 0), id="x[0:0]"),
    pytest.param(slice(5, 10), id="x[5:10]"),
    pytest.param(np.zeros((3, 4), bool), id="x[all-False mask]"),
    pytest.param([0, 0, 2], id="x[[0,0,2]]"),
    pytest.param([-1, 2], id="x[[-1,2]]"),
    pytest.param((slice(None), [0, 2, 2]), id="x[:,[0,2,2]]"),
    pytest.param(([0, 0], [1, 1]), id="x[[0,0],[1,1]]"),
    pytest.param(MASK, id="x[mask]"),
    pytest.param(ROW_MASK, id="x[row mask]"),
    pytest.param((Ellipsis, None), id="x[...,None]"),
    pytest.param(None, id="x[None]"),
]


def engine_index(tl: Any, index: Any) -> Any:
    """The same index for an engine: NumPy bool masks become engine bool tensors."""
    if isinstance(index, np.ndarray):
        return tl.tensor(index.tolist())
    if isinstance(index, tuple):
        return tuple(engine_index(tl, part) for part in index)
    return index


def times_selected(shape: tuple[int, ...], index: Any) -> np.ndarray:
    """How often `x[index]` reads each element of x: the gradient of `x[index].sum()`."""
    positions = np.arange(math.prod(shape)).reshape(shape)
    counts = np.zeros(math.prod(shape))
    np.add.at(counts, positions[index].ravel(), 1.0)
    return counts.reshape(shape)


@pytest.mark.parametrize("index", INDEX_CASES)
def test_indexing_gradient_is_dense_and_scatter_adds_duplicates(tl, index):
    values = np.arange(12.0).reshape(3, 4)
    x = leaf(tl, values)
    picked = x[engine_index(tl, index)]
    assert_array_equal(to_numpy(picked), values[index], what=f"x[{index!r}] (forward)")
    picked.sum().backward()
    assert_grad(x, times_selected(values.shape, index), what=f"x[{index!r}].sum()")


# --- §4 Conventions at kinks and ties ----------------------------------------------------------

INF, NAN = math.inf, math.nan
KINK_CASES = [
    # id, f(tl, x, y), x, y (or None), expected x.grad, expected y.grad
    ("relu at 0 and -0.0", lambda tl, x, y: tl.relu(x), [-1.0, 0.0, -0.0, 2.0], None,
     [0.0, 0.0, 0.0, 1.0], None),
    ("clamp(min=0) at 0", lambda tl, x, y: tl.clamp(x, min=0.0), [-1.0, 0.0, -0.0, 1.0], None,
     [0.0, 1.0, 1.0, 1.0], None),
    ("clamp(-1, 1) at the bounds", lambda tl, x, y: tl.clamp(x, -1.0, 1.0),
     [-2.0, -1.0, 0.0, 1.0, 2.0], None, [0.0, 1.0, 1.0, 1.0, 0.0], None),
    ("clamp(max=1) at 1", lambda tl, x, y: tl.clamp(x, max=1.0), [1.0, 2.0], None,
     [1.0, 0.0], None),
    ("abs at 0", lambda tl, x, y: tl.abs(x), [-2.0, 0.0, -0.0, 3.0], None,
     [-1.0, 0.0, 0.0, 1.0], None),
    ("sqrt at 0", lambda tl, x, y: tl.sqrt(x), [0.0, 4.0], None, [INF, 0.25], None),
    ("log at 0", lambda tl, x, y: tl.log(x), [0.0, 2.0], None, [INF, 0.5], None),
    ("max() with ties", lambda tl, x, y: x.max(), [1.0, 3.0, 3.0, 2.0], None,
     [0.0, 0.5, 0.5, 0.0], None),
    ("max() with three ties", lambda tl, x, y: x.max(), [3.0, 3.0, 1.0, 3.0], None,
     [1 / 3, 1 / 3, 0.0, 1 / 3], None),
    ("min() with ties", lambda tl, x, y: x.min(), [1.0, 3.0, 1.0, 2.0], None,
     [0.5, 0.0, 0.5, 0.0], None),
    ("amax() with ties", lambda tl, x, y: tl.amax(x), [[1.0, 3.0], [3.0, 2.0]], None,
     [[0.0, 0.5], [0.5, 0.0]], None),
    ("amin() with ties", lambda tl, x, y: x.amin(), [[1.0, 3.0], [1.0, 1.0]], None,
     [[1 / 3, 0.0], [1 / 3, 1 / 3]], None),
    ("amax(dim) with ties", lambda tl, x, y: tl.amax(x, dim=1), [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]],
     None, [[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]], None),
    ("amin(dim) with ties", lambda tl, x, y: x.amin(dim=0), [[1.0, 3.0], [1.0, 2.0]], None,
     [[0.5, 0.0], [0.5, 1.0]], None),
    ("max(dim).values with ties: first", lambda tl, x, y: x.max(dim=1).values,
     [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], None, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], None),
    ("min(dim).values with ties: first", lambda tl, x, y: x.min(1).values,
     [[1.0, 3.0, 1.0], [2.0, 0.0, 0.0]], None, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], None),
    ("max(dim=0).values with ties: first", lambda tl, x, y: x.max(0).values,
     [[1.0, 3.0], [1.0, 3.0]], None, [[1.0, 1.0], [0.0, 0.0]], None),
    ("maximum with ties", lambda tl, x, y: tl.maximum(x, y), [1.0, 2.0, 3.0], [1.0, 0.0, 3.0],
     [0.5, 1.0, 0.5], [0.5, 0.0, 0.5]),
    ("minimum with ties", lambda tl, x, y: tl.minimum(x, y), [1.0, 2.0, 3.0], [1.0, 0.0, 3.0],
     [0.5, 0.0, 0.5], [0.5, 1.0, 0.5]),
    ("where picks one branch", lambda tl, x, y: tl.where(x > 1.5, x, y), [1.0, 2.0, 3.0],
     [4.0, 5.0, 6.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]),
    ("where: 0 * inf of the other branch is nan", lambda tl, x, y: tl.where(x > 0, tl.sqrt(x), x),
     [0.0, 4.0], None, [NAN, 0.25], None),
    ("sign", lambda tl, x, y: tl.sign(x), [-1.5, 0.0, 2.5], None, [0.0, 0.0, 0.0], None),
    ("round", lambda tl, x, y: tl.round(x), [-1.5, 0.5, 2.5], None, [0.0, 0.0, 0.0], None),
    ("floor", lambda tl, x, y: tl.floor(x), [-1.5, 0.0, 2.5], None, [0.0, 0.0, 0.0], None),
    ("ceil", lambda tl, x, y: tl.ceil(x), [-1.5, 0.0, 2.5], None, [0.0, 0.0, 0.0], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("f", "x_values", "y_values", "x_grad", "y_grad"),
    [pytest.param(*case[1:], id=case[0]) for case in KINK_CASES],
)
def test_gradient_convention_at_kinks_and_ties(tl, f, x_values, y_values, x_grad, y_grad):
    x = leaf(tl, x_values)
    y = None if y_values is None else leaf(tl, y_values)
    f(tl, x, y).sum().backward()
    assert_grad(x, np.array(x_grad), what=f"x.grad at x={x_values}, y={y_values}")
    if y is not None:
        assert_grad(y, np.array(y_grad), what=f"y.grad at x={x_values}, y={y_values}")


# --- §5 zero_grad ------------------------------------------------------------------------------


def params_with_grads(tl: Any) -> tuple[Any, Any, Any]:
    p, q, other = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0]), leaf(tl, [4.0, 5.0])
    (p * 2.0).sum().backward()
    (other * 3.0).sum().backward()
    return p, q, other  # q.grad stays None


def test_zero_grad_sets_grads_to_none_by_default(tl):
    p, q, other = params_with_grads(tl)
    tl.optim.SGD([p, q], lr=0.1).zero_grad()
    assert_grad(p, None, what="p.grad after zero_grad()")
    assert_grad(q, None, what="q.grad after zero_grad()")
    assert_grad(other, np.array([3.0, 3.0]), what="a tensor the optimizer does not hold")


def test_zero_grad_without_set_to_none_zeroes_in_place(tl):
    p, q, other = params_with_grads(tl)
    held = p.grad
    tl.optim.SGD([p, q], lr=0.1).zero_grad(set_to_none=False)
    assert p.grad is held, "zero_grad(set_to_none=False) must keep the grad object"
    assert_array_equal(to_numpy(held), np.zeros(2), what="the held grad after zero_grad(False)")
    assert_grad(q, None, what="a None grad stays None under zero_grad(set_to_none=False)")
    assert_grad(other, np.array([3.0, 3.0]), what="a tensor the optimizer does not hold")


def test_zero_grad_without_set_to_none_detaches_a_grad_with_history(tl):
    p, source = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, 4.0])
    p.grad = source * 2.0
    held = p.grad
    tl.optim.SGD([p], lr=0.1).zero_grad(set_to_none=False)
    assert p.grad is held, "zero_grad(set_to_none=False) must keep the grad object"
    assert held.grad_fn is None, f"the zeroed grad still has grad_fn {held.grad_fn!r}"
    assert not held.requires_grad, "the zeroed grad must not require grad"
    assert_array_equal(to_numpy(held), np.zeros(2), what="the zeroed grad")


# --- backward(create_graph=True): which grads carry history ------------------------------------

MODULE_LEAVES = {
    "x": [[0.5, -1.25, 2.0], [1.0, 0.25, -0.75]],
    "w": [[0.5, -1.0, 1.5], [0.25, 2.0, -0.5]],
    "b": [0.125, -0.25],
    "y": [[1.5, 0.25, -1.0], [2.0, -0.5, 0.75]],
}

CREATE_GRAPH_CASES = [
    # id, f(tl, **leaves), the leaves that require grad, those whose grad requires grad
    ("linear(x, w, b)", lambda tl, x, w, b: tl.nn.functional.linear(x, w, b), "xwb", "xw"),
    ("linear(x, w, b), x constant", lambda tl, x, w, b: tl.nn.functional.linear(x, w, b),
     "wb", ""),
    ("linear(x, w)", lambda tl, x, w: tl.nn.functional.linear(x, w), "xw", "xw"),
    ("mse_loss(x, y), y constant", lambda tl, x, y: tl.nn.functional.mse_loss(x, y), "x", "x"),
    ("mse_loss(y, x, sum), y constant",
     lambda tl, x, y: tl.nn.functional.mse_loss(y, x, reduction="sum"), "x", "x"),
    ("mse_loss(x, y)", lambda tl, x, y: tl.nn.functional.mse_loss(x, y), "xy", "xy"),
    ("cross_entropy(x, target)",
     lambda tl, x: tl.nn.functional.cross_entropy(x, tl.tensor([2, 0])), "x", "x"),
    ("nll_loss(x, target)", lambda tl, x: tl.nn.functional.nll_loss(x, tl.tensor([1, 1])), "x", "x"),
    ("log_softmax(x)", lambda tl, x: tl.nn.functional.log_softmax(x, dim=1), "x", "x"),
    ("nn.Linear then mse_loss: w, b params",
     lambda tl, x, w, b, y: tl.nn.functional.mse_loss(tl.nn.functional.linear(x, w, b), y[:, :2]),
     "wb", "wb"),
    ("(x + 1) ** 2.0", lambda tl, x: (x + 1.0) ** 2.0, "x", "x"),
    # pow's backward at exponent 0 is zeros_like(self): a constant, with no history
    ("(x + 1) ** 0.0", lambda tl, x: (x + 1.0) ** 0.0, "x", ""),
]  # fmt: skip


@pytest.mark.filterwarnings(r"ignore:Using backward\(\) with create_graph=True:UserWarning")
@pytest.mark.parametrize(
    ("f", "requiring", "with_history"),
    [pytest.param(*case[1:], id=case[0]) for case in CREATE_GRAPH_CASES],
)
def test_create_graph_grads_require_grad_where_torchs_do(tl, f, requiring, with_history):
    names = tuple(inspect.signature(f).parameters)[1:]
    leaves = {n: leaf(tl, MODULE_LEAVES[n], requires_grad=n in requiring) for n in names}
    f(tl, **leaves).sum().backward(create_graph=True)
    for name, t in leaves.items():
        if name not in requiring:
            assert t.grad is None, f"{name} does not require grad but got a grad"
            continue
        assert t.grad.requires_grad == (name in with_history), (
            f"{engine_name(tl)}: {name}.grad.requires_grad is {t.grad.requires_grad}"
        )


# --- §6 SGD ------------------------------------------------------------------------------------

P0 = [0.5, -1.25, 2.0]
Q0 = [[1.5, -0.5], [0.25, 3.0]]
TARGET_P = [1.0, -2.0, 0.5]
TARGET_Q = [[0.5, 1.0], [-1.5, 2.0]]
STEPS = 5
# torch's single-tensor SGD uses add(alpha=), a fused multiply-add on AVX2/AVX512 CPUs, while
# NumPy rounds the product first: the same algorithm then differs by a few ulps per step.
RTOL = 1e-12


def sgd_loss(tl: Any, p: Any, q: Any) -> Any:
    """A loss whose gradients are exact: d/dp = p + TARGET_P, d/dq = TARGET_Q."""
    target_p = leaf(tl, TARGET_P, requires_grad=False)
    target_q = leaf(tl, TARGET_Q, requires_grad=False)
    return (p * target_p).sum() + (p * p).sum() * 0.5 + (q * target_q).sum()


def oracle_step(
    p, g, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False
):
    """torch-semantics §6, one parameter, in NumPy."""
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


SGD_CONFIGS = [
    pytest.param({"lr": 0.1}, id="plain"),
    pytest.param({"lr": 0.1, "momentum": 0.9}, id="momentum"),
    pytest.param({"lr": 0.05, "momentum": 0.8, "dampening": 0.3}, id="dampening"),
    pytest.param({"lr": 0.05, "momentum": 0.9, "nesterov": True}, id="nesterov"),
    pytest.param({"lr": 0.1, "weight_decay": 0.2}, id="weight_decay"),
    pytest.param({"lr": 0.1, "maximize": True}, id="maximize"),
    pytest.param(
        {"lr": 0.03, "momentum": 0.7, "dampening": 0.4, "weight_decay": 0.1, "maximize": True},
        id="all but nesterov",
    ),
    pytest.param(
        {"lr": 0.03, "momentum": 1.5, "weight_decay": 0.3, "nesterov": True, "maximize": True},
        id="nesterov+wd+maximize, momentum>1",
    ),
]


def run_sgd(tl: Any, config: dict, steps: int = STEPS) -> list[list[np.ndarray]]:
    p, q = leaf(tl, P0), leaf(tl, Q0)
    opt = tl.optim.SGD([p, q], **config)
    trace = []
    for _ in range(steps):
        opt.zero_grad()
        sgd_loss(tl, p, q).backward()
        opt.step()
        trace.append([to_numpy(p), to_numpy(q)])
    return trace


def run_oracle(config: dict, steps: int = STEPS) -> list[list[np.ndarray]]:
    p, q = np.array(P0), np.array(Q0)
    bufs: list[Any] = [None, None]
    trace = []
    for _ in range(steps):
        grads = [p + np.array(TARGET_P), np.array(TARGET_Q)]
        (p, bufs[0]), (q, bufs[1]) = (
            oracle_step(value, g, buf, **config)
            for value, g, buf in zip((p, q), grads, bufs, strict=True)
        )
        trace.append([p.copy(), q.copy()])
    return trace


def assert_traces_close(actual, expected, *, what: str) -> None:
    __tracebackhide__ = True
    for step, (got_params, want_params) in enumerate(zip(actual, expected, strict=True), 1):
        for name, got, want in zip("pq", got_params, want_params, strict=True):
            np.testing.assert_allclose(
                got, want, rtol=RTOL, atol=0, err_msg=f"{what}: {name} after step {step}"
            )


@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sgd_multi_step_matches_torch_and_the_written_algorithm(tl, config):
    trace = run_sgd(tl, config)
    assert not np.array_equal(trace[-1][0], P0), "p did not move: the test exercises nothing"
    assert_traces_close(trace, run_oracle(config), what=f"SGD({config}) vs the §6 algorithm")
    assert_traces_close(trace, run_sgd(torch, config), what=f"SGD({config}) vs torch")


GROUPS = [
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1, "maximize": True},
]
NEW_LR_OF_GROUP_1 = 0.2  # set before the third step


def run_two_groups(tl: Any) -> list[list[np.ndarray]]:
    p, q = leaf(tl, P0), leaf(tl, Q0)
    opt = tl.optim.SGD([{"params": [p], **GROUPS[0]}, {"params": [q], **GROUPS[1]}], lr=0.01)
    trace = []
    for step in range(STEPS):
        if step == 2:
            opt.param_groups[1]["lr"] = NEW_LR_OF_GROUP_1
        opt.zero_grad()
        sgd_loss(tl, p, q).backward()
        opt.step()
        trace.append([to_numpy(p), to_numpy(q)])
    return trace


def run_two_groups_oracle() -> list[list[np.ndarray]]:
    p, q = np.array(P0), np.array(Q0)
    bufs: list[Any] = [None, None]
    groups = [dict(group) for group in GROUPS]
    trace = []
    for step in range(STEPS):
        if step == 2:
            groups[1]["lr"] = NEW_LR_OF_GROUP_1
        p, bufs[0] = oracle_step(p, p + np.array(TARGET_P), bufs[0], **groups[0])
        q, bufs[1] = oracle_step(q, np.array(TARGET_Q), bufs[1], **groups[1])
        trace.append([p.copy(), q.copy()])
    return trace


def test_sgd_param_groups_use_their_own_hyperparameters_and_lr_changes_take_effect(tl):
    trace = run_two_groups(tl)
    assert_traces_close(trace, run_two_groups_oracle(), what="two groups vs the §6 algorithm")
    assert_traces_close(trace, run_two_groups(torch), what="two groups vs torch")


def momentum_buffer(opt: Any, p: Any) -> np.ndarray:
    return to_numpy(opt.state[p]["momentum_buffer"])


def test_sgd_skips_a_param_whose_grad_is_none(tl):
    p, q, never = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, -1.0]), leaf(tl, [5.0])
    opt = tl.optim.SGD([p, q, never], lr=0.1, momentum=0.9, weight_decay=0.1)
    (p * p + q * 2.0).sum().backward()
    opt.step()
    assert never not in opt.state, "a param that never had a grad must get no state entry"
    q_before, buf_before = to_numpy(q), momentum_buffer(opt, q)

    opt.zero_grad()
    (p * p).sum().backward()  # q.grad stays None
    opt.step()
    assert_array_equal(to_numpy(q), q_before, what="q after a step with q.grad None")
    assert_array_equal(momentum_buffer(opt, q), buf_before, what="q's buffer across the skip")

    opt.zero_grad()
    (q * 2.0).sum().backward()
    opt.step()
    expected_q, _ = oracle_step(
        q_before, np.array([2.0, 2.0]), buf_before, lr=0.1, momentum=0.9, weight_decay=0.1
    )
    np.testing.assert_allclose(to_numpy(q), expected_q, rtol=RTOL, err_msg="q after resuming")
    assert never not in opt.state, "a param that never had a grad must get no state entry"
    assert to_numpy(never).tolist() == [5.0], "a param that never had a grad must not move"


@pytest.mark.parametrize(
    ("set_to_none", "moves"), [(True, False), (False, True)], ids=["set_to_none", "zeros"]
)
def test_sgd_steps_on_a_zero_grad_but_not_on_none(tl, set_to_none, moves):
    p = leaf(tl, [1.0, -2.0])
    opt = tl.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    (p * 3.0).sum().backward()
    opt.step()
    before = to_numpy(p)
    opt.zero_grad(set_to_none=set_to_none)
    opt.step()
    changed = not np.array_equal(to_numpy(p), before)
    assert changed == moves, (
        f"after zero_grad(set_to_none={set_to_none}); step(): p changed={changed}, expected {moves}"
    )


def test_sgd_without_momentum_keeps_no_state(tl):
    p = leaf(tl, [1.0, 2.0])
    opt = tl.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    assert p not in opt.state, "SGD without momentum must create no state entry"


def test_sgd_step_returns_the_closure_loss_and_none_without_closure(tl):
    p = leaf(tl, [1.0, 2.0])
    opt = tl.optim.SGD([p], lr=0.1)
    losses = []

    def closure() -> Any:
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        losses.append(loss)
        return loss

    returned = opt.step(closure)
    assert len(losses) == 1, f"step(closure) called the closure {len(losses)} times, expected 1"
    assert returned is losses[0], f"step(closure) returned {returned!r}, not the closure's loss"
    assert_array_equal(to_numpy(p), np.array([0.8, 1.6]), what="p after step(closure)")
    assert opt.step() is None, "step() without a closure must return None"


def test_sgd_state_is_a_defaultdict(tl):
    p = leaf(tl, [1.0])
    opt = tl.optim.SGD([p], lr=0.1, momentum=0.9)
    assert p not in opt.state, "no state before the first step"
    assert opt.state[p] == {}, f"opt.state[p] read before any step: {opt.state[p]!r}, expected {{}}"
    assert p in opt.state, "reading opt.state[p] must insert an empty entry (defaultdict)"


def test_sgd_step_keeps_params_leaves_and_leaves_grad_alone(tl):
    p = leaf(tl, [1.0, 2.0])
    opt = tl.optim.SGD([p], lr=0.1, weight_decay=0.5, momentum=0.9)
    (p * 3.0).sum().backward()
    held = p.grad
    opt.step()
    assert p.is_leaf, "p must stay a leaf"
    assert p.requires_grad, "p must keep requires_grad"
    assert p.grad is held, "step() must not replace p.grad"
    assert_grad(p, np.array([3.0, 3.0]), what="p.grad after step() (weight decay is out of place)")


# --- §8 no_grad and detach ---------------------------------------------------------------------


def test_results_under_no_grad_are_constants(tl):
    x = leaf(tl, [1.0, 2.0])
    with tl.no_grad():
        doubled = x * 2.0
    assert not doubled.requires_grad, "a result computed under no_grad must not require grad"
    assert doubled.grad_fn is None, f"a result under no_grad has grad_fn {doubled.grad_fn!r}"
    assert doubled.is_leaf, "a result computed under no_grad is a leaf"
    after = x * 2.0
    assert after.requires_grad, "grad mode must be back on after the no_grad block"
    (doubled * x).sum().backward()
    assert_grad(x, np.array([2.0, 4.0]), what="x.grad of (c * x).sum(), c = x*2 under no_grad")


def test_backward_inside_no_grad_still_works(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    with tl.no_grad():
        loss.backward()
    assert_grad(x, np.array([2.0, 4.0]), what="x.grad of a backward called inside no_grad")


def test_detach_shares_storage_and_drops_history(tl):
    x = leaf(tl, [1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad, "x.detach() must not require grad"
    assert d.grad_fn is None, f"x.detach().grad_fn = {d.grad_fn!r}, expected None"
    d.add_(1.0)
    assert_array_equal(to_numpy(x), np.array([2.0, 3.0]), what="x after x.detach().add_(1)")


def test_detach_shares_the_version_counter(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    x.detach().add_(1.0)
    with pytest.raises(RuntimeError, match=MODIFIED_INPLACE):
        loss.backward()


def test_data_bypasses_the_version_counter(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    x.data.add_(1.0)
    loss.backward()
    assert_grad(x, np.array([4.0, 6.0]), what=f"{engine_name(tl)}: x.grad uses the changed x")
