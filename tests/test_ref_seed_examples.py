"""The worked examples A-E of shared/seed-examples.md, reproduced exactly by torch and reference.

The values the sheet prints are the specification: each test asserts them at the precision the
sheet prints them, and asserts that the engine's float32 results equal torch's bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ref_cases import (
    SECOND_BACKWARD,
    assert_array_equal,
    assert_grad,
    engine_fixture,
    grad_of,
    to_numpy,
)

tl_fixture = engine_fixture


def assert_all_equal(actual: Any, expected: Any, names: Any, *, what: str) -> None:
    """Pairwise `assert_array_equal` over named results."""
    __tracebackhide__ = True
    for got, want, name in zip(actual, expected, names, strict=True):
        assert_array_equal(got, want, what=f"{name}{what}")


def assert_prints_as(actual: Any, printed: Any, *, decimals: int, what: str) -> None:
    """`actual` rounds to the value the sheet prints with `decimals` decimals."""
    __tracebackhide__ = True
    np.testing.assert_allclose(
        actual,
        printed,
        rtol=0,
        atol=0.5 * 10.0**-decimals,
        err_msg=f"{what}: got {actual!r}, the sheet prints {printed!r}",
    )


# --- A. Backward, one SGD step, and why zero_grad matters -----------------------------------


def run_example_a(tl: Any, *, zero_grad_between: bool) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    seen["dtype"] = x.dtype
    loss = (100 * x).sum()
    seen["grad before backward"] = grad_of(x)
    loss.backward()
    seen["grad after backward"] = grad_of(x)
    opt = tl.optim.SGD([x], lr=0.001)
    opt.step()
    seen["x after step"] = to_numpy(x)
    if zero_grad_between:
        opt.zero_grad()
        seen["grad after zero_grad"] = grad_of(x)
    loss = (100 * x).sum()
    loss.backward()
    seen["grad after second backward"] = grad_of(x)
    return seen


def test_example_a_gradient_accumulates_without_zero_grad(tl):
    seen = run_example_a(tl, zero_grad_between=False)
    assert seen["dtype"] == tl.float32, f"default dtype: got {seen['dtype']}, expected float32"
    assert seen["grad before backward"] is None, "x.grad before any backward must be None"
    assert_prints_as(seen["grad after backward"], [100.0, 100.0], decimals=4, what="x.grad")
    assert_prints_as(seen["x after step"], [0.9, 1.9], decimals=4, what="x after SGD(lr=0.001)")
    assert_prints_as(
        seen["grad after second backward"],
        [200.0, 200.0],
        decimals=4,
        what="x.grad after a second backward without zero_grad (accumulated)",
    )
    expected = run_example_a(torch, zero_grad_between=False)
    for key in ("grad after backward", "x after step", "grad after second backward"):
        assert_array_equal(seen[key], expected[key], what=f"example A, {key}, vs torch")


def test_example_a_zero_grad_sets_none_then_backward_gives_fresh_grad(tl):
    seen = run_example_a(tl, zero_grad_between=True)
    assert seen["grad after zero_grad"] is None, (
        f"opt.zero_grad() (set_to_none=True by default since torch 2.0) left "
        f"{seen['grad after zero_grad']!r}, expected None"
    )
    assert_prints_as(
        seen["grad after second backward"],
        [100.0, 100.0],
        decimals=4,
        what="x.grad after zero_grad() and a second backward",
    )
    expected = run_example_a(torch, zero_grad_between=True)
    assert_array_equal(
        seen["grad after second backward"],
        expected["grad after second backward"],
        what="example A with zero_grad, x.grad after the second backward, vs torch",
    )


# --- B. Repeated backward on the same graph ---------------------------------------------------


def run_example_b_mean(tl: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    w1 = tl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = w1.mean()
    d.backward()
    first = grad_of(w1)
    d.backward()
    return w1, first, grad_of(w1)


def test_example_b_mean_saves_nothing_so_backward_twice_accumulates(tl):
    w1, first, second = run_example_b_mean(tl)
    assert_prints_as(first, [0.3333, 0.3333, 0.3333], decimals=4, what="w1.grad after d.backward()")
    assert_prints_as(second, [0.6667, 0.6667, 0.6667], decimals=4, what="w1.grad after 2nd call")
    _, torch_first, torch_second = run_example_b_mean(torch)
    assert_array_equal(first, torch_first, what="w1.grad after d.backward(), vs torch")
    assert_array_equal(second, torch_second, what="w1.grad after the 2nd d.backward(), vs torch")

    held = w1.grad
    returned = w1.grad.zero_()
    assert returned is held, "w1.grad.zero_() must return the grad tensor itself"
    assert w1.grad is held, "w1.grad.zero_() must keep the same grad object"
    assert_grad(w1, np.zeros(3, np.float32), what="w1.grad.zero_()")


def run_example_b_product(tl: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    w1 = tl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w2 = tl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    res = (w1 * w2 + w1).mean()
    res.backward()
    seen["first"] = (grad_of(w1), grad_of(w2))
    with pytest.raises(RuntimeError) as excinfo:
        res.backward()
    seen["error"] = str(excinfo.value)
    seen["after failed backward"] = (grad_of(w1), grad_of(w2))
    res = (w1 * w2 + w1).mean()
    res.backward(retain_graph=True)
    res.backward()
    seen["after retain_graph pair"] = (grad_of(w1), grad_of(w2))
    return seen


def test_example_b_product_saves_tensors_so_second_backward_raises(tl):
    seen = run_example_b_product(tl)
    g1, g2 = seen["first"]
    assert_prints_as(g1, [0.6667, 1.0, 1.3333], decimals=4, what="w1.grad")
    assert_prints_as(g2, [0.3333, 0.6667, 1.0], decimals=4, what="w2.grad")
    assert seen["error"].startswith(SECOND_BACKWARD), (
        f"second res.backward() raised RuntimeError({seen['error']!r}), "
        f"expected a message starting with {SECOND_BACKWARD!r}"
    )
    assert_all_equal(
        seen["after failed backward"],
        seen["first"],
        ("w1", "w2"),
        what=".grad after the failed second backward (unchanged)",
    )
    for got, before, name in zip(
        seen["after retain_graph pair"], seen["first"], ("w1", "w2"), strict=True
    ):
        assert_prints_as(got, 3 * before, decimals=6, what=f"{name}.grad after 3 contributions")

    expected = run_example_b_product(torch)
    for key in ("first", "after retain_graph pair"):
        assert_all_equal(seen[key], expected[key], ("w1", "w2"), what=f".grad {key}, vs torch")


# --- C. Gradient of a partial index -----------------------------------------------------------


def test_example_c_unused_row_gets_zeros_not_none(tl):
    w1 = tl.zeros(2, 3, requires_grad=True)
    w1[1].mean().backward()
    got = grad_of(w1)
    assert got is not None, "w1.grad is None; expected a dense gradient of w1's shape"
    assert_prints_as(
        got, [[0, 0, 0], [0.3333, 0.3333, 0.3333]], decimals=4, what="w1.grad after w1[1].mean()"
    )
    assert_array_equal(got[0], np.zeros(3, np.float32), what="w1.grad[0] (the unused row)")

    t = torch.zeros(2, 3, requires_grad=True)
    t[1].mean().backward()
    assert_array_equal(got, to_numpy(t.grad), what="example C, w1.grad vs torch")


# --- D. A one-weight regression, updated by hand and by autograd ------------------------------


def run_example_d(tl: Any) -> tuple[Any, Any]:
    x = tl.tensor([1.0, 2.0, 3.0, 4.0])
    y = tl.tensor([2.0, 4.0, 6.0, 8.0])
    w = tl.tensor(0.0, requires_grad=True)
    for _epoch in range(20):
        loss = ((w * x - y) ** 2).mean()
        loss.backward()
        with tl.no_grad():
            w -= 0.1 * w.grad
        w.grad.zero_()
    return w, w * 5


def test_example_d_twenty_epochs_of_hand_written_gradient_descent(tl):
    w, f5 = run_example_d(tl)
    assert w.is_leaf, "w -= ... under no_grad must keep w a leaf"
    assert w.requires_grad, "w -= ... under no_grad must keep w.requires_grad"
    assert w.dtype == tl.float32, f"w.dtype: got {w.dtype}, expected float32"
    w_value, f5_value = to_numpy(w), to_numpy(f5)
    assert f"{w_value.item():.7f}" == "1.9999981", f"w after 20 epochs: got {w_value.item()!r}"
    assert f"{f5_value.item():.5f}" == "9.99999", f"f(5) = w * 5: got {f5_value.item()!r}"
    assert str(w_value) == "1.9999981", f"float32 w prints as {w_value}, the sheet says 1.9999981"

    torch_w, torch_f5 = run_example_d(torch)
    assert_array_equal(w_value, to_numpy(torch_w), what="example D, w after 20 epochs, vs torch")
    assert_array_equal(f5_value, to_numpy(torch_f5), what="example D, f(5), vs torch")


def test_example_d_single_step_gradient(tl):
    w = tl.tensor(1.0, requires_grad=True)
    x, y = tl.tensor(1.0), tl.tensor(2.0)
    ((y - w * x) ** 2).backward()
    assert_grad(w, np.float32(-2.0), what="w.grad of (y - w*x)**2 at w=1, x=1, y=2")


# --- E. The training loop: zero_grad only every k batches -------------------------------------

# Features, targets and initial parameters are small multiples of 1/4 and the learning rate is
# 1/64, so every product and sum below is exact in float32: results must agree exactly, whatever
# order an engine sums in.
FEATURES = [
    [0.5, -1.0, 1.5], [1.0, 0.25, -0.5], [-1.5, 2.0, 0.0], [0.75, 0.5, 1.0],
    [2.0, -0.5, -1.0], [0.0, 1.25, 0.5], [-0.25, -0.75, 2.0], [1.5, 1.0, -1.5],
]  # fmt: skip
TARGETS = [[1.0, -0.5], [0.5, 2.0], [-1.0, 0.0], [1.5, 0.5], [0.0, 1.0], [2.0, -1.5], [0.5, 0.5],
           [-0.5, 1.0]]  # fmt: skip
W0 = [[0.5, -0.25], [0.25, 0.75], [-0.5, 0.5]]
B0 = [0.25, -0.5]
BATCH = 2  # samples per small batch
K = 2  # small batches per accumulation window
LR = 1 / 64
PARAMS = ("weight", "bias")


def linear_model(tl: Any) -> tuple[Any, Any]:
    return tl.tensor(W0, requires_grad=True), tl.tensor(B0, requires_grad=True)


def batch_loss(tl: Any, params: tuple[Any, Any], start: int, stop: int, reduction: str) -> Any:
    weight, bias = params
    x, y = tl.tensor(FEATURES[start:stop]), tl.tensor(TARGETS[start:stop])
    squared = (x @ weight + bias - y) ** 2
    return squared.sum() if reduction == "sum" else squared.mean()


def accumulated_grads(tl: Any, reduction: str) -> list[np.ndarray]:
    """Backward over K small batches with no zero_grad in between."""
    params = linear_model(tl)
    for i in range(K):
        batch_loss(tl, params, i * BATCH, (i + 1) * BATCH, reduction).backward()
    return [grad_of(p) for p in params]


def big_batch_grads(tl: Any, reduction: str) -> list[np.ndarray]:
    params = linear_model(tl)
    batch_loss(tl, params, 0, K * BATCH, reduction).backward()
    return [grad_of(p) for p in params]


def test_example_e_accumulating_k_batches_equals_a_k_times_larger_batch_for_a_sum_loss(tl):
    accumulated = accumulated_grads(tl, "sum")
    assert_all_equal(
        accumulated,
        big_batch_grads(tl, "sum"),
        PARAMS,
        what=f".grad: {K} accumulated batches vs one {K} times larger batch",
    )
    assert_all_equal(
        accumulated,
        accumulated_grads(torch, "sum"),
        PARAMS,
        what=f".grad accumulated over {K} batches, vs torch",
    )


def test_example_e_accumulating_k_batches_gives_k_times_the_mean_for_a_mean_loss(tl):
    accumulated = accumulated_grads(tl, "mean")
    assert_all_equal(
        accumulated,
        [K * g for g in big_batch_grads(tl, "mean")],
        PARAMS,
        what=f".grad: {K} accumulated mean batches vs {K} x the mean over one larger batch",
    )
    assert_all_equal(
        accumulated,
        accumulated_grads(torch, "mean"),
        PARAMS,
        what=f".grad accumulated over {K} mean batches, vs torch",
    )


def train(tl: Any, *, zero_grad_every: int, batch: int) -> list[np.ndarray]:
    """Example E's loop, calling zero_grad() and step() once every `zero_grad_every` batches."""
    params = linear_model(tl)
    opt = tl.optim.SGD(params, lr=LR)
    n_batches = len(FEATURES) // batch
    for i in range(n_batches):
        if i % zero_grad_every == 0:
            opt.zero_grad()
        batch_loss(tl, params, i * batch, (i + 1) * batch, "sum").backward()
        if (i + 1) % zero_grad_every == 0:
            opt.step()
    return [to_numpy(p) for p in params]


def test_example_e_training_loop_with_delayed_zero_grad_equals_larger_batches(tl):
    delayed = train(tl, zero_grad_every=K, batch=BATCH)
    initial = [np.array(W0, np.float32), np.array(B0, np.float32)]
    for got, start, name in zip(delayed, initial, PARAMS, strict=True):
        assert not np.array_equal(got, start), f"{name} never moved: the loop did not train"
    assert_all_equal(
        delayed,
        train(tl, zero_grad_every=1, batch=K * BATCH),
        PARAMS,
        what=f": zero_grad every {K} batches of {BATCH} vs every batch of {K * BATCH}",
    )
    assert_all_equal(
        delayed,
        train(torch, zero_grad_every=K, batch=BATCH),
        PARAMS,
        what=" after the delayed-zero_grad loop, vs torch",
    )
