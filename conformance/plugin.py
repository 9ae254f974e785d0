"""The pytest plugin (entry point ``pytest11: conformance``).

``pytest --pyargs conformance --engine NAME`` runs the properties in
``conformance/properties`` against an engine. The plugin:

- adds ``--engine`` (or ``CONFORMANCE_ENGINE``) and provides the session fixture ``engine``;
- skips properties marked ``@pytest.mark.requires("feature")`` that the engine declared
  unsupported, with the engine's reason; registers the marker ``optimizer`` (the properties
  whose programs construct an optimizer: ``-m optimizer`` for an engine that differs from an
  engine already checked only in its optimizers);
- runs the engine's known deviations as xfails (strict under the derandomized ``ci`` profile)
  and reports entries that match nothing;
- loads the ``ci`` Hypothesis profile unless ``--hypothesis-profile`` says otherwise;
- prints the engine, its version, the profile and the seed in the report header;
- runs the engine named by ``--engine`` in a worker process (``--no-isolate`` to run it here),
  so a segfault, ``abort()``, ``exit()`` or a program over ``--program-timeout`` seconds fails
  that program with an EngineCrash instead of ending the session (:mod:`conformance.isolation`);
- keys each property's saved failures by engine and property, and with
  ``--conformance-database`` (or ``CONFORMANCE_DATABASE``) keeps them in that database:
  a Redis server shared by many machines, or a directory; ``--conformance-replay`` only reads
  it (:mod:`conformance.database`). ``--budget`` bounds a fuzz run's time
  (:class:`conformance.profiles.Budget`).

It does nothing to test sessions that collect no conformance property.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import pytest

from conformance import isolation, profiles  # profiles: registered before Hypothesis loads one
from conformance.adapter import AnyEngine, FunctionalEngine, KnownDeviation
from conformance.database import DATABASE_ENV, Database, DatabaseError, example_key, open_database

ENGINE_ENV = "CONFORMANCE_ENGINE"
DEFAULT_ENGINE = "reference"
PROPERTIES_PACKAGE = "conformance.properties."
NOT_APPLICABLE = ("not applicable: functional engine (the property tests torch's stateful "
                  "autograd: .grad accumulation, graphs freed or retained, zero_grad, a grad's "
                  "identity)")
"""The skip reason of a property not marked ``functional`` on a functional engine."""

_engine_key = pytest.StashKey[AnyEngine]()
_stale_key = pytest.StashKey[list[str]]()
_witness_key = pytest.StashKey[KnownDeviation]()
_database_key = pytest.StashKey[Database]()
_budget_key = pytest.StashKey[profiles.Budget]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "autograd conformance suite")
    group.addoption(
        "--engine",
        default=None,
        metavar="NAME",
        help=f"engine to test: a registered name or 'package.module:Adapter' "
        f"(default: ${ENGINE_ENV}, else {DEFAULT_ENGINE!r})",
    )
    group.addoption(
        "--isolate", dest="conformance_isolate", action="store_true", default=True,
        help="run the engine's programs in a worker process the suite survives losing "
        "(the default)",
    )
    group.addoption(
        "--no-isolate", dest="conformance_isolate", action="store_false",
        help="run the engine's programs in the pytest process: a crash ends the session",
    )
    group.addoption(
        "--program-timeout", dest="conformance_timeout", type=_seconds,
        default=isolation.DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help="with isolation, a program running longer fails as a hang (default: %(default)s)",
    )
    group.addoption(
        "--conformance-database", default=None, metavar="URL|DIR",
        help="the example database failures are replayed from and saved into: "
        "redis://HOST:PORT/N (shared by any number of machines) or a directory "
        f"(default: ${DATABASE_ENV}, else the Hypothesis profile's)",
    )
    group.addoption(
        "--conformance-replay", action="store_true", default=False,
        help="only read the database: replay the failures saved for the engine, save nothing "
        "(the CI gate)",
    )
    group.addoption(
        "--budget", type=_budget, default=None, metavar="DURATION",
        help="wall-clock time for the whole run, shared over the properties: 90s, 10m, 2h "
        "(a profile that is not derandomized, such as fuzz)",
    )


def _budget(text: str) -> float:
    try:
        return profiles.parse_budget(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--budget: {exc}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise pytest.UsageError(f"--program-timeout: expected a positive number of seconds, "
                                f"got {text!r}")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(feature): skip unless the engine supports the feature"
    )
    config.addinivalue_line(
        "markers", "optimizer: the property's programs construct an optimizer; '-m optimizer' "
        "runs only these, for an engine whose autograd is one already checked (torch with "
        "other optimizers: foreach, fused, hand-written)"
    )
    config.addinivalue_line(
        "markers", "functional: the property's programs need no stateful autograd (a single "
        "backward from no grads, grads given by p.grad = ..., optimizer steps): it runs on "
        "functional engines too; the others are not applicable to them"
    )
    spec = config.getoption("engine") or os.environ.get(ENGINE_ENV)
    if spec or _collects_properties(config):
        _open_database(config)  # before the engine starts: a bad URL is a usage error at once
    if spec:
        engine = config.stash[_engine_key] = _load(spec)
        if config.getoption("conformance_isolate"):
            isolation.attach(engine, spec, timeout_s=config.getoption("conformance_timeout"))
            config.add_cleanup(lambda: isolation.detach(engine))
    if spec or _collects_properties(config):
        _load_profile(config)
        profiles.draw_without_local_literals()  # draws independent of the suite's own source


def _open_database(config: pytest.Config) -> None:
    """Open the database the options name, and start the budget's clock."""
    budget = config.getoption("budget")
    if budget is not None:
        config.stash[_budget_key] = profiles.Budget(budget)
    location = config.getoption("conformance_database") or os.environ.get(DATABASE_ENV)
    read_only = config.getoption("conformance_replay")
    if location:
        try:
            config.stash[_database_key] = open_database(location, read_only=read_only)
        except DatabaseError as exc:
            raise pytest.UsageError(str(exc)) from None
    elif read_only:
        raise pytest.UsageError(f"--conformance-replay: no example database to replay from; "
                                f"name one (--database / --conformance-database, or {DATABASE_ENV})")


