"""Collect per-property verdicts from a pytest run and write them as JSON and Markdown.

A verdict is one of: ``pass``, ``fail``, ``known deviation`` (a strict xfail that failed as
expected), ``unsupported`` (skipped: the engine declared a capability gap), ``not applicable``
(skipped: a property of torch's stateful autograd, on a functional engine), ``fixed deviation``
(a known deviation that passed: strict xfail turns it into a failure), ``error``.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

VERDICT_MARKS = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "known deviation": "⚠️ known deviation",
    "unsupported": "⏭️ unsupported",
    "not applicable": "➖ not applicable",
    "fixed deviation": "❗ fixed deviation",
    "error": "💥 error",
}

EXAMPLES_PROPERTY = "conformance_examples"
"""``user_properties`` key under which the plugin records how many programs a property ran."""

TALLY_PROPERTY = "conformance_tally"
"""``user_properties`` key under which the plugin records a property's examples: passed,
failed, and set aside per known deviation (``runner.Tally``)."""

SET_ASIDE_FLAG = 0.10
"""A property whose known deviations set aside more than this share of its examples is marked
in reports: every example set aside is one not checked."""

CRASH_PROPERTY = "conformance_crash"
"""``user_properties`` key under which the plugin records how the engine's worker died in a
property's reported failure: ``"killed by signal SIGSEGV (...)"``, ``"timed out after 60 s"``."""


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """``.../test_sgd.py::test_hyperparameter[nesterov]`` → ``("sgd", "test_hyperparameter[nesterov]")``."""
    path, _, name = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py").removeprefix("test_")
    return module, name


@dataclass
class PropertyResult:
    id: str
    semantic: str
    name: str
    verdict: str
    examples: int = 0
    """Programs run on the engine (a law's example runs two)."""
    passed: int = 0
    """Examples checked to the end."""
    failed: int = 0
    """Examples that failed: the first failure and each failing shrink of it."""
    set_aside: dict[str, int] = field(default_factory=dict)
    """Examples set aside, per known deviation (by its label)."""
    checked_past: dict[str, int] = field(default_factory=dict)
    """Of the examples whose comparison passed, those checked past the instructions a local
    known deviation describes (``KnownDeviation.local``), per deviation: checked, not set
    aside; a run can count under several."""
    reason: str = ""
    duration_s: float = 0.0
    crash: str = ""
    """How the engine's process died in the reported failure (empty if it did not)."""

    @property
    def share_set_aside(self) -> float:
        """The share of examples that reached the engine which a known deviation set aside."""
        aside = sum(self.set_aside.values())
        total = self.passed + self.failed + aside
        return aside / total if total else 0.0


