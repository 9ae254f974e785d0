"""Runs checked past a known deviation instead of set aside: deviations confined to param
values after a step (``KnownDeviation.local``), whose instructions are excused while the run is
compared on to its end, so that a second, unrelated difference in it still fails; a drift at a
run's end that a deviation describes, its last check; and runs that agree with the reference,
which no deviation sets aside, whatever its predicate says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from broken_engines.rounding import RoundsAwayFromZero
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from conformance.adapter import Diverges, KnownDeviation
from conformance.compare import Divergence
from conformance.engines.torch_engines import TorchEngine
from conformance.errors import ErrorKind
from conformance.program import (
    Backward,
    Forward,
    Group,
    MakeOptimizer,
    Node,
    Param,
    Program,
    Ref,
    SetGrad,
    Step,
)
from conformance.report import PropertyResult, Report
from conformance.runner import (
    CURRENT_PROPERTY,
    CURRENT_TALLY,
    Tally,
    check_against_reference,
    law,
    run_engine,
)

WITNESS = "sgd::test_hyperparameter[lr]"
ELSEWHERE = "sgd::test_steps_match_reference"

SKIPS_0D = KnownDeviation(
    property=WITNESS,
    reason="step() leaves 0-d params as they are",
    name="0-d params not stepped",
    diverges=Diverges(at=(Step,), fields=("values",), shapes=((),)),
    local=True,
)


class Skips0D(TorchEngine):
    """torch, but step() puts every 0-d param back as it was."""

    name = "skips-0d"
    known_deviations: ClassVar = (SKIPS_0D,)

    def step(self, optimizer: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        kept = [(p, p.detach().clone()) for p in params if p.dim() == 0]
        super().step(optimizer)
        with torch.no_grad():
            for p, value in kept:
                p.copy_(value)


class Skips0DThenDoublesTheStep(Skips0D):
    """Also, from its second step on, every other param moves twice as far: a second bug
    that only a run checked past the first one can show."""

    name = "skips-0d-then-doubles"

    def start_program(self) -> None:
        self.steps = 0

    def step(self, optimizer: Any) -> None:
        self.steps += 1
        before = {p: p.detach().clone() for group in optimizer.param_groups
                  for p in group["params"] if p.dim() > 0}
        super().step(optimizer)
        if self.steps > 1:
            with torch.no_grad():
                for p, value in before.items():
                    p.copy_(2 * p - value)


def _program() -> Program:
    params = (Param("p0", np.array(1.0)), Param("p1", np.array([1.0, -2.0])))
    grads = (SetGrad("p0", np.array(0.5)), SetGrad("p1", np.array([0.25, 1.0])))
    return Program(params, (MakeOptimizer((Group(("p0", "p1")),), {"lr": 0.5}),
                            *grads, Step(), *grads, Step()))


def _as_property(property_id: str, body: Callable[[], object]) -> Tally:
    """Run ``body`` as a property's example runs: inside a Hypothesis test, with the
    property's id and tally set. A run set aside raises ``Unsatisfiable`` (its only example)."""
    tally = Tally()

    @settings(max_examples=1, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.none())
    def one(_: None) -> None:
        tokens = CURRENT_PROPERTY.set(property_id), CURRENT_TALLY.set(tally)
        try:
            body()
        finally:
            CURRENT_TALLY.reset(tokens[1])
            CURRENT_PROPERTY.reset(tokens[0])

    one()
    return tally


def _check(engine: Any, program: Program, property_id: str) -> Tally:
    """``check_against_reference`` of ``program`` as a property runs it."""
    def body() -> None:
        engine.start_program()
        check_against_reference(engine, program)

    return _as_property(property_id, body)


def test_a_run_showing_a_local_deviation_is_checked_to_its_end_not_set_aside():
    tally = _check(Skips0D(), _program(), ELSEWHERE)
    assert tally.checked_past == {SKIPS_0D.label: 1}
    assert not tally.set_aside


def test_a_second_difference_after_a_local_deviation_fails_the_run():
    with pytest.raises(Divergence) as failure:
        _check(Skips0DThenDoublesTheStep(), _program(), ELSEWHERE)
    found = failure.value.found
    assert found is not None
    assert (found.index, found.params) == (7, {"p0", "p1"})  # the second step
    assert "Earlier, after instructions [4]" in str(failure.value)


