"""The engine under test runs in a worker process the suite survives losing
(``conformance.isolation``): a segfault, ``abort()``, ``exit()`` or hang fails that program with
an EngineCrash, a fresh worker takes over, the run goes on and its report lists the crash.

The ``Worker`` tests drive one worker directly on small NumPy engines defined here; the others
run ``python -m conformance`` in a subprocess, as a user would, and check afterwards that no
worker process survived it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from broken_engines import catalogue

from conformance.compare import assert_same_trace
from conformance.engines.reference_engine import ReferenceEngine
from conformance.errors import EngineCrash
from conformance.interpret import run
from conformance.isolation import Worker, WorkerCrash, WorkerError
from conformance.program import Backward, Forward, Node, Param, Program, Ref
from conformance.runner import check_against_reference

ROOT = Path(__file__).resolve().parents[1]

ENGINES = '''
import ctypes
import os
import threading
import time

from conformance.engines.reference_engine import ReferenceEngine


class _DiesOnSum(ReferenceEngine):
    def apply(self, op, operands, params):
        if op == "sum":
            self.die()
        return super().apply(op, operands, params)


class SegfaultsOnSum(_DiesOnSum):
    name = "segfaults-on-sum"

    def die(self):
        ctypes.string_at(0)


class AbortsOnSum(_DiesOnSum):
    name = "aborts-on-sum"

    def die(self):
        os.abort()


class ExitsOnSum(_DiesOnSum):
    name = "exits-on-sum"

    def die(self):
        os._exit(3)


class HangsOnSum(_DiesOnSum):
    name = "hangs-on-sum"

    def die(self):
        while True:
            time.sleep(1)


class RaisesOnSum(_DiesOnSum):
    name = "raises-on-sum"

    def die(self):
        raise KeyError("an exception no ErrorKind describes")


class WarnsOnSum(ReferenceEngine):
    """Warns in a sum, as torch's AccumulateGrad warns about a grad's layout: a warning."""

    name = "warns-on-sum"

    def apply(self, op, operands, params):
        if op == "sum":
            import warnings
            warnings.warn("grad and param do not obey the gradient layout contract", UserWarning)
        return super().apply(op, operands, params)


class PrintsEverywhere(ReferenceEngine):
    """Writes to stdout, as engines' debug builds do: it must not reach the protocol."""

    name = "prints-everywhere"

    def apply(self, op, operands, params):
        print("apply", op, flush=True)
        os.write(1, b"raw bytes on fd 1\\n")
        return super().apply(op, operands, params)


class CountsItsImports(SegfaultsOnSum):
    """Appends a line to $IMPORT_LOG each time its module's engine is built."""

    name = "counts-its-imports"

    def __init__(self):
        super().__init__()
        with open(os.environ["IMPORT_LOG"], "a") as handle:
            handle.write(f"{os.getpid()}\\n")


class HangsOnGradientWritingPid(ReferenceEngine):
    """Hangs in backward(gradient=...), after writing its pid to $HANG_PIDFILE."""

    name = "hangs-writing-pid"

    def backward(self, loss, **arguments):
        if arguments.get("gradient") is not None:
            with open(os.environ["HANG_PIDFILE"], "w") as handle:
                handle.write(str(os.getpid()))
            lock = threading.Lock()
            lock.acquire()
            lock.acquire()
        super().backward(loss, **arguments)
