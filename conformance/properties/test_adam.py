"""``Adam`` and ``AdamW`` follow torch's algorithm — lr, betas, eps, weight_decay (L2 for Adam,
decoupled for AdamW), amsgrad, maximize, param groups, hyperparameter changes — count a step
only for params that have a grad, and reject invalid hyperparameters as torch does.

As for SGD, the rule is checked on gradients the program gives (``p.grad = ...``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import Group, MakeOptimizer, Program
from conformance.properties import functional_properties
from conformance.runner import check_against_reference

pytestmark = pytest.mark.optimizer  # every property here constructs an optimizer

KINDS = [pytest.param(kind, marks=pytest.mark.requires(f"optim:{kind}"), id=kind)
         for kind in ("adam", "adamw")]

NON_DEFAULT = {
    "amsgrad": st.just(True),
    "maximize": st.just(True),
    "weight_decay": st.sampled_from([0.5, 0.1, 1.0]),
    "betas": st.tuples(st.sampled_from([0.0, 0.5, 0.99]), st.sampled_from([0.0, 0.5, 0.9])),
    "eps": st.sampled_from([0.1, 1.0, 1e-3]),
}


@pytest.mark.requires("set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_steps_match_reference(engine, kind, data):
    """Several steps on drawn grads with drawn hyperparameters (a step may reuse the grads
    of the one before, as ``.grad`` keeps them)."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step"], kinds=[kind]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.parametrize(
    ("kind", "name"),
    [pytest.param(kind, name, id=f"{name}-{kind}", marks=pytest.mark.requires(
        f"optim:{kind}", f"hyper:{name}", f"hyper:{kind}:{name}", "set_grad"))
     for kind in ("adam", "adamw") for name in NON_DEFAULT],
)
@given(data=st.data())
def test_hyperparameter(engine, kind, name, data):
    """Each hyperparameter forced away from its default over 3 steps on drawn grads (the
    moments and amsgrad's running maximum differ from the first step's only from the second
    on)."""
    params = data.draw(cs.params(engine.capabilities, stepped=True), label="params")
    hyper = data.draw(cs.hyperparameters(engine.capabilities, kind=kind), label="hyperparameters")
    hyper[name] = data.draw(NON_DEFAULT[name], label=name)
    make = MakeOptimizer((Group(tuple(p.name for p in params)),), hyper, kind)
    steps = data.draw(cs.drawn_steps(engine.capabilities, params, 3), label="steps")
    check_against_reference(engine, Program(params, (make, *steps)))


@pytest.mark.requires("param_groups", "set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_param_groups(engine, kind, data):
    """Two param groups, each overriding some hyperparameters and inheriting the rest, over
    2 steps on drawn grads."""
    params = data.draw(cs.params(engine.capabilities, min_size=2, stepped=True),
                       label="params")
    make = data.draw(cs.optimizers(engine.capabilities, [p.name for p in params], kinds=[kind]),
                     label="optimizer")
    steps = data.draw(cs.drawn_steps(engine.capabilities, params, 2), label="steps")
    check_against_reference(engine, Program(params, (make, *steps)))


@pytest.mark.requires("step_none_grad", "set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_none_grads_are_skipped(engine, kind, data):
    """A param whose grad is None does not move and its step is not counted (its bias
    correction later starts from its own first step); its moments resume when it gets a grad."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step", "set_grad_none"],
                    min_instructions=4, kinds=[kind]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.requires("set_hyperparameter", "set_grad")
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_hyperparameter_changes_between_steps(engine, kind, data):
    """``param_groups[i][key] = value`` between steps takes effect from the next step."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step", "set_hyperparameter"],
                    min_instructions=4, kinds=[kind]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_invalid_hyperparameters_raise(engine, kind, data):
    """The constructor rejects a negative lr, eps or weight_decay and a beta outside [0, 1)."""
    params = data.draw(cs.params(engine.capabilities, max_size=2), label="params")
    hyper = data.draw(cs.invalid_hyperparameters(engine.capabilities, kind=kind),
                      label="hyperparameters")
    make = MakeOptimizer((Group(tuple(p.name for p in params)),), hyper, kind)
    check_against_reference(engine, Program(params, (make,)))


functional_properties(test_steps_match_reference, test_hyperparameter, test_param_groups,
                      test_none_grads_are_skipped, test_hyperparameter_changes_between_steps,
                      test_invalid_hyperparameters_raise)
