"""The fuzz tier and the gate's replay, against a real ``redis-server`` on localhost (no mocks).

A broken engine (``OverwritesGrad``: each backward replaces ``.grad``) is caught by a fuzz run
within a few examples of one accumulation property; runs are restricted with ``-k`` and small
budgets so that each test takes seconds. Without ``redis-server`` on PATH the Redis tests skip,
unless ``CONFORMANCE_REQUIRE_REDIS=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.database import REDIS_KEY_PREFIX
from conformance.profiles import MIN_EXAMPLES, Budget, parse_budget

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "CONFORMANCE_REQUIRE_REDIS"
ENGINE = "tests.broken_engines.accumulation:OverwritesGrad"
ENGINE_NAME = "overwrites-grad"
CATCHING = ("test_repeated_backward_accumulates", "test_losses_accumulate")
"""Properties that each catch ENGINE within a few examples (a fuzz run: about 6 s)."""
HANG_GUARD_S = 300  # a run that hangs fails here instead of stalling CI


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    url: str
    client: Any  # redis.Redis

    def contents(self) -> dict[bytes, set[bytes]]:
        """Every key the suite wrote, with its members."""
        return {key: self.client.smembers(key) for key in self.client.keys(REDIS_KEY_PREFIX + b"*")}

    def writes(self) -> dict[str, int]:
        """How many times each command that changes a set or deletes a key has run."""
        stats = self.client.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
                for name in ("sadd", "srem", "del", "smove")}


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires the Redis tests to run")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free localhost port, killed at teardown."""
    executable = shutil.which("redis-server")
    if executable is None:
        _unavailable("redis-server is not on PATH (apt-get install redis-server)")
    try:
        import redis
    except ImportError:
        _unavailable("the redis client is not installed (pip install -e '.[test]')")
    port = _free_port()
    log = tmp_path / "redis-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)], stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"redis-server did not answer on port {port}:\n{log.read_text()}")
            time.sleep(0.05)
    try:
        yield RedisServer(process, f"redis://127.0.0.1:{port}/0", client)
    finally:
        client.close()  # an open socket left to the garbage collector is a ResourceWarning
        process.kill()
        process.wait()


def _environment() -> dict[str, str]:
    """This environment without the suite's variables: a developer's own database or engine
    must not reach the runs under test."""
    return {name: value for name, value in os.environ.items()
            if name not in ("CONFORMANCE_DATABASE", "CONFORMANCE_ENGINE")}


