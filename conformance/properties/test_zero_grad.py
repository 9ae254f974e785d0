"""``optimizer.zero_grad()`` sets grads to None; ``set_to_none=False`` zeroes them in place;
a None grad stays None; params outside the optimizer are not touched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import Backward, Group, MakeSGD, Program, ZeroGrad
from conformance.runner import check_against_reference

pytestmark = pytest.mark.optimizer  # every property here constructs an optimizer


@given(data=st.data())
def test_zero_grad_default_sets_none(engine, data):
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    make = data.draw(cs.param_groups(engine.capabilities, [p.name for p in params]),
                     label="optimizer")
    program = Program(params, (make, info.forward, Backward("loss0"), ZeroGrad()))
    check_against_reference(engine, program)


@pytest.mark.requires("zero_grad_keep")
@given(data=st.data())
def test_zero_grad_keep_zeroes_in_place(engine, data):
    """``set_to_none=False``: the same grad object, now zeros; accumulation continues into it."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    names = tuple(p.name for p in params)
    program = Program(params, (
        MakeSGD((Group(names),), {"lr": 0.1}),
        info.forward, Backward("loss0", True), ZeroGrad(set_to_none=False), Backward("loss0"),
    ))
    check_against_reference(engine, program)


@given(data=st.data())
def test_zero_grad_in_loops(engine, data):
    """zero_grad with drawn set_to_none between backwards and steps, over drawn param groups."""
    program = data.draw(
        cs.programs(engine.capabilities,
                    actions=["forward_backward", "zero_grad", "step", "backward_again"]),
        label="program",
    )
    check_against_reference(engine, program)
