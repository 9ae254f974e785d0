"""What each op saves for backward, seen through torch's public behaviour (torch-semantics §1, §8).

An op that saves a tensor makes a second `backward()` without `retain_graph` raise, and makes a
retained graph raise once a saved tensor is changed in place. Which tensors are saved depends on
the inputs (`x*y` saves `y` for `x`'s gradient only when `x` requires grad; `exp` saves its
result, not its input), so every row of the table names the exact inputs, and the in-place test
is run once per leaf.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from ref_cases import (
    MODIFIED_INPLACE,
    OP_NAMES,
    SECOND_BACKWARD,
    assert_array_equal,
    assert_grad,
    engine_fixture,
    grad_of,
    leaf,
)

tl_fixture = engine_fixture

# The leaves a case may use, by parameter name. Positive and pairwise distinct, so that log,
# sqrt and pow are defined and max/min have no ties; `x += 0.25` keeps all of that true.
LEAF_VALUES = {
    "x": [[0.5, 1.25, 2.0], [0.75, 1.5, 2.5]],
    "y": [[1.5, 0.25, 1.75], [2.25, 0.625, 1.0]],
    "w": [[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]],
    "v": [1.0, -2.0, 0.5],
    "b": [0.5, -0.25],
}


@dataclass(frozen=True)
class SavedCase:
    """`build(tl, *leaves)` with leaves named by its parameters; `requires_grad` names those
    that require grad (default: all). `frees`: a second plain backward raises. `saved`: the
    leaves whose in-place change makes a retained graph's next backward raise."""

    id: str
    op: str
    build: Callable[..., Any]
    frees: bool
    saved: str = ""
    requires_grad: str | None = None

    @property
    def leaf_names(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.build).parameters)[1:]

    def make_leaves(self, tl: Any) -> dict[str, Any]:
        wanted = self.leaf_names if self.requires_grad is None else tuple(self.requires_grad)
        return {
            name: leaf(tl, LEAF_VALUES[name], requires_grad=name in wanted)
            for name in self.leaf_names
        }

    def loss(self, tl: Any, leaves: dict[str, Any]) -> Any:
        """The case's output summed to a scalar (`sum` saves nothing, so it decides nothing)."""
        return self.build(tl, *leaves.values()).sum()


def idx(tl: Any, values: list[int]) -> Any:
    return tl.tensor(values)