def _start(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "conformance", *args], cwd=cwd,
                            env={**_environment(), **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the run hung for {HANG_GUARD_S} s; its output:\n{output}")
    return process.returncode, output


def _run(*args: str, cwd: Path = ROOT, **env: str) -> tuple[int, str]:
    return _finish(_start(*args, cwd=cwd, **env))


def _fuzz(database: str, prop: str, *options: str) -> subprocess.Popen[str]:
    return _start(ENGINE, "--profile", "fuzz", "--database", database, "--budget", "60s",
                  *options, "--", "-k", prop)


def _key(prop: str) -> bytes:
    return REDIS_KEY_PREFIX + f"{ENGINE_NAME}/accumulation::{prop}".encode()


def _reuse_phase(output: str) -> str:
    """The reuse phase's lines in ``--hypothesis-show-statistics`` output ('' if none ran)."""
    if "during reuse phase" not in output:
        return ""
    return output.split("during reuse phase", 1)[1].split("\n\n", 1)[0]


def test_two_fuzz_runs_save_into_one_database(redis_server: RedisServer) -> None:
    """Two machines' worth of fuzzing at once, on one engine: each saves what it caught, under
    a key of the engine and the property."""
    runs = [_fuzz(redis_server.url, prop) for prop in CATCHING]
    assert all(run.poll() is None for run in runs), "the two runs were meant to overlap"
    for prop, (status, output) in zip(CATCHING, map(_finish, runs), strict=True):
        assert status == 1, output
        assert f"fail: accumulation::{prop}" in output, output
    saved = redis_server.contents()
    assert set(saved) >= {_key(prop) for prop in CATCHING}, sorted(saved)
    assert all(saved[_key(prop)] for prop in CATCHING)
    assert all(key.startswith(REDIS_KEY_PREFIX + ENGINE_NAME.encode() + b"/") for key in saved)


def test_gate_replays_a_fuzz_failure_without_writing(redis_server: RedisServer) -> None:
    """A failure a fuzz run saved fails a fresh ci run in its reuse phase, before it generates
    anything, and the replay changes nothing in the database."""
    prop = CATCHING[0]
    status, output = _finish(_fuzz(redis_server.url, prop))
    assert status == 1, output
    saved, writes = redis_server.contents(), redis_server.writes()
    assert saved.get(_key(prop)), sorted(saved)

    status, output = _run(ENGINE, "--database", redis_server.url, "--replay",
                          "--", "-k", prop, "--hypothesis-show-statistics")
    assert status == 1, output
    assert "profile ci" in output, output
    assert f"fail: accumulation::{prop}" in output, output
    assert "Found 1 distinct error in this phase" in _reuse_phase(output), output
    assert "during generate phase" not in output, output
    assert redis_server.contents() == saved
    assert redis_server.writes() == writes


def test_lost_server_ends_the_run_with_an_error_and_a_report(
        redis_server: RedisServer, tmp_path: Path) -> None:
    """The server killed while a fuzz run is going: exit status 2 within seconds (a budgeted
    property replays the database every CHUNK_SECONDS), the URL named, a partial report."""
    run = _start("reference", "--profile", "fuzz", "--database", redis_server.url,
                 "--budget", "120s", "--report", str(tmp_path),
                 "--", "-k", "test_repeated_backward_accumulates")
    deadline = time.monotonic() + 120
    while len(redis_server.client.client_list()) < 2:  # the test's own client, and the run's
        assert run.poll() is None, _finish(run)[1]
        assert time.monotonic() < deadline, "the run never connected to the database"
        time.sleep(0.1)
    time.sleep(1)
    redis_server.process.kill()
    killed = time.monotonic()
    status, output = _finish(run)
    assert status == 2, output
    assert time.monotonic() - killed < 60, "the run went on long after its database was lost"
    assert f"the example database {redis_server.url} failed" in output, output
    report = json.loads((tmp_path / "reference.json").read_text())
    assert report["interrupted"] is True
    # The property in flight has no verdict, or (when the loss is met as it ends) the pass its
    # examples earned: never a failure blamed on the engine.
    assert all(r["verdict"] == "pass" for r in report["results"]), report["results"]


@pytest.mark.parametrize(("location", "expected"), [
    ("ftp://127.0.0.1/0", "example database 'ftp://127.0.0.1/0': unsupported scheme 'ftp'"),
    ("redis://127.0.0.1:6379/x", "example database 'redis://127.0.0.1:6379/x': '/x' is not "
     "a database number"),
    ("redis://:secret@127.0.0.1:{port}/0", "cannot reach the example database "
     "'redis://:***@127.0.0.1:{port}/0': Error 111 connecting"),
    ("{file}", "example database '{file}': cannot create the directory"),
])
def test_bad_database_is_a_usage_error(location: str, expected: str, tmp_path: Path) -> None:
    """No server is needed to be refused: a free port has nobody listening."""
    values = {"port": str(_free_port()), "file": str(tmp_path / "a-file")}
    (tmp_path / "a-file").write_text("")
    location, expected = location.format(**values), expected.format(**values)
    status, output = _run("reference", "--profile", "fuzz", "--database", location)
    assert status == 4, output
    assert expected in output
    assert "secret" not in output
    assert "Traceback" not in output


def test_bad_database_in_the_environment_is_a_usage_error_under_pytest() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", "--engine", "reference",
         "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
        env={**_environment(), "CONFORMANCE_DATABASE": "ftp://x"}, timeout=HANG_GUARD_S,
        check=False)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "example database 'ftp://x': unsupported scheme 'ftp'" in result.stderr


def test_replay_without_database_is_a_usage_error() -> None:
    status, output = _run("reference", "--replay")
    assert status == 4, output
    assert "--conformance-replay: no example database to replay from" in output