def _collects_properties(config: pytest.Config) -> bool:
    """Whether the command line names the suite (``--pyargs conformance...``)."""
    return any(str(arg).split("::")[0].startswith("conformance") for arg in config.args)


def _load(spec: str) -> AnyEngine:
    from conformance.engines import UnknownEngine, load_engine

    try:
        return load_engine(spec)
    except UnknownEngine as exc:
        raise pytest.UsageError(str(exc)) from None


def engine_of(config: pytest.Config) -> AnyEngine:
    """The engine under test for this session (loading the default on first use)."""
    if _engine_key not in config.stash:
        config.stash[_engine_key] = _load(DEFAULT_ENGINE)
    return config.stash[_engine_key]


@pytest.fixture(scope="session")
def engine(pytestconfig: pytest.Config) -> AnyEngine:
    """The engine under test."""
    return engine_of(pytestconfig)


def property_id(item: pytest.Item) -> str | None:
    """``"sgd::test_matches_reference"`` for a conformance property, else None."""
    module = getattr(item, "module", None)
    if module is None or not module.__name__.startswith(PROPERTIES_PACKAGE):
        return None
    semantic = module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return f"{semantic}::{getattr(item, 'originalname', item.name)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Record how many programs the property ran on the engine (for reports and JUnit XML)
    and how its engine crashed, if it did; run a known deviation's witness without shrinking."""
    pid = property_id(item)
    if pid is None:
        return (yield)
    from conformance.interpret import RUNS
    from conformance.report import CRASH_PROPERTY, EXAMPLES_PROPERTY, TALLY_PROPERTY
    from conformance.runner import CURRENT_PROPERTY, CURRENT_TALLY, Tally

    key = id(engine_of(item.config))
    before = RUNS[key]
    tally = Tally()
    token = CURRENT_PROPERTY.set(_full_id(item, pid))
    tally_token = CURRENT_TALLY.set(tally)
    restore = _stop_at_first_failure(item)
    uncount = _count_examples(item, tally)
    try:
        return (yield)
    except Exception as failure:  # the failure Hypothesis reports (not Ctrl-C, not pytest.exit)
        for crash in _worker_crashes(failure):
            item.user_properties.append((CRASH_PROPERTY, crash.how))
        _check_witness(item, failure)
        raise
    finally:
        uncount()
        restore()
        CURRENT_TALLY.reset(tally_token)
        CURRENT_PROPERTY.reset(token)
        item.user_properties.append((EXAMPLES_PROPERTY, RUNS[key] - before))
        item.user_properties.append((TALLY_PROPERTY, {
            "passed": tally.passed, "failed": tally.failed, "set_aside": dict(tally.set_aside),
            "checked_past": dict(tally.checked_past)}))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Run a property's Hypothesis test under a database key of its own, in the database the
    options name, and with ``--budget`` for its share of the budget.

    The key is the engine and the property (:func:`conformance.database.example_key`):
    Hypothesis's own is a digest of the test function, the same for a property on every engine,
    and here for every property too (``_count_examples`` wraps each in the same function).
    A database that fails mid-run ends the session like Ctrl-C (exit status 2; the report
    holds the properties that finished): a lost server is no verdict on the engine. Under
    xdist the properties in flight fail with its error, as xdist stops only on those terms."""
    pid = property_id(pyfuncitem)
    test: Any = pyfuncitem.obj
    if pid is None or not hasattr(test, "hypothesis"):
        return (yield)
    from hypothesis import settings

    config = pyfuncitem.config
    database = config.stash.get(_database_key, None)
    budget = config.stash.get(_budget_key, None)
    own = test._hypothesis_internal_use_settings
    test._hypothesis_internal_database_key = example_key(engine_of(config).name,
                                                         _full_id(pyfuncitem, pid))
    if database is not None:
        test._hypothesis_internal_use_settings = settings(own, database=database.examples)
    if budget is not None:
        pyfuncitem.obj = _spend(test, budget)
    errors = database.errors if database is not None else ()
    try:
        return (yield)
    except errors as exc:
        location = database.location if database is not None else ""
        message = f"the example database {location} failed during {pid}: {exc}"
        if _xdist_workers(pyfuncitem.config) is not None:
            # xdist stops the session on a worker's shouldstop; a worker that exits "crashed".
            pyfuncitem.session.shouldstop = message
            raise
        pytest.exit(message, returncode=pytest.ExitCode.INTERRUPTED)
    finally:
        pyfuncitem.obj = test
        test._hypothesis_internal_use_settings = own
        del test._hypothesis_internal_database_key


def _spend(test: Any, budget: profiles.Budget) -> Callable[..., None]:
    """``test`` (a Hypothesis test) as a function that runs it again and again, with a fresh
    seed each time, for the next property's share of ``budget``."""
    from hypothesis import settings

    def spend(**kwargs: Any) -> None:
        __tracebackhide__ = True
        own = test._hypothesis_internal_use_settings
        try:
            for examples in budget.runs():
                test._hypothesis_internal_use_settings = settings(own, max_examples=examples)
                test(**kwargs)
        finally:
            test._hypothesis_internal_use_settings = own

    return spend