def test_a_local_deviation_is_not_excused_in_its_own_witness():
    with pytest.raises(Divergence) as failure:
        _check(Skips0D(), _program(), WITNESS)
    found = failure.value.found
    assert found is not None
    assert (found.index, found.params) == (4, {"p0"})
    assert SKIPS_0D.diverges is not None
    assert SKIPS_0D.diverges.matches(_program(), found, None)


def test_a_local_deviation_excuses_only_what_it_describes():
    """The same bug declared for 1-d params only: the 0-d param's difference is not excused,
    so the run is judged by it (here: neither set aside nor checked past)."""

    class DeclaredFor1D(Skips0D):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="1-d params", diverges=Diverges(
                at=(Step,), fields=("values",), shapes=((2,),)), local=True),)

    with pytest.raises(Divergence):
        _check(DeclaredFor1D(), _program(), ELSEWHERE)


def test_a_non_local_deviation_still_sets_the_whole_run_aside():
    class NotLocal(Skips0D):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="0-d", diverges=SKIPS_0D.diverges),)

    with pytest.raises(Unsatisfiable):
        _check(NotLocal(), _program(), ELSEWHERE)


@pytest.mark.parametrize("diverges", [
    None,
    Diverges(at=(Step,), fields=("values", "grad history")),
    Diverges(at=(Backward,), fields=("grads", "aliasing")),
    Diverges(at=(Backward,), fields=("grad history",)),
    Diverges(at=(Step,), fields=("drift",)),
    Diverges(at=(Step,)),
    Diverges(fields=("values",)),
    Diverges(at=(Step,), crash=True),
])
def test_local_is_refused_where_the_reference_cannot_take_the_engines_state(diverges):
    with pytest.raises(ValueError, match="local=True excuses a difference the reference can "
                                         "take from the engine"):
        KnownDeviation(property=WITNESS, reason="r", name="the bad one", diverges=diverges,
                       applies=lambda program, trace: True, local=True)


# --- backward-local deviations: the reference takes the engine's grads and goes on ----------

NEVER_FREES = KnownDeviation(
    property="retain_graph::test_repeated_backward_raises_like_torch",
    reason="a second backward through a freed graph accumulates again",
    name="never frees",
    diverges=Diverges(at=(Backward,), fields=("error", "grads"), engine_error=None,
                      reference_error=ErrorKind.FREED_GRAPH),
    local=True,
)


class NeverFrees(TorchEngine):
    """torch, but every backward retains its graph (as tinygrad, which has no freeing)."""

    name = "never-frees"
    known_deviations: ClassVar = (NEVER_FREES,)

    def backward(self, loss: Any, **arguments: Any) -> None:
        super().backward(loss, **{**arguments, "retain_graph": True})


class NeverFreesThenDoublesTheStep(NeverFrees):
    """Also, every step moves each param twice as far."""

    def step(self, optimizer: Any) -> None:
        before = {p: p.detach().clone() for group in optimizer.param_groups
                  for p in group["params"]}
        super().step(optimizer)
        with torch.no_grad():
            for p, value in before.items():
                p.copy_(2 * p - value)


def _backward_twice_program() -> Program:
    """p * p backwarded twice (the second raises in torch: mul saved p), then a new loss
    accumulates onto the grad, then a step: without taking the engine's grads after the
    second backward, the reference's grad after the third differs by the second's."""
    square = Forward("l1", (Node("l0", "mul", (Ref("p0"), Ref("p0"))),
                            Node("l1", "sum", (Ref("l0"),))))
    total = Forward("t0", (Node("t0", "sum", (Ref("p0"),)),))
    return Program((Param("p0", np.array([1.0, 2.0])),),
                   (MakeOptimizer((Group(("p0",)),), {"lr": 0.5}), square, Backward("l1"),
                    Backward("l1"), total, Backward("t0"), Step()))


def test_a_backward_local_deviation_takes_the_engines_grads_and_compares_on():
    tally = _check(NeverFrees(), _backward_twice_program(), ELSEWHERE)
    assert tally.checked_past == {NEVER_FREES.label: 1}
    assert not tally.set_aside


