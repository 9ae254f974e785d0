"""How each built-in adapter's lines divide between API translation and known deviations.

Counts the top-level statements of each adapter module (``ast``), as Markdown:

- **deviations**: ``NAME = KnownDeviation(...)`` declarations (reason, evidence script,
  ``Diverges``: data);
- **predicates**: the module's functions a declaration reaches (its ``applies``, and what that
  calls): code, where a divergence could not say it;
- **translation**: the engine classes and every other function;
- **other**: imports, constants and tables.

``--at REV`` counts the files as they were at a git revision (the ones that existed then)::

    python bench/adapter_sizes.py
    python bench/adapter_sizes.py --at 967135c
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("tinygrad_engine.py", "paddle_engine.py", "mlx_engine.py", "torch_compile.py",
            "torch_engines.py")


def _source(name: str, revision: str | None) -> str | None:
    path = Path("conformance/engines") / name
    if revision is None:
        return (ROOT / path).read_text() if (ROOT / path).exists() else None
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    return shown.stdout if shown.returncode == 0 else None


def _is_deviation(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "KnownDeviation")


def sizes(source: str) -> dict[str, int]:
    """Lines per part (see the module's docstring), and ``total``."""
    tree = ast.parse(source)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    counts = {"translation": 0, "deviations": 0, "predicates": 0, "other": 0}
    frontier: set[str] = set()
    for node in tree.body:
        if _is_deviation(node):
            frontier.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    reached: set[str] = set()
    while frontier:
        name = frontier.pop()
        if name in functions and name not in reached:
            reached.add(name)
            frontier.update(n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name))
    for node in tree.body:
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        if _is_deviation(node):
            counts["deviations"] += lines
        elif isinstance(node, ast.FunctionDef):
            counts["predicates" if node.name in reached else "translation"] += lines
        elif isinstance(node, ast.ClassDef):
            counts["translation"] += lines
        else:
            counts["other"] += lines
    counts["total"] = len(source.splitlines())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", metavar="REV", help="count the files at this git revision")
    args = parser.parse_args()
    print(f"| adapter ({args.at or 'working tree'}) | total | translation | deviations "
          "| predicates | other |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ADAPTERS:
        source = _source(name, args.at)
        if source is None:
            continue
        c = sizes(source)
        print(f"| `{name}` | {c['total']} | {c['translation']} | {c['deviations']} "
              f"| {c['predicates']} | {c['other']} |")


if __name__ == "__main__":
    main()