def _count_examples(item: pytest.Item, tally: Any) -> Callable[[], None]:
    """Count each example's outcome in ``tally`` through Hypothesis's reassignable
    ``test.hypothesis.inner_test`` (its documented hook for plugins): one that returns passed,
    one that raises an error failed; a rejection is counted where a known deviation made it
    (``runner.set_aside_known_deviations``), and Hypothesis's own control flow (a rejection,
    ``StopTest`` when a draw overruns its data) is no outcome. Returns the undo."""
    hypothesis_handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    if hypothesis_handle is None:
        return lambda: None  # a fixed example: no Hypothesis examples to count
    from hypothesis.errors import HypothesisException

    inner = hypothesis_handle.inner_test

    # wraps: Hypothesis derives a derandomized run's seed from the digest of this function
    # (its source and name, through __wrapped__): each property's own, not one for them all.
    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            result = inner(*args, **kwargs)
        except HypothesisException:
            raise
        except Exception:
            tally.failed += 1
            raise
        tally.passed += 1
        return result

    hypothesis_handle.inner_test = counted

    def undo() -> None:
        hypothesis_handle.inner_test = inner

    return undo


class WitnessMismatch(Exception):
    """A known deviation's witness failed, but not as the deviation describes: a second bug.
    Not an AssertionError, so the witness's xfail (``raises=AssertionError``) does not take it."""