def test_without_taking_the_grads_the_next_backward_would_differ():
    """What taking the engine's grads is for: without it, the reference's grad after the
    third backward is the engine's less the second backward's, a difference the second
    backward made and not the third."""
    from conformance.runner import reference_trace

    program = _backward_twice_program()
    engine = NeverFrees()
    engine.start_program()
    actual = run_engine(engine, program)
    expected = reference_trace(program, follow=actual)
    third = len(program.instructions) - 1  # after Backward("t0")
    assert expected[4].error is ErrorKind.FREED_GRAPH
    assert actual[4].error is None
    np.testing.assert_allclose(actual[third].grads["p0"] - expected[third].grads["p0"],
                               [2.0, 4.0])
    adopted = reference_trace(program, follow=actual, adopt=frozenset({4}))
    np.testing.assert_allclose(adopted[third].grads["p0"], actual[third].grads["p0"])
    assert adopted[4].error is ErrorKind.FREED_GRAPH  # what it observed is its own


def test_a_second_difference_after_a_backward_local_deviation_fails_the_run():
    with pytest.raises(Divergence) as failure:
        _check(NeverFreesThenDoublesTheStep(), _backward_twice_program(), ELSEWHERE)
    found = failure.value.found
    assert found is not None
    assert (found.index, found.fields) == (7, {"values"})  # the step
    assert "Earlier, after instructions [4]" in str(failure.value)


def test_an_error_outside_a_backward_is_not_excused_by_a_local_deviation():
    """A step that raises leaves state the reference cannot take (no momentum kept, nothing
    stepped): a local deviation describing it sets the run aside instead."""

    class StepRaises(TorchEngine):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="step raises", name="step raises",
            diverges=Diverges(at=(Step,), fields=("error", "values")), local=True),)

        def step(self, optimizer: Any) -> None:
            raise ValueError("invalid hyperparameter")

        def classify(self, error: Exception) -> ErrorKind | None:
            if "invalid hyperparameter" in str(error):
                return ErrorKind.INVALID_HYPERPARAMETER
            return super().classify(error)

    with pytest.raises(Unsatisfiable):
        _check(StepRaises(), _program(), ELSEWHERE)


def test_reports_count_runs_checked_past_a_local_deviation():
    result = PropertyResult("sgd::test_x", "sgd", "test_x", "pass", examples=10, passed=10,
                            checked_past={SKIPS_0D.label: 4})
    report = Report("skips-0d", "1", "ci", "0", {}, results=[result])
    text = report.to_markdown()
    assert "examples checked past a local known deviation" in text
    assert f"| `sgd::test_x` | {SKIPS_0D.label} | 4 |" in text
    assert report.share_set_aside() == 0.0
    assert Report.from_json(report.to_json()).results[0].checked_past == {SKIPS_0D.label: 4}


def test_a_run_that_agrees_with_the_reference_is_never_set_aside():
    """A predicate true of every run (what a syntactic one is, for the runs it names) sets
    nothing aside where the engine agrees: there is nothing for it to explain."""

    class ClaimsEverything(TorchEngine):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="everywhere", applies=lambda program, trace: True),)

    tally = _check(ClaimsEverything(), _program(), ELSEWHERE)
    assert not tally.set_aside
    assert not tally.checked_past


def _drifting_program() -> Program:
    """Twenty SGD steps on a given grad: an engine rounding every op one ulp away from zero
    ends past the drift bound (``tests/test_suite_tolerance.py``), agreeing after every step."""
    grad = SetGrad("p0", np.array([-0.3, -0.3], dtype=np.float32))
    return Program((Param("p0", np.array([0.7, -0.7 / 3], dtype=np.float32)),),
                   (MakeOptimizer((Group(("p0",)),), {"lr": 0.1}), *(grad, Step()) * 20))


def test_a_drift_a_deviation_describes_is_excused_as_the_runs_last_check():
    with pytest.raises(Divergence, match="drift"):
        _check(RoundsAwayFromZero(), _drifting_program(), ELSEWHERE)

    class DeclaresItsDrift(RoundsAwayFromZero):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="one ulp an op", name="one ulp an op",
            diverges=Diverges(fields=("drift",))),)

    tally = _check(DeclaresItsDrift(), _drifting_program(), ELSEWHERE)
    assert tally.checked_past == {"one ulp an op": 1}
    assert not tally.set_aside


