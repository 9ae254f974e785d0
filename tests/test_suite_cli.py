"""The command line and the pytest plugin: usage errors name the bad value; reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, check=False)


def test_unknown_engine_is_a_usage_error_listing_the_known_ones():
    result = _run("-m", "conformance", "torhc")
    assert result.returncode == 4
    assert "unknown engine 'torhc'; known engines: reference, torch" in result.stderr


def test_pytest_unknown_engine_is_a_usage_error():
    result = _run("-m", "pytest", "--pyargs", "conformance", "--engine", "torhc",
                  "-p", "no:cacheprovider")
    assert result.returncode == 4
    assert "unknown engine 'torhc'" in result.stderr


def test_spec_that_is_not_an_engine_is_named():
    result = _run("-m", "conformance", "json:dumps")
    assert result.returncode == 4
    assert "json:dumps is a function, not a conformance.Engine" in result.stderr


def test_bad_profile_is_a_usage_error():
    result = _run("-m", "conformance", "reference", "--profile", "fast")
    assert result.returncode == 4
    assert "invalid choice: 'fast'" in result.stderr


def test_report_and_baseline(tmp_path):
    """A report on one semantic module; the same run against it as baseline: no regression."""
    selection = ["--", "-k", "test_indexing and gradient"]
    first = _run("-m", "conformance", "reference", "--report", str(tmp_path), *selection)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((tmp_path / "reference.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in report["results"]}
    assert verdicts["indexing::test_index_gradient"] == "pass"
    assert all(r["examples"] > 0 for r in report["results"])
    assert "| indexing | `test_index_gradient` | ✅ pass |" in (tmp_path / "reference.md").read_text()
    again = _run("-m", "conformance", "reference", "--baseline", str(tmp_path / "reference.json"),
                 *selection)
    assert again.returncode == 0, again.stdout
    assert "no regression" in again.stdout


def test_baseline_that_is_not_a_report_is_named(tmp_path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    result = _run("-m", "conformance", "reference", "--baseline", str(bogus))
    assert result.returncode == 4
    assert f"cannot read baseline '{bogus}'" in result.stderr


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in readme.splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci.splitlines(), f"README command not run by CI: {command}"


def test_torch_is_pinned_everywhere():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert "-c {tox_root}/constraints.txt" in (ROOT / "tox.ini").read_text()
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(("engine", "package"), [
    ("torch", "torch"), ("torch-foreach", "torch"), ("torch-fused", "torch"),
    ("torch-compile", "torch"), ("torch-compile-step", "torch"),
    ("tinygrad", "tinygrad"), ("paddle", "paddlepaddle"), ("mlx", "mlx"),
])
def test_ci_pins_the_version_each_committed_report_was_made_on(engine, package):
    """CI runs each engine at the version constraints.txt pins, with the known deviations that
    were found on it: bumping a pin without re-running the engine's report fails here."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    report = json.loads((ROOT / "docs" / "reports" / f"{engine}.json").read_text())
    assert report["engine_version"].split()[0].split("+")[0].rstrip(",") == pins[package], report
