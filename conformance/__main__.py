"""``python -m conformance ENGINE``: run the suite on an engine and print a verdict per semantic.

Exit codes: 0 the engine conforms (every property passes, is a known deviation, or needs a
capability the engine declared unsupported) — with ``--baseline``, no regression against the
baseline report; 1 it does not; 2 the run was interrupted (Ctrl-C, or the example database
failed mid-run, a Redis server lost: the report of the properties that ran is still written);
3 internal error; 4 usage error (unknown engine, bad option, an example database that cannot
be reached).

The engine runs in a worker process (``--no-isolate`` to run it in this one): a program that
crashes it or runs past ``--program-timeout`` fails as an engine crash, and the run goes on.

The nightly fuzz tier and the gate that replays its failures (docs/adapter-guide.md, "Nightly
fuzzing")::

    python -m conformance torch --profile fuzz --database redis://HOST:6379/0 --budget 2h
    python -m conformance torch --database redis://HOST:6379/0 --replay
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

from conformance import isolation, profiles
from conformance.database import FUZZ_DIRECTORY
from conformance.engines import UnknownEngine, known_engines, load_engine
from conformance.report import Collector, Report, versions

FAILING = ("fail", "error", "fixed deviation")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(4, f"{self.prog}: error: {message}\n")  # a usage error, as documented


def _duration(text: str) -> str:
    """``text`` unchanged once it reads as a duration: the plugin parses it again."""
    try:
        profiles.parse_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m conformance",
        description="Run the autograd conformance suite on an engine.",
        epilog="Arguments after '--' go to pytest.",
    )
    parser.add_argument("engine", help=f"one of {', '.join(known_engines())}, or package.module:Attr")
    parser.add_argument("--profile", choices=profiles.PROFILES, default=profiles.DEFAULT_PROFILE,
                        help="Hypothesis profile (default: %(default)s)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write ENGINE.json and ENGINE.md into DIR")
    parser.add_argument("--baseline", type=Path, metavar="JSON",
                        help="fail only on regressions against this earlier report")
    parser.add_argument("-n", "--workers", default=None, metavar="N",
                        help="pytest-xdist workers (a number or 'auto')")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false",
                        help="run the engine in this process, not in a worker process that a "
                        "segfault, abort or hang can kill without ending the run")
    parser.add_argument("--program-timeout", type=_seconds, default=isolation.DEFAULT_TIMEOUT_S,
                        metavar="SECONDS", help="a program running longer fails as a hang "
                        "(default: %(default)s)")
    parser.add_argument("--database", metavar="URL|DIR",
                        help="example database: failures saved there for the engine are replayed "
                        "first, and new ones saved: redis://HOST:PORT/N (one for any number of "
                        "machines) or a directory (default: $CONFORMANCE_DATABASE; the fuzz "
                        f"profile falls back to {FUZZ_DIRECTORY})")
    parser.add_argument("--replay", action="store_true",
                        help="only read the database: replay its failures, save nothing (the CI "
                        "gate: --database URL --replay)")
    parser.add_argument("--budget", type=_duration, metavar="DURATION",
                        help="wall-clock time for the whole run, shared over the properties, "
                        "e.g. 90s, 10m, 2h (fuzz profile)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    try:
        engine = load_engine(args.engine)
    except UnknownEngine as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    baseline = None
    if args.baseline is not None:
        try:
            baseline = Report.from_json(args.baseline.read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            print(f"error: cannot read baseline {str(args.baseline)!r}: {exc}", file=sys.stderr)
            return 4

    collector = Collector()
    # This process imported `conformance` before pytest could rewrite its asserts; the suite
    # reports through its own messages, so pytest's warning about that is noise.
    pytest_args = ["--pyargs", "conformance.properties", "--engine", args.engine,
                   "--hypothesis-profile", args.profile, "-p", "no:cacheprovider", "-q",
                   "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if args.workers:
        pytest_args += ["-n", str(args.workers)]
    pytest_args += ["--isolate" if args.isolate else "--no-isolate",
                    f"--program-timeout={args.program_timeout:g}"]
    if args.database:
        pytest_args.append(f"--conformance-database={args.database}")
    if args.replay:
        pytest_args.append("--conformance-replay")
    if args.budget is not None:
        pytest_args.append(f"--budget={args.budget}")
    started = time.perf_counter()
    exit_code = int(pytest.main(pytest_args + extra, plugins=[collector]))
    runtime = time.perf_counter() - started

    report = Report(
        engine=engine.name,
        engine_version=engine.version(),
        profile=args.profile,
        seed="derandomized" if profiles.derandomized(args.profile) else "random",
        versions=versions(),
        results=collector.finished_results(),
        exit_code=exit_code,
        runtime_s=round(runtime, 1),
        deviations=[{"properties": list(d.properties), "reason": d.reason, "evidence": d.evidence,
                     "label": d.label, "matched_by": d.matched_by}
                    for d in engine.known_deviations],
        end_comparison=engine.capabilities.unsupported.get("steps_at_param_precision", ""),
        capability_gaps=dict(engine.capabilities.unsupported),
    )
    ids = {r.id for r in report.results} | {r.id.split("[")[0] for r in report.results}
    if not {"-k", "-m"} & set(extra):  # a selected subset would make every other entry look stale
        report.stale_deviations = [pid for d in engine.known_deviations for pid in d.properties
                                   if pid not in ids]
    interrupted = exit_code == int(pytest.ExitCode.INTERRUPTED)
    if exit_code not in (0, 1) and not interrupted:
        return exit_code
    report.interrupted = interrupted
    if interrupted:
        report.stale_deviations = []  # the properties that did not run are not stale
    if args.report is not None:
        report.write(args.report)
    verdict = _summarize(report, baseline)
    if interrupted:
        print("interrupted: the verdict above covers only the properties that ran")
        return exit_code
    return verdict


def _summarize(report: Report, baseline: Report | None) -> int:
    print()
    print(f"conformance of {report.engine} ({report.engine_version}), profile {report.profile}: "
          f"{len(report.results)} properties in {report.runtime_s:.1f} s")
    for semantic, counts in sorted(report.semantics().items()):
        text = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
        print(f"  {semantic:<16} {text}")
    if any(r.set_aside for r in report.results):
        print(f"  set aside by known deviations: {report.share_set_aside():.1%} of examples")
    for r in report.flagged():
        print(f"  {r.id}: {r.share_set_aside:.0%} of its examples set aside "
              f"({', '.join(f'{label}: {n}' for label, n in sorted(r.set_aside.items()))})")
    for pid in report.stale_deviations:
        print(f"  stale known deviation: {pid} matches no property")
    for r in report.crashes():
        print(f"  engine crash in {r.id} ({r.verdict}): {r.crash}")
    failing = [r for r in report.results if r.verdict in FAILING]
    if baseline is not None:
        before = {r.id: r.verdict for r in baseline.results}
        regressions = [r for r in failing if before.get(r.id) not in FAILING]
        for r in regressions:
            print(f"  regression: {r.id}: {before.get(r.id, 'new')} → {r.verdict}")
        print(f"verdict: {'REGRESSED' if regressions else 'no regression'} against the baseline")
        return 1 if regressions else 0
    for r in failing:
        print(f"  {r.verdict}: {r.id}: {r.reason}")
    print(f"verdict: {'DOES NOT CONFORM' if failing else 'CONFORMS'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
