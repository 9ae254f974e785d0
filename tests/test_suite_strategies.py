"""Meta-tests of the strategies: they reach the edges on purpose, and reject bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, settings
from hypothesis.errors import InvalidArgument

from conformance import strategies as cs
from conformance.adapter import Capabilities
from conformance.graphs import forwards, indices
from conformance.program import Backward, Forward, Param, SetGradNone, Step, ZeroGrad

CAPS = Capabilities()
FIND = settings(max_examples=1000, database=None, deadline=None)


def _find(strategy, condition):
    return find(strategy, condition, settings=FIND)


def _draw(strategy):
    """One example, drawn the way a test would (``.example()`` is for interactive use)."""
    return find(strategy, lambda _: True, settings=FIND)


def _nodes(program):
    return [n for i in program.instructions if isinstance(i, Forward) for n in i.nodes]


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("duplicate indices", lambda idx: any(isinstance(p, tuple) and len(set(p)) < len(p)
                                              for p in idx)),
        ("negative list index", lambda idx: any(isinstance(p, tuple) and min(p) < 0 for p in idx)),
        ("empty slice", lambda idx: np.zeros((4, 3))[tuple(list(p) if isinstance(p, tuple) else p
                                                          for p in idx)].size == 0),
        ("all-False mask", lambda idx: isinstance(idx[0], np.ndarray) and not idx[0].any()),
        ("stepped slice", lambda idx: any(isinstance(p, slice) and (p.step or 1) > 1 for p in idx)),
        ("Ellipsis", lambda idx: any(p is Ellipsis for p in idx)),
    ],
)
def test_indices_reach(what, condition):
    assert _find(indices((4, 3)), condition) is not None, what


def test_values_reach_exact_zero_and_ties():
    values = cs.values((4,), np.dtype("float64"))
    assert _find(values, lambda v: (v == 0).any()) is not None
    assert _find(values, lambda v: len(set(v.tolist())) < 4) is not None


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("a param the loss never uses",
         lambda p: any(isinstance(i, Backward) for i in p.instructions)
         and len({r.name for n in _nodes(p) for r in n.operands if hasattr(r, "name")}
                 & {q.name for q in p.params}) < len(p.params)),
        ("a param whose first grad comes after a step",
         lambda p: _first_use_after_step(p)),
        ("many steps without zero_grad",
         lambda p: sum(isinstance(i, Step) for i in p.instructions) >= 3
         and not any(isinstance(i, ZeroGrad) for i in p.instructions)),
        ("a grad set to None", lambda p: any(isinstance(i, SetGradNone) for i in p.instructions)),
        ("a repeated backward", lambda p: _repeated_backward(p)),
        ("two param groups", lambda p: len(p.instructions[0].groups) == 2),
        ("mixed float32 and float64", lambda p: len({q.value.dtype for q in p.params}) == 2),
    ],
)
def test_programs_reach(what, condition):
    assert _find(cs.programs(CAPS), condition) is not None, what


def _first_use_after_step(program) -> bool:
    stepped = False
    used: set[str] = set()
    for instruction in program.instructions:
        if isinstance(instruction, Step):
            stepped = True
        if isinstance(instruction, Forward):
            names = {r.name for n in instruction.nodes for r in n.operands if hasattr(r, "name")}
            fresh = names & {p.name for p in program.params} - used
            if stepped and fresh:
                return True
            used |= names
    return False


def _repeated_backward(program) -> bool:
    losses = [i.loss for i in program.instructions if isinstance(i, Backward)]
    return len(losses) != len(set(losses))


def test_capabilities_are_respected():
    caps = Capabilities(unsupported={"hyper:dampening": "no", "dtype:float64": "no",
                                     "op:exp": "no", "param_groups": "no"})
    program = _find(cs.programs(caps), lambda p: len(_nodes(p)) > 6)
    assert all(n.op != "exp" for n in _nodes(program))
    assert all(q.value.dtype == np.float32 for q in program.params)
    make = program.instructions[0]
    assert len(make.groups) == 1
    assert make.defaults["dampening"] == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: _draw(cs.programs(CAPS, min_instructions=5, max_instructions=2)),
         "min_instructions"),
        (lambda: _draw(cs.programs(CAPS, actions=["jump"])), "unknown action 'jump'"),
        (lambda: _draw(cs.params(CAPS, min_size=3, max_size=1)), "min_size"),
        (lambda: _draw(cs.params(Capabilities(unsupported={"dtype:float32": "x",
                                                          "dtype:float64": "y"}))),
         "neither float32 nor float64"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": []}, "at least one param"),
        ({"ops": ["frobnicate"]}, "unknown ops"),
        ({"min_ops": 3, "max_ops": 1}, "min_ops=3, max_ops=1"),
    ],
)
def test_forwards_rejects_bad_arguments(kwargs, message):
    params = [Param("p0", np.zeros(3))]
    arguments = {"loss": "l", "params": params, **kwargs}
    with pytest.raises(ValueError, match=message):
        _draw(forwards(**arguments))


def test_unknown_capability_is_named():
    with pytest.raises(ValueError, match="unknown feature 'hyper:dampning'"):
        Capabilities(unsupported={"hyper:dampning": "typo"})
