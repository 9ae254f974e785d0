"""Run a program on the engine under test and on the reference, and compare."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis.control import currently_in_test_context

from conformance import interpret, isolation
from conformance.adapter import AnyEngine, Engine, FunctionalEngine, KnownDeviation
from conformance.compare import (
    EXCUSED,
    FoundDivergence,
    adopts,
    assert_same_trace,
    divergence,
    drift,
    excusable,
    raise_drift,
)
from conformance.errors import EngineCrash
from conformance.interpret import Observation, crashed_at, run
from conformance.program import Program, Step, Update
from conformance.tolerance import DRIFT_MIN_STEPS, rounding_amplification, updates

CURRENT_PROPERTY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conformance_property", default=None
)
"""The property id being run (set by the plugin), e.g. ``"sgd::test_hyperparameter[nesterov]"``."""


@functools.cache
def reference_engine() -> Engine:
    """The oracle: a ReferenceEngine instance of its own (never the engine under test)."""
    from conformance.engines.reference_engine import ReferenceEngine

    return ReferenceEngine()


@functools.cache
def functional_reference() -> FunctionalEngine:
    """The oracle of a functional engine: the reference's functional tier
    (:class:`conformance.functional.Functionalized`), run by the same interpreter."""
    from conformance.functional import Functionalized

    return Functionalized(reference_engine())


@dataclass
class Tally:
    """What became of one property's examples (the plugin keeps one per property): checked
    to the end, failed (the first failure and every failing shrink), or set aside by a known
    deviation (by its label). Examples a strategy filtered out are none of these.
    ``checked_past``: of the examples whose comparison passed, those it checked past the
    instructions a local known deviation describes (``KnownDeviation.local``), by its label."""

    passed: int = 0
    failed: int = 0
    set_aside: collections.Counter[str] = field(default_factory=collections.Counter)
    checked_past: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def share_set_aside(self) -> float:
        """The share of the examples that reached the engine which a deviation set aside."""
        total = self.passed + self.failed + sum(self.set_aside.values())
        return sum(self.set_aside.values()) / total if total else 0.0


_COMPARED_TO_THE_END: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "conformance_compared_to_the_end", default=False
)
"""Whether the run being set aside is compared to its end (see :func:`end_drift`)."""

CURRENT_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "conformance_tally", default=None
)


def set_aside_known_deviations(
    engine: AnyEngine, program: Program, trace: list[Observation], *, crashed: bool = False,
    message: str = "", compared: bool = False,
) -> None:
    """Discard this run if a scoped known deviation of the engine shows in it, unless the
    property being run is one of that deviation's witnesses; the tally counts it under the
    deviation's label. ``compared``: the run is compared with the reference, its end without
    following too (:func:`check_against_reference`), so a drift can show a deviation."""
    deviation = deviation_showing(engine, program, trace, crashed=crashed, message=message,
                                  compared=compared)
    if deviation is not None:
        tally = CURRENT_TALLY.get()
        if tally is not None:
            tally.set_aside[deviation.label] += 1
        assume(False)


def deviation_showing(
    engine: AnyEngine, program: Program, trace: list[Observation], *, crashed: bool = False,
    message: str = "", compared: bool = False,
) -> KnownDeviation | None:
    """The first scoped known deviation of the engine that shows in this run, its witnesses
    (in which it must fail) and runs outside the suite's properties (a fixed example must
    hold as it is) aside; None where none does. ``crashed``, ``message`` and ``compared`` as
    for :func:`set_aside_known_deviations`."""
    current = CURRENT_PROPERTY.get()
    if current is None or not currently_in_test_context():
        return None
    token = _COMPARED_TO_THE_END.set(compared)
    try:
        for deviation in engine.known_deviations:
            if deviation.witnessed_by(current):
                continue
            if deviation.diverges is None and deviation.applies is None:
                continue
            if deviation.diverges is not None and not shows_deviation(
                    deviation, program, trace, crashed=crashed, message=message,
                    compared=compared):
                continue
            if deviation.applies is None or deviation.applies(program, trace):
                return deviation
    finally:
        _COMPARED_TO_THE_END.reset(token)
    return None


def excuse_local_deviations(engine: AnyEngine, program: Program, actual: list[Observation],
                            expected: list[Observation]
                            ) -> tuple[dict[int, tuple[str, ...]], list[Observation]]:
    """The observations (index: the labels of the deviations that excuse it) where the run
    differs from the reference only as local known deviations of the engine describe
    (``KnownDeviation.local``), and the reference's trace to compare the rest of the run with.
    Walking its differences in order, each one a local deviation matches is excused (one in
    several params, where each param's difference alone matches one: two findings at one
    instruction), the reference runs again taking the engine's state there where it must
    (:func:`conformance.compare.adopts`), and the walk goes on to the next difference; it stops
    at the first one none describes (what the run is then judged by). Not in a deviation's own
    witnesses, and not outside the suite's properties."""
    current = CURRENT_PROPERTY.get()
    if current is None or not currently_in_test_context():
        return {}, expected
    local = [d for d in engine.known_deviations if d.local and not d.witnessed_by(current)]
    excused: dict[int, tuple[str, ...]] = {}
    adopted: frozenset[int] = frozenset()
    while local:
        token = EXCUSED.set(frozenset(excused))
        try:
            found = divergence(program, actual, expected)
            if found is None or not excusable(program, found):
                break
            labels = _excusing(local, program, actual, found)
        finally:
            EXCUSED.reset(token)
        if not labels:
            break
        excused[found.index] = labels
        if adopts(program, found):
            adopted |= {found.index}
            expected = reference_trace(program, follow=actual, adopt=adopted,
                                       functional=isinstance(engine, FunctionalEngine))
    return excused, expected


