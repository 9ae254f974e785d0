"""Benchmark how long one generated program takes in an engine's worker process.

What ``--program-timeout`` must leave room for: draws ``--examples`` programs (whole training
loops, hand-written loops and mini-batch loops, with the engine's capabilities) and times each
``Worker.run`` in the main process, the way the suite sees it (pickling, the socket, the
engine). The worker's first program is left out: it waits for the loader to import the engine,
which ``--program-timeout`` does not count either. Prints the median, the 99th percentile and
the slowest, in seconds::

    python bench/bench_program_time.py reference --examples 1500
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import strategies
from conformance.engines import load_engine
from conformance.errors import EngineCrash
from conformance.isolation import Worker
from conformance.program import Program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", help="an engine name or package.module:Attr")
    parser.add_argument("--examples", type=int, default=1000, help="programs to time")
    args = parser.parse_args()
    if args.examples < 2:
        parser.error(f"--examples must be at least 2, got {args.examples}")

    capabilities = load_engine(args.engine).capabilities
    worker = Worker(args.engine)
    seconds: list[float] = []
    crashed = 0

    @settings(max_examples=args.examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(strategies.programs(capabilities),
                     strategies.hand_written_loops(capabilities),
                     strategies.minibatch_loops(capabilities)))
    def time_one(program: Program) -> None:
        nonlocal crashed
        started = time.perf_counter()
        try:
            worker.run(program)
        except EngineCrash:  # an error the adapter does not classify (a known deviation, or
            crashed += 1     # a bug the suite reports): timed all the same
        seconds.append(time.perf_counter() - started)

    try:
        time_one()
    finally:
        worker.close()
    timed = sorted(seconds[1:])  # the first waited for the loader
    print(f"{args.engine}: {len(timed)} programs in its worker; median "
          f"{statistics.median(timed):.4f} s, 99th percentile "
          f"{timed[int(0.99 * (len(timed) - 1))]:.4f} s, slowest {timed[-1]:.4f} s, total "
          f"{sum(timed):.1f} s; {crashed} raised an error the adapter does not classify")


if __name__ == "__main__":
    main()