def test_reports_say_how_a_run_is_told_to_show_each_deviation():
    """By its divergence (the fields given), by a predicate (named: what a divergence does not
    say), or not at all; and whether it is local."""
    predicate = KnownDeviation(property=WITNESS, reason="r", name="by predicate",
                               applies=lambda program, trace: False)
    unscoped = KnownDeviation(property=WITNESS, reason="r", name="unscoped")
    assert SKIPS_0D.matched_by == ("its divergence (at=Step, fields=values, shapes=()); "
                                   "local: excused at the steps it describes")
    assert predicate.matched_by == ("a predicate, `<lambda>` (what a divergence does not "
                                    "say)")
    assert unscoped.matched_by.startswith("nothing")
    report = Report("e", "1", "ci", "0", {}, deviations=[
        {"properties": [WITNESS], "reason": "r", "evidence": "", "label": d.label,
         "matched_by": d.matched_by} for d in (SKIPS_0D, predicate)])
    text = report.to_markdown()
    assert f"*{SKIPS_0D.label}*, told in a run by its divergence (at=Step" in text
    assert "*by predicate*, told in a run by a predicate" in text


def test_a_law_that_holds_is_never_set_aside_and_one_that_fails_is_where_a_deviation_shows():
    """An oracle-free law (``runner.law``): a step after which nothing may move. The engine
    skips 0-d params, so the law holds for p0 and fails for a law about p1 only where the
    deviation does not explain it."""
    program = _program()

    def holds() -> None:
        trace = run_engine(Skips0D(), program)
        with law(Skips0D(), (program, trace)):
            assert (trace[-1].values["p0"] == program.params[0].value).all()

    assert not _as_property(ELSEWHERE, holds).set_aside  # the deviation shows; the law holds

    class NotLocal(Skips0D):
        known_deviations: ClassVar = (KnownDeviation(
            property=WITNESS, reason="0-d", name="0-d", diverges=SKIPS_0D.diverges),)

    def fails(engine: Any) -> Callable[[], None]:
        def body() -> None:
            trace = run_engine(engine, program)
            with law(engine, (program, trace)):
                assert (trace[-1].values["p1"] == program.params[1].value).all(), "p1 moved"
        return body

    with pytest.raises(Unsatisfiable):  # the deviation shows in the run: set aside
        _as_property(ELSEWHERE, fails(NotLocal()))
    with pytest.raises(AssertionError, match="p1 moved"):  # no deviation shows in torch's run
        _as_property(ELSEWHERE, fails(TorchEngine()))


def test_a_divergence_is_told_by_its_detail_and_its_size():
    """``detail`` must describe every difference, and ``smaller_than`` bounds them: a
    rounding-sized difference is not any difference."""
    from conformance.compare import FoundDivergence

    def found(problem: str, largest: float) -> FoundDivergence:
        return FoundDivergence(index=4, fields=frozenset({"values"}), engine_error=None,
                               reference_error=None, dtypes=frozenset({"float64"}),
                               problems=(problem,), params=frozenset({"p1"}),
                               shapes=frozenset({(2,)}), largest=largest)

    nan = Diverges(at=(Step,), fields=("values",), detail="NaN in different places")
    small = Diverges(at=(Step,), fields=("values",), smaller_than=1e-3)
    assert nan.matches(_program(), found("p1: NaN in different places", float("inf")), None)
    assert not nan.matches(_program(), found("p1: max |difference| 1e-06 > ...", 1e-6), None)
    assert small.matches(_program(), found("p1: max |difference| 1e-06 > ...", 1e-6), None)
    assert not small.matches(_program(), found("p1: max |difference| 0.5 > ...", 0.5), None)
    assert not small.matches(_program(), found("p1: NaN in different places", float("inf")), None)
    with pytest.raises(ValueError, match="detail="):
        Diverges(detail="(")


