"""Run a program on the engine under test and on the reference, and compare."""

from __future__ import annotations

import functools

from conformance.adapter import Engine
from conformance.compare import assert_same_trace
from conformance.interpret import Observation, run
from conformance.program import Program


@functools.cache
def reference_engine() -> Engine:
    from conformance.engines.reference_engine import ReferenceEngine

    return ReferenceEngine()


def check_against_reference(engine: Engine, program: Program) -> list[Observation]:
    """Run ``program`` on both; raise ``Divergence`` at the first observable difference.

    Returns the engine's trace, for properties that check more on top.
    """
    __tracebackhide__ = True
    expected = run(reference_engine(), program)
    actual = run(engine, program)
    assert_same_trace(engine.name, program, actual, expected)
    return actual
