"""Oracle-free laws: relations between two runs of the engine itself, no reference needed.

They catch bugs even where the reference and the engine could share a misconception.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.compare import array_mismatch, program_tolerance
from conformance.program import (
    Backward,
    Forward,
    Group,
    MakeSGD,
    Node,
    Program,
    Ref,
    Step,
    ZeroGrad,
)
from conformance.properties import optimizer_properties
from conformance.runner import law, run_engine


def _assert_close(what: str, actual, expected, program: Program) -> None:
    __tracebackhide__ = True
    if (actual is None) != (expected is None):
        raise AssertionError(f"{what}: {actual} vs {expected}\n\n{program.to_script()}")
    if actual is not None:
        why = array_mismatch(actual, expected, tolerance=program_tolerance(program))
        if why:
            raise AssertionError(
                f"{what}: {why}\n  got      {actual}\n  expected {expected}\n\n"
                + program.to_script()
            )


@given(data=st.data())
def test_k_backward_passes_give_k_times_the_grad(engine, data):
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    k = data.draw(st.integers(2, 4), label="k")
    program = Program(params, (info.forward, *[Backward("loss0", True) for _ in range(k)]))
    trace = run_engine(engine, program)
    once, k_times = trace[2], trace[-1]
    with law(engine, (program, trace)):
        for name, grad in once.grads.items():
            expected = None if grad is None else grad * grad.dtype.type(k)
            _assert_close(f"{name}.grad after {k} backward passes vs {k} × after one",
                          k_times.grads[name], expected, program)


@pytest.mark.requires("step_none_grad")
@given(data=st.data())
def test_zero_grad_then_step_changes_nothing(engine, data):
    """After ``zero_grad()`` (set_to_none) every grad is None, so ``step()`` skips every param
    — even with momentum buffers and weight decay in play."""
    params = data.draw(cs.params(engine.capabilities, stepped=True), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    hyper = data.draw(cs.hyperparameters(engine.capabilities), label="hyperparameters")
    make = MakeSGD((Group(tuple(p.name for p in params)),), hyper)
    program = Program(params, (make, info.forward, Backward("loss0"), Step(), ZeroGrad(), Step()))
    trace = run_engine(engine, program)
    before, after = trace[-2], trace[-1]
    with law(engine, (program, trace)):
        for name, value in before.values.items():
            if not (after.values[name] == value).all() and not (
                (after.values[name] != after.values[name]) & (value != value)
            ).all():
                raise AssertionError(
                    f"{name} moved in a step after zero_grad(): {value} → {after.values[name]}"
                    f"\n\n{program.to_script()}"
                )


@pytest.mark.requires("op:add")
@given(data=st.data())
def test_separate_backwards_equal_backward_of_the_sum(engine, data):
    """Accumulating two losses' backwards gives the grads of their sum (seed example E)."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    a = data.draw(cs.graphs(engine.capabilities, loss="a", params=params), label="loss a")
    b = data.draw(cs.graphs(engine.capabilities, loss="b", params=params), label="loss b")
    separate = Program(params, (a.forward, Backward("a"), b.forward, Backward("b")))
    total = Forward("total", (*a.forward.nodes, *b.forward.nodes,
                              Node("total", "add", (Ref("a"), Ref("b")))))
    summed = Program(params, (total, Backward("total")))
    apart, together = run_engine(engine, separate), run_engine(engine, summed)
    got, want = apart[-1], together[-1]
    with law(engine, (separate, apart), (summed, together)):
        for name, grad in want.grads.items():
            _assert_close(f"{name}.grad of a, b separately vs of a + b", got.grads[name], grad,
                          separate)


@pytest.mark.requires("hyper:maximize", "hyper:sgd:maximize", "op:neg")
@given(data=st.data())
@cs.steps_every_loss
def test_maximize_equals_minimizing_the_negation(engine, data):
    """SGD(maximize=True) on L moves params exactly like SGD(maximize=False) on -L."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    hyper = data.draw(cs.hyperparameters(engine.capabilities), label="hyperparameters")
    names = tuple(p.name for p in params)
    negated = Forward("neg", (*info.forward.nodes, Node("neg", "neg", (Ref("loss0"),))))
    rounds = data.draw(st.integers(1, 3), label="steps")
    maximize = Program(params, (MakeSGD((Group(names),), {**hyper, "maximize": True}),
                                *[i for _ in range(rounds)
                                  for i in (info.forward, Backward("loss0"), Step(), ZeroGrad())]))
    minimize = Program(params, (MakeSGD((Group(names),), {**hyper, "maximize": False}),
                                *[i for _ in range(rounds)
                                  for i in (negated, Backward("neg"), Step(), ZeroGrad())]))
    up, down = run_engine(engine, maximize), run_engine(engine, minimize)
    got, want = up[-1], down[-1]
    with law(engine, (maximize, up), (minimize, down)):
        for name, value in want.values.items():
            _assert_close(f"{name} after maximize on L vs minimize on -L", got.values[name],
                          value, maximize)


optimizer_properties(test_zero_grad_then_step_changes_nothing, test_maximize_equals_minimizing_the_negation)
