"""Hypothesis strategies for params, SGD hyperparameters and whole training-loop programs.

Every strategy takes the engine's :class:`~conformance.adapter.Capabilities`, so it never
draws what the engine declared unsupported; the properties that need such a feature are
skipped with the engine's reason instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.adapter import HYPERPARAMETERS, Capabilities
from conformance.graphs import Draw, GraphInfo, forwards, values
from conformance.program import (
    GRAD_EDIT_FORMS,
    OMITTED,
    Backward,
    EditGrad,
    Group,
    Instruction,
    MakeSGD,
    Param,
    Program,
    SetGradNone,
    SetHyperparameter,
    Step,
    Update,
    ZeroGrad,
)

SHAPES: tuple[tuple[int, ...], ...] = ((), (1,), (3,), (4,), (2, 3), (3, 1), (1, 1), (2, 2, 2))

# Zeros are edges: momentum=0 keeps no buffer, weight_decay=0 skips the term, lr=0 freezes.
LEARNING_RATES = st.one_of(st.sampled_from([0.1, 0.5, 1.0, 0.0]), st.floats(0.01, 1.0))
FACTORS = st.one_of(st.just(0.0), st.sampled_from([0.5, 0.9, 1.0]), st.floats(0.0, 1.0))


def _check_range(name: str, low: int, high: int) -> None:
    if low < 0 or high < low:
        raise InvalidArgument(f"need 0 <= min_{name} <= max_{name}, got {low} and {high}")


@st.composite
def params(
    draw: Draw,
    capabilities: Capabilities,
    *,
    min_size: int = 1,
    max_size: int = 4,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
) -> tuple[Param, ...]:
    """Params ``p0, p1, ...`` of drawn shapes and supported dtypes with edge-rich values."""
    _check_range("size", min_size, max_size)
    dtypes = capabilities.dtypes
    if not dtypes:
        raise InvalidArgument("the engine supports neither float32 nor float64")
    count = draw(st.integers(min_size, max_size))
    drawn = []
    for i in range(count):
        shape = draw(st.sampled_from(list(shapes)))
        dtype = draw(st.sampled_from(dtypes))
        drawn.append(Param(f"p{i}", draw(values(shape, dtype))))
    return tuple(drawn)


SGD_DEFAULTS: dict[str, Any] = {"lr": 0.001, "momentum": 0.0, "dampening": 0.0,
                                "weight_decay": 0.0, "nesterov": False, "maximize": False}
"""torch.optim.SGD's defaults (torch-semantics §9): what a hyperparameter no one passes is."""


