"""Run a program on the engine under test and on the reference, and compare."""

from __future__ import annotations

import contextvars
import functools

from hypothesis import assume
from hypothesis.control import currently_in_test_context

from conformance.adapter import Engine
from conformance.compare import assert_same_trace
from conformance.errors import EngineCrash
from conformance.interpret import Observation, run
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


def set_aside_known_deviations(
    engine: Engine, program: Program, trace: list[Observation]
) -> None:
    """Discard this run if a scoped known deviation of the engine shows in it, unless the
    property being run is one of that deviation's witnesses."""
    current = CURRENT_PROPERTY.get()
    if current is None or not currently_in_test_context():
        return  # a fixed example, or outside the suite: it must hold as it is
    for deviation in engine.known_deviations:
        if deviation.applies is None:
            continue
        witness = current in deviation.properties or current.split("[")[0] in deviation.properties
        if not witness:
            assume(not deviation.applies(program, trace))


def _run_scoped(engine: Engine, program: Program) -> list[Observation]:
    """Run on ``engine``; a crash that a scoped known deviation describes is set aside too."""
    try:
        trace = run(engine, program)
    except EngineCrash as crash:
        set_aside_known_deviations(engine, program, crash.trace)
        raise
    set_aside_known_deviations(engine, program, trace)
    return trace


def run_engine(engine: Engine, program: Program) -> list[Observation]:
    """Run on the engine alone (for oracle-free laws), scoped deviations set aside."""
    return _run_scoped(engine, program)


def check_against_reference(engine: Engine, program: Program) -> list[Observation]:
    """Run ``program`` on both; raise ``Divergence`` at the first observable difference.

    Returns the engine's trace, for properties that check more on top.
    """
    __tracebackhide__ = True
    actual = _run_scoped(engine, program)
    expected = run(reference_engine(), program, follow=actual)
    assert_same_trace(engine.name, program, actual, expected)
    return actual
