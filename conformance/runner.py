"""Run a program on the engine under test and on the reference, and compare."""

from __future__ import annotations

import collections
import contextvars
import functools
from dataclasses import dataclass, field

from hypothesis import assume
from hypothesis.control import currently_in_test_context

from conformance import interpret, isolation
from conformance.adapter import Engine, KnownDeviation
from conformance.compare import assert_same_trace, divergence
from conformance.errors import EngineCrash
from conformance.interpret import Observation, crashed_at, run
from conformance.program import Program

CURRENT_PROPERTY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conformance_property", default=None
)
"""The property id being run (set by the plugin), e.g. ``"sgd::test_hyperparameter[nesterov]"``."""


@functools.cache
def reference_engine() -> Engine:
    """The oracle: a ReferenceEngine instance of its own (never the engine under test)."""
    from conformance.engines.reference_engine import ReferenceEngine

    return ReferenceEngine()


@dataclass
class Tally:
    """What became of one property's examples (the plugin keeps one per property): checked
    to the end, failed (the first failure and every failing shrink), or set aside by a known
    deviation (by its label). Examples a strategy filtered out are none of these."""

    passed: int = 0
    failed: int = 0
    set_aside: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def share_set_aside(self) -> float:
        """The share of the examples that reached the engine which a deviation set aside."""
        total = self.passed + self.failed + sum(self.set_aside.values())
        return sum(self.set_aside.values()) / total if total else 0.0


CURRENT_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "conformance_tally", default=None
)


def set_aside_known_deviations(
    engine: Engine, program: Program, trace: list[Observation], *, crashed: bool = False,
    message: str = "",
) -> None:
    """Discard this run if a scoped known deviation of the engine shows in it, unless the
    property being run is one of that deviation's witnesses; the tally counts it under the
    deviation's label."""
    current = CURRENT_PROPERTY.get()
    if current is None or not currently_in_test_context():
        return  # a fixed example, or outside the suite: it must hold as it is
    for deviation in engine.known_deviations:
        if deviation.witnessed_by(current):
            continue
        if deviation.diverges is not None:
            shows = shows_deviation(deviation, program, trace, crashed=crashed, message=message)
        elif deviation.applies is not None:
            shows = deviation.applies(program, trace)
        else:
            continue
        if shows:
            tally = CURRENT_TALLY.get()
            if tally is not None:
                tally.set_aside[deviation.label] += 1
            assume(False)


def shows_deviation(deviation: KnownDeviation, program: Program, trace: list[Observation],
                    *, crashed: bool = False, message: str = "") -> bool:
    """Whether this run — ``trace`` on the engine, up to its crash if ``crashed`` (which said
    ``message``) — shows the deviation as its ``diverges`` describes it: by its first
    divergence from the reference."""
    assert deviation.diverges is not None
    if crashed:
        return deviation.diverges.matches(program, None, crashed_at(program, trace), message)
    if deviation.diverges.crash:
        return False
    found = divergence(program, trace, reference_trace(program))
    return deviation.diverges.matches(program, found, None)


_last_reference: tuple[Program, list[Observation]] | None = None


def reference_trace(program: Program, *, follow: list[Observation] | None = None
                    ) -> list[Observation]:
    """The reference's trace of ``program``: the one the current comparison uses, for an
    ``applies`` that needs it, or else a run of its own (cached for the last program)."""
    global _last_reference
    if follow is not None or _last_reference is None or _last_reference[0] is not program:
        _last_reference = (program, run(reference_engine(), program, follow=follow))
    return _last_reference[1]


def _execute(engine: Engine, program: Program) -> list[Observation]:
    """Run on the engine under test: in its worker process when the plugin attached one (see
    :mod:`conformance.isolation`), else here. The program is counted here, where the plugin
    reads ``interpret.RUNS``. An interpreter replaced by a test (the catalogue's generate-only
    stub) runs here."""
    worker = isolation.worker_for(engine)
    if worker is None or run is not interpret.run:
        return run(engine, program)
    interpret.RUNS[id(engine)] += 1
    return worker.run(program)


def _run_on_engine(engine: Engine, program: Program) -> list[Observation]:
    """Run on the engine under test; a crash that a scoped known deviation describes is set
    aside (its ``applies`` sees the trace up to the crash, a worker's death included)."""
    try:
        return _execute(engine, program)
    except EngineCrash as crash:
        crash.program = program  # for a witness's check of what its failure was
        set_aside_known_deviations(engine, program, crash.trace, crashed=True,
                                   message=str(crash))
        raise


def run_engine(engine: Engine, program: Program) -> list[Observation]:
    """Run on the engine alone (for oracle-free laws), scoped known deviations set aside."""
    trace = _run_on_engine(engine, program)
    set_aside_known_deviations(engine, program, trace)
    return trace


def check_against_reference(engine: Engine, program: Program) -> list[Observation]:
    """Run ``program`` on both; raise ``Divergence`` at the first observable difference.

    The engine runs first; the reference then follows its param values after every step (see
    :func:`conformance.interpret.run`). Returns the engine's trace, for properties that check
    more on top.
    """
    __tracebackhide__ = True
    actual = _run_on_engine(engine, program)
    expected = reference_trace(program, follow=actual)  # before applies, which may read it
    set_aside_known_deviations(engine, program, actual)
    assert_same_trace(engine.name, program, actual, expected)
    return actual
