"""The suite's proof of power: every catalogued broken engine is caught, every control passes.

Each engine runs the whole suite in its own process (engines are session-wide state), as a
user would: ``python -m pytest --pyargs conformance --engine tests.broken_engines.<mod>:<Cls>``,
forked from a process that imported torch and Hypothesis once (``tests/forked_pytest.py``),
with the engine in that process (``--no-isolate``) unless it kills the process it runs in
(the ``crashes`` family, ``Entry.isolated``).

- A broken engine must make at least one property fail. The run uses ``-x``, the ``catalogue``
  profile (``ci`` without shrinking: derandomized, 120 examples) and runs the property modules
  named in the engine's ``catches_in`` first; the verdict is the same as the suite's natural
  order, only sooner.
- A control must pass the ``ci`` profile: every property passes or is skipped. The controls
  that replace only torch's optimizers run the properties that construct one
  (``-m optimizer``): the rest would run torch itself.

Parametrized one test per engine, so ``-n 2`` spreads them over two workers. Set
``BROKEN_ENGINES_PYTEST_ARGS`` to pass extra options to every run (e.g. during development,
``-p oracle_torch`` to compare against torch instead of the reference).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import forked_pytest
import pytest
from broken_engines import Entry, catalogue

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tests.broken_engines"
ENTRIES = catalogue(spec_prefix=PACKAGE)
EXTRA_ARGS = shlex.split(os.environ.get("BROKEN_ENGINES_PYTEST_ARGS", ""))
TIMEOUT_S = 1200  # a control runs the whole suite: minutes on a loaded 2-core machine


BY_SPEC = {entry.spec: entry for entry in ENTRIES}


def _engine_options(entry: Entry) -> list[str]:
    """``--engine``, ``--no-isolate`` unless the engine ends the process it runs in
    (``Entry.isolated``), and the engine's own ``suite_options``."""
    return ["--engine", entry.spec, *([] if entry.isolated else ["--no-isolate"]),
            *entry.options]


def _suite(entry: Entry, report: Path, *options: str
           ) -> tuple[subprocess.CompletedProcess[str], dict]:
    command = [
        "--pyargs", "conformance", *_engine_options(entry),
        "-p", "no:cacheprovider", "-p", f"{PACKAGE}.plugin", "-q", "--no-header",
        f"--catalogue-report={report}", *options, *EXTRA_ARGS,
    ]
    result = forked_pytest.run(command, cwd=ROOT, timeout=TIMEOUT_S)
    record = json.loads(report.read_text()) if report.exists() else {}
    return result, record


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr).strip().splitlines()
    return f"exit status {result.returncode}; last lines of the run:\n" + "\n".join(output[-40:])


@pytest.mark.parametrize(
    "entry", [entry for entry in ENTRIES if not entry.control],
    ids=[entry.short for entry in ENTRIES if not entry.control],
)
def test_broken_engine_is_caught(entry: Entry, tmp_path: Path) -> None:
    spec = entry.spec
    result, record = _suite(entry, tmp_path / "report.json", "-x",
                            "--hypothesis-profile=catalogue", "--catalogue-order=targeted")
    failed = record.get("outcomes", {}).get("failed", [])
    assert failed, f"{spec} was NOT caught: no property failed.\n{_explain(result)}"
    assert result.returncode == 1, f"{spec}: the run did not end normally.\n{_explain(result)}"
    # Caught by what its bug does, not by its adapter tripping over the suite's calls: an
    # exception no ErrorKind describes is a catch only for the engines built to crash.
    first = record.get("first_failure") or {}
    assert entry.crashes or first.get("kind") in ("Divergence", "AssertionError"), (  # laws assert
        f"{spec} was caught by a {first.get('kind')}, not a divergence:\n"
        f"{first.get('message', '')[:1500]}")


@pytest.mark.parametrize(
    "entry", [entry for entry in ENTRIES if entry.control],
    ids=[entry.short for entry in ENTRIES if entry.control],
)
def test_control_passes(entry: Entry, tmp_path: Path) -> None:
    result, record = _suite(entry, tmp_path / "report.json", "--hypothesis-profile=ci")
    outcomes = record.get("outcomes", {})
    assert result.returncode == 0, (
        f"control {entry.spec} failed the suite: {outcomes.get('failed')}\n{_explain(result)}"
    )
    assert outcomes.get("passed"), f"control {entry.spec} passed nothing.\n{_explain(result)}"