def _check_witness(item: pytest.Item, failure: BaseException) -> None:
    """Raise :class:`WitnessMismatch` when a witness of a deviation that says how it diverges
    (``KnownDeviation.diverges``) failed in another way."""
    deviation = item.stash.get(_witness_key, None)
    if deviation is None or deviation.diverges is None:
        return
    from conformance.compare import Divergence
    from conformance.errors import EngineCrash
    from conformance.interpret import crashed_at

    if isinstance(failure, Divergence) and failure.found is not None:
        program = getattr(failure, "program", None)
        if program is not None and _witnessed(item, deviation, program, failure.found):
            return
    elif isinstance(failure, EngineCrash) and failure.program is not None:
        crashed = crashed_at(failure.program, failure.trace)
        if deviation.diverges.matches(failure.program, None, crashed, str(failure)):
            return
    raise WitnessMismatch(
        f"the witness of known deviation {deviation.label!r} failed in a way the deviation "
        f"does not describe ({deviation.diverges}): a second, unrecorded difference"
    ) from failure


def _witnessed(item: pytest.Item, deviation: Any, program: Any, found: Any) -> bool:
    """Whether a witness's divergence is its deviation's: as a whole, or, where it is in
    several params (one step showing two findings) or several fields (a backward missing an
    error and replacing a grad), each param's part or each field's aspect is either the
    deviation's or one of the engine's other local deviations', and one is the deviation's."""
    if deviation.diverges.matches(program, found, None):
        return True
    others = [d.diverges for d in engine_of(item.config).known_deviations
              if d.local and d is not deviation and d.diverges is not None]
    for pieces in (found.parts, found.aspects):
        own = [deviation.diverges.matches(program, piece, None) for piece in pieces]
        if any(own) and all(mine or any(other.matches(program, piece, None) for other in others)
                            for mine, piece in zip(own, pieces, strict=True)):
            return True
    return False


def _worker_crashes(failure: BaseException) -> list[isolation.WorkerCrash]:
    """The worker crashes in a test's failure (several when Hypothesis reports several bugs)."""
    if isinstance(failure, isolation.WorkerCrash):
        return [failure]
    inner = getattr(failure, "exceptions", None)  # an ExceptionGroup
    if isinstance(inner, (list, tuple)):
        return [crash for exc in inner for crash in _worker_crashes(exc)]
    return []


def _stop_at_first_failure(item: pytest.Item) -> Callable[[], None]:
    """For a known deviation's witness, run the generate phase only, up to its first failure.

    An expected failure's shrunk counterexample is never shown, and shrinking it is most of a
    slow engine's run (tinygrad: 40 of 44 minutes). It also makes reports reproducible:
    Hypothesis stops shrinking after a fixed number of *seconds*, so on a slow engine the
    number of programs a shrink ran depended on the machine's load. ``--runxfail`` shrinks as
    usual, to show the deviation."""
    test: Any = getattr(item, "obj", None)
    if (
        _witness_key not in item.stash
        or item.config.option.runxfail
        or not hasattr(test, "_hypothesis_internal_use_settings")
    ):
        return lambda: None
    from hypothesis import settings

    # Hypothesis reads a test's settings when the test is called, not when it is decorated.
    own = test._hypothesis_internal_use_settings
    test._hypothesis_internal_use_settings = settings(
        own, phases=profiles.NO_SHRINK, report_multiple_bugs=False
    )

    def restore() -> None:
        test._hypothesis_internal_use_settings = own

    return restore


def pytest_sessionstart(session: pytest.Session) -> None:
    from hypothesis import settings

    if _budget_key in session.config.stash and settings.default is not None \
            and settings.default.derandomize:
        raise pytest.UsageError(
            f"--budget: the Hypothesis profile {settings.get_current_profile_name()!r} is "
            "derandomized: each run of a property would draw the same examples; use the "
            "fuzz profile")


def pytest_collection_finish(session: pytest.Session) -> None:
    budget = session.config.stash.get(_budget_key, None)
    if budget is not None:
        runnable = [item for item in session.items
                    if property_id(item) and item.get_closest_marker("skip") is None]
        budget.expect(len(runnable), workers=_xdist_workers(session.config) or 1)