def _excusing(local: list[KnownDeviation], program: Program, trace: list[Observation],
              found: FoundDivergence) -> tuple[str, ...]:
    """The labels of the local deviations that describe ``found``: one for the whole, or one
    for each param's part of it, or one for each field's aspect of it; empty where they do
    not."""
    whole = next((d for d in local if _shows_here(d, program, trace, found)), None)
    if whole is not None:
        return (whole.label,)
    for pieces in (found.parts, found.aspects):
        labels = []
        for piece in pieces:
            deviation = next((d for d in local if _shows_here(d, program, trace, piece)), None)
            if deviation is None:
                break
            labels.append(deviation.label)
        else:
            if labels:
                return tuple(sorted(set(labels)))
    return ()


def _shows_here(deviation: KnownDeviation, program: Program, trace: list[Observation],
                found: FoundDivergence) -> bool:
    if deviation.diverges is not None and not deviation.diverges.matches(program, found, None):
        return False
    return deviation.applies is None or deviation.applies(program, trace)


def shows_deviation(deviation: KnownDeviation, program: Program, trace: list[Observation],
                    *, crashed: bool = False, message: str = "", compared: bool = False) -> bool:
    """Whether this run — ``trace`` on the engine, up to its crash if ``crashed`` (which said
    ``message``) — shows the deviation as its ``diverges`` describes it: by its first
    divergence from the reference, or, in a run ``compared`` to the end that agreed after
    every instruction, by its drift (where the deviation's fields name "drift")."""
    diverges = deviation.diverges
    assert diverges is not None
    if crashed:
        return diverges.matches(program, None, crashed_at(program, trace), message)
    if diverges.crash:
        return False
    found = divergence(program, trace, reference_trace(program))
    if found is None and compared and "drift" in diverges.fields:
        found = drift_divergence(program, trace)
    return diverges.matches(program, found, None)


_last_reference: tuple[Program, list[Observation] | None, list[Observation], bool] | None = None
"""The last program, the engine trace the reference followed in it (None: none), its trace,
and whether it took the engine's state after some instruction too (``adopt``)."""


def reference_trace(program: Program, *, follow: list[Observation] | None = None,
                    adopt: frozenset[int] = frozenset(), functional: bool = False
                    ) -> list[Observation]:
    """The reference's trace of ``program``: the one the current comparison uses, for an
    ``applies`` that needs it, or else a run of its own (cached for the last program).
    ``follow`` and ``adopt`` as for :func:`conformance.interpret.run`. ``functional``: run
    through the reference's functional tier, the oracle of a :class:`FunctionalEngine`."""
    global _last_reference
    if follow is not None or _last_reference is None or _last_reference[0] is not program:
        oracle = functional_reference() if functional else reference_engine()
        trace = run(oracle, program, follow=follow, adopt=adopt)
        _last_reference = (program, follow, trace, bool(adopt))
    return _last_reference[2]