C = SavedCase
SAVED_CASES = [
    # Products keep the other factor (a Python scalar as a 0-dim tensor).
    C("x*y", "mul", lambda tl, x, y: x * y, frees=True, saved="xy"),
    C("x*y, only x requires grad", "mul", lambda tl, x, y: x * y, True, "y", requires_grad="x"),
    C("x*y, only y requires grad", "mul", lambda tl, x, y: x * y, True, "x", requires_grad="y"),
    C("x*x", "mul", lambda tl, x: x * x, frees=True, saved="x"),
    C("x*2.0", "mul", lambda tl, x: x * 2.0, frees=True),
    C("2.0*x", "mul", lambda tl, x: 2.0 * x, frees=True),
    C("x.sum()*2", "mul", lambda tl, x: x.sum() * 2, frees=True),
    C("x/y", "div", lambda tl, x, y: x / y, frees=True, saved="xy"),
    C("x/y, only x requires grad", "div", lambda tl, x, y: x / y, True, "y", requires_grad="x"),
    C("x/y, only y requires grad", "div", lambda tl, x, y: x / y, True, "xy", requires_grad="y"),
    C("x/2.0", "div", lambda tl, x: x / 2.0, frees=True),
    C("2.0/x", "div", lambda tl, x: 2.0 / x, frees=True),  # reciprocal keeps its result
    # Sums and differences keep nothing, also when they broadcast.
    C("x+y", "add", lambda tl, x, y: x + y, frees=False),
    C("x+y, only x requires grad", "add", lambda tl, x, y: x + y, False, requires_grad="x"),
    C("x+v broadcast", "add", lambda tl, x, v: x + v, frees=False),
    C("x+2.0", "add", lambda tl, x: x + 2.0, frees=False),
    C("2.0+x", "add", lambda tl, x: 2.0 + x, frees=False),
    C("x-y", "sub", lambda tl, x, y: x - y, frees=False),
    C("x-2.0", "sub", lambda tl, x: x - 2.0, frees=False),
    C("2.0-x", "sub", lambda tl, x: 2.0 - x, frees=False),
    C("-x", "neg", lambda tl, x: -x, frees=False),
    # Powers.
    C("x**2", "pow", lambda tl, x: x**2, frees=True, saved="x"),
    C("x**3", "pow", lambda tl, x: x**3, frees=True, saved="x"),
    C("x.pow(0.5)", "pow", lambda tl, x: x.pow(0.5), frees=True, saved="x"),
    C("pow(x, 2)", "pow", lambda tl, x: tl.pow(x, 2), frees=True, saved="x"),
    C("x**y", "pow", lambda tl, x, y: x**y, frees=True, saved="xy"),
    C("x**y, only x requires grad", "pow", lambda tl, x, y: x**y, True, "xy", requires_grad="x"),
    C("x**y, only y requires grad", "pow", lambda tl, x, y: x**y, True, "xy", requires_grad="y"),
    C("2.0**x", "pow", lambda tl, x: 2.0**x, frees=True, saved="x"),
    C("square", "square", lambda tl, x: x.square(), frees=True, saved="x"),
    # Elementwise functions keep their input or their result.
    C("exp", "exp", lambda tl, x: tl.exp(x), frees=True),
    C("log", "log", lambda tl, x: tl.log(x), frees=True, saved="x"),
    C("sqrt", "sqrt", lambda tl, x: tl.sqrt(x), frees=True),
    C("sin", "sin", lambda tl, x: tl.sin(x), frees=True, saved="x"),
    C("cos", "cos", lambda tl, x: tl.cos(x), frees=True, saved="x"),
    C("tanh", "tanh", lambda tl, x: tl.tanh(x), frees=True),
    C("sigmoid", "sigmoid", lambda tl, x: tl.sigmoid(x), frees=True),
    C("relu", "relu", lambda tl, x: tl.relu(x - 1.0), frees=True),
    C("abs", "abs", lambda tl, x: tl.abs(x - 1.0), frees=True),
    C("clamp(min=1)", "clamp", lambda tl, x: tl.clamp(x, min=1.0), frees=True, saved="x"),
    C("clamp(1, 2)", "clamp", lambda tl, x: tl.clamp(x, 1.0, 2.0), frees=True, saved="x"),
    C("clamp(max=2)", "clamp", lambda tl, x: x.clamp(max=2.0), frees=True, saved="x"),
    # Reductions.
    C("sum", "sum", lambda tl, x: x.sum(), frees=False),
    C("sum(dim)", "sum", lambda tl, x: x.sum(dim=1), frees=False),
    C("sum(dim, keepdim)", "sum", lambda tl, x: x.sum(0, keepdim=True), frees=False),
    C("mean", "mean", lambda tl, x: x.mean(), frees=False),
    C("mean(dim)", "mean", lambda tl, x: x.mean(dim=0), frees=False),
    C("mean(dim, keepdim)", "mean", lambda tl, x: x.mean(1, keepdim=True), frees=False),
    C("softmax", "softmax", lambda tl, x: tl.softmax(x, dim=1) * 3.0, frees=True),
    C("logsumexp", "logsumexp", lambda tl, x: tl.logsumexp(x, dim=1), frees=True, saved="x"),
    # Matrix products keep the operands the other's gradient needs.
    C("x@w", "matmul", lambda tl, x, w: x @ w, frees=True, saved="xw"),
    C("x@w, w constant", "matmul", lambda tl, x, w: x @ w, True, "w", requires_grad="x"),
    C("x@w, x constant", "matmul", lambda tl, x, w: x @ w, True, "x", requires_grad="w"),
    C("x@v", "matmul", lambda tl, x, v: x @ v, frees=True, saved="xv"),
    C("v@w", "matmul", lambda tl, v, w: v @ w, frees=True, saved="vw"),
    C("v@v", "matmul", lambda tl, v: v @ v, frees=True, saved="v"),
    C(
        "linear(x, y, b)",
        "linear",
        lambda tl, x, y, b: tl.nn.functional.linear(x, y, b),
        True,
        "xy",
    ),
    C("linear(x, y)", "linear", lambda tl, x, y: tl.nn.functional.linear(x, y), True, "xy"),
    C("linear(v, y), y constant", "linear", lambda tl, v, y: tl.nn.functional.linear(v, y),
      True, "y", requires_grad="v"),
    C("linear(x, y, b), x constant", "linear",
      lambda tl, x, y, b: tl.nn.functional.linear(x, y, b), True, "x", requires_grad="yb"),
    # Losses: mse_loss keeps both operands whichever requires grad; cross_entropy keeps
    # log_softmax's result and nll_loss's input (that result), the target and the total weight.
    C("mse_loss(x, y)", "mse_loss", lambda tl, x, y: tl.nn.functional.mse_loss(x, y), True, "xy"),
    C("mse_loss(x, y), y constant", "mse_loss",
      lambda tl, x, y: tl.nn.functional.mse_loss(x, y), True, "xy", requires_grad="x"),
    C("mse_loss(x, y, sum), x constant", "mse_loss",
      lambda tl, x, y: tl.nn.functional.mse_loss(x, y, reduction="sum"), True, "xy",
      requires_grad="y"),
    C("log_softmax", "log_softmax", lambda tl, x: tl.nn.functional.log_softmax(x, dim=1), True),
    C("nll_loss", "nll_loss", lambda tl, x: tl.nn.functional.nll_loss(x, idx(tl, [2, 0])),
      True, "x"),
    C("cross_entropy", "cross_entropy",
      lambda tl, x: tl.nn.functional.cross_entropy(x, idx(tl, [2, 0])), True),
    C("cross_entropy (3,), sum", "cross_entropy",
      lambda tl, v: tl.nn.functional.cross_entropy(v, tl.tensor(1), reduction="sum"), True),
    # Views and copies keep sizes only.
    C("reshape", "reshape", lambda tl, x: x.reshape(3, 2), frees=False),
    C("view", "view", lambda tl, x: x.view(6), frees=False),
    C("transpose", "transpose", lambda tl, x: x.transpose(0, 1), frees=False),
    C(".T", "T", lambda tl, x: x.T, frees=False),
    C("expand", "expand", lambda tl, v: v.expand(2, 3), frees=False),
    C("unsqueeze", "unsqueeze", lambda tl, x: x.unsqueeze(1), frees=False),
    C("x[..., None]", "getitem", lambda tl, x: x[..., None], frees=False),
    C("clone", "clone", lambda tl, x: x.clone(), frees=False),
    C(".to(float32)", "to", lambda tl, x: x.to(tl.float32), frees=False),
    C("cat", "cat", lambda tl, x, y: tl.cat([x, y], dim=1), frees=False),
    C("stack", "stack", lambda tl, x, y: tl.stack([x, y]), frees=False),
    # Basic indexing keeps sizes; advanced indexing keeps the index tensors.
    C("x[1]", "getitem", lambda tl, x: x[1], frees=False),
    C("x[-1]", "getitem", lambda tl, x: x[-1], frees=False),
    C("x[1, 2]", "getitem", lambda tl, x: x[1, 2], frees=False),
    C("x[:, -1]", "getitem", lambda tl, x: x[:, -1], frees=False),
    C("x[:, 1:3]", "getitem", lambda tl, x: x[:, 1:3], frees=False),
    C("x[:, ::2]", "getitem", lambda tl, x: x[:, ::2], frees=False),
    C("x[0:0]", "getitem", lambda tl, x: x[0:0], frees=False),
    C("x[[0, 0, 1]]", "getitem", lambda tl, x: x[[0, 0, 1]], frees=True),
    C("x[[-1, 1]]", "getitem", lambda tl, x: x[[-1, 1]], frees=True),
    C("x[:, [0, 2, 2]]", "getitem", lambda tl, x: x[:, [0, 2, 2]], frees=True),
    C("x[[0, 0], [1, 1]]", "getitem", lambda tl, x: x[[0, 0], [1, 1]], frees=True),
    C("x[mask]", "getitem", lambda tl, x: x[x > 1.0], frees=True),
    C(
        "index_select",
        "index_select",
        lambda tl, x: tl.index_select(x, 1, idx(tl, [2, 0, 2])),
        True,
    ),
    C("gather", "gather", lambda tl, x: tl.gather(x, 1, idx(tl, [[0, 0], [2, 1]])), True, "x"),
    # Selections keep the condition, the inputs or the argmax indices.
    C("where", "where", lambda tl, x, y: tl.where(x > 1.0, x, y), frees=True),
    C("maximum", "maximum", lambda tl, x, y: tl.maximum(x, y), frees=True, saved="xy"),
    C("minimum", "minimum", lambda tl, x, y: tl.minimum(x, y), frees=True, saved="xy"),
    C("max()", "max", lambda tl, x: x.max(), frees=True, saved="x"),
    C("max(dim)", "max", lambda tl, x: x.max(dim=1).values, frees=True),
    C("min()", "min", lambda tl, x: x.min(), frees=True, saved="x"),
    C("min(dim)", "min", lambda tl, x: x.min(0).values, frees=True),
    C("amax()", "amax", lambda tl, x: x.amax(), frees=True, saved="x"),
    C("amax(dim)", "amax", lambda tl, x: tl.amax(x, dim=1), frees=True, saved="x"),
    C("amin()", "amin", lambda tl, x: x.amin(), frees=True, saved="x"),
    C("amin(dim)", "amin", lambda tl, x: tl.amin(x, dim=0), frees=True, saved="x"),
]

