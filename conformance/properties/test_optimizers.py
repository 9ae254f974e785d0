"""What every optimizer shares: a ``state_dict()`` loaded into a fresh optimizer continues
the trajectory exactly (momentum buffers, moments and step counts round-trip), and
``add_param_group`` after steps adds params with their own hyperparameters. Steps are on
drawn grads (``p.grad = ...``), as in the sgd and adam properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import OPTIMIZERS
from conformance.properties import functional_properties
from conformance.runner import check_against_reference

pytestmark = pytest.mark.optimizer  # every property here constructs an optimizer

KINDS = [pytest.param(kind, marks=pytest.mark.requires(f"optim:{kind}"), id=kind)
         for kind in OPTIMIZERS]


@pytest.mark.requires("state_dict", "set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_state_dict_round_trip(engine, kind, data):
    """Training, a checkpoint reloaded into a fresh optimizer, and training on: the same
    steps as without the round trip (hyperparameters changed before it are restored too)."""
    program = data.draw(
        cs.programs(engine.capabilities, kinds=[kind], min_instructions=4,
                    actions=["set_grads", "step", "reload_optimizer", "set_hyperparameter"]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.requires("add_param_group", "set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_add_param_group(engine, kind, data):
    """A param left out of the optimizer, added after steps with its own overrides: it is
    stepped from then on, with the group's values and the constructor's for the rest."""
    program = data.draw(
        cs.programs(engine.capabilities, kinds=[kind], min_params=2, min_instructions=4,
                    actions=["set_grads", "step", "add_param_group", "reload_optimizer"]),
        label="program",
    )
    check_against_reference(engine, program)


functional_properties(test_state_dict_round_trip, test_add_param_group)
