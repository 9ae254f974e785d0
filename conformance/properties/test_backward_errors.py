"""backward() refuses what torch refuses: a non-scalar output without a gradient, a tensor
that does not require grad, a gradient of the wrong shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import Backward, Const, Forward, Node, Program
from conformance.properties import functional_properties
from conformance.runner import check_against_reference


@given(data=st.data())
def test_implicit_gradient_needs_a_scalar(engine, data):
    """``out.backward()`` raises for more than one element; shapes (), (1,), (1, 1) pass."""
    params = data.draw(cs.params(engine.capabilities), label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="out", params=params,
                              scalar=False), label="forward")
    check_against_reference(engine, Program(params, (info.forward, Backward("out"))))


@pytest.mark.requires("op:sum")
@given(data=st.data())
def test_backward_without_grad_raises(engine, data):
    """A loss computed from constants only has nothing to differentiate."""
    params = data.draw(cs.params(engine.capabilities, max_size=1), label="params")
    value = data.draw(cs.values((3,), params[0].value.dtype), label="constant")
    forward = Forward("loss0", (Node("loss0", "sum", (Const(value),)),))
    check_against_reference(engine, Program(params, (forward, Backward("loss0"))))


@pytest.mark.requires("backward_gradient")
@given(data=st.data())
def test_gradient_of_wrong_shape_raises(engine, data):
    """A ``gradient`` must have the output's shape exactly; it is never broadcast."""
    params = data.draw(cs.params(engine.capabilities, shapes=[(2, 3), (3,), (3, 1)]),
                       label="params")
    info = data.draw(cs.graphs(engine.capabilities, loss="out", params=params,
                              scalar=False), label="forward")
    shape = data.draw(
        st.sampled_from([(1,), (4,), (3, 2), (2, 3), (3,), (1, 1)]).filter(
            lambda s: s != info.shape
        ),
        label="gradient shape",
    )
    gradient = data.draw(cs.values(shape, info.dtype), label="gradient")
    check_against_reference(engine, Program(params, (info.forward, Backward("out", gradient=gradient))))


# A loss from constants only has no graph: stateful autograd's error, not a functional one's.
functional_properties(test_implicit_gradient_needs_a_scalar, test_gradient_of_wrong_shape_raises)
