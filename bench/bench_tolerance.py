"""How much of each tolerance conforming engines use, on the suite's longest programs.

For each engine named, draws ``--examples`` programs of each kind (derandomized: the same
programs for every engine that has the same capabilities), longer than the ``ci`` profile
draws them: ``programs`` of up to 30 instructions, hand-written loops of up to 30 epochs,
mini-batch loops of up to 30 batches. Runs each on the engine and on the reference, and prints,
as Markdown, per engine and kind:

- the largest difference after an instruction (the reference following the engine), in ulps
  of ``max(1, max|expected|)`` of the program's least precise dtype, per dtype of program
  (mixed programs count as float32), against the tolerance of ``conformance.tolerance``;
- at the end, against the reference run on its own: the largest ``distance / max(1, kappa)``
  (the drift bound allows ``DRIFT_ULPS``) and how many runs the drift check flags.

Runs that diverge after an instruction (a known deviation, or a failure) are left out of
both; their number is printed. Usage::

    python bench/bench_tolerance.py torch torch-foreach paddle --examples 300
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance import strategies as cs
from conformance.compare import divergence, end_distances
from conformance.engines import load_engine
from conformance.errors import EngineCrash
from conformance.interpret import Observation, run
from conformance.program import Program
from conformance.runner import reference_engine
from conformance.tolerance import (
    DRIFT_ULPS,
    INSTRUCTION_ULPS,
    program_epsilon,
    rounding_amplification,
    scaled_difference,
)

KINDS = ("programs", "loops", "minibatch")


def strategy(kind: str, capabilities: Any) -> Any:
    if kind == "programs":
        return cs.programs(capabilities, max_instructions=30)
    if kind == "loops":
        return cs.hand_written_loops(capabilities, max_epochs=30)
    return cs.minibatch_loops(capabilities, max_batches=30)


def draw(kind: str, capabilities: Any, examples: int) -> list[Program]:
    drawn: list[Program] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy(kind, capabilities))
    def collect(program: Program) -> None:
        drawn.append(program)

    collect()
    return drawn


def instruction_ulps(program: Program, actual: list[Observation],
                     expected: list[Observation]) -> float:
    """The largest scaled difference of values and grads over the trace, in ulps."""
    worst = 0.0
    for got, want in zip(actual, expected, strict=True):
        pairs = [(got.values[name], value) for name, value in want.values.items()]
        pairs += [(got.grads[name], grad) for name, grad in want.grads.items()
                  if grad is not None and got.grads[name] is not None]
        for a, e in pairs:
            if e.dtype.kind == "f":
                worst = max(worst, scaled_difference(a, e) or 0.0)
    return worst / program_epsilon(program)


def measure(engine: Any, kind: str, examples: int) -> dict[str, Any]:
    reference = reference_engine()
    result: dict[str, Any] = {"programs": 0, "diverged": 0, "instruction": defaultdict(float),
                              "end": 0.0, "compared": 0, "flagged": 0}
    for program in draw(kind, engine.capabilities, examples):
        result["programs"] += 1
        try:
            actual = run(engine, program)
        except EngineCrash:
            result["diverged"] += 1
            continue
        followed = run(reference, program, follow=actual)
        if divergence(program, actual, followed) is not None:
            result["diverged"] += 1
            continue
        dtypes = {param.value.dtype for param in program.params}
        dtype = str(dtypes.pop()) if len(dtypes) == 1 else "float32"
        worst = instruction_ulps(program, actual, followed)
        result["instruction"][dtype] = max(result["instruction"][dtype], worst)
        distances = end_distances(program, actual, run(reference, program))
        if distances is None:
            continue
        kappa = rounding_amplification(program, lambda p: run(reference, p))
        if not np.isfinite(kappa):
            continue
        ratio = max(distances.values(), default=0.0) / program_epsilon(program)
        ratio /= max(1.0, kappa)
        result["compared"] += 1
        result["end"] = max(result["end"], ratio)
        result["flagged"] += ratio > DRIFT_ULPS
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engines", nargs="+")
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args()
    f32, f64 = (INSTRUCTION_ULPS[np.dtype(d)] for d in ("float32", "float64"))
    print(f"| engine | kind | programs | diverged | after an instruction, max ulps: float32 "
          f"(allowed {f32:g}) / float64 ({f64:g}) | at the end: compared | max distance / "
          f"max(1, kappa) (allowed {DRIFT_ULPS:g}) | flagged |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for spec in args.engines:
        engine = load_engine(spec)
        for kind in KINDS:
            r = measure(engine, kind, args.examples)
            inst = r["instruction"]
            print(f"| {engine.name} | {kind} | {r['programs']} | {r['diverged']} | "
                  f"{inst.get('float32', 0.0):.1f} / {inst.get('float64', 0.0):.1f} | "
                  f"{r['compared']} | {r['end']:.2f} | {r['flagged']} |", flush=True)


if __name__ == "__main__":
    main()