@dataclass
class Report:
    engine: str
    engine_version: str
    profile: str
    seed: str
    versions: dict[str, str]
    results: list[PropertyResult] = field(default_factory=list)
    stale_deviations: list[str] = field(default_factory=list)
    deviations: list[dict[str, Any]] = field(default_factory=list)
    """The engine's known deviations: ``properties``, ``reason`` and ``evidence`` (a script)."""
    exit_code: int = 0
    runtime_s: float = 0.0
    interrupted: bool = False
    """The run was interrupted (Ctrl-C): the results are those of the properties that ran."""
    capability_gaps: dict[str, str] = field(default_factory=dict)
    """What the engine declared unsupported (``Capabilities.unsupported``), with its reasons:
    never drawn, and the properties that need it skipped."""
    end_comparison: str = ""
    """Why the end of each run was not compared with the reference's own run (the engine
    declared ``steps_at_param_precision`` unsupported); empty where it was."""

    def crashes(self) -> list[PropertyResult]:
        return [r for r in self.results if r.crash]

    def share_set_aside(self) -> float:
        """The share of all examples that reached the engine which deviations set aside."""
        aside = sum(sum(r.set_aside.values()) for r in self.results)
        total = sum(r.passed + r.failed for r in self.results) + aside
        return aside / total if total else 0.0

    def checked_past(self) -> int:
        """Examples checked past a local known deviation, summed over the deviations (a run
        that two of them excused counts twice)."""
        return sum(sum(r.checked_past.values()) for r in self.results)

    def flagged(self) -> list[PropertyResult]:
        """Properties whose set-aside share is above :data:`SET_ASIDE_FLAG`."""
        return [r for r in self.results if r.share_set_aside > SET_ASIDE_FLAG]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
        return counts

    def semantics(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for result in self.results:
            row = table.setdefault(result.semantic, {})
            row[result.verdict] = row.get(result.verdict, 0) + 1
        return table

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        results = [PropertyResult(**r) for r in data.pop("results")]
        return cls(results=results, **data)

    def to_markdown(self) -> str:
        lines = [
            f"# Conformance report: `{self.engine}`",
            "",
            *(["**Interrupted**: a partial report, of the properties that ran.", ""]
              if self.interrupted else []),
            f"- engine: `{self.engine}` ({self.engine_version})",
            f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(self.versions.items()))}",
            f"- Hypothesis profile: `{self.profile}`, seed: {self.seed}",
            f"- properties: {len(self.results)}, programs run: "
            f"{sum(r.examples for r in self.results)}, runtime: {self.runtime_s:.1f} s",
            f"- verdict counts: {', '.join(f'{k}: {v}' for k, v in sorted(self.counts().items()))}",
            f"- examples set aside by known deviations: {self.share_set_aside():.1%} overall; "
            f"{len(self.flagged())} properties above {SET_ASIDE_FLAG:.0%} (marked ⚠)",
            *([f"- examples checked past a local known deviation (excused where it shows, "
               f"compared everywhere else): {self.checked_past()}"] if self.checked_past() else []),
            "- end of each run against the reference's own run (drift): "
            + (f"not compared: {self.end_comparison}" if self.end_comparison else "compared"),
            "",
            "| semantic | property | verdict | programs | passed | set aside | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sorted(self.results, key=lambda r: (r.semantic, r.name)):
            reason = r.reason.replace("|", "\\|").replace("\n", " ")
            aside = sum(r.set_aside.values())
            flag = " ⚠" if r.share_set_aside > SET_ASIDE_FLAG else ""
            aside_text = f"{aside} ({r.share_set_aside:.0%}){flag}" if aside else "0"
            lines.append(
                f"| {r.semantic} | `{r.name}` | {VERDICT_MARKS[r.verdict]} | {r.examples} "
                f"| {r.passed} | {aside_text} | {reason} |"
            )
        if any(r.set_aside for r in self.results):
            lines += ["", "## Examples set aside, per known deviation", "",
                      "| property | deviation | examples |", "|---|---|---|"]
            lines += [f"| `{r.id}` | {label} | {count} |"
                      for r in sorted(self.results, key=lambda r: r.id)
                      for label, count in sorted(r.set_aside.items())]
        if any(r.checked_past for r in self.results):
            lines += ["", "## Examples checked past a local known deviation", "",
                      "Runs that showed a deviation confined to param values after a step, "
                      "excused there and compared on to their end (counted as passed):", "",
                      "| property | deviation | examples |", "|---|---|---|"]
            lines += [f"| `{r.id}` | {label} | {count} |"
                      for r in sorted(self.results, key=lambda r: r.id)
                      for label, count in sorted(r.checked_past.items())]
        if self.crashes():
            lines += ["", "## Engine crashes", "",
                      "Programs that killed the engine's process or ran past the time limit "
                      "(the failure message holds the shrunk program as a torch script):", ""]
            lines += [f"- `{r.id}` ({r.verdict}): {r.crash}" for r in self.crashes()]
        if self.capability_gaps:
            lines += ["", "## Declared capability gaps", "",
                      "Never drawn for this engine; a property that needs one is skipped "
                      "(unsupported):", ""]
            lines += [f"- `{name}`: {reason}" for name, reason in sorted(self.capability_gaps.items())]
        if self.stale_deviations:
            lines += ["", "Known deviations that match no property:", ""]
            lines += [f"- `{pid}`" for pid in self.stale_deviations]
        if self.deviations:
            lines += ["", "## Known deviations, with the evidence the adapter ships", ""]
        for deviation in self.deviations:
            names = ", ".join(f"`{pid}`" for pid in deviation["properties"])
            lines += [f"- {names}: {deviation['reason']}"]
            if deviation.get("matched_by"):
                lines += [f"  - *{deviation['label']}*, told in a run by "
                          f"{deviation['matched_by']}"]
            if deviation.get("evidence"):
                lines += ["", "  ```python", *(f"  {line}".rstrip()
                                              for line in deviation["evidence"].splitlines()),
                          "  ```"]
            lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.engine}.json").write_text(self.to_json())
        (directory / f"{self.engine}.md").write_text(self.to_markdown())


