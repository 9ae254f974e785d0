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
    Backward,
    Group,
    Instruction,
    MakeSGD,
    Param,
    Program,
    SetGradNone,
    SetHyperparameter,
    Step,
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


@st.composite
def hyperparameters(draw: Draw, capabilities: Capabilities) -> dict[str, Any]:
    """Valid SGD hyperparameters (every one the engine supports); nesterov only where valid."""
    drawn: dict[str, Any] = {"lr": draw(LEARNING_RATES)}
    for name in ("momentum", "dampening", "weight_decay"):
        drawn[name] = draw(FACTORS) if capabilities.supports(f"hyper:{name}") else 0.0
    nesterov_valid = drawn["momentum"] > 0 and drawn["dampening"] == 0
    drawn["nesterov"] = (
        capabilities.supports("hyper:nesterov") and nesterov_valid and draw(st.booleans())
    )
    drawn["maximize"] = capabilities.supports("hyper:maximize") and draw(st.booleans())
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
        overrides = draw(hyperparameters(capabilities)) if count > 1 else {}
        groups.append(Group(tuple(held[start:stop]), overrides))
    return MakeSGD(tuple(groups), defaults)


def graphs(
    capabilities: Capabilities, *, ops: Collection[str] | None = None, **options: Any
) -> st.SearchStrategy[GraphInfo]:
    """:func:`~conformance.graphs.forwards` limited to what the engine supports: its ops (or
    those of ``ops`` it supports) and, unless it declared them unsupported, boolean masks."""
    op_set = capabilities.ops if ops is None else capabilities.ops & set(ops)
    return forwards(ops=op_set, masks=capabilities.bool_masks, **options)


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

    Actions: "forward_backward" (a new loss over a drawn subset of params, then its backward),
    "backward_again" (another backward through an earlier loss, retain_graph drawn), "step",
    "zero_grad" (set_to_none drawn), "set_grad_none", "set_hyperparameter". Losses use drawn
    subsets of params, so some grads stay None and some params get their first grad late.
    """
    _check_range("instructions", min_instructions, max_instructions)
    known = ("forward_backward", "backward_again", "step", "zero_grad", "set_grad_none",
             "set_hyperparameter")
    chosen_actions = list(actions or known)
    for action in chosen_actions:
        if action not in known:
            raise InvalidArgument(f"unknown action {action!r}; known: {', '.join(known)}")
    if not capabilities.supports("set_hyperparameter") and "set_hyperparameter" in chosen_actions:
        chosen_actions.remove("set_hyperparameter")
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
            instructions.append(Backward(info.forward.loss, draw(_retain())))
        elif action == "backward_again":
            info = draw(st.sampled_from(losses))
            instructions.append(Backward(info.forward.loss, draw(_retain())))
        elif action == "step":
            instructions.append(Step())
        elif action == "zero_grad":
            keep_ok = capabilities.supports("zero_grad_keep")
            instructions.append(ZeroGrad(set_to_none=not keep_ok or draw(st.booleans())))
        elif action == "set_grad_none":
            instructions.append(SetGradNone(draw(st.sampled_from(names))))
        elif action == "set_hyperparameter":
            instructions.append(draw(_set_hyperparameter(capabilities, make)))
    return Program(drawn_params, tuple(instructions))


def _retain() -> st.SearchStrategy[bool | None]:
    return st.sampled_from([None, True, False])


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
