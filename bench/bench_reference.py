"""Time per generated program: the NumPy reference against torch, on the same programs.

    python bench/bench_reference.py [--programs 300] [--seed 0]

Programs are drawn once (whole training loops from ``conformance.strategies.programs``),
then each engine runs all of them, alternating engines per round to share the machine's noise.
"""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.adapter import Capabilities
from conformance.engines import load_engine
from conformance.interpret import run


def draw_programs(count: int, seed: int) -> list:
    drawn: list = []
    config = settings(max_examples=count, database=None, derandomize=True, deadline=None,
                      suppress_health_check=list(HealthCheck))

    def keep(program: object) -> bool:
        drawn.append(program)
        return len(drawn) >= count

    find(st.randoms(use_true_random=False).flatmap(lambda _: cs.programs(Capabilities())),
         keep, settings=config)
    return drawn[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    programs = draw_programs(args.programs, args.seed)
    print(f"drew {len(programs)} programs in {time.perf_counter() - started:.2f} s "
          f"({sum(len(p.instructions) for p in programs)} instructions)")
    engines = [load_engine("reference"), load_engine("torch")]
    best = {engine.name: float("inf") for engine in engines}
    for _ in range(args.rounds):
        for engine in engines:
            start = time.perf_counter()
            for program in programs:
                run(engine, program)
            best[engine.name] = min(best[engine.name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:>10}: {1e3 * seconds / len(programs):.3f} ms per program "
              f"(best of {args.rounds} rounds)")
    print(f"reference / torch time ratio: {best['reference'] / best['torch']:.2f}")


if __name__ == "__main__":
    main()
