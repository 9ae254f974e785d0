"""``python -m pytest ARGS`` in a fresh process that does not import torch and Hypothesis again.

The broken-engine catalogue runs the suite ~80 times, each in its own session (an engine is
session-wide state); as new interpreters, each spent about 6 s of its ~10 s of CPU importing
torch and Hypothesis (the engine's worker process imports torch once more). :func:`run` forks
each session from a server process (the standard library's ``multiprocessing`` forkserver,
one per test worker) that imported them once: nothing has run in the server, so the session is
as fresh as a new interpreter's, but for one thing: pytest cannot rewrite the asserts of a
plugin module that is already imported (Hypothesis is one), and warns that it cannot; the
session ignores that warning, and Hypothesis's own asserts keep their plain messages.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

PRELOAD = ["numpy", "torch", "hypothesis"]
"""What the server imports once: the heaviest modules every session needs (4 s and 2.5 s of
CPU). Not the suite's own: their asserts (the laws') must be rewritten like a fresh run's."""

# Variables that would make the forked session believe it is part of the outer test run.
_OUTER = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
          "PYTEST_CURRENT_TEST")

_context: multiprocessing.context.ForkServerContext | None = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _session(args: list[str], cwd: str, out: str, err: str) -> None:
    """The forked process: what ``cd CWD && python -m pytest ARGS >OUT 2>ERR`` would do."""
    for name in _OUTER:
        os.environ.pop(name, None)
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as python -m puts the working directory first
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    import pytest

    code = pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *args])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(int(code))


def run(args: Sequence[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pytest ARGS`` in ``cwd`` in a forked process; like ``subprocess.run``
    with ``capture_output=True, text=True``, and ``TimeoutExpired`` past ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = _server().Process(target=_session, args=(list(args), str(cwd), str(out), str(err)))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["pytest", *args], timeout, out.read_text())
        command = [sys.executable, "-m", "pytest", *args]
        code = -1 if process.exitcode is None else process.exitcode
        return subprocess.CompletedProcess(command, code, out.read_text(), err.read_text())
