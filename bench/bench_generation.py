"""Benchmark drawing programs: speed, choices per program, and coverage, before and after.

Draws ``--examples`` programs from each strategy the properties use most (derandomized, as the
``ci`` profile draws them, with the reference engine's capabilities: every op, dtype and
feature), and prints, as Markdown:

- speed: programs/s (generation only: the test body is empty) and Hypothesis choices per
  program;
- coverage: the share of programs, arrays, index nodes or operands with each edge the suite
  draws on purpose (exact zeros, ties, duplicate indices, stretched operands, every op, every
  instruction kind, every call form). A faster generator must keep these shares.

Two trees side by side (the speed ratio is only meaningful in one run, on one machine)::

    git worktree add /tmp/old <commit>
    python bench/bench_generation.py --vs /tmp/old

``--vs TREE`` runs the same measurement in a subprocess with TREE's ``conformance`` package
on ``sys.path`` (this file is not needed there), alternating the two trees ``--rounds`` times,
and reports the median rate of each. Hypothesis internals are used for one number only (the
choices per program, read from ``ConjectureData`` when a test case is frozen).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

STRATEGIES = ("programs", "hand_written_loops", "minibatch_loops", "graphs")


def measure(root: Path, examples: int) -> dict[str, Any]:
    """Draw ``examples`` values from each strategy of the ``conformance`` package at ``root``."""
    sys.path.insert(0, str(root))
    import numpy as np
    from hypothesis.internal.conjecture import data as conjecture

    from conformance import strategies as cs
    from conformance.adapter import Capabilities
    from conformance.program import Backward, Forward, MakeOptimizer, Param, ZeroGrad

    caps = Capabilities()
    choices: list[int] = []
    freeze = conjecture.ConjectureData.freeze

    def counting_freeze(self: Any) -> None:
        if not self.frozen:
            choices.append(len(self.nodes))
        freeze(self)

    conjecture.ConjectureData.freeze = counting_freeze  # type: ignore[method-assign]
    graph_params = (Param("p0", np.zeros((2, 3))), Param("p1", np.zeros((3,))),
                    Param("p2", np.zeros((), dtype=np.float32)))
    strategies = {
        "programs": cs.programs(caps),
        "hand_written_loops": cs.hand_written_loops(caps),
        "minibatch_loops": cs.minibatch_loops(caps),
        "graphs": cs.graphs(caps, loss="loss0", params=graph_params),
    }
    results: dict[str, Any] = {}
    for name, strategy in strategies.items():
        drawn: list[Any] = []
        choices.clear()
        collect = _collector(drawn, strategy, examples)
        started = time.perf_counter()
        collect()
        seconds = time.perf_counter() - started
        if name == "graphs":
            drawn = [_as_program(info.forward, graph_params) for info in drawn]
        results[name] = {"rate": len(drawn) / seconds, "seconds": seconds,
                         "choices": statistics.mean(choices) if choices else 0.0,
                         "coverage": coverage(drawn, Forward, Backward, MakeOptimizer, ZeroGrad)}
    return results


def _collector(drawn: list[Any], strategy: Any, examples: int) -> Any:
    """A derandomized test that appends each value drawn from ``strategy`` to ``drawn``."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    return collect


def _as_program(forward: Any, params: Any) -> Any:
    from conformance.program import Program
    return Program(params, (forward,))


