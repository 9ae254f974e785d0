"""Hypothesis strategies for params, SGD hyperparameters and whole training-loop programs.

Every strategy takes the engine's :class:`~conformance.adapter.Capabilities`, so it never
draws what the engine declared unsupported; the properties that need such a feature are
skipped with the engine's reason instead.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.adapter import OPTIMIZER_HYPERPARAMETERS, Capabilities
from conformance.choices import (
    Draw,
    Scalars,
    array,
    boolean,
    choose,
    integer,
    integers,
    permutation,
    values,
)
from conformance.graphs import GraphInfo, forwards, reached
from conformance.program import (
    GRAD_EDIT_FORMS,
    OMITTED,
    OPTIMIZERS,
    AddParamGroup,
    Backward,
    Const,
    EditGrad,
    Forward,
    Group,
    Instruction,
    MakeOptimizer,
    Node,
    Param,
    Program,
    Ref,
    ReloadOptimizer,
    SetGrad,
    SetGradNone,
    SetHyperparameter,
    Step,
    Update,
    ZeroGrad,
)

SHAPES: tuple[tuple[int, ...], ...] = ((), (1,), (3,), (4,), (2, 3), (3, 1), (1, 1), (2, 2, 2))

# Zeros are edges: momentum=0 keeps no buffer, weight_decay=0 skips the term, lr=0 freezes.
LEARNING_RATES = Scalars((0.1, 0.5, 1.0, 0.0), 0.01, 1.0, floats=4)
FACTORS = Scalars((0.0, 0.0, 0.0, 0.5, 0.9, 1.0), 0.0, 1.0, floats=3)  # 0.0 a third of the time


def _check_range(name: str, low: int, high: int) -> None:
    if low < 0 or high < low:
        raise InvalidArgument(f"need 0 <= min_{name} <= max_{name}, got {low} and {high}")


def param_dtypes(capabilities: Capabilities, *, stepped: bool) -> tuple[np.dtype, ...]:
    """The dtypes a param may have: the engine's, and for one an optimizer may step
    (``stepped``) not float64 where it declared ``step_float64`` unsupported (unless float64
    is all it has)."""
    dtypes = capabilities.dtypes
    if not dtypes:
        raise InvalidArgument("the engine supports neither float32 nor float64")
    if stepped and not capabilities.supports("step_float64") and len(dtypes) > 1:
        dtypes = tuple(dtype for dtype in dtypes if dtype != np.dtype("float64"))
    return dtypes


def draw_params(
    draw: Draw,
    capabilities: Capabilities,
    *,
    min_size: int = 1,
    max_size: int = 4,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    positive: bool = False,
    stepped: bool = False,
) -> tuple[Param, ...]:
    """Params ``p0, p1, ...`` of drawn shapes and supported dtypes with edge-rich values
    (``positive``: in [0.5, 4], for an op with a singular point tested alone).

    Params an optimizer will step (``stepped``, or inside a :func:`steps_every_loss`
    property) are never 0-d where the engine declared ``step_0d_param`` unsupported, never
    float64 where it declared ``step_float64`` unsupported, and all of one dtype where it
    declared ``step_mixed_dtypes`` unsupported; for every other engine, and for params nothing
    steps, the draws are the same as without them."""
    _check_range("size", min_size, max_size)
    stepping = stepped or _STEPS_EVERY_LOSS.get()
    if (stepping and not capabilities.supports("step_0d_param")
            and any(shape != () for shape in shapes)):
        shapes = [shape for shape in shapes if shape != ()]
    mixed = not stepping or capabilities.supports("step_mixed_dtypes")
    dtypes = param_dtypes(capabilities, stepped=stepping)
    count = integer(draw, min_size, max_size)
    # One dtype for the program, and now and then a param of another: a mixed-dtype model is
    # an edge users reach, not the usual case (a known deviation about it would otherwise set
    # aside half of an engine's programs).
    usual = choose(draw, dtypes)
    drawn = []
    for i in range(count):
        shape = choose(draw, list(shapes))
        dtype = choose(draw, [usual] * 6 + list(dtypes)) if mixed and len(dtypes) > 1 else usual
        drawn.append(Param(f"p{i}", draw(values(shape, dtype, positive=positive))))
    return tuple(drawn)


params = st.composite(draw_params)
""":func:`draw_params` as a strategy (the plain function draws inside a caller's own draw)."""


SGD_DEFAULTS: dict[str, Any] = {"lr": 0.001, "momentum": 0.0, "dampening": 0.0,
                                "weight_decay": 0.0, "nesterov": False, "maximize": False}
"""torch.optim.SGD's defaults (torch-semantics §9): what a hyperparameter no one passes is."""

ADAM_DEFAULTS: dict[str, Any] = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8,
                                 "weight_decay": 0.0, "amsgrad": False, "maximize": False}
