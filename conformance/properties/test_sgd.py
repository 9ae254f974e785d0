"""``SGD.step()`` follows torch's algorithm — lr, momentum, dampening, nesterov,
weight_decay, maximize, param groups — and skips params whose grad is None.

The rule is checked on gradients the program gives (``p.grad = torch.tensor(...)``), not on
ones a backward computes: a difference in a gradient cannot hide one in the optimizer, and
functional engines, whose optimizers take gradients as input, run these properties too.
Steps on computed gradients are the training-loop properties'."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.program import (
    Backward,
    Forward,
    Group,
    MakeSGD,
    Node,
    Param,
    Program,
    Ref,
    SetGradNone,
    Step,
)
from conformance.properties import functional_properties
from conformance.runner import check_against_reference

pytestmark = pytest.mark.optimizer  # every property here constructs an optimizer

NON_DEFAULT = {
    "momentum": st.sampled_from([0.9, 0.5, 1.0]),
    "dampening": st.sampled_from([0.5, 0.1, 1.0]),
    "weight_decay": st.sampled_from([0.5, 0.1, 1.0]),
    "nesterov": st.just(True),
    "maximize": st.just(True),
}


@pytest.mark.requires("set_grad")
@given(data=st.data())
def test_steps_match_reference(engine, data):
    """Several steps on drawn grads with drawn hyperparameters (a step may reuse the grads
    of the one before, as ``.grad`` keeps them)."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step"], kinds=["sgd"]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.requires(
        f"hyper:{name}", f"hyper:sgd:{name}",
        *(["hyper:momentum", "hyper:sgd:momentum"] if name in ("nesterov", "dampening") else [])))
     for name in NON_DEFAULT],
)
@pytest.mark.requires("set_grad")
@given(data=st.data())
def test_hyperparameter(engine, name, data):
    """Each hyperparameter, forced away from its default, over 3 steps on drawn grads
    (momentum and dampening differ from plain SGD only from the second step on)."""
    params = data.draw(cs.params(engine.capabilities, stepped=True), label="params")
    hyper = data.draw(cs.hyperparameters(engine.capabilities), label="hyperparameters")
    hyper[name] = data.draw(NON_DEFAULT[name], label=name)
    if name in ("nesterov", "dampening"):
        hyper["momentum"] = data.draw(NON_DEFAULT["momentum"], label="momentum")
    if name == "nesterov" and "dampening" in hyper:
        hyper["dampening"] = 0.0  # nesterov needs none; left out, it is the default 0
    make = MakeSGD((Group(tuple(p.name for p in params)),), hyper)
    steps = data.draw(cs.drawn_steps(engine.capabilities, params, 3), label="steps")
    check_against_reference(engine, Program(params, (make, *steps)))


@pytest.mark.requires("param_groups", "set_grad")
@given(data=st.data())
def test_param_groups(engine, data):
    """Two param groups, each with its own hyperparameters, over 2 steps on drawn grads."""
    params = data.draw(cs.params(engine.capabilities, min_size=2, stepped=True),
                       label="params")
    make = data.draw(cs.param_groups(engine.capabilities, [p.name for p in params]),
                     label="optimizer")
    steps = data.draw(cs.drawn_steps(engine.capabilities, params, 2), label="steps")
    check_against_reference(engine, Program(params, (make, *steps)))


@pytest.mark.requires("step_none_grad", "set_grad")
@given(data=st.data())
def test_none_grads_are_skipped(engine, data):
    """A param whose grad is None does not move, gets no state, and its momentum buffer is not
    decayed while skipped; when it gets a grad again, the old buffer resumes."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step", "set_grad_none"],
                    min_instructions=4, kinds=["sgd"]),
        label="program",
    )
    check_against_reference(engine, program)


@pytest.mark.requires("set_hyperparameter", "set_grad")
@given(data=st.data())
def test_hyperparameter_changes_between_steps(engine, data):
    """``param_groups[i][key] = value`` between steps takes effect from the next step."""
    program = data.draw(
        cs.programs(engine.capabilities, actions=["set_grads", "step", "set_hyperparameter"],
                    min_instructions=4, kinds=["sgd"]),
        label="program",
    )
    check_against_reference(engine, program)


@given(data=st.data())
def test_invalid_hyperparameters_raise(engine, data):
    """The constructor rejects a negative lr, momentum or weight_decay, and nesterov without
    momentum or with dampening."""
    params = data.draw(cs.params(engine.capabilities, max_size=2), label="params")
    hyper = data.draw(cs.invalid_hyperparameters(engine.capabilities), label="hyperparameters")
    make = MakeSGD((Group(tuple(p.name for p in params)),), hyper)
    check_against_reference(engine, Program(params, (make,)))


@pytest.mark.requires("op:mul")
@given(data=st.data())
def test_invalid_param_lists_raise(engine, data):
    """An empty parameter list, a param in two groups, or a non-leaf tensor is rejected."""
    params = data.draw(cs.params(engine.capabilities, min_size=2, max_size=2), label="params")
    case = data.draw(st.sampled_from(["empty", "duplicate", "non-leaf"]), label="case")
    instructions: list = []
    groups: tuple[Group, ...]
    if case == "empty":
        groups = (Group(()),)
    elif case == "duplicate":
        groups = (Group(("p0", "p1")), Group(("p1",)))
    else:
        instructions.append(Forward("h", (Node("h", "mul", (Ref("p0"), 2.0)),)))
        groups = (Group(("p1", "h")),)
    instructions.append(MakeSGD(groups, {"lr": 0.1}))
    check_against_reference(engine, Program(params, tuple(instructions)))


@pytest.mark.requires("hyper:momentum", "hyper:sgd:momentum", "op:sum", "step_none_grad")
def test_unused_param_example(engine):
    """Fixed example: a param left out of every loss keeps grad None through steps."""
    params = (Param("p0", np.array([1.0, 2.0])), Param("p1", np.array(3.0)))
    forward = Forward("loss0", (Node("loss0", "sum", (Ref("p0"),)),))
    program = Program(params, (
        MakeSGD((Group(("p0", "p1")),), {"lr": 0.5, "momentum": 0.9}),
        forward, Backward("loss0"), Step(), SetGradNone("p0"), Step(),
    ))
    check_against_reference(engine, program)


functional_properties(test_steps_match_reference, test_hyperparameter, test_param_groups,
                      test_none_grads_are_skipped, test_hyperparameter_changes_between_steps,
                      test_invalid_hyperparameters_raise, test_unused_param_example)