# One broken engine per property module that this module, run alone, must catch: every module
# can fail (issue 3), not only the ones that happen to come first in the suite's order.
CAUGHT_BY_MODULE = {
    "accumulation": "accumulation:OverwritesGrad",
    "adam": "adam:NoBiasCorrection",
    "backward_errors": "backward_errors:BroadcastsGradientArgument",
    "conventions": "conventions:MaxTiesAllToFirst",
    "indexing": "indexing:IndexDuplicatesAssigned",
    "laws": "sgd:MaximizeNegatesOnlyTheUpdate",
    "optimizers": "adam:LoadStateDictRestartsStep",
    "retain_graph": "retain_graph:NeverFreesGraph",
    "sgd": "sgd:NesterovUsesStaleBuffer",
    "training_loops": "accumulation:AliasesFirstContribution",
    "zero_grad": "zero_grad:ZeroGradAlwaysZeroes",
}
MODULES = sorted(path.stem.removeprefix("test_")
                 for path in (ROOT / "conformance" / "properties").glob("test_*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_each_property_module_catches_a_broken_engine(module: str, tmp_path: Path) -> None:
    assert module in CAUGHT_BY_MODULE, f"no broken engine is assigned to property module {module}"
    spec = f"{PACKAGE}.{CAUGHT_BY_MODULE[module]}"
    command = [
        "--pyargs", f"conformance.properties.test_{module}",
        *_engine_options(BY_SPEC[spec]), "-p", "no:cacheprovider", "-p", f"{PACKAGE}.plugin", "-q",
        "--no-header", "-x", "--hypothesis-profile=catalogue",
        f"--catalogue-report={tmp_path / 'report.json'}", *EXTRA_ARGS,
    ]
    result = forked_pytest.run(command, cwd=ROOT, timeout=TIMEOUT_S)
    record = json.loads((tmp_path / "report.json").read_text())
    failed = record["outcomes"].get("failed", [])
    assert failed, f"test_{module} alone did not catch {spec}.\n{_explain(result)}"
    assert all(f"test_{module}.py" in nodeid for nodeid in failed), failed


def test_catalogue_covers_every_semantic() -> None:
    """At least one broken engine aims at each property module, and there are 25 or more."""
    broken = [entry for entry in ENTRIES if not entry.control]
    aimed = {target.split("::")[0] for entry in broken for target in entry.catches_in}
    assert len(broken) >= 25, f"only {len(broken)} broken engines"
    assert len(ENTRIES) - len(broken) >= 3, "fewer than 3 controls"
    missing = set(MODULES) - aimed - {"laws", "training_loops"}  # oracle-free and whole-loop
    assert not missing, f"no broken engine aims at {sorted(missing)}"


def test_a_per_op_property_isolates_its_op(tmp_path: Path) -> None:
    """``retain_graph::test_each_op_frees_like_torch[sqrt]`` alone catches an engine whose only
    bug is sqrt's saving rule: the op stands alone (positive params, no ``abs(x) + c`` in
    front, whose saved input made the second backward raise anyway)."""
    spec = f"{PACKAGE}.retain_graph:SqrtKeepsResultUnsaved"
    command = [
        "--pyargs", "conformance.properties.test_retain_graph",
        "--engine", spec, "-p", "no:cacheprovider", "-p", f"{PACKAGE}.plugin", "-q",
        "--no-header", "--hypothesis-profile=catalogue", "-k",
        "test_each_op_frees_like_torch and sqrt", f"--catalogue-report={tmp_path / 'r.json'}",
    ]
    result = forked_pytest.run(command, cwd=ROOT, timeout=TIMEOUT_S)
    record = json.loads((tmp_path / "r.json").read_text())
    failed = record["outcomes"].get("failed", [])
    assert [nodeid.split("::")[-1] for nodeid in failed] == [
        "test_each_op_frees_like_torch[sqrt]"], _explain(result)


def test_properties_without_the_optimizer_marker_never_construct_one(tmp_path: Path) -> None:
    """``-m optimizer`` runs only the properties whose programs construct an optimizer, for an
    engine that differs from torch in its optimizers alone (CI's torch-foreach and torch-fused,
    the hand-written SGD and Adam controls): the others run torch's autograd on the same
    draws as torch's own run. Every property left out draws its ``ci`` programs here, with
    every capability (the reference's), and fails at the first that constructs an optimizer."""
    command = [
        "--pyargs", "conformance", "--engine", "reference", "--no-isolate", "-m", "not optimizer",
        "-p", "no:cacheprovider", "-p", f"{PACKAGE}.plugin", "-p", "optimizer_probe", "-q",
        "--no-header", "--hypothesis-profile=catalogue", "--catalogue-generate-only",
        f"--catalogue-report={tmp_path / 'report.json'}",
    ]
    result = forked_pytest.run(command, cwd=ROOT, timeout=TIMEOUT_S)
    record = json.loads((tmp_path / "report.json").read_text())
    assert result.returncode == 0, _explain(result)
    ran = record["outcomes"].get("passed", []) + record["outcomes"].get("xfailed", [])
    assert len(ran) >= 80, f"only {len(ran)} properties without the marker ran:\n{_explain(result)}"
    # The reference declares every capability: a property skipped here drew nothing.
    assert not record["outcomes"].get("skipped"), record["outcomes"]["skipped"]
