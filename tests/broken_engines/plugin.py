"""A pytest plugin for running the suite on catalogued engines: ``-p tests.broken_engines.plugin``.

- registers the Hypothesis profile ``catalogue``: ``ci`` (derandomized, 120 examples, no
  database) without the shrink phase — to know *whether* an engine fails, not to minimise;
- ``--catalogue-order=targeted`` runs first the properties the engine names in
  ``catches_in`` (modules, properties or single cases, in that order of preference); with
  ``-x`` the run stops at the first failure, so this only saves time: every property still
  runs when those pass;
- ``--catalogue-report=PATH`` writes a JSON record of the run: per test, the examples run and
  their outcome; for the session, the examples and seconds until the first example of a
  failing test failed, and each test's final failure message (after shrinking, the minimal
  reproduction);
- ``--catalogue-generate-only`` replaces the interpreter by a stub, so properties draw their
  programs but run nothing (generation throughput).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
from hypothesis import settings

from conformance import profiles
from conformance.interpret import Observation
from conformance.plugin import engine_of, property_id
from conformance.program import Program

CATALOGUE_PROFILE = "catalogue"
settings.register_profile(
    CATALOGUE_PROFILE, parent=settings.get_profile("ci"), phases=profiles.NO_SHRINK
)

ORDERS = ("natural", "targeted")


def _order(value: str) -> str:
    if value not in ORDERS:
        raise pytest.UsageError(f"--catalogue-order: expected one of {', '.join(ORDERS)}, "
                                f"got {value!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("catalogue", "broken-engine catalogue")
    group.addoption("--catalogue-order", type=_order, default="natural", metavar="ORDER",
                    help="natural (the suite's order) or targeted (the engine's catches_in "
                    "modules first)")
    group.addoption("--catalogue-report", default=None, metavar="PATH",
                    help="write a JSON record of examples, failures and timings to PATH")
    group.addoption("--catalogue-generate-only", action="store_true", default=False,
                    help="draw every program but run none (a stub interpreter)")


class _Recorder:
    """Counts the examples each test runs and notes each test's first failing example."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.current: str | None = None
        self.tests: dict[str, dict[str, Any]] = {}
        self.examples = 0

    def entry(self, nodeid: str | None) -> dict[str, Any]:
        return self.tests.setdefault(nodeid or "?", {"examples": 0, "failures": 0})

    def record(self, error: BaseException | None) -> None:
        self.examples += 1
        entry = self.entry(self.current)
        entry["examples"] += 1
        if error is None or type(error).__module__.startswith("hypothesis"):
            return  # passing, or Hypothesis's own control flow (an overrun, a failed assume)
        entry["failures"] += 1
        entry["last_error"] = str(error)
        if "first_failure" not in entry:
            entry["first_failure"] = {"examples": self.examples,
                                      "seconds": time.perf_counter() - self.started,
                                      "kind": type(error).__name__,
                                      "message": str(error)[:2000]}

    def first_failure(self, failed: list[str]) -> dict[str, Any] | None:
        """The earliest failing example among the tests that failed (an expected failure — a
        known deviation's strict xfail — raises too, but is no catch)."""
        candidates = [(self.tests[nodeid]["first_failure"], nodeid) for nodeid in failed
                      if "first_failure" in self.tests.get(nodeid, {})]
        if not candidates:  # failed without a failing example: a strict XPASS, a fixture error
            return {"test": failed[0], "property": self.tests.get(failed[0], {}).get("property"),
                    "examples": None, "seconds": None} if failed else None
        first, nodeid = min(candidates, key=lambda pair: pair[0]["examples"])
        return {"test": nodeid, "property": self.tests[nodeid].get("property"), **first}


_recorder_key = pytest.StashKey[_Recorder]()


