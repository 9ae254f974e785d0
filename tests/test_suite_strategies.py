"""Meta-tests of the strategies: they reach the edges on purpose, and reject bad arguments."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance import choices
from conformance import strategies as cs
from conformance.adapter import Capabilities
from conformance.graphs import forwards, indices, reached
from conformance.interpret import run
from conformance.ops import ALL_OPS, index_parts
from conformance.program import (
    GRAD_EDIT_FORMS,
    UPDATE_FORMS,
    AddParamGroup,
    Backward,
    EditGrad,
    Forward,
    MakeOptimizer,
    MakeSGD,
    Param,
    SetGradNone,
    SetHyperparameter,
    Step,
    Update,
    ZeroGrad,
)
from conformance.runner import reference_engine

CAPS = Capabilities()
FIND = settings(max_examples=1000, database=None, deadline=None)


def _find(strategy, condition):
    return find(strategy, condition, settings=FIND)


def _draw(strategy):
    """One example, drawn the way a test would (``.example()`` is for interactive use)."""
    return find(strategy, lambda _: True, settings=FIND)


def _nodes(program):
    return [n for i in program.instructions if isinstance(i, Forward) for n in i.nodes]


def _lists(index):
    """The integer lists and index tensors among an index's parts."""
    return [list(p) for p in index_parts(index)
            if isinstance(p, list) or (isinstance(p, np.ndarray) and p.dtype.kind == "i")]


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("duplicate indices", lambda idx: any(len(set(p)) < len(p) for p in _lists(idx))),
        ("negative list index", lambda idx: any(min(p) < 0 for p in _lists(idx))),
        ("empty slice", lambda idx: np.zeros((4, 3))[idx].size == 0),
        ("all-False mask", lambda idx: isinstance(index_parts(idx)[0], np.ndarray)
         and index_parts(idx)[0].dtype == bool and not index_parts(idx)[0].any()),
        ("stepped slice", lambda idx: any(isinstance(p, slice) and (p.step or 1) > 1
                                          for p in index_parts(idx))),
        ("Ellipsis inside a tuple", lambda idx: isinstance(idx, tuple)
         and any(p is Ellipsis for p in idx)),
    ],
)
def test_indices_reach(what, condition):
    assert _find(indices((4, 3)), condition) is not None, what


INDEX_FORMS = {
    "bare int": lambda idx: type(idx) is int,
    "bare negative int": lambda idx: type(idx) is int and idx < 0,
    "bare slice": lambda idx: isinstance(idx, slice),
    "bare ...": lambda idx: idx is Ellipsis,
    "bare None": lambda idx: idx is None,
    "bare list": lambda idx: isinstance(idx, list),
    "bare int64 tensor": lambda idx: isinstance(idx, np.ndarray) and idx.dtype.kind == "i",
    "bare bool mask": lambda idx: isinstance(idx, np.ndarray) and idx.dtype == bool,
    "1-tuple": lambda idx: isinstance(idx, tuple) and len(idx) == 1,
    "tuple mixing kinds": lambda idx: isinstance(idx, tuple)
    and len({type(p).__name__ for p in idx}) > 1,
}


def _shares(strategy, forms, *, examples=400):
    """The share of ``examples`` drawn values (derandomized) for which each form holds."""
    drawn = []

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        drawn.append(value)

    collect()
    return {name: sum(map(form, drawn)) / len(drawn) for name, form in forms.items()}


def test_every_index_form_is_drawn_on_purpose():
    """Each form a user writes is a fair share of the indices generated graphs use, not drawn
    by luck (shares printed with ``-s``): engines route each through different code."""
    params = (Param("p0", np.zeros((4, 3))),)
    graphs = forwards(loss="loss0", params=params, ops=["getitem"], min_ops=1, max_ops=3)
    drawn = []

    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(graphs)
    def collect(info):
        drawn.extend(n.params["index"] for n in info.forward.nodes if n.op == "getitem")

    collect()
    shares = {name: sum(map(form, drawn)) / len(drawn) for name, form in INDEX_FORMS.items()}
    print({name: f"{share:.0%}" for name, share in shares.items()})
    rare = {name: share for name, share in shares.items() if share < 0.02}
    assert not rare, f"index forms in under 2% of {len(drawn)} indices: {rare}"


def _instructions(program, kind):
    return [i for i in program.instructions if isinstance(i, kind)]


def _makes(program):
    return _instructions(program, MakeSGD)


