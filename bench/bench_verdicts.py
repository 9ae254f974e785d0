"""Whether an engine's verdict wobbles with the programs drawn: the ``ci`` run against ``dev`` runs
under several seeds.

Runs ``python -m conformance ENGINE --profile dev --report DIR -- --hypothesis-seed=SEED`` for
each seed (random draws, 30 programs a property, shrinking on, each run with an example database of its
own, so that no run replays the failures another saved), and the ``ci`` run too unless
``--ci-report`` names one already made. Prints, as Markdown, one row per run: exit status,
verdict counts, the set-aside share, and every property whose verdict is neither what the
``ci`` run gave nor a known deviation's witness that the seed did not reach (``pass``, "not
reached in this run"). A conforming engine's rows all read CONFORMS with no such property::

    python bench/bench_verdicts.py tinygrad --seeds 1 2 3 4 5 -n 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Verdicts that may differ between runs that draw different programs without meaning anything:
# a witness is strict only under ci, so elsewhere a deviation not reached is a plain pass.
INTERCHANGEABLE = {"pass", "known deviation"}


def run(engine: str, profile: str, seed: int | None, workers: str, report: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "conformance", engine, "--profile", profile,
               "--report", str(report)]
    if workers:
        command += ["-n", workers]
    if seed is not None:  # a database of its own: no run replays another's failures
        command += ["--database", str(report / "database"), "--", f"--hypothesis-seed={seed}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    report.mkdir(parents=True, exist_ok=True)
    (report / "output.txt").write_text(done.stdout + done.stderr)
    path = report / f"{engine}.json"
    if not path.exists():
        raise SystemExit(f"{' '.join(command)} wrote no report (exit status {done.returncode}):\n"
                         + (done.stdout + done.stderr)[-3000:])
    record = json.loads(path.read_text())
    record["wall_s"] = time.perf_counter() - start
    record["returncode"] = done.returncode
    return record


def verdicts(record: dict[str, Any]) -> dict[str, str]:
    return {result["id"]: result["verdict"] for result in record["results"]}


def row(label: str, record: dict[str, Any], baseline: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for verdict in verdicts(record).values():
        counts[verdict] = counts.get(verdict, 0) + 1
    run_ = sum(result["examples"] for result in record["results"])
    aside = sum(sum(result["set_aside"].values()) for result in record["results"])
    reached = aside + sum(result["passed"] + result["failed"] for result in record["results"])
    changed = [f"`{id_}`: {baseline.get(id_, 'absent')} → {verdict}"
               for id_, verdict in verdicts(record).items()
               if verdict != baseline.get(id_)
               and not {verdict, baseline.get(id_)} <= INTERCHANGEABLE]
    verdict = "CONFORMS" if record["returncode"] == 0 else "DOES NOT CONFORM"
    share = f"{aside / reached:.1%}" if reached else "-"  # as the report counts it
    return (f"| {label} | {record['returncode']} | {verdict} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))} | {run_} | {share} | "
            f"{record['wall_s']:.0f} | {'; '.join(changed) or 'none'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("-n", "--workers", default="", help="pytest-xdist workers for each run")
    parser.add_argument("--ci-report", type=Path, default=None,
                        help="an existing ci report (JSON) of the engine, instead of a new run")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write each run's report (and its failures' output) under this "
                             "directory instead of a temporary one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.keep or Path(temporary)
        if args.ci_report is not None:
            ci = json.loads(args.ci_report.read_text())
            ci.setdefault("wall_s", ci["runtime_s"])
            ci.setdefault("returncode", ci["exit_code"])
        else:
            ci = run(args.engine, "ci", None, args.workers, scratch / "ci")
        baseline = verdicts(ci)
        print(f"## `{args.engine}`: the ci verdicts against dev under {len(args.seeds)} seeds\n")
        print("| run | exit | verdict | verdict counts | programs | set aside | wall s "
              "| verdicts changed from ci |")
        print("|---|---:|---|---|---:|---:|---:|---|")
        print(row("ci", ci, baseline), flush=True)
        for seed in args.seeds:
            record = run(args.engine, "dev", seed, args.workers, scratch / f"dev-{seed}")
            print(row(f"dev, seed {seed}", record, baseline), flush=True)


if __name__ == "__main__":
    main()