def coverage(programs: list[Any], Forward: type, Backward: type, MakeOptimizer: type,
             ZeroGrad: type) -> dict[str, float]:
    """Shares of the edges the generator draws on purpose, over ``programs``."""
    import numpy as np

    from conformance.ops import index_parts
    from conformance.program import Const

    def nodes(program: Any) -> list[Any]:
        return [n for i in program.instructions if isinstance(i, Forward) for n in i.nodes]

    def arrays(program: Any) -> list[Any]:
        found = [p.value for p in program.params]
        found += [o.value for n in nodes(program) for o in n.operands if isinstance(o, Const)]
        return [a for a in found if a.dtype.kind == "f"]

    shares: dict[str, float] = {}

    def share(name: str, items: list[Any], condition: Callable[[Any], bool]) -> None:
        shares[name] = sum(map(condition, items)) / len(items) if items else float("nan")

    all_arrays = [a for p in programs for a in arrays(p)]
    share("array: an exact zero", all_arrays, lambda a: bool((a == 0).any()))
    share("array (size >= 2): a tie", [a for a in all_arrays if a.size >= 2],
          lambda a: len(set(a.ravel().tolist())) < a.size)
    share("array: +-1", all_arrays, lambda a: bool((np.abs(a) == 1).any()))
    all_nodes = [n for p in programs for n in nodes(p)]
    indexed = [n for n in all_nodes if n.op == "getitem"]

    def duplicate(node: Any) -> bool:
        lists = [list(np.asarray(q).tolist()) for q in index_parts(node.params["index"])
                 if isinstance(q, list) or (isinstance(q, np.ndarray) and q.dtype.kind == "i")]
        return any(len(set(q)) < len(q) for q in lists)

    share("getitem: duplicate indices", indexed, duplicate)
    share("getitem: a tuple index", indexed, lambda n: isinstance(n.params["index"], tuple))
    binary = [n for n in all_nodes if n.op in ("add", "sub", "mul", "div", "pow", "maximum",
                                              "minimum")]
    share("binary op: a stretched const operand", binary, lambda n: any(
        isinstance(o, Const) and o.value.ndim > 0 and 1 in o.value.shape and o.value.size > 0
        for o in n.operands))
    share("binary op: a float scalar operand", binary,
          lambda n: any(isinstance(o, float) for o in n.operands))
    share("program: mixed float32 and float64", programs,
          lambda p: len({q.value.dtype for q in p.params}) == 2)
    losses = [i for p in programs for i in p.instructions if isinstance(i, Forward)]
    share("loss: shape (1,) or (1, 1)", losses, lambda f: f.nodes[-1].op == "reshape"
          and tuple(f.nodes[-1].params.get("shape", ())) in ((1,), (1, 1)))
    shares["nodes per program (mean)"] = len(all_nodes) / max(1, len(programs))
    shares["instructions per program (mean)"] = statistics.mean(
        len(p.instructions) for p in programs)
    ops = Counter(op for p in programs for op in {n.op for n in nodes(p)})
    for op in sorted(ops):
        shares[f"op {op}: programs"] = ops[op] / len(programs)
    kinds = Counter(k for p in programs for k in {type(i).__name__ for i in p.instructions})
    for kind in sorted(kinds):
        shares[f"instruction {kind}: programs"] = kinds[kind] / len(programs)
    backwards = [i for p in programs for i in p.instructions if isinstance(i, Backward)]
    share("backward(): no argument", backwards, lambda b: not b.arguments)
    share("backward(create_graph=True)", backwards,
          lambda b: b.arguments.get("create_graph") is True)
    makes = [i for p in programs for i in p.instructions if isinstance(i, MakeOptimizer)]
    share("optimizer: no hyperparameter passed", makes, lambda m: not m.defaults)
    share("optimizer: two groups", makes, lambda m: len(m.groups) == 2)
    for kind in ("sgd", "adam", "adamw"):
        share(f"optimizer: {kind}", makes, lambda m, kind=kind: m.kind == kind)
    zeros = [i for p in programs for i in p.instructions if isinstance(i, ZeroGrad)]
    share("zero_grad(): no argument", zeros, lambda z: not z.arguments)
    return shares


def _run_tree(root: Path, examples: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--root", str(root), "--examples",
         str(examples), "--json"], capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"measuring {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}" if value <= 1 else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to measure")
    parser.add_argument("--vs", type=Path, metavar="TREE", help="another tree, side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line (internal)")
    args = parser.parse_args()
    if args.examples < 1 or args.rounds < 1:
        parser.error(f"--examples and --rounds must be positive, got {args.examples} and "
                     f"{args.rounds}")
    if args.json:
        print(json.dumps(measure(args.root, args.examples)))
        return
    trees = [args.root] + ([args.vs] if args.vs else [])
    runs: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            runs[tree].append(_run_tree(tree, args.examples))
    names = [str(tree) for tree in trees]
    print(f"{args.examples} programs per strategy, derandomized, median of {args.rounds} rounds "
          "(trees alternating)\n")
    print("| strategy | " + " | ".join(f"{n}: programs/s | choices" for n in names)
          + (" | speedup |" if args.vs else " |"))
    print("|---|" + "---:|---:|" * len(trees) + ("---:|" if args.vs else ""))
    for strategy in STRATEGIES:
        rates = [statistics.median(r[strategy]["rate"] for r in runs[t]) for t in trees]
        cells = [f"{rate:.1f} | {runs[t][0][strategy]['choices']:.0f}"
                 for rate, t in zip(rates, trees, strict=True)]
        ratio = f" {rates[0] / rates[1]:.2f}x |" if args.vs else ""
        print(f"| {strategy} | " + " | ".join(cells) + " |" + ratio)
    for strategy in STRATEGIES:
        print(f"\n### Coverage: `{strategy}`\n")
        print("| share | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(trees))
        keys = sorted({k for t in trees for k in runs[t][0][strategy]["coverage"]})
        for key in keys:
            cells = [_fmt(runs[t][0][strategy]["coverage"].get(key, 0.0)) for t in trees]
            print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