def _has_form(kind, form):
    return lambda program: any(i.form == form for i in _instructions(program, kind))


CALL_FORMS = {
    "loss.backward()": lambda p: any(not b.arguments for b in _instructions(p, Backward)),
    "backward(retain_graph=...)": lambda p: any("retain_graph" in b.arguments
                                                for b in _instructions(p, Backward)),
    "backward(create_graph=True)": lambda p: any(b.arguments.get("create_graph") is True
                                                 for b in _instructions(p, Backward)),
    "SGD without lr": lambda p: any("lr" not in m.defaults for m in _makes(p)),
    "SGD(params) with no hyperparameter": lambda p: any(not m.defaults for m in _makes(p)),
    "SGD with every hyperparameter": lambda p: any(len(m.defaults) == 6 for m in _makes(p)),
    "a group overriding some keys, inheriting others": lambda p: any(
        0 < len(g.overrides) < 6 for m in _makes(p) if len(m.groups) > 1 for g in m.groups),
    "a group overriding nothing": lambda p: any(
        not g.overrides for m in _makes(p) if len(m.groups) > 1 for g in m.groups),
    **{f"update {form}": _has_form(Update, form) for form in UPDATE_FORMS},
    **{f"grad edit {form}": _has_form(EditGrad, form) for form in GRAD_EDIT_FORMS},
}


ZERO_GRAD_FORMS = {
    "opt.zero_grad()": lambda p: any(not z.arguments for z in _instructions(p, ZeroGrad)),
    "zero_grad(set_to_none=True)": lambda p: any(z.arguments.get("set_to_none") is True
                                                 for z in _instructions(p, ZeroGrad)),
    "zero_grad(set_to_none=False)": lambda p: any(z.arguments.get("set_to_none") is False
                                                  for z in _instructions(p, ZeroGrad)),
}


def test_every_zero_grad_form_is_drawn_on_purpose():
    """In the loops of ``zero_grad::test_zero_grad_in_loops``, each way of calling
    ``zero_grad`` is in a fair share of programs (printed with ``-s``)."""
    loops = cs.programs(CAPS, actions=["forward_backward", "zero_grad", "step", "backward_again"])
    shares = _shares(loops, ZERO_GRAD_FORMS, examples=200)
    print({name: f"{share:.0%}" for name, share in shares.items()})
    rare = {name: share for name, share in shares.items() if share < 0.1}
    assert not rare, f"zero_grad forms in under 10% of zero_grad loops: {rare}"


def test_every_call_form_is_drawn_on_purpose():
    """Whole training loops pass and omit optional arguments, build SGDs from any subset of
    hyperparameters and groups that inherit, and hand-write updates and grad edits: each in a
    fair share of programs (printed with ``-s``)."""
    shares = _shares(cs.programs(CAPS), CALL_FORMS, examples=300)
    print({name: f"{share:.0%}" for name, share in shares.items()})
    rare = {name: share for name, share in shares.items() if share < 0.02}
    assert not rare, f"call forms drawn in under 2% of programs: {rare}"


def test_hand_written_loops_are_seed_d():
    """Every hand-written loop has no optimizer, updates every param by hand after each
    backward and resets every grad; some retain a graph and backward through it again after
    the update (the version-counter case)."""
    def again_after_update(program):
        seen_update = False
        for instruction in program.instructions:
            if isinstance(instruction, Update):
                seen_update = True
            elif isinstance(instruction, Backward) and seen_update and not instruction.arguments:
                previous = program.instructions[program.instructions.index(instruction) - 1]
                if isinstance(previous, Update):
                    return True
        return False

    forms = {"again after update": again_after_update,
             "no optimizer": lambda p: not _makes(p),
             "every param updated": lambda p: {u.param for u in _instructions(p, Update)}
             == {q.name for q in p.params}}
    shares = _shares(cs.hand_written_loops(CAPS), forms, examples=200)
    assert shares["no optimizer"] == 1.0, shares
    assert shares["every param updated"] == 1.0, shares
    assert shares["again after update"] > 0.05, shares


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
    assert "dampening" not in make.defaults
    assert all("dampening" not in group.overrides for group in make.groups)


def _passes_weight_decay(program):
    make = program.instructions[0]
    return (any("weight_decay" in h for h in (make.defaults, *(g.overrides for g in make.groups)))
            or any(isinstance(i, SetHyperparameter) and i.key == "weight_decay"
                   for i in program.instructions))