"""torch.optim.Adam's defaults; AdamW's are the same but ``weight_decay=0.01``."""

# Betas at their defaults, at 0 (no averaging), and anywhere in [0, 1); eps small and large
# (eps dominates the denominator when the second moment is small).
BETA1 = Scalars((0.9, 0.0, 0.5), 0.0, 0.99, floats=3)
BETA2 = Scalars((0.999, 0.9, 0.0), 0.0, 0.9999, floats=3)
EPSILONS = (1e-8, 1e-6, 0.1, 1.0, 0.0)


def draw_hyperparameters(
    draw: Draw, capabilities: Capabilities, *, kind: str = "sgd",
    inherited: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Valid hyperparameters of optimizer ``kind`` as a user passes them: each supported one
    is passed or left out about equally often (``{}`` is ``SGD(params)``, torch's defaults),
    now and then every one. ``inherited`` is what a param group falls back on (the
    constructor's arguments over the optimizer's defaults), so SGD's nesterov is drawn only
    where the values in effect make it valid."""
    if kind not in OPTIMIZER_HYPERPARAMETERS:
        raise InvalidArgument(f"unknown optimizer kind {kind!r}; known: "
                              f"{', '.join(OPTIMIZER_HYPERPARAMETERS)}")
    names = [name for name in OPTIMIZER_HYPERPARAMETERS[kind]
             if capabilities.supports_hyperparameter(kind, name)]
    # One choice for which are passed: every one now and then, else any subset (a bit mask).
    mask = (1 << len(names)) - 1 if integer(draw, 0, 7) == 0 else integer(
        draw, 0, (1 << len(names)) - 1)
    passed = {name for i, name in enumerate(names) if mask >> i & 1}

    def passes(name: str) -> bool:
        return name in passed

    drawn: dict[str, Any] = {}
    if passes("lr"):
        drawn["lr"] = LEARNING_RATES(draw)
    if kind != "sgd":
        if passes("betas"):
            drawn["betas"] = (BETA1(draw), BETA2(draw))
        if passes("eps"):
            drawn["eps"] = choose(draw, EPSILONS)
        if passes("weight_decay"):
            drawn["weight_decay"] = FACTORS(draw)
        if passes("amsgrad"):
            drawn["amsgrad"] = boolean(draw)
        if passes("maximize"):
            drawn["maximize"] = boolean(draw)
        return drawn
    for name in ("momentum", "dampening", "weight_decay"):
        if passes(name):
            drawn[name] = FACTORS(draw)
    effective = {**SGD_DEFAULTS, **(inherited or {}), **drawn}
    nesterov_valid = effective["momentum"] > 0 and effective["dampening"] == 0
    if passes("nesterov"):
        drawn["nesterov"] = nesterov_valid and boolean(draw)
    if passes("maximize"):
        drawn["maximize"] = boolean(draw)
    if not nesterov_valid and {**(inherited or {}), **drawn}.get("nesterov"):
        drawn["nesterov"] = False  # an inherited nesterov=True would not be valid here
    return drawn


hyperparameters = st.composite(draw_hyperparameters)
""":func:`draw_hyperparameters` as a strategy (the plain function draws inside a caller's own draw)."""


@st.composite
def invalid_hyperparameters(
    draw: Draw, capabilities: Capabilities, *, kind: str = "sgd"
) -> dict[str, Any]:
    """Hyperparameters the constructor of optimizer ``kind`` rejects: one rule broken,
    sometimes two (SGD: a negative lr, momentum or weight_decay, nesterov without momentum or
    with dampening; Adam/AdamW: a negative lr, eps or weight_decay, a beta outside [0, 1))."""
    drawn = draw_hyperparameters(draw, capabilities, kind=kind)
    names = (("momentum", "weight_decay", "nesterov") if kind == "sgd"
             else ("eps", "weight_decay", "betas"))
    rules = ["lr"] + [name for name in names if capabilities.supports_hyperparameter(kind, name)]
    broken = draw(st.lists(st.sampled_from(rules), min_size=1, max_size=2, unique=True))
    for rule in broken:
        if rule == "nesterov":
            drawn["nesterov"] = True
            if boolean(draw) or not capabilities.supports_hyperparameter(kind, "dampening"):
                drawn["momentum"] = 0.0
            else:
                drawn["dampening"] = draw(st.floats(0.1, 1.0))
        elif rule == "betas":
            bad = choose(draw, [1.0, -0.1, 1.5])
            good = BETA1(draw)
            drawn["betas"] = (bad, good) if boolean(draw) else (good, bad)
        else:
            drawn[rule] = -choose(draw, [0.1, 1.0, 1e-8])
    return drawn


def draw_optimizer(
    draw: Draw, capabilities: Capabilities, names: Sequence[str], *,
    kinds: Sequence[str] | None = None, max_groups: int = 2,
) -> MakeOptimizer:
    """An optimizer of a drawn kind the engine has (or one of ``kinds``) over all or most
    ``names``, split into groups that override any subset of its hyperparameters (often
    none) and inherit the rest. Sometimes a param is left out of the optimizer (zero_grad and
    step must not touch it; ``add_param_group`` may add it later)."""
    available = [kind for kind in (kinds or OPTIMIZERS) if kind in capabilities.optimizers]
    if not available:
        raise InvalidArgument(f"the engine has none of the optimizers {list(kinds or OPTIMIZERS)}")
    kind = choose(draw, available)
    if not capabilities.supports("param_groups"):
        max_groups = 1
    order = permutation(draw, list(names))
    held = order if len(order) == 1 or integer(draw, 0, 4) else order[:-1]
    count = integer(draw, 1, max(1, min(max_groups, len(held))))
    cuts = sorted(draw(_cuts(len(held), count))) if count > 1 else []
    bounds = [0, *cuts, len(held)]
    defaults = draw_hyperparameters(draw, capabilities, kind=kind)
    groups = []
    for start, stop in itertools.pairwise(bounds):
        overrides = {}
        if count > 1 and integer(draw, 0, 2):
            overrides = draw_hyperparameters(draw, capabilities, kind=kind, inherited=defaults)
        groups.append(Group(tuple(held[start:stop]), overrides))
    return MakeOptimizer(tuple(groups), defaults, kind)


optimizers = st.composite(draw_optimizer)
""":func:`draw_optimizer` as a strategy (the plain function draws inside a caller's own draw)."""


@functools.cache
def _cuts(length: int, groups: int) -> st.SearchStrategy[list[int]]:
    """Where ``groups`` groups split ``length`` params: distinct cut points in [1, length)."""
    return st.lists(st.integers(1, length - 1), min_size=groups - 1, max_size=groups - 1,
                    unique=True)


def param_groups(
    capabilities: Capabilities, names: Sequence[str], *, max_groups: int = 2
) -> st.SearchStrategy[MakeOptimizer]:
    """:func:`optimizers` for SGD alone."""
    return optimizers(capabilities, names, kinds=["sgd"], max_groups=max_groups)


def reductions(capabilities: Capabilities) -> st.SearchStrategy[str]:
    """``"sum"`` or ``"mean"``, whichever the engine has, to reduce a fixed graph into a loss."""
    available = [op for op in ("sum", "mean") if capabilities.supports(f"op:{op}")]
    if not available:
        raise InvalidArgument("the engine has neither sum nor mean to reduce a loss with")
    return st.sampled_from(available)


_STEPS_EVERY_LOSS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "steps_every_loss", default=False)


def steps_every_loss(test: Callable[..., Any]) -> Callable[..., Any]:
    """For a property that builds its own steps, each right after the backward of a loss it
    draws with :func:`graphs`: where the engine declared ``step_none_grad`` unsupported, those
    losses use every param (``min_inputs``), so that no param the optimizer holds has grad None
    at a step, and where it declared ``step_0d_param`` unsupported, its params are never 0-d
    (:func:`draw_params`); elsewhere they are drawn as without it.

    A decorator, under ``@given``, rather than an argument in the property's body: Hypothesis
    seeds a property's derandomized draws from its source without decorators, so the other
    engines' draws (and reports) stay the same."""

    @functools.wraps(test)
    def stepping(*args: Any, **kwargs: Any) -> Any:
        token = _STEPS_EVERY_LOSS.set(True)
        try:
            return test(*args, **kwargs)
        finally:
            _STEPS_EVERY_LOSS.reset(token)

    return stepping


def graphs(
    capabilities: Capabilities, *, ops: Collection[str] | None = None, **options: Any
) -> st.SearchStrategy[GraphInfo]:
    """:func:`~conformance.graphs.forwards` limited to what the engine supports: its ops (or
    those of ``ops`` it supports) and, unless it declared them unsupported, boolean masks;
    inside a :func:`steps_every_loss` property, over every param where the engine cannot step
    with a None grad."""
    op_set = capabilities.ops if ops is None else capabilities.ops & set(ops)
    if (_STEPS_EVERY_LOSS.get() and not capabilities.supports("step_none_grad")
            and "min_inputs" not in options and "params" in options):
        options["min_inputs"] = len(options["params"])  # see steps_every_loss
    return forwards(ops=op_set, masks=capabilities.bool_masks, available=capabilities.ops,
                    one_element_losses=capabilities.one_element_losses,
                    scalar_bases=capabilities.scalar_bases, **options)


def draw_grads(draw: Draw, capabilities: Capabilities, params: Sequence[Param], *,
               none: bool = True) -> list[SetGrad | SetGradNone]:
    """``p.grad = torch.tensor(g)`` for each param, with values as edge-rich as a param's,
    or now and then ``p.grad = None`` (unless ``none`` is False, and never where the engine
    declared ``step_none_grad`` unsupported): the gradients an optimizer-rule property steps
    on."""
    none = none and capabilities.supports("step_none_grad")
    drawn: list[SetGrad | SetGradNone] = []
    for param in params:
        if none and integer(draw, 0, 4) == 4:  # shrinks towards a grad given
            drawn.append(SetGradNone(param.name))
        else:
            drawn.append(SetGrad(param.name, array(draw, param.value.shape, param.value.dtype)))
    return drawn


def steps_on_drawn_grads(draw: Draw, capabilities: Capabilities, params: Sequence[Param],
                         steps: int) -> list[Instruction]:
    """``steps`` rounds of drawn grads (:func:`draw_grads`) and ``opt.step()``, every param
    with a grad: for a property about a hyperparameter or param groups, which skipping a None
    grad is not (the none-grads properties are about that; an engine that counts steps
    wrongly for skipped params would otherwise have most of these runs set aside)."""
    instructions: list[Instruction] = []
    for _ in range(steps):
        instructions += [*draw_grads(draw, capabilities, params, none=False), Step()]
    return instructions


drawn_steps = st.composite(steps_on_drawn_grads)
""":func:`steps_on_drawn_grads` as a strategy."""


ACTIONS = ("forward_backward", "backward_again", "step", "zero_grad", "set_grad_none",
           "set_hyperparameter", "update", "edit_grad", "add_param_group", "reload_optimizer",
           "set_grads")
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
    kinds: Sequence[str] | None = None,
) -> Program:
    """A whole training loop: params, an optimizer of a drawn kind the engine has (or one of
    ``kinds``), then a drawn sequence of actions.

    Actions (:data:`ACTIONS`): "forward_backward" (a new loss over a drawn subset of params,
    then its backward), "backward_again" (another backward through an earlier loss),
    "step", "zero_grad", "set_grad_none", "set_hyperparameter", "update" (a user's in-place
    update of a param under ``no_grad`` or through ``.data``), "edit_grad" (a user's in-place
    edit of a grad), "add_param_group" (a param the optimizer does not hold yet, with its own
    overrides), "reload_optimizer" (a ``state_dict()`` round trip into a fresh optimizer),
    "set_grads" (every param's grad given: ``p.grad = torch.tensor(...)`` or ``None``, see
    :func:`draw_grads`).
    Optional arguments are passed or left out as a user would
    (:func:`backward_calls`, :func:`zero_grad_calls`). Losses use drawn subsets of params, so
    some grads stay None and some params get their first grad late.

    An engine that declared ``step_none_grad`` unsupported never steps while a param the
    optimizer holds has grad None: where one may (before the first backward that reaches it,
    after ``zero_grad()`` or ``p.grad = None``), a forward over every param and its backward
    (or, among "set_grads" actions, every param's grad given) come right before the step (or,
    where even that loss misses a held param, the step is left out). For every other engine
    nothing is drawn for it: the same programs as before. Where ``step_0d_param`` is
    unsupported, no param is 0-d (:func:`draw_params`).
    """
    _check_range("instructions", min_instructions, max_instructions)
    chosen_actions = list(actions or ACTIONS)
    for action in chosen_actions:
        if action not in ACTIONS:
            raise InvalidArgument(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    unsupported = {"set_hyperparameter": not capabilities.supports("set_hyperparameter"),
                   "set_grads": not capabilities.supports("set_grad"),
                   "update": not update_forms(capabilities),
                   "edit_grad": not capabilities.supports("edit_grad"),
                   "add_param_group": not capabilities.supports("add_param_group"),
                   "reload_optimizer": not capabilities.supports("state_dict")}
    chosen_actions = [action for action in chosen_actions if not unsupported.get(action)]
    if not chosen_actions:
        raise InvalidArgument(f"the engine supports none of the actions {actions}")
    drawn_params = draw_params(draw, capabilities, min_size=min_params, max_size=max_params,
                               stepped=True)
    names = [p.name for p in drawn_params]
    make = draw_optimizer(draw, capabilities, names, kinds=kinds)
    held = {name for group in make.groups for name in group.params}
    instructions: list[Instruction] = [make]
    losses: list[GraphInfo] = []
    # Params sure to have a grad (a fresh loss's backward reaches its params; a backward
    # through an earlier loss may raise, so it counts for none): only computed, never drawn.
    skips_none = capabilities.supports("step_none_grad")
    with_grad: set[str] = set()

    def forward_backward(min_inputs: int = 1) -> None:
        info = draw(graphs(capabilities, loss=f"loss{len(losses)}", params=drawn_params,
                           ops=ops, max_ops=max_ops, min_inputs=min_inputs))
        losses.append(info)
        instructions.append(info.forward)
        instructions.append(draw_backward(draw, capabilities, info.forward.loss))
        with_grad.update(reached(info.forward, names))

    def set_grads() -> None:
        given = draw_grads(draw, capabilities, drawn_params)
        instructions.extend(given)
        with_grad.update(g.param for g in given if isinstance(g, SetGrad))
        with_grad.difference_update(g.param for g in given if isinstance(g, SetGradNone))

    count = integer(draw, min_instructions, max_instructions)
    for _ in range(count):
        action = choose(draw, chosen_actions)
        if action == "backward_again" and not losses:
            action = "forward_backward"
        if action == "set_grads":
            set_grads()
        elif action == "forward_backward":
            forward_backward()
        elif action == "backward_again":
            info = choose(draw, losses)
            instructions.append(draw_backward(draw, capabilities, info.forward.loss))
        elif action == "step":
            if not skips_none and not held <= with_grad:
                if "set_grads" in chosen_actions:
                    set_grads()  # where None grads cannot be stepped, draw_grads gives none
                else:
                    forward_backward(min_inputs=len(drawn_params))
            if skips_none or held <= with_grad:
                instructions.append(Step())
        elif action == "zero_grad":
            zero = draw_zero_grad(draw, capabilities)
            instructions.append(zero)
            if zero.set_to_none is not False:
                with_grad -= held
        elif action == "set_grad_none":
            name = choose(draw, names)
            instructions.append(SetGradNone(name))
            with_grad.discard(name)
        elif action == "set_hyperparameter":
            instructions.append(_set_hyperparameter(draw, capabilities, make))
        elif action == "update":
            instructions.append(draw_update(draw, capabilities, choose(draw, names)))
        elif action == "edit_grad":
            instructions.append(draw_grad_edit(draw, choose(draw, names)))
        elif action == "add_param_group" and len(held) < len(names):
            added = [name for name in names if name not in held]
            overrides = draw_hyperparameters(draw, capabilities, kind=make.kind,
                                             inherited=dict(make.defaults))
            instructions.append(AddParamGroup(Group(tuple(added), overrides)))
            held.update(added)
        elif action == "reload_optimizer":
            instructions.append(ReloadOptimizer())
    return Program(drawn_params, tuple(instructions))


def draw_backward(
    draw: Draw, capabilities: Capabilities, loss: str, *, retain_graph: bool | None = OMITTED
) -> Backward:
    """``loss.backward(...)`` as users write it: ``retain_graph`` left out about half the time,
    else True, False or None; ``create_graph=True`` sometimes, where the engine supports it.
    A given ``retain_graph`` is passed as it is (``OMITTED``: drawn)."""
    if retain_graph is OMITTED and boolean(draw):
        retain_graph = choose(draw, [True, False, None])
    create = OMITTED
    if capabilities.supports("create_graph"):
        create = choose(draw, [OMITTED, OMITTED, OMITTED, True, False])
    return Backward(loss, retain_graph=retain_graph, create_graph=create)


backward_calls = st.composite(draw_backward)
""":func:`draw_backward` as a strategy (the plain function draws inside a caller's own draw)."""


def draw_zero_grad(draw: Draw, capabilities: Capabilities) -> ZeroGrad:
    """``opt.zero_grad()`` about half the time, else ``set_to_none=True`` or ``False`` (where
    the engine supports it)."""
    if not boolean(draw):
        return ZeroGrad()
    return ZeroGrad(choose(draw, [True, False] if capabilities.supports("zero_grad_keep") else [True]))


zero_grad_calls = st.composite(draw_zero_grad)
""":func:`draw_zero_grad` as a strategy (the plain function draws inside a caller's own draw)."""


def update_forms(capabilities: Capabilities) -> list[str]:
    """The forms of :data:`conformance.program.UPDATE_FORMS` the engine supports."""
    forms = []
    if capabilities.supports("update_no_grad"):
        forms += ["isub", "sub_", "add_", "mul_"]
    if capabilities.supports("update_data"):
        forms.append("data")
    return forms


def draw_update(draw: Draw, capabilities: Capabilities, param: str, *,
            forms: Sequence[str] | None = None) -> Update:
    """A user's in-place update of ``param`` in a drawn supported form (or one of ``forms``):
    a learning rate for the ``-=``-like forms, a decay factor for ``mul_``."""
    form = choose(draw, list(forms or update_forms(capabilities)))
    scalar = choose(draw, [0.9, 0.5, 0.0]) if form == "mul_" else LEARNING_RATES(draw)
    return Update(param, form, scalar)


updates = st.composite(draw_update)
""":func:`draw_update` as a strategy (the plain function draws inside a caller's own draw)."""


def draw_grad_edit(draw: Draw, param: str) -> EditGrad:
    """A user's in-place edit of ``param.grad``: ``zero_()``, ``mul_(s)`` or ``div_(s)``."""
    form = choose(draw, list(GRAD_EDIT_FORMS))
    if form == "zero_":
        return EditGrad(param, form)
    scalar = choose(draw, [0.5, 2.0, 0.0] if form == "mul_" else [2.0, 4.0, 3.0])
    return EditGrad(param, form, scalar)


grad_edits = st.composite(draw_grad_edit)
""":func:`draw_grad_edit` as a strategy (the plain function draws inside a caller's own draw)."""


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
    drawn_params = draw_params(draw, capabilities)
    names = [p.name for p in drawn_params]
    form = choose(draw, forms)
    reset = choose(draw, ["zero_", "none"] if capabilities.supports("edit_grad")
                                 else ["none"])
    instructions: list[Instruction] = []
    for epoch in range(integer(draw, min_epochs, max_epochs)):
        info = draw(graphs(capabilities, loss=f"loss{epoch}", params=drawn_params,
                           min_inputs=len(drawn_params), max_ops=max_ops))
        # Half the loops retain the graph and go through it again after the update: the
        # version-counter case, which is what separates the update forms.
        retain = choose(draw, [OMITTED, True])
        instructions += [info.forward, Backward(info.forward.loss, retain_graph=retain)]
        for name in names:
            instructions.append(draw_update(draw, capabilities, name, forms=[form]))
        if retain is True:
            instructions.append(Backward(info.forward.loss))
        for name in names:
            instructions.append(EditGrad(name, "zero_") if reset == "zero_" else SetGradNone(name))
    return Program(drawn_params, tuple(instructions))


def _set_hyperparameter(draw: Draw, capabilities: Capabilities, make: MakeOptimizer
                        ) -> Instruction:
    group = integer(draw, 0, len(make.groups) - 1)
    # Not nesterov or dampening (torch checks nesterov's rule only in the constructor), nor
    # amsgrad (switched on after a step, torch's next step raises KeyError: no max_exp_avg_sq).
    changeable = [k for k in OPTIMIZER_HYPERPARAMETERS[make.kind]
                  if k not in ("nesterov", "dampening", "amsgrad")
                  and capabilities.supports_hyperparameter(make.kind, k)]
    key = choose(draw, changeable)
    if key == "maximize":
        return SetHyperparameter(group, key, boolean(draw))
    if key == "momentum":
        # Keep nesterov valid: torch checks nesterov's rule only in the constructor.
        return SetHyperparameter(group, key, choose(draw, [0.5, 0.9]))
    if key == "betas":
        return SetHyperparameter(group, key, (BETA1(draw), BETA2(draw)))
    if key == "eps":
        return SetHyperparameter(group, key, choose(draw, EPSILONS))
    return SetHyperparameter(group, key, (LEARNING_RATES if key == "lr" else FACTORS)(draw))


LOSSES = ("mse_loss", "cross_entropy")


@st.composite
def minibatch_loops(
    draw: Draw, capabilities: Capabilities, *, min_batches: int = 1, max_batches: int = 6,
) -> Program:
    """Seed examples 003 and E: an ``nn.Linear`` (params ``weight`` (out, in) and ``bias``
    (out,)), a drawn optimizer, and a loop over drawn mini-batches ``(X, y)``:
    ``zero_grad()`` every ``k`` batches, ``loss = loss_fn(linear(X, weight, bias), y)``,
    ``loss.backward()``, and ``step()`` every ``k`` batches: gradient accumulation, where ``k``
    batches of a mean-reduced loss give ``k`` times the mean. The loss is ``mse_loss`` or
    ``cross_entropy`` (drawn among those the engine has), with its reduction passed or not."""
    _check_range("batches", min_batches, max_batches)
    losses = [loss for loss in LOSSES if capabilities.supports(f"op:{loss}")]
    if not capabilities.supports("op:linear") or not losses:
        raise InvalidArgument("mini-batch loops need the linear op and mse_loss or cross_entropy")
    dtype = choose(draw, param_dtypes(capabilities, stepped=True))
    features_in, features_out = integer(draw, 1, 3), integer(draw, 1, 3)
    loss_fn = choose(draw, losses)
    if loss_fn == "cross_entropy":
        features_out = max(features_out, 2)  # classes
    weight = Param("weight", draw(values((features_out, features_in), dtype)))
    bias = Param("bias", draw(values((features_out,), dtype)))
    make = draw_optimizer(draw, capabilities, ["weight", "bias"], max_groups=1)
    every = integer(draw, 1, 3)
    batch = integer(draw, 1, 4)
    reduction = choose(draw, [OMITTED, OMITTED, "mean", "sum"])
    instructions: list[Instruction] = [make]
    count = integer(draw, min_batches, max_batches)
    for i in range(count):
        if i % every == 0:
            instructions.append(draw_zero_grad(draw, capabilities))
        inputs = Const(draw(values((batch, features_in), dtype)))
        output = Node(f"out{i}", "linear", (inputs, Ref("weight"), Ref("bias")))
        params: dict[str, Any] = {} if reduction is OMITTED else {"reduction": reduction}
        if loss_fn == "mse_loss":
            target = Const(draw(values((batch, features_out), dtype)))
            loss = Node(f"loss{i}", "mse_loss", (Ref(output.out), target), params)
        else:
            classes = integers(draw, 0, features_out - 1, min_size=batch, max_size=batch)
            params["target"] = np.array(classes, dtype=np.int64)
            loss = Node(f"loss{i}", "cross_entropy", (Ref(output.out),), params)
        instructions += [Forward(loss.out, (output, loss)), Backward(loss.out)]
        if (i + 1) % every == 0 or i == count - 1:
            instructions.append(Step())
    return Program((weight, bias), tuple(instructions))