'''

PARAMS = (Param("p0", np.arange(3.0)),)
SUMS = Program(PARAMS, (Forward("loss0", (Node("loss0", "sum", (Ref("p0"),)),)),
                        Backward("loss0")))
NO_SUM = Program(PARAMS, (Forward("loss0", (Node("loss0", "mean", (Ref("p0"),)),)),
                          Backward("loss0")))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engines")
    (folder / "isolation_engines.py").write_text(textwrap.dedent(ENGINES))
    return folder


@pytest.fixture
def worker(engines: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A worker for the engine class named by the test's parameter (the worker gets this
    process's sys.path, so it finds the module above)."""
    monkeypatch.syspath_prepend(str(engines))
    name, timeout = request.param
    started = Worker(f"isolation_engines:{name}", timeout_s=timeout)
    yield started
    pids = [started.pid, started.loader.pid if started.loader else None]
    started.close()
    assert started.pid is None
    for pid in filter(None, pids):
        assert not _alive(pid), f"process {pid} (worker or loader) survived close()"


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("worker", [("PrintsEverywhere", 60.0)], indirect=True)
def test_worker_trace_is_the_in_process_trace(worker: Worker) -> None:
    """Observations come back whole (pickled, whatever their fields), what the engine prints
    on stdout notwithstanding."""
    for program in (SUMS, NO_SUM):
        actual = worker.run(program)
        expected = run(ReferenceEngine(), program)
        assert len(actual) == len(expected) == 3
        assert_same_trace("worker", program, actual, expected)


@pytest.mark.parametrize(("worker", "how"), [
    (("SegfaultsOnSum", 60.0), "killed by signal SIGSEGV"),
    (("AbortsOnSum", 60.0), "killed by signal SIGABRT"),
    (("ExitsOnSum", 60.0), "exit status 3"),
    (("HangsOnSum", 0.5), "timed out after 0.5 s"),
], indirect=["worker"])
def test_a_dead_worker_is_a_crash_of_that_program_and_is_replaced(worker: Worker,
                                                                    how: str) -> None:
    first = worker.run(NO_SUM)
    assert len(first) == 3
    dead = worker.pid
    with pytest.raises(WorkerCrash) as caught:
        worker.run(SUMS)
    crash = caught.value
    assert isinstance(crash, EngineCrash)  # a failed check, as the plugin's xfails expect
    assert crash.how.startswith(how), crash.how
    assert f"crashed, {how}" in str(crash), str(crash)
    assert len(crash.trace) == 1, "the trace stops before the crashing instruction [1]"
    assert "at instruction [1] forward loss0" in str(crash)
    assert "Program as a torch script:" in str(crash)
    assert dead is not None
    assert not _alive(dead)
    assert len(worker.run(NO_SUM)) == 3, "a fresh worker runs the next program"
    assert worker.pid != dead
    assert worker.restarts == 1


@pytest.mark.parametrize("worker", [("CountsItsImports", 60.0)], indirect=True)
def test_fresh_workers_are_forks_of_one_loaded_engine(worker: Worker, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrinking a crash runs hundreds of crashing candidates: each fresh worker is a fork of
    the loader, which built the engine once, not a new process importing it again."""
    log = tmp_path / "imports.log"
    monkeypatch.setenv("IMPORT_LOG", str(log))
    pids = set()
    for _ in range(3):
        assert len(worker.run(NO_SUM)) == 3
        pids.add(worker.pid)
        with pytest.raises(WorkerCrash, match="SIGSEGV"):
            worker.run(SUMS)
    assert len(pids) == 3, "each crash is followed by a fresh worker"
    assert worker.restarts == 3
    assert worker.loader is not None
    assert log.read_text().split() == [str(worker.loader.pid)], "the engine was built once"


@pytest.mark.parametrize("worker", [("SegfaultsOnSum", 60.0)], indirect=True)
def test_a_segfault_shows_the_python_stack_it_happened_in(worker: Worker) -> None:
    with pytest.raises(WorkerCrash, match=r"(?s)Segmentation fault.*in die\n.*in apply"):
        worker.run(SUMS)


@pytest.mark.parametrize("worker", [("RaisesOnSum", 60.0)], indirect=True)
def test_an_unclassified_exception_is_the_same_engine_crash_as_in_process(
        worker: Worker, engines: Path) -> None:
    from isolation_engines import RaisesOnSum  # type: ignore[import-not-found]

    with pytest.raises(EngineCrash) as in_process:
        run(RaisesOnSum(), SUMS)
    worker.run(NO_SUM)
    alive = worker.pid
    with pytest.raises(EngineCrash) as isolated:
        worker.run(SUMS)
    assert not isinstance(isolated.value, WorkerCrash)
    assert str(isolated.value) == str(in_process.value)
    assert len(isolated.value.trace) == len(in_process.value.trace) == 1
    assert worker.pid == alive, "a Python exception does not cost the worker"


@pytest.mark.filterwarnings("error")  # as this project's own pytest configuration has it
@pytest.mark.parametrize("worker", [("WarnsOnSum", 60.0)], indirect=True)
def test_an_engine_warning_is_not_a_crash_in_process_either(worker: Worker) -> None:
    """The worker is outside pytest's warning filters; in process the engine runs outside them
    too, so ``--no-isolate`` gives the same verdict under ``filterwarnings = error``."""
    from isolation_engines import WarnsOnSum  # type: ignore[import-not-found]

    isolated = worker.run(SUMS)
    in_process = check_against_reference(WarnsOnSum(), SUMS)  # raised UserWarning before
    assert_same_trace("in process", SUMS, in_process, isolated)


def test_the_loader_imports_torch_before_it_forks_workers() -> None:
    """The built-in torch engine imports torch on first use (the main process never needs it);
    the loader imports it before forking, so that a worker started after a crash does not."""
    worker = Worker("torch")
    try:
        worker.run(SUMS)
        assert worker.loader is not None
        assert "libtorch" in Path(f"/proc/{worker.loader.pid}/maps").read_text()
    finally:
        worker.close()


def test_an_engine_the_worker_cannot_load_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker("no_such_module_anywhere:Engine")
    try:
        with pytest.raises(WorkerError, match="no_such_module_anywhere"):
            worker.run(SUMS)
    finally:
        worker.close()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_time_limit_that_is_not_positive_is_named(bad: float) -> None:
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        Worker("reference", timeout_s=bad)


# --- the whole suite, as a user runs it ------------------------------------------------------

CRASH_ENGINES = {entry.short: entry for entry in catalogue() if entry.short.startswith("crashes:")}
EXPECTED = {  # how each dies, and the instruction its shrunk program dies at
    "crashes:SegfaultsOnBadIndex": ("killed by signal SIGSEGV", "] forward loss0"),
    "crashes:AbortsOnZeroingAMissingGrad": ("killed by signal SIGABRT",
                                            "] opt.zero_grad(set_to_none=False)"),
    "crashes:ExitsOnInvalidHyperparameter": ("exit status 1", "] opt = "),
    "crashes:HangsOnGradientArgument": ("timed out after 0.5 s", ".backward(torch.tensor("),
}
# What each run selects. The segfault runs the whole suite: after a crash, every property
# still runs and is reported (under the quick profile: how many programs each property draws
# after the crash is not what is checked, and the whole ci run took 117 s of CI). The others
# run the properties where they crash and a few where they don't (the run goes on after the
# crash): each kind of death is detected and its program
# shrunk the same way whatever else runs. The whole suite cost 258 s for the abort and 120 s for
# the exit engine (12 and 10 s now), mostly shrinking the same crash in other properties.
# The hang runs under ``-n 2`` (a crash in an xdist worker) and without shrinking: every
# hanging candidate the shrinker tries costs the whole time limit, so shrinking one hanging
# property ran into Hypothesis's cap of 500 shrinks (about 300 s at 0.5 s each), and each of
# its hanging programs hangs at its backward with a gradient, shrunk or not.
@dataclass(frozen=True)
class Selection:
    keyword: str = ""  # pytest -k: the properties it runs; all of them when empty
    workers: int = 0
    shrink: bool = True
    profile: str = "ci"

    def options(self) -> list[str]:
        """Options for ``python -m conformance ENGINE``."""
        workers = ["-n", str(self.workers)] if self.workers else []
        no_shrink = [] if self.shrink else [
            "-p", "tests.broken_engines.plugin", "--hypothesis-profile=catalogue"]
        return ["--profile", self.profile, *workers, "--", *self.keywords(), *no_shrink]

    def keywords(self) -> list[str]:
        return ["-k", self.keyword] if self.keyword else []


SELECTION = {
    "crashes:SegfaultsOnBadIndex": Selection(profile="quick"),
    "crashes:AbortsOnZeroingAMissingGrad": Selection("test_zero_grad"),
    "crashes:ExitsOnInvalidHyperparameter": Selection("test_invalid_hyperparameters_raise"),
    "crashes:HangsOnGradientArgument": Selection(
        "test_backward_with_gradient or test_backward_errors", workers=2, shrink=False),
}


def _environment(marker: str, *folders: Path, **extra: str) -> dict[str, str]:
    """The subprocess's environment, marked so that its workers can be found afterwards."""
    path = os.pathsep.join([*map(str, folders), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "ISOLATION_TEST_MARK": marker, **extra}


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``marker``: workers a run left behind."""
    found = []
    needle = f"ISOLATION_TEST_MARK={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_the_catalogue_holds_the_four_crash_engines() -> None:
    assert sorted(CRASH_ENGINES) == sorted(EXPECTED) == sorted(SELECTION)


def _collected_properties(*selection: str) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance.properties", "--collect-only",
         "-q", "-p", "no:cacheprovider", "--engine", "reference", *selection],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return sum(1 for line in result.stdout.splitlines() if "::" in line)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("short", sorted(EXPECTED))
def test_a_crashing_engine_gives_a_report_with_every_selected_property(
        short: str, tmp_path: Path) -> None:
    entry = CRASH_ENGINES[short]
    how, where = EXPECTED[short]
    selection = SELECTION[short]
    marker = f"{short}-{tmp_path.name}"
    # A guard against a hung run, not a speed limit.
    result = subprocess.run(  # entry.options: the hang's --program-timeout
        [sys.executable, "-m", "conformance", entry.spec, "--report", str(tmp_path),
         *entry.options, *selection.options()],
        cwd=ROOT, capture_output=True, text=True, env=_environment(marker), timeout=1800,
        check=False)
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    assert "verdict: DOES NOT CONFORM" in out, out[-4000:]
    assert not _marked_processes(marker), "a worker process survived the run"

    report = json.loads((tmp_path / f"{entry.name}.json").read_text())
    results = report["results"]
    selected = _collected_properties(*selection.keywords())
    assert len(results) == selected, "a property did not run after the crash"
    crashed = [r for r in results if r["crash"]]
    assert crashed, f"no crash recorded: {[(r['id'], r['verdict']) for r in results]}"
    for r in crashed:
        assert r["verdict"] == "fail", r
        assert r["crash"].startswith(how), r
        assert where in r["reason"], r  # where the (shrunk) program dies
    assert all(r["verdict"] == "pass" for r in results if not r["crash"]), [
        (r["id"], r["verdict"], r["reason"]) for r in results if not r["crash"]]
    assert f"engine crash in {crashed[0]['id']} (fail): {how}" in out
    # the shrunk program, printed as a torch script like any failure, with Hypothesis's draws
    assert "Program as a torch script:" in out
    assert "Draw 1 (params)" in out
    markdown = (tmp_path / f"{entry.name}.md").read_text()
    assert "## Engine crashes" in markdown
    assert f"- `{crashed[0]['id']}` (fail): {how}" in markdown


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_writes_the_partial_report_exits_2_and_leaves_no_worker(
        engines: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    marker = f"interrupt-{tmp_path.name}"
    # As a user's terminal starts it: with Ctrl-C's default action. A run started in the
    # background of a non-interactive shell (a CI script's `cmd &`) inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt: the test would check the shell instead.
    process = subprocess.Popen(
        [sys.executable, "-m", "conformance", "isolation_engines:HangsOnGradientWritingPid",
         "--report", str(tmp_path), "--", "-k", "accumulation"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_environment(marker, engines, HANG_PIDFILE=str(pidfile)),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not pidfile.exists() or not pidfile.read_text():
            assert process.poll() is None, process.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "the engine never reached its hang"
            time.sleep(0.2)
        worker_pid = int(pidfile.read_text())
        assert _alive(worker_pid)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, out[-4000:]
    assert "interrupted" in out, out[-4000:]
    assert not _alive(worker_pid), f"worker {worker_pid} survived the interrupt"
    assert not _marked_processes(marker)
    report = json.loads((tmp_path / "hangs-writing-pid.json").read_text())
    assert report["interrupted"] is True
    assert report["exit_code"] == 2
    ran = {r["id"]: r["verdict"] for r in report["results"]}
    assert ran, "the properties before the hang are in the report"
    assert set(ran.values()) == {"pass"}, ran
    assert "accumulation::test_backward_with_gradient" not in ran
    assert "Interrupted" in (tmp_path / "hangs-writing-pid.md").read_text()