def test_a_hyperparameter_missing_from_one_kind_is_missing_only_there():
    caps = Capabilities(unsupported={"hyper:adam:weight_decay": "Adam has no weight_decay"})
    actions = ["forward_backward", "step", "set_hyperparameter"]
    forms = {"passes weight_decay": _passes_weight_decay}
    # in constructors, group overrides and changes between steps, for Adam only
    assert _shares(cs.programs(caps, kinds=["adam"], actions=actions), forms,
                   examples=200) == {"passes weight_decay": 0.0}
    assert _shares(cs.programs(caps, kinds=["adamw"], actions=actions), forms,
                   examples=200)["passes weight_decay"] > 0.3
    assert _shares(cs.invalid_hyperparameters(caps, kind="adam"),
                   {"passes weight_decay": lambda h: "weight_decay" in h}, examples=200
                   ) == {"passes weight_decay": 0.0}
    assert not caps.supports_hyperparameter("adam", "weight_decay")
    assert caps.supports_hyperparameter("sgd", "weight_decay")
    with pytest.raises(ValueError, match="'sgd' has no hyperparameter 'betas'"):
        caps.supports_hyperparameter("sgd", "betas")


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


def _ops_in(program):
    return {node.op for node in _nodes(program)}


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_an_op_declared_unsupported_never_appears(op):
    """Declare each op unsupported in turn: no generated program contains it, not even as the
    glue that makes operands positive, reduces values into the loss or names it."""
    caps = Capabilities(unsupported={f"op:{op}": "declared unsupported by this test"})
    every = [cs.programs(caps), cs.hand_written_loops(caps)]
    if caps.supports("op:linear") and {"mse_loss", "cross_entropy"} - {op}:
        every.append(cs.minibatch_loops(caps))
    drawn = []

    @settings(max_examples=60, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(every))
    def collect(program):
        drawn.append(program)

    collect()
    found = [program for program in drawn if op in _ops_in(program)]
    assert not found, f"{op} declared unsupported, yet in:\n{found[0].to_script()}"
    assert any(_nodes(program) for program in drawn)  # the programs did build graphs


def _steps_with_none_grads(program) -> list[str]:
    """Run on the reference: each step taken while a param the optimizer holds had grad None."""
    trace = run(reference_engine(), program)
    held: set[str] = set()
    found = []
    for index, instruction in enumerate(program.instructions, start=1):
        if isinstance(instruction, MakeOptimizer):
            held = {name for group in instruction.groups for name in group.params}
        elif isinstance(instruction, AddParamGroup):
            held |= set(instruction.group.params)
        elif isinstance(instruction, Step):
            missing = sorted(name for name in held if trace[index - 1].grads[name] is None)
            if missing:
                found.append(f"[{index}] step() with grad None: {', '.join(missing)}")
    return found


def test_no_step_with_a_none_grad_where_the_engine_cannot_skip_it():
    """Declare step_none_grad unsupported: no drawn program steps while a param the optimizer
    holds has grad None (checked on the reference's run), whatever made it None — no backward
    reached it yet, zero_grad(), p.grad = None, a param added by add_param_group — while the
    programs still step often. With the feature, such steps are drawn (and the draws are the
    suite's usual ones: nothing is drawn for the guard)."""
    caps = Capabilities(unsupported={"step_none_grad": "declared unsupported by this test"})
    every = [cs.programs(caps), cs.programs(caps, min_params=2, actions=[
                 "forward_backward", "step", "add_param_group", "zero_grad", "set_grad_none",
                 "backward_again", "reload_optimizer"]),
             cs.minibatch_loops(caps)]
    drawn = []

    @settings(max_examples=150, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(every))
    def collect(program):
        drawn.append(program)

    collect()
    for program in drawn:
        found = _steps_with_none_grads(program)
        assert not found, f"{found[0]}, in:\n{program.to_script()}"
    stepping = [p for p in drawn if any(isinstance(i, Step) for i in p.instructions)]
    assert len(stepping) > len(drawn) / 2
    assert _find(cs.programs(CAPS), lambda p: bool(_steps_with_none_grads(p))) is not None