def _xdist_workers(config: pytest.Config) -> int | None:
    """The number of pytest-xdist workers when this process is one of them, else None. Read
    from the worker's config (``workerinput``), not from ``PYTEST_XDIST_WORKER*``: those
    variables leak into subprocesses, so a run started from a test under ``-n`` would take
    itself for a worker."""
    workerinput = getattr(config, "workerinput", None)
    return None if workerinput is None else int(workerinput["workercount"])


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _engine_key not in config.stash:
        return []
    engine = config.stash[_engine_key]
    from hypothesis import settings

    seed = config.getoption("hypothesis_seed", None)
    profile = settings.get_current_profile_name()
    derandomized = settings.default is not None and settings.default.derandomize
    seed_text = "derandomized" if derandomized else (seed if seed is not None else "random")
    database = config.stash.get(_database_key, None)
    database_text = "" if database is None else (
        f", database={database.location}{' (replay only)' if config.option.conformance_replay else ''}")
    return [
        f"conformance: engine={engine.name} ({engine.version()}), "
        f"hypothesis profile={profile}, seed={seed_text}{database_text}"
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    properties = [(item, pid) for item in items if (pid := property_id(item))]
    if not properties:
        return
    engine = engine_of(config)
    unsupported = engine.capabilities.unsupported
    deviations = deviations_by_property(engine)
    matched: set[str] = set()
    # "Fixed" is a claim about the program set the witness draws, which only the profile the
    # deviations were recorded against (ci, derandomized) draws every time: under random seeds
    # (dev, thorough, fuzz) or fewer programs (quick) a witness that never reached its deviation
    # passes, and the report says so.
    from hypothesis import settings

    fixed_draws = settings.get_current_profile_name() == profiles.RECORDED_PROFILE
    functional = isinstance(engine, FunctionalEngine)
    for item, pid in properties:
        if functional and item.get_closest_marker("functional") is None:
            item.add_marker(pytest.mark.skip(reason=NOT_APPLICABLE))
            continue
        for marker in item.iter_markers("requires"):
            for feature in marker.args:
                if feature in unsupported:
                    item.add_marker(pytest.mark.skip(
                        reason=f"unsupported by {engine.name}: {feature} ({unsupported[feature]})"
                    ))
        named = next((key for key in (_full_id(item, pid), pid) if key in deviations), None)
        if named is not None:
            deviation = deviations[named]
            matched.add(named)
            item.stash[_witness_key] = deviation
            # Only a failed check witnesses a deviation (Divergence and EngineCrash are
            # AssertionErrors): a health-check failure or a bug in the suite stays a failure.
            item.add_marker(pytest.mark.xfail(
                strict=fixed_draws and not deviation.rare,
                raises=AssertionError,
                reason=f"known deviation of {engine.name}: {deviation.reason}",
            ))
    config.stash[_stale_key] = [pid for pid in deviations if pid not in matched]


def deviations_by_property(engine: AnyEngine) -> dict[str, KnownDeviation]:
    """The engine's known deviations by the property ids they name; a property named twice is
    a usage error (its xfail could give only one of the reasons)."""
    by_property: dict[str, KnownDeviation] = {}
    for deviation in engine.known_deviations:
        for pid in deviation.properties:
            if pid in by_property:
                raise pytest.UsageError(
                    f"engine {engine.name!r}: two known deviations name {pid!r} "
                    f"({by_property[pid].reason!r} and {deviation.reason!r}); give that property "
                    "one deviation that states both"
                )
            by_property[pid] = deviation
    for pid, deviation in by_property.items():
        whole = by_property.get(pid.split("[")[0]) if "[" in pid else None
        if whole is not None and whole is not deviation:
            raise pytest.UsageError(
                f"engine {engine.name!r}: known deviations name both {pid.split('[')[0]!r} "
                f"({whole.reason!r}) and its case {pid!r} ({deviation.reason!r}); name the "
                "cases separately, or the whole property once"
            )
    return by_property


def _full_id(item: pytest.Item, pid: str) -> str:
    """``sgd::test_hyperparameter[nesterov]`` for a parametrized property."""
    return pid.split("::")[0] + "::" + item.name


def _load_profile(config: pytest.Config) -> None:
    """Hypothesis fixes a test's settings when the test module is imported, so the profile is
    loaded here, before collection; an explicit ``--hypothesis-profile`` wins."""
    from hypothesis import settings

    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile(profiles.DEFAULT_PROFILE)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stale = config.stash.get(_stale_key, [])
    if stale:
        terminalreporter.section("conformance: stale known deviations")
        for pid in stale:
            terminalreporter.write_line(f"{pid}: matches no collected property")