def test_one_step_showing_two_local_deviations_in_two_params_is_excused_by_both():
    """A step where the 0-d param is not stepped and the other moves a little too far: each
    param's difference alone is one finding, and together they excuse the step."""

    class AlsoOvershoots(Skips0D):
        known_deviations: ClassVar = (SKIPS_0D, KnownDeviation(
            property="sgd::test_param_groups", reason="a step 1e-6 too long",
            name="overshoots", diverges=Diverges(at=(Step,), fields=("values",),
                                                 shapes=((2,),), smaller_than=1e-3),
            local=True))

        def step(self, optimizer: Any) -> None:
            before = {p: p.detach().clone() for group in optimizer.param_groups
                      for p in group["params"] if p.dim() > 0}
            super().step(optimizer)
            with torch.no_grad():
                for p, value in before.items():
                    p.add_((p - value) * 1e-6)

    tally = _check(AlsoOvershoots(), _program(), ELSEWHERE)
    assert tally.checked_past == {SKIPS_0D.label: 1, "overshoots": 1}
    assert not tally.set_aside


def test_reports_list_the_declared_capability_gaps():
    """A gap narrows what is drawn without skipping a property (``step_0d_param``,
    ``backward_one_element``): the report still says it."""
    report = Report("e", "1", "ci", "0", {},
                    capability_gaps={"backward_one_element": "0-d losses only"})
    assert "- `backward_one_element`: 0-d losses only" in report.to_markdown()
    assert Report.from_json(report.to_json()).capability_gaps == {
        "backward_one_element": "0-d losses only"}


def test_a_law_fails_where_the_engine_raised_in_its_programs():
    """A law's programs are valid: an engine that refuses every backward (a classified error)
    leaves every grad None, which a law comparing grads alone would take as holding."""

    class RefusesEveryBackward(TorchEngine):
        def backward(self, loss: Any, **arguments: Any) -> None:
            raise RuntimeError("Trying to backward through the graph a second time")

    square = Forward("l1", (Node("l0", "mul", (Ref("p0"), Ref("p0"))),
                            Node("l1", "sum", (Ref("l0"),))))
    program = Program((Param("p0", np.array([1.0, 2.0])),),
                      (square, Backward("l1", True), Backward("l1", True)))

    def body() -> None:
        engine = RefusesEveryBackward()
        trace = run_engine(engine, program)
        with law(engine, (program, trace)):
            assert trace[-1].grads["p0"] is None
            assert trace[2].grads["p0"] is None

    with pytest.raises(Divergence, match=r"after instruction \[2\][^-]*- error: engine raised "
                                         r"FREED_GRAPH, reference ok"):
        _as_property(ELSEWHERE, body)


def test_a_witness_accepts_a_failure_whose_fields_are_its_deviation_and_another_local_one():
    """One backward misses the in-place error (the witness's deviation) and replaces a grad
    (another local deviation of the engine): field by field, the failure is the witness's.
    With an aspect neither describes it is a second, unrecorded difference."""
    from types import SimpleNamespace

    from conformance.compare import FoundDivergence
    from conformance.plugin import _engine_key, _witnessed

    missed = KnownDeviation(property=WITNESS, reason="no version bump", name="missed",
                            diverges=Diverges(at=(Backward,), fields=("error", "grads")),
                            local=True)
    replaced = KnownDeviation(property=ELSEWHERE, reason="grad replaced", name="replaced",
                              diverges=Diverges(at=(Backward,), fields=("grad identity",)),
                              local=True)

    class Both(TorchEngine):
        known_deviations: ClassVar = (missed, replaced)

    def found(*fields: str) -> FoundDivergence:
        return FoundDivergence(index=3, fields=frozenset(fields), engine_error=None,
                               reference_error=ErrorKind.INPLACE_MODIFIED,
                               dtypes=frozenset(), problems=fields)

    program = _backward_twice_program()  # instruction 3 is a Backward
    item = SimpleNamespace(config=SimpleNamespace(stash={_engine_key: Both()}))
    both = found("error", "grad identity")
    both = FoundDivergence(**{**both.__dict__, "aspects": (found("error"),
                                                           found("grad identity"))})
    assert _witnessed(item, missed, program, both)
    other = FoundDivergence(**{**both.__dict__, "fields": frozenset({"error", "aliasing"}),
                               "aspects": (found("error"), found("aliasing"))})
    assert not _witnessed(item, missed, program, other)