def test_steps_every_loss_draws_losses_over_every_param_where_none_grads_cannot_be_skipped():
    """Properties that build their own steps (``@cs.steps_every_loss``) draw each loss over
    every param where step_none_grad is unsupported; with the feature, or outside such a
    property, losses still leave params out."""
    caps = Capabilities(unsupported={"step_none_grad": "declared unsupported by this test"})
    params = _draw(cs.params(CAPS, min_size=4))
    names = {p.name for p in params}
    every: dict[str, list[bool]] = {"stepping": [], "stepping, supported": []}

    @settings(max_examples=30, database=None, deadline=None, derandomize=True)
    @given(st.data())
    @cs.steps_every_loss
    def stepping(data):
        for key, capabilities in (("stepping", caps), ("stepping, supported", CAPS)):
            info = data.draw(cs.graphs(capabilities, loss="loss0", params=params))
            every[key].append(reached(info.forward, names) == names)

    stepping()
    assert all(every["stepping"]), every
    assert not all(every["stepping, supported"]), every
    assert _find(cs.graphs(caps, loss="loss0", params=params),
                 lambda info: reached(info.forward, names) != names) is not None


def test_no_0d_param_is_stepped_where_the_engine_cannot_step_one():
    """Declare step_0d_param unsupported: programs, and properties that build their own steps
    (``@cs.steps_every_loss``), draw no 0-d param; params nothing steps still may be 0-d, and
    with the feature, stepped params are 0-d too."""
    caps = Capabilities(unsupported={"step_0d_param": "declared unsupported by this test"})
    drawn: dict[str, list[tuple[int, ...]]] = {"programs": [], "stepping": [], "not stepping": [],
                                               "programs, supported": []}

    @settings(max_examples=100, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cs.programs(caps), cs.programs(CAPS))
    def collect(program, supported):
        drawn["programs"] += [p.value.shape for p in program.params]
        drawn["programs, supported"] += [p.value.shape for p in supported.params]

    @settings(max_examples=100, database=None, deadline=None, derandomize=True)
    @given(st.data())
    @cs.steps_every_loss
    def stepping(data):
        drawn["stepping"] += [p.value.shape for p in data.draw(cs.params(caps))]

    @settings(max_examples=100, database=None, deadline=None, derandomize=True)
    @given(cs.params(caps))
    def not_stepping(params):
        drawn["not stepping"] += [p.value.shape for p in params]

    collect()
    stepping()
    not_stepping()
    assert () not in drawn["programs"], drawn["programs"]
    assert () not in drawn["stepping"], drawn["stepping"]
    assert () in drawn["not stepping"], drawn["not stepping"]
    assert () in drawn["programs, supported"], drawn["programs, supported"]


def _dtypes_drawn(caps: Capabilities) -> dict[str, list[set[str]]]:
    """The set of param dtypes of each draw: of programs and mini-batch loops (with ``caps``),
    of programs with every feature, of params drawn inside a ``@cs.steps_every_loss`` property, and of params
    nothing steps."""
    drawn: dict[str, list[set[str]]] = {"programs": [], "stepping": [], "not stepping": [],
                                        "programs, supported": []}

    def dtypes(params) -> set[str]:
        return {str(p.value.dtype) for p in params}

    @settings(max_examples=150, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cs.programs(caps), cs.minibatch_loops(caps), cs.programs(CAPS))
    def collect(program, minibatch, supported):
        drawn["programs"] += [dtypes(program.params), dtypes(minibatch.params)]
        drawn["programs, supported"].append(dtypes(supported.params))

    @settings(max_examples=150, database=None, deadline=None, derandomize=True)
    @given(st.data())
    @cs.steps_every_loss
    def stepping(data):
        drawn["stepping"].append(dtypes(data.draw(cs.params(caps))))

    @settings(max_examples=150, database=None, deadline=None, derandomize=True)
    @given(cs.params(caps))
    def not_stepping(params):
        drawn["not stepping"].append(dtypes(params))

    collect()
    stepping()
    not_stepping()
    return drawn


def test_stepped_params_share_one_dtype_where_the_engine_cannot_mix_them():
    """Declare step_mixed_dtypes unsupported: programs, and properties that build their own
    steps, draw the params an optimizer holds in one dtype; params nothing steps still mix
    dtypes, and with the feature, stepped params do too."""
    drawn = _dtypes_drawn(
        Capabilities(unsupported={"step_mixed_dtypes": "declared unsupported by this test"}))
    mixed = {kind: sum(len(found) > 1 for found in draws) for kind, draws in drawn.items()}
    assert mixed["programs"] == 0, mixed
    assert mixed["stepping"] == 0, mixed
    assert mixed["not stepping"] > 0, mixed
    assert mixed["programs, supported"] > 0, mixed


