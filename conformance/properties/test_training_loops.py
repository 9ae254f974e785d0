"""Whole training loops: every instruction drawn, the whole observable state compared."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.properties import optimizer_properties
from conformance.runner import check_against_reference


@given(data=st.data())
def test_training_loop(engine, data):
    """Forwards over drawn param subsets, backwards (retain_graph drawn, repeated), steps,
    zero_grads, grads set to None, hyperparameters changed between steps."""
    program = data.draw(cs.programs(engine.capabilities, max_instructions=16), label="program")
    check_against_reference(engine, program)


@given(data=st.data())
def test_many_steps_without_zero_grad(engine, data):
    """Gradients pile up over many backward/step rounds: each step sees the running sum."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["forward_backward", "step"], max_ops=3,
                    min_instructions=6, max_instructions=12),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.requires("update_no_grad")
@given(data=st.data())
def test_hand_written_loop(engine, data):
    """Seed example D, no optimizer: loss, ``backward()``, ``with torch.no_grad(): w -= lr *
    w.grad`` (or ``sub_``, ``add_(alpha=)``, ``mul_``, ``w.data.sub_``), ``w.grad.zero_()`` or
    ``w.grad = None``; a backward through a retained graph after the update raises where the
    update bumped a saved param's version and uses the new values where (``.data``) it did not."""
    program = data.draw(cs.hand_written_loops(engine.capabilities), label="program")
    check_against_reference(engine, program)


@pytest.mark.requires("op:linear")
@given(data=st.data())
def test_minibatch_gradient_accumulation(engine, data):
    """Seed examples 003 and E: ``nn.Linear`` params, ``mse_loss`` or ``cross_entropy`` over
    drawn mini-batches, ``zero_grad()`` and ``step()`` every k batches (gradient
    accumulation), with a drawn optimizer; the state compared after every instruction."""
    program = data.draw(cs.minibatch_loops(engine.capabilities), label="program")
    check_against_reference(engine, program)


optimizer_properties(test_training_loop, test_many_steps_without_zero_grad,
                     test_minibatch_gradient_accumulation)