class Collector:
    """A pytest plugin object that turns test reports into :class:`PropertyResult` s."""

    def __init__(self) -> None:
        self.results: dict[str, PropertyResult] = {}
        self.finished: set[str] = set()
        """Node ids with an outcome: a property interrupted after its setup has none."""
        self.started = time.perf_counter()

    def finished_results(self) -> list[PropertyResult]:
        """The results of the properties that ran to an outcome, by id."""
        return sorted((r for nodeid, r in self.results.items() if nodeid in self.finished),
                      key=lambda r: r.id)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.skipped or report.failed:
            self.finished.add(report.nodeid)
        semantic, name = split_nodeid(report.nodeid)
        result = self.results.setdefault(
            report.nodeid, PropertyResult(f"{semantic}::{name}", semantic, name, "pass")
        )
        result.duration_s += report.duration
        # user_properties ride on every phase's report (call and teardown): read them once.
        for key, value in report.user_properties if report.when == "call" else ():
            if key == EXAMPLES_PROPERTY:
                result.examples += int(str(value))
            elif key == TALLY_PROPERTY:
                tally: dict[str, Any] = value  # type: ignore[assignment]
                result.passed += tally["passed"]
                result.failed += tally["failed"]
                for label, count in tally["set_aside"].items():
                    result.set_aside[label] = result.set_aside.get(label, 0) + count
                for label, count in tally.get("checked_past", {}).items():
                    result.checked_past[label] = result.checked_past.get(label, 0) + count
            elif key == CRASH_PROPERTY:
                result.crash = str(value)
        xfail_reason = getattr(report, "wasxfail", None)
        if report.skipped and xfail_reason is not None:
            result.verdict, result.reason = "known deviation", str(xfail_reason)
        elif report.skipped:
            reason = _skip_reason(report)
            verdict = "not applicable" if reason.startswith("not applicable") else "unsupported"
            result.verdict, result.reason = verdict, reason
        elif report.passed and report.when == "call" and xfail_reason is not None:
            # a witness whose examples never reached its deviation (a rare one, or any under
            # random seeds): a pass, said so
            result.verdict, result.reason = "pass", f"not reached in this run: {xfail_reason}"

        elif report.failed and report.when == "call":
            text = str(report.longrepr)
            if "XPASS(strict)" in text:
                result.verdict, result.reason = "fixed deviation", text.strip().splitlines()[-1]
            else:
                result.verdict, result.reason = "fail", _first_line(report)
        elif report.failed:
            result.verdict, result.reason = "error", _first_line(report)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(report.longrepr)
    return message.strip().splitlines()[0][:300] if message.strip() else "failed"


def versions() -> dict[str, str]:
    """Versions of what the verdicts depend on, besides the engine itself."""
    from importlib.metadata import version

    import hypothesis
    import numpy

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "hypothesis": hypothesis.__version__,
        "autograd-conformance": version("autograd-conformance"),
    }