INPLACE_CASES = [
    pytest.param(case, name, id=f"{case.id} | change {name}")
    for case in SAVED_CASES
    for name in case.leaf_names
]


def first_backward(tl: Any, case: SavedCase, **kwargs: Any) -> tuple[dict, Any, dict]:
    leaves = case.make_leaves(tl)
    loss = case.loss(tl, leaves)
    loss.backward(**kwargs)
    grads = {name: grad_of(t) for name, t in leaves.items()}
    return leaves, loss, grads


def assert_grads_are(leaves: dict, expected: dict, *, what: str) -> None:
    __tracebackhide__ = True
    for name, t in leaves.items():
        assert_grad(t, expected[name], what=f"{name} ({what})")


def scaled(grads: dict, factor: int) -> dict:
    return {name: None if g is None else factor * g for name, g in grads.items()}


def test_case_tables_cover_every_op():
    missing = sorted(set(OP_NAMES) - {case.op for case in SAVED_CASES})
    assert not missing, f"ops with no saved-tensor case: {missing}"
    unknown = sorted({case.op for case in SAVED_CASES} - set(OP_NAMES))
    assert not unknown, f"cases tagged with ops that OP_NAMES does not list: {unknown}"


@pytest.mark.parametrize("case", SAVED_CASES, ids=lambda c: c.id)
def test_second_backward_raises_exactly_when_a_tensor_was_saved(tl, case):
    leaves, loss, first = first_backward(tl, case)
    if case.frees:
        with pytest.raises(RuntimeError, match=SECOND_BACKWARD):
            loss.backward()
        assert_grads_are(leaves, first, what=f"{case.id}: unchanged after the failed 2nd backward")
    else:
        loss.backward()
        assert_grads_are(leaves, scaled(first, 2), what=f"{case.id}: 2nd backward accumulates")