_last_alone: tuple[Program, list[Observation]] | None = None
_last_amplification: tuple[Program, float] | None = None


def reference_alone(program: Program, engine_trace: list[Observation] | None = None
                    ) -> list[Observation]:
    """The reference's trace of ``program`` run on its own, never following an engine
    (cached for the last program). Given the ``engine_trace`` the reference last followed,
    where following it changed nothing (:func:`_followed_nothing`), that run is this one, bit
    for bit, and is not run again."""
    global _last_alone
    if _last_alone is None or _last_alone[0] is not program:
        kept = _kept_alone(program, engine_trace)
        _last_alone = (program, kept if kept is not None else run(reference_engine(), program))
    return _last_alone[1]


def _kept_alone(program: Program, engine_trace: list[Observation] | None
                ) -> list[Observation] | None:
    """The kept reference trace of ``program`` where it is the reference's run on its own:
    it followed no engine, or it followed ``engine_trace`` and took nothing from it."""
    if _last_reference is None or _last_reference[0] is not program:
        return None
    _, followed, trace, adopted = _last_reference
    if adopted:
        return None
    if followed is None:
        return trace
    if followed is engine_trace and _followed_nothing(program, followed, trace):
        return trace
    return None


def _same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _followed_nothing(program: Program, engine_trace: list[Observation],
                      followed: list[Observation]) -> bool:
    """Whether the reference's run that followed ``engine_trace`` took nothing from it: right
    before every step the engine's grads, and right after every step and update its params,
    had the very bits the reference computed itself (``interpret.run``'s ``follow``), so each
    overwrite left the reference as it was. Then its run on its own is the same computation
    from the same state. On torch and the reference that holds for most runs with updates (on
    the sgd, adam and training-loop properties, 1304 of 1566)."""
    for index, instruction in enumerate(program.instructions, start=1):
        if isinstance(instruction, Step):
            before, taken = followed[index - 1].grads, engine_trace[index - 1].grads
            if any(before[name] is not None and taken[name] is not None
                   and not _same_bits(before[name], taken[name]) for name in before):
                return False
        if isinstance(instruction, (Step, Update)):
            ours, theirs = followed[index], engine_trace[index]
            if ours.error is None and theirs.error is None and not all(
                    _same_bits(ours.values[name], theirs.values[name]) for name in ours.values):
                return False
    return True


def amplification(program: Program) -> float:
    """How far rounding carries ``program``'s params (``kappa``, see
    :func:`conformance.tolerance.rounding_amplification`; cached for the last program)."""
    global _last_amplification
    if _last_amplification is None or _last_amplification[0] is not program:
        kappa = rounding_amplification(program, lambda p: run(reference_engine(), p))
        _last_amplification = (program, kappa)
    return _last_amplification[1]


def end_drift(program: Program, trace: list[Observation]) -> FoundDivergence | None:
    """For a known deviation's ``applies``: the drift of a run that agreed after every
    instruction (:func:`drift_divergence`), where the run is compared to its end; None where it
    is not (an oracle-free law), so that no run is set aside for what it does not check, and
    where it diverged after an instruction (what it shows is that divergence)."""
    if not _COMPARED_TO_THE_END.get():
        return None
    if divergence(program, trace, reference_trace(program)) is not None:
        return None
    return drift_divergence(program, trace)


def drift_divergence(program: Program, trace: list[Observation]) -> FoundDivergence | None:
    """Whether the engine's run (``trace``, which agreed after every instruction) ends further
    from the reference's own run than rounding explains (:func:`conformance.compare.drift`)."""
    if updates(program, trace) < DRIFT_MIN_STEPS:
        return None  # without running the reference again
    return drift(program, trace, reference_alone(program, trace),
                 lambda: amplification(program))