@st.composite
def hyperparameters(
    draw: Draw, capabilities: Capabilities, *, inherited: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Valid SGD hyperparameters as a user passes them: each supported one is passed or left
    out about equally often (``{}`` is ``SGD(params)``, torch's defaults). ``inherited`` is
    what a param group falls back on (the constructor's arguments over SGD's defaults), so
    nesterov is drawn only where the values in effect make it valid."""
    every = draw(st.integers(0, 7)) == 0  # now and then every one, as older code spells it

    def passes() -> bool:
        return every or draw(st.booleans())

    drawn: dict[str, Any] = {}
    if passes():
        drawn["lr"] = draw(LEARNING_RATES)
    for name in ("momentum", "dampening", "weight_decay"):
        if capabilities.supports(f"hyper:{name}") and passes():
            drawn[name] = draw(FACTORS)
    effective = {**SGD_DEFAULTS, **(inherited or {}), **drawn}
    nesterov_valid = effective["momentum"] > 0 and effective["dampening"] == 0
    if capabilities.supports("hyper:nesterov") and passes():
        drawn["nesterov"] = nesterov_valid and draw(st.booleans())
    if capabilities.supports("hyper:maximize") and passes():
        drawn["maximize"] = draw(st.booleans())
    if not nesterov_valid and {**(inherited or {}), **drawn}.get("nesterov"):
        drawn["nesterov"] = False  # an inherited nesterov=True would not be valid here
    return drawn


@st.composite
def invalid_hyperparameters(draw: Draw, capabilities: Capabilities) -> dict[str, Any]:
    """Hyperparameters torch's SGD constructor rejects: exactly one rule broken, sometimes two."""
    drawn = draw(hyperparameters(capabilities))
    rules = ["lr"] + [name for name in ("momentum", "weight_decay", "nesterov")
                      if capabilities.supports(f"hyper:{name}")]
    broken = draw(st.lists(st.sampled_from(rules), min_size=1, max_size=2, unique=True))
    for rule in broken:
        if rule == "nesterov":
            drawn["nesterov"] = True
            if draw(st.booleans()) or not capabilities.supports("hyper:dampening"):
                drawn["momentum"] = 0.0
            else:
                drawn["dampening"] = draw(st.floats(0.1, 1.0))
        else:
            drawn[rule] = -draw(st.sampled_from([0.1, 1.0, 1e-8]))
    return drawn


@st.composite
def param_groups(
    draw: Draw, capabilities: Capabilities, names: Sequence[str], *, max_groups: int = 2
) -> MakeSGD:
    """An SGD over all or most ``names`` split into groups with their own hyperparameters.

    Sometimes a param is left out of the optimizer (zero_grad and step must not touch it).
    """
    if not capabilities.supports("param_groups"):
        max_groups = 1
    order = draw(st.permutations(list(names)))
    held = order if len(order) == 1 or draw(st.integers(0, 4)) else order[:-1]
    count = draw(st.integers(1, max(1, min(max_groups, len(held)))))
    cuts = sorted(draw(st.lists(st.integers(1, len(held) - 1), min_size=count - 1,
                                max_size=count - 1, unique=True))) if count > 1 else []
    bounds = [0, *cuts, len(held)]
    defaults = draw(hyperparameters(capabilities))
    groups = []
    for start, stop in itertools.pairwise(bounds):
        # Each group overrides any subset of keys (often none) and inherits the rest.
        overrides = {}
        if count > 1 and draw(st.integers(0, 2)):
            overrides = draw(hyperparameters(capabilities, inherited=defaults))
        groups.append(Group(tuple(held[start:stop]), overrides))
    return MakeSGD(tuple(groups), defaults)


def graphs(
    capabilities: Capabilities, *, ops: Collection[str] | None = None, **options: Any
) -> st.SearchStrategy[GraphInfo]:
    """:func:`~conformance.graphs.forwards` limited to what the engine supports: its ops (or
    those of ``ops`` it supports) and, unless it declared them unsupported, boolean masks."""
    op_set = capabilities.ops if ops is None else capabilities.ops & set(ops)
    return forwards(ops=op_set, masks=capabilities.bool_masks, **options)


ACTIONS = ("forward_backward", "backward_again", "step", "zero_grad", "set_grad_none",
           "set_hyperparameter", "update", "edit_grad")
"""What :func:`programs` draws instructions from (see its docstring)."""


@st.composite
def programs(
    draw: Draw,
    capabilities: Capabilities,
    *,
    min_params: int = 1,
    max_params: int = 4,
    min_instructions: int = 1,
    max_instructions: int = 12,
    max_ops: int = 5,
    ops: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
) -> Program:
    """A whole training loop: params, an SGD, then a drawn sequence of actions.

    Actions (:data:`ACTIONS`): "forward_backward" (a new loss over a drawn subset of params,
    then its backward), "backward_again" (another backward through an earlier loss),
    "step", "zero_grad", "set_grad_none", "set_hyperparameter", "update" (a user's in-place
    update of a param under ``no_grad`` or through ``.data``), "edit_grad" (a user's in-place
    edit of a grad). Optional arguments are passed or left out as a user would
    (:func:`backward_calls`, :func:`zero_grad_calls`). Losses use drawn subsets of params, so
    some grads stay None and some params get their first grad late.
    """
    _check_range("instructions", min_instructions, max_instructions)
    chosen_actions = list(actions or ACTIONS)
    for action in chosen_actions:
        if action not in ACTIONS:
            raise InvalidArgument(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    unsupported = {"set_hyperparameter": not capabilities.supports("set_hyperparameter"),
                   "update": not update_forms(capabilities),
                   "edit_grad": not capabilities.supports("edit_grad")}
    chosen_actions = [action for action in chosen_actions if not unsupported.get(action)]
    if not chosen_actions:
        raise InvalidArgument(f"the engine supports none of the actions {actions}")
    drawn_params = draw(params(capabilities, min_size=min_params, max_size=max_params))
    names = [p.name for p in drawn_params]
    make = draw(param_groups(capabilities, names))
    instructions: list[Instruction] = [make]
    losses: list[GraphInfo] = []
    count = draw(st.integers(min_instructions, max_instructions))
    for _ in range(count):
        action = draw(st.sampled_from(chosen_actions))
        if action == "backward_again" and not losses:
            action = "forward_backward"
        if action == "forward_backward":
            info = draw(graphs(capabilities, loss=f"loss{len(losses)}", params=drawn_params,
                               ops=ops, max_ops=max_ops))
            losses.append(info)
            instructions.append(info.forward)
            instructions.append(draw(backward_calls(capabilities, info.forward.loss)))
        elif action == "backward_again":
            info = draw(st.sampled_from(losses))
            instructions.append(draw(backward_calls(capabilities, info.forward.loss)))
        elif action == "step":
            instructions.append(Step())
        elif action == "zero_grad":
            instructions.append(draw(zero_grad_calls(capabilities)))
        elif action == "set_grad_none":
            instructions.append(SetGradNone(draw(st.sampled_from(names))))
        elif action == "set_hyperparameter":
            instructions.append(draw(_set_hyperparameter(capabilities, make)))
        elif action == "update":
            instructions.append(draw(updates(capabilities, draw(st.sampled_from(names)))))
        elif action == "edit_grad":
            instructions.append(draw(grad_edits(draw(st.sampled_from(names)))))
    return Program(drawn_params, tuple(instructions))


def backward_calls(
    capabilities: Capabilities, loss: str, *, retain_graph: bool | None = OMITTED
) -> st.SearchStrategy[Backward]:
    """``loss.backward(...)`` as users write it: ``retain_graph`` left out about half the time,
    else True, False or None; ``create_graph=True`` sometimes, where the engine supports it.
    A given ``retain_graph`` is passed as it is (``OMITTED``: drawn)."""
    retain = (st.one_of(st.just(OMITTED), st.sampled_from([True, False, None]))
              if retain_graph is OMITTED else st.just(retain_graph))
    create = (st.sampled_from([OMITTED, OMITTED, OMITTED, True, False])
              if capabilities.supports("create_graph") else st.just(OMITTED))
    return st.builds(Backward, st.just(loss), retain_graph=retain, create_graph=create)


def zero_grad_calls(capabilities: Capabilities) -> st.SearchStrategy[ZeroGrad]:
    """``opt.zero_grad()`` about half the time, else ``set_to_none=True`` or ``False`` (where
    the engine supports it)."""
    passed = [True, False] if capabilities.supports("zero_grad_keep") else [True]
    return st.one_of(st.just(ZeroGrad()), st.sampled_from(passed).map(ZeroGrad))


def update_forms(capabilities: Capabilities) -> list[str]:
    """The forms of :data:`conformance.program.UPDATE_FORMS` the engine supports."""
    forms = []
    if capabilities.supports("update_no_grad"):
        forms += ["isub", "sub_", "add_", "mul_"]
    if capabilities.supports("update_data"):
        forms.append("data")
    return forms


@st.composite
def updates(draw: Draw, capabilities: Capabilities, param: str, *,
            forms: Sequence[str] | None = None) -> Update:
    """A user's in-place update of ``param`` in a drawn supported form (or one of ``forms``):
    a learning rate for the ``-=``-like forms, a decay factor for ``mul_``."""
    form = draw(st.sampled_from(list(forms or update_forms(capabilities))))
    scalar = draw(st.sampled_from([0.9, 0.5, 0.0]) if form == "mul_" else LEARNING_RATES)
    return Update(param, form, scalar)


@st.composite
def grad_edits(draw: Draw, param: str) -> EditGrad:
    """A user's in-place edit of ``param.grad``: ``zero_()``, ``mul_(s)`` or ``div_(s)``."""
    form = draw(st.sampled_from(list(GRAD_EDIT_FORMS)))
    if form == "zero_":
        return EditGrad(param, form)
    scalar = draw(st.sampled_from([0.5, 2.0, 0.0] if form == "mul_" else [2.0, 4.0, 3.0]))
    return EditGrad(param, form, scalar)


@st.composite
def hand_written_loops(
    draw: Draw, capabilities: Capabilities, *, min_epochs: int = 1, max_epochs: int = 4,
    max_ops: int = 4,
) -> Program:
    """Seed example D's loop, with no optimizer: each epoch a loss over every param, its
    backward, a hand-written update of each param (one form per loop, as a user writes it),
    then each grad zeroed (``w.grad.zero_()``) or set to None. Sometimes the backward retains
    the graph and a later backward goes through it again after the update: that raises where
    the update bumped a saved param's version (``no_grad``) and silently uses the new values
    where it did not (``.data``)."""
    _check_range("epochs", min_epochs, max_epochs)
    forms = update_forms(capabilities)
    if not forms:
        raise InvalidArgument("the engine supports no hand-written update form")
    drawn_params = draw(params(capabilities))
    names = [p.name for p in drawn_params]
    form = draw(st.sampled_from(forms))
    reset = draw(st.sampled_from(["zero_", "none"] if capabilities.supports("edit_grad")
                                 else ["none"]))
    instructions: list[Instruction] = []
    for epoch in range(draw(st.integers(min_epochs, max_epochs))):
        info = draw(graphs(capabilities, loss=f"loss{epoch}", params=drawn_params,
                           min_inputs=len(drawn_params), max_ops=max_ops))
        retain = draw(st.sampled_from([OMITTED, OMITTED, True]))
        instructions += [info.forward, Backward(info.forward.loss, retain_graph=retain)]
        for name in names:
            instructions.append(draw(updates(capabilities, name, forms=[form])))
        if retain is True and draw(st.booleans()):
            instructions.append(Backward(info.forward.loss))
        for name in names:
            instructions.append(EditGrad(name, "zero_") if reset == "zero_" else SetGradNone(name))
    return Program(drawn_params, tuple(instructions))


@st.composite
def _set_hyperparameter(draw: Draw, capabilities: Capabilities, make: MakeSGD) -> Instruction:
    group = draw(st.integers(0, len(make.groups) - 1))
    keys = [k for k in HYPERPARAMETERS if k == "lr" or capabilities.supports(f"hyper:{k}")]
    key = draw(st.sampled_from([k for k in keys if k not in ("nesterov", "dampening")]))
    if key == "maximize":
        return SetHyperparameter(group, key, draw(st.booleans()))
    if key == "momentum":
        # Keep nesterov valid: torch checks nesterov's rule only in the constructor.
        return SetHyperparameter(group, key, draw(st.sampled_from([0.5, 0.9])))
    return SetHyperparameter(group, key, draw(LEARNING_RATES if key == "lr" else FACTORS))