def test_no_float64_param_is_stepped_where_the_engine_cannot_step_one():
    """Declare step_float64 unsupported: programs, and properties that build their own steps,
    draw float32 params only; params nothing steps are float64 too, and with the feature,
    stepped params are."""
    drawn = _dtypes_drawn(
        Capabilities(unsupported={"step_float64": "declared unsupported by this test"}))
    float64 = {kind: sum("float64" in found for found in draws) for kind, draws in drawn.items()}
    assert float64["programs"] == 0, float64
    assert float64["stepping"] == 0, float64
    assert float64["not stepping"] > 0, float64
    assert float64["programs, supported"] > 0, float64


def _helper_draws(draw) -> tuple:
    """One value from each of ``conformance.choices``'s helpers."""
    return (choices.integer(draw, -3, 4), choices.boolean(draw),
            choices.real(draw, -4.0, 4.0, width=32), choices.real(draw, 0.5, 4.0),
            choices.permutation(draw, ["a", "b", "c"]),
            choices.integers(draw, 0, 2, min_size=1, max_size=4))


def _check_helper_draws(drawn: tuple) -> None:
    number, flag, single, double, shuffled, listed = drawn
    assert isinstance(number, int)
    assert -3 <= number <= 4
    assert isinstance(flag, bool)
    assert -4.0 <= single <= 4.0
    assert float(np.float32(single)) == single  # width=32: exact in float32
    assert 0.5 <= double <= 4.0
    assert sorted(shuffled) == ["a", "b", "c"]
    assert 1 <= len(listed) <= 4
    assert all(0 <= i <= 2 for i in listed)


@settings(max_examples=50, database=None, deadline=None)
@given(st.data())
def test_choice_helpers_draw_directly_inside_a_composite_and_through_any_other_draw(data):
    """Inside a composite the helpers choose through Hypothesis's ``ConjectureData`` itself;
    through ``st.data()``'s ``draw`` they fall back to strategies. Both give values in range."""

    @st.composite
    def direct(draw):
        assert choices._conjecture(draw) is not None  # the fast path is the one taken
        return _helper_draws(draw)

    _check_helper_draws(data.draw(direct()))
    assert choices._conjecture(data.draw) is None
    _check_helper_draws(_helper_draws(data.draw))


def test_no_one_element_loss_where_the_engine_takes_only_0d_ones():
    """Declare backward_one_element unsupported: no loss of shape (1,) or (1, 1), scalar or
    not (a one-element tensor loss is reshaped to 0-d); with the feature, both kinds occur."""
    caps = Capabilities(unsupported={"backward_one_element": "declared unsupported by this test"})
    shapes: dict[bool, list[tuple[int, ...]]] = {True: [], False: []}

    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data(), st.booleans())
    def collect(data, scalar):
        for capabilities, supported in ((caps, False), (CAPS, True)):
            params = data.draw(cs.params(capabilities))
            info = data.draw(cs.graphs(capabilities, loss="loss", params=params, scalar=scalar))
            shapes[supported].append(info.shape)

    collect()
    one_element = [s for s in shapes[False] if s != () and int(np.prod(s)) == 1]
    assert not one_element, one_element
    assert {(1,), (1, 1)} & set(shapes[True])


def test_no_scalar_base_pow_where_the_engine_declares_it_unsupported():
    """Declare pow_scalar_base unsupported: no pow whose base is a Python number (2.0 ** x),
    while scalar exponents (x ** 2.0) stay; with the feature, both occur."""
    caps = Capabilities(unsupported={"pow_scalar_base": "declared unsupported by this test"})
    bases: dict[bool, list[Any]] = {True: [], False: []}

    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        for capabilities, supported in ((caps, False), (CAPS, True)):
            params = data.draw(cs.params(capabilities))
            info = data.draw(cs.graphs(capabilities, loss="loss", params=params, ops=["pow"]))
            bases[supported] += [node.operands for node in info.forward.nodes
                                 if node.op == "pow"]

    collect()

    def scalar_base(operands: Any) -> bool:
        return isinstance(operands[0], float)

    def scalar_exponent(operands: Any) -> bool:
        return isinstance(operands[1], float)

    assert not [o for o in bases[False] if scalar_base(o)]
    assert any(scalar_exponent(o) for o in bases[False])
    assert any(scalar_base(o) for o in bases[True])