@pytest.mark.parametrize("case", SAVED_CASES, ids=lambda c: c.id)
def test_retain_graph_allows_exactly_one_more_plain_backward(tl, case):
    leaves, loss, first = first_backward(tl, case, retain_graph=True)
    loss.backward()
    assert_grads_are(leaves, scaled(first, 2), what=f"{case.id}: retain_graph then backward")
    if case.frees:
        with pytest.raises(RuntimeError, match=SECOND_BACKWARD):
            loss.backward()
        assert_grads_are(leaves, scaled(first, 2), what=f"{case.id}: after the failed 3rd call")
    else:
        loss.backward()
        assert_grads_are(leaves, scaled(first, 3), what=f"{case.id}: 3rd backward accumulates")


@pytest.mark.parametrize(("case", "changed"), INPLACE_CASES)
def test_inplace_change_of_a_leaf_breaks_a_retained_graph_exactly_when_it_was_saved(
    tl, case, changed
):
    leaves, loss, _ = first_backward(tl, case, retain_graph=True)
    with tl.no_grad():
        leaves[changed] += 0.25
    if changed in case.saved:
        with pytest.raises(RuntimeError, match=MODIFIED_INPLACE):
            loss.backward()
    else:
        loss.backward()


# --- Partial accumulation before a failure, and the order of retain_graph -------------------


