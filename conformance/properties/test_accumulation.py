"""``loss.backward()`` accumulates into ``.grad``: across calls, across losses, in place."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import OMITTED, Backward, Group, MakeSGD, Program, ZeroGrad
from conformance.properties import optimizer_properties
from conformance.runner import check_against_reference


@given(data=st.data())
def test_repeated_backward_accumulates(engine, data):
    """k backward calls through one retained graph add k contributions into the same grad."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    calls = data.draw(st.integers(2, 4), label="backward calls")
    backwards = [Backward("loss0", retain_graph=True) for _ in range(calls - 1)]
    program = Program(params, (info.forward, *backwards, Backward("loss0")))
    check_against_reference(engine, program)


@given(data=st.data())
def test_losses_accumulate(engine, data):
    """Backward of several losses over overlapping params sums every contribution; params
    that no loss reached keep ``grad is None``; the grad object stays the same."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["forward_backward"], min_instructions=2,
                    max_instructions=5),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.requires("backward_gradient")
@given(data=st.data())
def test_backward_with_gradient(engine, data):
    """``out.backward(gradient=g)`` accumulates Jᵀg for a non-scalar ``out``."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(
        cs.graphs(engine.capabilities, loss="out", params=params, min_ops=1, scalar=False),
        label="forward",
    )
    gradient = data.draw(cs.values(info.shape, info.dtype), label="gradient")
    program = Program(params, (info.forward, Backward("out", True, gradient), Backward("out")))
    check_against_reference(engine, program)


@given(data=st.data())
def test_grads_are_separate_tensors(engine, data):
    """Each param's grad is its own tensor: no two params' grads share memory, even when one
    gradient buffer reaches both through views (reshape, unsqueeze, ``x[None]``, broadcasting)."""
    params = data.draw(cs.params(engine.capabilities, min_size=2, shapes=[(), (3,), (3, 1)]),
                       label="params")
    ops = {"add", "sub", "reshape", "unsqueeze", "getitem", "sum", "matmul", "exp", "mul"}
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params, ops=ops,
                                min_inputs=2, max_ops=6),
                     label="forward")
    program = Program(params, (info.forward, Backward("loss0", True), Backward("loss0")))
    check_against_reference(engine, program)


@pytest.mark.requires("create_graph")
@given(data=st.data())
def test_create_graph_accumulates_out_of_place(engine, data):
    """``backward(create_graph=True)`` retains the graph and accumulates out of place: a new
    grad object each time, requiring grad where it depends on params (``(p * p).sum()``: yes;
    ``(p * 2).sum()``: no); a plain backward after it adds in place and keeps the flag;
    ``zero_grad(set_to_none=False)`` keeps the object, detaches it and zeroes it."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    names = tuple(p.name for p in params)
    instructions: list = [MakeSGD((Group(names),), {}), info.forward,
                          Backward("loss0", create_graph=True)]
    for i in range(data.draw(st.integers(1, 3), label="more backwards")):
        create = data.draw(st.sampled_from([True, False, OMITTED]), label=f"create_graph {i}")
        instructions.append(Backward("loss0", retain_graph=True, create_graph=create))
    if engine.capabilities.supports("zero_grad_keep") and data.draw(st.booleans(), label="keep"):
        instructions += [ZeroGrad(set_to_none=False), Backward("loss0", retain_graph=True)]
    check_against_reference(engine, Program(params, tuple(instructions)))


optimizer_properties(test_losses_accumulate, test_create_graph_accumulates_out_of_place)