def _counting(inner: Callable[..., Any], recorder: _Recorder) -> Callable[..., Any]:
    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            result = inner(*args, **kwargs)
        except BaseException as error:
            recorder.record(error)
            raise
        recorder.record(None)
        return result

    counted.__catalogue_counted__ = True  # type: ignore[attr-defined]
    return counted


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_recorder_key] = _Recorder()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorder = config.stash[_recorder_key]
    for item in items:
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None and not getattr(handle.inner_test, "__catalogue_counted__", False):
            # Hypothesis reads ``inner_test`` at call time; replacing it is its documented hook.
            handle.inner_test = _counting(handle.inner_test, recorder)
    if config.getoption("catalogue_generate_only"):
        for item in items:  # nothing runs, so a known deviation cannot show: never strict
            if item.get_closest_marker("xfail") is not None:
                item.add_marker(pytest.mark.xfail(strict=False, reason="generate only"),
                                append=False)
    if config.getoption("catalogue_order") == "targeted" and any(map(property_id, items)):
        first = tuple(getattr(engine_of(config), "catches_in", ()))
        ranked = sorted(enumerate(items), key=lambda pair: (_rank(pair[1], first), pair[0]))
        items[:] = [item for _, item in ranked]


def _rank(item: pytest.Item, first: tuple[str, ...]) -> int:
    """The position of the first ``catches_in`` entry naming this item: a property module
    (``"sgd"``), a property (``"sgd::test_param_groups"``) or one case of it
    (``"conventions::test_convention[clamp]"``); ``len(first)`` if none does."""
    pid = property_id(item)
    if pid is None:
        return len(first)
    callspec = getattr(item, "callspec", None)
    names = {pid.split("::")[0], pid}
    if callspec is not None:
        names.add(f"{pid}[{callspec.id}]")
    return next((i for i, entry in enumerate(first) if entry in names), len(first))


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_recorder_key].started = time.perf_counter()  # times exclude collection
    if session.config.getoption("catalogue_generate_only"):
        import sys

        import conformance.runner

        conformance.runner.run = _generate_only  # type: ignore[assignment]
        laws = sys.modules.get("conformance.properties.test_laws")
        if laws is not None:
            laws.run = _generate_only  # type: ignore[attr-defined]


def _generate_only(engine: Any, program: Program, **_: Any) -> list[Observation]:
    """A trace in which nothing happened: every law holds on it, every comparison passes."""
    values = {p.name: p.value for p in program.params}
    nothing: dict[str, Any] = {p.name: None for p in program.params}
    state = {"error": None, "values": values, "grads": nothing, "same_grad": nothing,
             "grad_requires_grad": nothing, "aliased_grads": []}
    fields = {field.name for field in dataclasses.fields(Observation)}
    return [Observation(index=i, label="", **{k: v for k, v in state.items() if k in fields})
            for i in range(len(program.instructions) + 1)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    recorder = item.config.stash[_recorder_key]
    recorder.current = item.nodeid
    entry = recorder.entry(item.nodeid)
    entry["property"] = property_id(item)
    hypothesis_test = getattr(getattr(item, "obj", None), "hypothesis", None) is not None
    started = time.perf_counter()
    try:
        result = yield
    except BaseException as error:
        if not hypothesis_test:
            recorder.record(error)
        raise
    else:
        if not hypothesis_test:
            recorder.record(None)
        return result
    finally:
        entry["seconds"] = time.perf_counter() - started


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("catalogue_report")
    if not path or hasattr(session.config, "workerinput"):
        return
    recorder = session.config.stash[_recorder_key]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    outcomes: dict[str, list[str]] = {}
    if reporter is not None:
        for outcome in ("passed", "failed", "skipped", "xfailed", "xpassed", "error"):
            outcomes[outcome] = [r.nodeid for r in reporter.stats.get(outcome, [])
                                 if getattr(r, "when", "call") in ("call", "setup")]
    record = {
        "exitstatus": int(exitstatus),
        "seconds": time.perf_counter() - recorder.started,
        "examples": recorder.examples,
        "first_failure": recorder.first_failure(outcomes.get("failed", [])),
        "outcomes": outcomes,
        "tests": recorder.tests,
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
