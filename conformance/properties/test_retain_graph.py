"""A second backward through freed saved tensors raises, unless ``retain_graph=True`` was
given, and only when some node on the path saved a tensor; an in-place change of a saved
tensor (an optimizer step) between two backwards raises too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.adapter import Engine
from conformance.ops import ALL_OPS
from conformance.program import Backward, Group, MakeSGD, Program, Step
from conformance.properties import optimizer_properties
from conformance.runner import check_against_reference

RETAIN = st.sampled_from([None, False, True])


@given(data=st.data())
def test_repeated_backward_raises_like_torch(engine, data):
    """Several backwards with drawn retain_graph through one random graph: the same calls
    raise, and what a failing call accumulated before raising (branches that ran first) matches."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    retains = data.draw(st.lists(RETAIN, min_size=2, max_size=4), label="retain_graph")
    program = Program(params, (info.forward, *(Backward("loss0", r) for r in retains)))
    check_against_reference(engine, program)


def _op_params(op: str) -> list:
    return [pytest.param(op, marks=pytest.mark.requires(f"op:{op}"), id=op)]


@pytest.mark.parametrize("op", [p for op in sorted(ALL_OPS) for p in _op_params(op)])
@given(data=st.data())
def test_each_op_frees_like_torch(engine: Engine, op, data):
    """Per op: a graph using that op, then backward, backward: raises iff torch's would. The
    op is alone with glue that saves nothing (sum, add, reshape): ops with a singular point get
    positive params, so no ``abs(x) + c`` (abs saves its input) stands in front of them."""
    singular = op in ("log", "sqrt", "div", "pow")
    params = data.draw(cs.params(engine.capabilities, max_size=2, positive=singular),
                       label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params, ops=[op],
                               min_ops=1, max_ops=1, positive_params=singular),
                     label="forward")
    program = Program(params, (info.forward, Backward("loss0"), Backward("loss0")))
    check_against_reference(engine, program)


@given(data=st.data())
@cs.steps_every_loss
def test_step_between_backwards(engine, data):
    """backward(retain_graph=True), then an SGD step (in place on the params), then backward:
    raises the in-place-modification error exactly when a param was saved for backward."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params),
                     label="forward")
    hyper = data.draw(cs.hyperparameters(engine.capabilities), label="hyperparameters")
    make = MakeSGD((Group(tuple(p.name for p in params)),), hyper)
    program = Program(
        params,
        (make, info.forward, Backward("loss0", True), Step(), Backward("loss0", True), Step()),
    )
    check_against_reference(engine, program)


optimizer_properties(test_step_between_backwards)