def run_branches(tl: Any, *, product_first: bool) -> dict[str, Any]:
    x, y, z = (leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, 4.0]), leaf(tl, [5.0, 6.0]))
    if product_first:
        m = (x * y).sum()
        zs = z.sum()
    else:
        zs = z.sum()
        m = (x * y).sum()
    loss = zs + m
    loss.backward()
    with pytest.raises(RuntimeError, match=SECOND_BACKWARD):
        loss.backward()
    return {"x": grad_of(x), "y": grad_of(y), "z": grad_of(z)}


def test_failed_second_backward_has_already_accumulated_newer_save_free_branches(tl):
    grads = run_branches(tl, product_first=True)
    # zs was created after m, so its save-free branch runs (and accumulates) before m fails.
    assert_array_equal(grads["z"], np.array([2.0, 2.0]), what="z.grad (zs newer than m)")
    assert_array_equal(grads["x"], np.array([3.0, 4.0]), what="x.grad (unchanged)")
    assert_array_equal(grads["y"], np.array([1.0, 2.0]), what="y.grad (unchanged)")


def test_failed_second_backward_accumulates_nothing_when_the_saving_branch_is_newer(tl):
    grads = run_branches(tl, product_first=False)
    assert_array_equal(grads["z"], np.array([1.0, 1.0]), what="z.grad (m newer than zs)")
    assert_array_equal(grads["x"], np.array([3.0, 4.0]), what="x.grad (unchanged)")
    assert_array_equal(grads["y"], np.array([1.0, 2.0]), what="y.grad (unchanged)")


def test_retain_graph_after_a_freeing_backward_is_too_late(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=SECOND_BACKWARD):
        loss.backward(retain_graph=True)
    assert_grad(x, np.array([2.0, 4.0]), what="x.grad after the failed retain_graph call")


# torch warns about the grad's reference cycle once per process: whether this test sees it
# depends on test order, so it is ignored here.
@pytest.mark.filterwarnings(r"ignore:Using backward\(\) with create_graph=True:UserWarning")
def test_create_graph_implies_retain_graph(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(create_graph=True)
    x.grad = None  # drop the grad that now has a grad_fn; only retention is under test
    loss.backward()
    assert_grad(x, np.array([2.0, 4.0]), what="x.grad of a backward after create_graph=True")


def test_autograd_grad_frees_the_graph_and_never_writes_grad(tl):
    x = leaf(tl, [1.0, 2.0])
    loss = (x * x).sum()
    (dx,) = tl.autograd.grad(loss, [x])
    assert_array_equal(dx.detach().numpy(), np.array([2.0, 4.0]), what="autograd.grad(loss, [x])")
    assert x.grad is None, f"autograd.grad wrote x.grad = {x.grad!r}; expected None"
    with pytest.raises(RuntimeError, match=SECOND_BACKWARD):
        loss.backward()


# --- An optimizer step changes the leaves a retained graph saved -------------------------------

STEP_CASES = [
    pytest.param(lambda x, y: x * y, True, id="x*y saves both leaves"),
    pytest.param(lambda x, y: x + y, False, id="x+y saves nothing"),
    pytest.param(lambda x, y: x.exp() + y, False, id="exp saves its result, not the leaf"),
]


@pytest.mark.parametrize(("build", "saves_leaf"), STEP_CASES)
def test_sgd_step_between_retained_backwards(tl, build, saves_leaf):
    x, y = leaf(tl, [1.0, 2.0]), leaf(tl, [3.0, 4.0])
    loss = build(x, y).sum()
    loss.backward(retain_graph=True)
    tl.optim.SGD([x, y], lr=0.1).step()
    assert x.is_leaf, "SGD.step() must keep x a leaf"
    assert x.requires_grad, "SGD.step() must keep x.requires_grad"
    if saves_leaf:
        with pytest.raises(RuntimeError, match=MODIFIED_INPLACE):
            loss.backward()
    else:
        first = grad_of(x), grad_of(y)
        loss.backward()
        assert_grad(x, 2 * first[0], what="x.grad after the second backward")
        assert_grad(y, 2 * first[1], what="y.grad after the second backward")