def _execute(engine: AnyEngine, program: Program) -> list[Observation]:
    """Run on the engine under test: in its worker process when the plugin attached one (see
    :mod:`conformance.isolation`), else here. The program is counted here, where the plugin
    reads ``interpret.RUNS``. An interpreter replaced by a test (the catalogue's generate-only
    stub) runs here.

    Here, an engine's warnings stay warnings, as in the worker (a process of its own, outside
    pytest's warning filters): under ``filterwarnings = error`` a torch UserWarning from inside
    ``backward()`` was an EngineCrash with ``--no-isolate`` and nothing without it."""
    worker = isolation.worker_for(engine)
    if worker is None or run is not interpret.run:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return run(engine, program)
    interpret.RUNS[id(engine)] += 1
    return worker.run(program)


def _run_on_engine(engine: AnyEngine, program: Program) -> list[Observation]:
    """Run on the engine under test; a crash that a scoped known deviation describes is set
    aside (its ``applies`` sees the trace up to the crash, a worker's death included)."""
    try:
        return _execute(engine, program)
    except EngineCrash as crash:
        crash.program = program  # for a witness's check of what its failure was
        set_aside_known_deviations(engine, program, crash.trace, crashed=True,
                                   message=str(crash))
        raise


def run_engine(engine: AnyEngine, program: Program) -> list[Observation]:
    """Run on the engine alone, for an oracle-free law (:func:`law`). A crash that a scoped
    known deviation describes is set aside; a run that does not crash, only where the law
    then fails."""
    return _run_on_engine(engine, program)


@contextlib.contextmanager
def law(engine: AnyEngine, *runs: tuple[Program, list[Observation]]) -> Iterator[None]:
    """Check an oracle-free law of these runs of the engine (``run_engine``): an
    ``AssertionError`` inside sets the example aside where a scoped known deviation shows in
    one of the runs, outside its witnesses, and fails it otherwise. A law that holds is never
    set aside, whatever the runs show: there is nothing for a deviation to explain.

    A run that raised where the reference does not fails the law before it is checked, as
    that divergence (a law's programs are drawn valid): otherwise an engine that refuses every
    backward (classifying the error) would hold every law about grads, all of them None."""
    __tracebackhide__ = True
    try:
        for program, trace in runs:
            if any(o.error is not None for o in trace):
                assert_same_trace(engine.name, program, trace, reference_trace(
                    program, functional=isinstance(engine, FunctionalEngine)))
        yield
    except AssertionError:
        for program, trace in runs:
            set_aside_known_deviations(engine, program, trace)
        raise


def check_against_reference(engine: AnyEngine, program: Program) -> list[Observation]:
    """Run ``program`` on both; raise ``Divergence`` at the first observable difference.

    The engine runs first; the reference then follows its param values after every step (see
    :func:`conformance.interpret.run`). Differences a local known deviation describes are
    excused (:func:`excuse_local_deviations`) and the run is compared past them. A run that
    differs after some other instruction is set aside where a known deviation describes it
    (:func:`set_aside_known_deviations`), and fails where none does. A run that agrees after
    every (other) instruction is never set aside: its final params are then compared with the
    reference's run on its own, for a difference that following hid and the steps added up
    (:func:`drift_divergence`; not where the engine declared ``steps_at_param_precision``
    unsupported or an instruction was excused), and a drift that a known deviation describes
    is excused there, as the run's last check. Runs checked past a deviation are counted under
    its label (``Tally.checked_past``). Returns the engine's trace, for properties that check
    more on top.
    """
    __tracebackhide__ = True
    actual = _run_on_engine(engine, program)
    expected = reference_trace(program, follow=actual,  # before applies, which may read it
                               functional=isinstance(engine, FunctionalEngine))
    excused, expected = excuse_local_deviations(engine, program, actual, expected)
    compared = engine.capabilities.supports("steps_at_param_precision") and not excused
    labels = {label for names in excused.values() for label in names}
    token = EXCUSED.set(frozenset(excused))
    try:
        if divergence(program, actual, expected) is not None:
            set_aside_known_deviations(engine, program, actual, compared=compared)
            assert_same_trace(engine.name, program, actual, expected)
        found = drift_divergence(program, actual) if compared else None
        if found is not None:
            explained = deviation_showing(engine, program, actual, compared=True)
            if explained is None:
                raise_drift(engine.name, program, actual, found)
            else:
                labels.add(explained.label)
    finally:
        EXCUSED.reset(token)
    tally = CURRENT_TALLY.get()
    if tally is not None:
        for label in labels:
            tally.checked_past[label] += 1
    return actual
