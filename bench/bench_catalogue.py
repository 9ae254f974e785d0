"""Benchmark the suite's power and speed; prints Markdown tables (see docs/benchmarks.md).

Part 1, per broken engine of ``tests/broken_engines``: the whole suite in its natural order
with ``-x`` and the ``catalogue`` profile (``ci`` without shrinking) — caught or not, which
property caught it, the examples and seconds until the first failing example — then the
failing property alone under ``ci`` (with shrinking) for the size of the shrunk reproduction:
instructions and op nodes of the final failing program, and lines of its torch script.

Part 2, the suite on the ``torch`` engine: the ``ci`` profile's wall time, examples/s per
property module, the same with ``--catalogue-generate-only`` (drawing every program, running
none), and ``-n 2`` against no ``-n``.

Usage (from the repository root)::

    python bench/bench_catalogue.py                    # everything
    python bench/bench_catalogue.py --part engines --only sgd
    python bench/bench_catalogue.py --part suite
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.broken_engines import Entry, catalogue  # noqa: E402

PLUGIN = "tests.broken_engines.plugin"


@dataclass
class Run:
    returncode: int
    wall: float
    record: dict[str, Any]
    output: str


def pytest_run(targets: list[str], *options: str, extra: list[str], timeout: float) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pytest", *targets, "-p", "no:cacheprovider",
                   "-p", PLUGIN, "-q", f"--catalogue-report={report}", *options, *extra]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            returncode, output = -1, str(expired.stdout or "")
        wall = time.perf_counter() - started
        record = json.loads(report.read_text()) if report.exists() else {}
    return Run(returncode, wall, record, output)


def reproduction_size(message: str) -> dict[str, int] | None:
    """Instructions, op nodes and script lines of the program a failure message prints."""
    start = message.find("import torch\n")
    if start < 0:
        return None
    script = message[start:]
    labels = re.findall(r'^show\("\[(\d+)\] (.*)"\)$', script, flags=re.MULTILINE)
    instructions = max((int(index) for index, _ in labels), default=0)
    nodes = sum(int(n) for _, label in labels for n in re.findall(r"\((\d+) ops\)", label))
    lines = [line for line in script.splitlines()
             if line.strip() and not line.startswith(("show(", "    print", "def show", "import"))]
    return {"instructions": instructions, "nodes": nodes, "lines": len(lines)}


def bench_engine(entry: Entry, extra: list[str], timeout: float, *, order: str = "natural",
                 shrink: bool = True) -> dict[str, Any]:
    caught = pytest_run(["--pyargs", "conformance"], "--engine", entry.spec, "-x",
                        "--hypothesis-profile=catalogue", f"--catalogue-order={order}",
                        extra=extra, timeout=timeout)
    first = caught.record.get("first_failure")
    result: dict[str, Any] = {
        "engine": entry.short, "bug": entry.bug, "caught": bool(first) and caught.returncode == 1,
        "wall": caught.wall, "property": None, "examples": None, "seconds": None, "shrunk": None,
    }
    if not result["caught"]:
        return result
    case = first["test"].partition("[")[2]  # the parameter of a parametrized property
    result.update(property=first["property"] + (f"[{case}" if case else ""),
                  examples=first["examples"], seconds=first["seconds"], test=first["test"])
    if not shrink:
        return result
    shrunk = pytest_run([first["test"]], "--engine", entry.spec, "-x",
                        "--hypothesis-profile=ci", extra=extra, timeout=timeout)
    message = shrunk.record.get("tests", {}).get(first["test"], {}).get("last_error", "")
    result["shrunk"] = reproduction_size(message)
    result["shrink_wall"] = shrunk.wall
    return result


def engines_table(results: list[dict[str, Any]]) -> str:
    rows = ["| engine | caught by | examples to 1st failure | s to 1st failure | "
            "shrunk repro (instr / nodes / lines) |", "|---|---|---:|---:|---|"]
    for r in results:
        size = r.get("shrunk")
        repro = f"{size['instructions']} / {size['nodes']} / {size['lines']}" if size else "—"
        if not r["caught"]:
            rows.append(f"| `{r['engine']}` | **NOT CAUGHT** | — | — | — |")
            continue
        seconds = "—" if r["seconds"] is None else f"{r['seconds']:.1f}"
        rows.append(f"| `{r['engine']}` | `{r['property']}` | {r['examples'] or '—'} | "
                    f"{seconds} | {repro} |")
    caught = [r for r in results if r["caught"] and r["examples"] is not None]
    rows.append("")
    rows.append(f"Caught {sum(r['caught'] for r in results)} of {len(results)}.")
    if caught:
        seconds = statistics.median(r["seconds"] for r in caught)
        examples = statistics.median(r["examples"] for r in caught)
        rows.append(f"Median time to catch: {seconds:.1f} s (median {examples:.0f} examples); "
                    f"median wall time of a catching run, startup included: "
                    f"{statistics.median(r['wall'] for r in caught):.1f} s.")
    return "\n".join(rows)


def per_module(record: dict[str, Any]) -> dict[str, tuple[int, float]]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for test in record.get("tests", {}).values():
        semantic = (test.get("property") or "?").split("::")[0]
        totals[semantic][0] += test["examples"]
        totals[semantic][1] += test.get("seconds", 0.0)
    return {name: (int(n), s) for name, (n, s) in sorted(totals.items())}


def bench_suite(engine: str, extra: list[str], timeout: float) -> str:
    target = ["--pyargs", "conformance", "--engine", engine, "--hypothesis-profile=ci"]
    serial = pytest_run(target, extra=extra, timeout=timeout)
    generate = pytest_run(target, "--catalogue-generate-only", extra=extra, timeout=timeout)
    parallel = pytest_run(target, "-n", "2", extra=extra, timeout=timeout)
    ran, drawn = per_module(serial.record), per_module(generate.record)
    rows = [f"Suite on `{engine}`, `ci` profile: wall {serial.wall:.1f} s "
            f"(exit status {serial.returncode}), {serial.record.get('examples', 0)} examples.",
            "", "| property module | examples | run: examples/s | generation only: examples/s |",
            "|---|---:|---:|---:|"]
    for name, (count, seconds) in ran.items():
        gen_count, gen_seconds = drawn.get(name, (0, 0.0))
        rate = count / seconds if seconds else float("nan")
        gen_rate = gen_count / gen_seconds if gen_seconds else float("nan")
        rows.append(f"| {name} | {count} | {rate:.1f} | {gen_rate:.1f} |")
    total = sum(c for c, _ in ran.values()) / max(sum(s for _, s in ran.values()), 1e-9)
    gen_total = sum(c for c, _ in drawn.values()) / max(sum(s for _, s in drawn.values()), 1e-9)
    rows.append(f"| **all** | {serial.record.get('examples', 0)} | {total:.1f} | {gen_total:.1f} |")
    rows += ["", f"Generation only: wall {generate.wall:.1f} s "
             f"(exit status {generate.returncode}). "
             f"`-n 2`: wall {parallel.wall:.1f} s (exit status {parallel.returncode}) against "
             f"{serial.wall:.1f} s without `-n`: speedup {serial.wall / parallel.wall:.2f}×."]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "engines", "suite"], default="all")
    parser.add_argument("--only", default="", help="only engines whose spec contains this")
    parser.add_argument("--engine", default="torch", help="engine for the suite part")
    parser.add_argument("--timeout", type=float, default=900.0, help="per pytest run, seconds")
    parser.add_argument("--pytest-args", default="",
                        help="extra options for every pytest run, e.g. '-p oracle_torch'")
    parser.add_argument("--order", choices=["natural", "targeted"], default="natural",
                        help="property order for the engines part (targeted: what the test "
                        "file does)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="skip the shrinking run (no reproduction sizes)")
    parser.add_argument("--json", default=None, help="also write raw results to this file")
    args = parser.parse_args()
    extra = shlex.split(args.pytest_args)
    raw: dict[str, Any] = {}
    if args.part in ("all", "engines"):
        entries = [e for e in catalogue() if not e.control and args.only in e.spec]
        results = []
        for entry in entries:
            result = bench_engine(entry, extra, args.timeout, order=args.order,
                                  shrink=not args.no_shrink)
            results.append(result)
            print(f"# {entry.short}: caught={result['caught']} by {result['property']} after "
                  f"{result['examples']} examples, {result['wall']:.1f} s wall", file=sys.stderr)
        raw["engines"] = results
        print("## Broken engines\n")
        print(engines_table(results))
        print()
    if args.part in ("all", "suite"):
        print(f"## The suite on {args.engine}\n")
        print(bench_suite(args.engine, extra, args.timeout))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
