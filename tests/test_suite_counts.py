"""The report's counts are true: per property, the programs run, the examples checked, and the
examples each known deviation set aside, each checked against a count taken independently —
Hypothesis's own statistics, and a log the deviation's ``applies`` writes itself."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conformance.profiles import CI_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]

ENGINE = '''
import os
from typing import Any, ClassVar
from conformance.adapter import KnownDeviation
from conformance.engines.reference_engine import ReferenceEngine
from conformance.program import Backward


def _retains(program: Any, trace: Any) -> bool:
    """Logs each run it sets aside: one line naming the property pytest is running."""
    shows = any(isinstance(i, Backward) and i.arguments.get("retain_graph") is True
                for i in program.instructions)
    if shows:
        with open(os.environ["SET_ASIDE_LOG"], "a") as log:
            log.write(os.environ["PYTEST_CURRENT_TEST"].split(" ")[0] + "\\n")
    return shows


class ForgetsRetainedGrads(ReferenceEngine):
    """backward(retain_graph=True) overwrites .grad instead of adding to it."""

    name = "forgets-retained-grads"
    known_deviations: ClassVar = (KnownDeviation(
        property="accumulation::test_repeated_backward_accumulates",
        reason="backward(retain_graph=True) overwrites grads", name="retain overwrites",
        applies=_retains,
    ),)

    def backward(self, loss: Any, **arguments: Any) -> None:
        if arguments.get("retain_graph") is True:
            for param in list(self._params):
                param.grad = None
        super().backward(loss, **arguments)

    def tensor(self, value: Any, *, requires_grad: bool) -> Any:
        made = super().tensor(value, requires_grad=requires_grad)
        if requires_grad:
            self._params.append(made)
        return made

    _params: ClassVar[list] = []
'''

SELECTED = "test_zero_grad_in_loops or test_index_gradient or test_repeated_backward_accumulates"


def _statistics(output: str) -> dict[str, int]:
    """Hypothesis's count of passing test cases per property, summed over its phases."""
    passing: collections.Counter[str] = collections.Counter()
    current = None
    for line in output.splitlines():
        if line.startswith("conformance/properties/") and line.endswith(":"):
            current = line[:-1].split("::")[-1]
        elif current and (match := re.search(r"- (\d+) passing", line)):
            passing[current] += int(match.group(1))
    return dict(passing)


def test_report_counts_match_independent_counts(tmp_path: Path) -> None:
    (tmp_path / "forgetting.py").write_text(textwrap.dedent(ENGINE))
    log = tmp_path / "set_aside.log"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SET_ASIDE_LOG": str(log)}
    command = [sys.executable, "-m", "conformance", "forgetting:ForgetsRetainedGrads",
               "--no-isolate", "--report", str(tmp_path), "--", "-k", SELECTED,
               "--hypothesis-show-statistics"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "forgets-retained-grads.json").read_text())
    results = {r["name"]: r for r in report["results"]}
    passing = _statistics(result.stdout)
    logged = collections.Counter(line.split("::")[-1] for line in log.read_text().splitlines())

    zero_grad = results["test_zero_grad_in_loops"]
    # Hypothesis counted the same passing examples, and the deviation's own log the same
    # set-asides; every program run was one or the other (the property runs one per example).
    assert zero_grad["passed"] == passing["test_zero_grad_in_loops"] == CI_EXAMPLES
    assert zero_grad["set_aside"] == {"retain overwrites": logged["test_zero_grad_in_loops"]}
    assert logged["test_zero_grad_in_loops"] > 0
    assert zero_grad["examples"] == zero_grad["passed"] + logged["test_zero_grad_in_loops"]
    assert zero_grad["failed"] == 0

    index = results["test_index_gradient"]  # never retains: nothing set aside, every program
    assert index["passed"] == passing["test_index_gradient"] == index["examples"] == CI_EXAMPLES
    assert index["set_aside"] == {}

    witness = results["test_repeated_backward_accumulates"]  # the deviation's witness
    assert witness["verdict"] == "known deviation"
    assert witness["failed"] >= 1
    assert witness["set_aside"] == {}  # a witness checks the runs its deviation describes

    markdown = (tmp_path / "forgets-retained-grads.md").read_text()
    share = logged["test_zero_grad_in_loops"] / zero_grad["examples"]
    assert f"{logged['test_zero_grad_in_loops']} ({share:.0%})" in markdown


def test_counting_keeps_each_property_its_own_derandomized_seed() -> None:
    """Counting wraps each property's ``inner_test``, and Hypothesis seeds a derandomized run
    from that function's digest: without ``functools.wraps`` every property of a ``ci`` run
    drew from one seed."""
    from types import SimpleNamespace

    from hypothesis import given
    from hypothesis import strategies as st
    from hypothesis.internal.reflection import function_digest

    from conformance.plugin import _count_examples

    @given(st.integers())
    def first(x: int) -> None:
        assert x == x

    @given(st.integers())
    def second(x: int) -> None:
        assert x + 0 == x

    digests = {}
    for test in (first, second):
        own = function_digest(test.hypothesis.inner_test)
        undo = _count_examples(SimpleNamespace(obj=test), SimpleNamespace(passed=0, failed=0))
        digests[test.__name__] = function_digest(test.hypothesis.inner_test)
        undo()
        assert digests[test.__name__] == own
    assert digests["first"] != digests["second"]