@pytest.mark.parametrize("budget", ["10x", "-1m", "0", "1e3"])
def test_bad_budget_is_a_usage_error(budget: str) -> None:
    status, output = _run("reference", "--profile", "fuzz", f"--budget={budget}")
    assert status == 4, output
    assert f"argument --budget: expected a positive duration such as 90s, 10m or 2h, " \
           f"got {budget!r}" in output


def test_bad_budget_is_a_usage_error_under_pytest() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", "--engine", "reference",
         "-p", "no:cacheprovider", "--budget=10x"], cwd=ROOT, capture_output=True, text=True,
        env=_environment(), timeout=HANG_GUARD_S, check=False)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--budget: expected a positive duration such as 90s, 10m or 2h, got '10x'" \
        in result.stderr


def test_budget_needs_a_profile_that_is_not_derandomized() -> None:
    status, output = _run("reference", "--budget", "1m")
    assert status == 4, output
    assert "--budget: the Hypothesis profile 'ci' is derandomized" in output


def test_fuzz_keeps_failures_in_a_local_directory_by_default(tmp_path: Path) -> None:
    """Without --database the fuzz profile saves into .hypothesis/conformance-fuzz under the
    working directory; the gate can replay from a directory as from Redis."""
    env = {"PYTHONPATH": str(ROOT)}  # the broken engines, from another working directory
    prop = CATCHING[0]
    status, output = _run(ENGINE, "--profile", "fuzz", "--budget", "60s", "--", "-k", prop,
                          cwd=tmp_path, **env)
    assert status == 1, output
    directory = tmp_path / ".hypothesis" / "conformance-fuzz"
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    assert files, f"nothing saved under {directory}"

    status, output = _run(ENGINE, "--database", str(directory), "--replay",
                          "--", "-k", prop, "--hypothesis-show-statistics", cwd=tmp_path, **env)
    assert status == 1, output
    assert "Found 1 distinct error in this phase" in _reuse_phase(output), output
    assert sorted(path for path in directory.rglob("*") if path.is_file()) == files


def test_budget_bounds_the_run(redis_server: RedisServer, tmp_path: Path) -> None:
    """A conforming engine on two properties for 8 s: the run takes about that long, and the
    properties share it (each runs more than its first MIN_EXAMPLES examples)."""
    # As if run from inside a pytest-xdist worker (as CI runs this test): that worker's
    # variables must not make the run believe it is one of two workers sharing the budget.
    status, output = _run("reference", "--profile", "fuzz", "--database", redis_server.url,
                          "--budget", "8s", "--report", str(tmp_path), "--",
                          "-k", "test_losses_accumulate or test_backward_with_gradient",
                          PYTEST_XDIST_WORKER="gw1", PYTEST_XDIST_WORKER_COUNT="2")
    assert status == 0, output
    report = json.loads((tmp_path / "reference.json").read_text())
    durations = {r["id"]: r["duration_s"] for r in report["results"]}
    assert len(durations) == 2, durations
    # Each got a share (more than its first run); seconds per property vary with the load.
    assert all(r["examples"] > MIN_EXAMPLES for r in report["results"]), report["results"]
    assert report["runtime_s"] < 8 + 10, report["runtime_s"]  # + a loaded machine's slack


def test_parse_budget() -> None:
    assert [parse_budget(text) for text in ("90", "90s", "10m", "1.5h")] == [90, 90, 600, 5400]


def test_budget_shares_time_left_over_properties_left() -> None:
    budget = Budget(10.0)
    budget.expect(5, workers=2)  # three properties for this worker
    assert 3.0 < budget.share() <= 10 / 3
    assert 4.5 < budget.share() <= 5.0
    assert 9.5 < budget.share() <= 10.0  # the last one takes what is left
    assert budget.share() <= 10.0  # a worker given more properties than expected: what is left


def test_budget_runs_stop_when_the_share_is_spent() -> None:
    """Runs sized by the last run's rate fill the share: here 1 s at 10 ms an example."""
    budget = Budget(1.0)
    started = time.monotonic()
    runs = []
    for examples in budget.runs():
        runs.append(examples)
        time.sleep(examples * 0.01)
    assert runs[0] == MIN_EXAMPLES
    assert len(runs) >= 2
    assert 0.9 < time.monotonic() - started < 1.5, runs
