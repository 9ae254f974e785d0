"""Run programs on the engine under test in a worker process the suite can lose.

The engines this suite tests are native code: a wrong index ends in a segmentation fault, an
``abort()``, an ``exit()`` or a hang, not in a Python exception. So the engine under test runs
in a *persistent worker process*, one per engine and session, fed one program at a time over a
pipe; the reference, Hypothesis and the comparisons stay in the main process, so shrinking
works as before. When the worker dies or a program exceeds its time limit the program fails
with :class:`WorkerCrash` (an :class:`~conformance.errors.EngineCrash`, with the signal, the
exit status or "timed out after N s"), and a fresh worker is started for the next program.

Why a hand-rolled persistent worker rather than a library:

- ``concurrent.futures.ProcessPoolExecutor`` cannot stop a running task: a hang would hold the
  pool until the session ends, and a dead worker breaks the whole pool (``BrokenProcessPool``,
  with no signal number); ``multiprocessing.Pool`` loses tasks silently when a worker dies;
- pytest-xdist restarts a worker per *test*, not per program: the whole property, Hypothesis
  and its shrinking die with the engine, so no minimal crashing program is found;
- a plain ``multiprocessing.Process`` with a pipe would do, but ``spawn`` re-imports pytest's
  ``__main__`` in the child; ``subprocess`` with pickled frames on stdin/stdout is the same
  thing with nothing hidden, and gives the exit status and signal directly.

The worker loads the engine from the spec the plugin was given (``--engine``), with the main
process's ``sys.path``, never by pickling the engine. It runs
:func:`conformance.interpret.run` and sends each :class:`~conformance.interpret.Observation`
as it is made (pickled, whatever its fields), so a crash still leaves the trace up to the
crashing instruction: a known deviation's ``applies(program, trace)`` scopes a crash exactly
as it scopes a Python exception. ``faulthandler`` writes the Python stack of a crash (and, at a
time-out, of the hang) to the worker's stderr, which the failure message quotes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import IO, Any

from conformance.errors import EngineCrash

DEFAULT_TIMEOUT_S = 60.0
"""Per-program time limit: torch runs a program in milliseconds; tinygrad compiles kernels on
first use and, as ``DEV=PYTHON`` on a loaded machine, takes seconds at most."""

STARTUP_TIMEOUT_S = 300.0
"""How long a fresh worker may take to import and build the engine (not counted per program)."""

_HEADER = struct.Struct("!Q")
_STDERR_TAIL = 3000


class WorkerCrash(EngineCrash):
    """The engine's worker process died or timed out while running a program.

    ``how`` says how: ``"killed by signal SIGSEGV"``, ``"exit status 3"``, ``"timed out after
    2 s"``; ``trace`` holds the observations made before the crash, as for any EngineCrash."""

    def __init__(self, message: str, trace: list[Any] | None = None, how: str = "") -> None:
        super().__init__(message, trace)
        self.how = how


class WorkerError(RuntimeError):
    """The worker could not start or broke the protocol: a problem of the setup, not a
    verdict on the engine (an adapter that cannot be imported in a fresh process)."""


def describe_exit(returncode: int) -> str:
    """``-11`` → ``"killed by signal SIGSEGV (Segmentation fault)"``; ``3`` → ``"exit status 3"``."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {sig.name} ({signal.strsignal(sig) or sig.name})"
    return f"exit status {returncode}"


# --- the main process's side --------------------------------------------------------------------


class Worker:
    """One engine's worker process, restarted after each crash.

    ``run(program)`` returns the engine's trace, raises :class:`EngineCrash` as
    :func:`conformance.interpret.run` does for an unclassified exception, :class:`WorkerCrash`
    when the process died or timed out, or re-raises any other exception from the worker."""

    def __init__(self, spec: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 engine_name: str = "") -> None:
        if not timeout_s > 0:
            raise ValueError(f"program time limit must be positive seconds, got {timeout_s!r}")
        self.spec = spec
        self.timeout_s = timeout_s
        self.engine_name = engine_name or spec
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self._buffer = b""
        self._ready = False
        self.restarts = 0

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start a worker unless one is alive: it loads the engine while the caller goes on."""
        if self.process is not None:
            return
        self.stderr = tempfile.TemporaryFile(prefix="conformance-worker-")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.isolation"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            start_new_session=True,  # a terminal's Ctrl-C reaches the main process only
        )
        self._buffer = b""
        self._ready = False
        self._send(("load", self.spec, list(sys.path)))

    def close(self) -> None:
        """Kill the worker (if any) and wait for it: no process outlives this call."""
        process, self.process = self.process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            process.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # running -------------------------------------------------------------------------------
    def run(self, program: Any) -> list[Any]:
        __tracebackhide__ = True  # a failure shows the property, not this module's plumbing
        self.start()
        try:
            if not self._ready:
                self._await_ready()
            stderr_offset = self._stderr_size()
            self._send(("run", program))
            reply = self._collect(program, stderr_offset)
        except (WorkerCrash, WorkerError):
            raise
        except BaseException:
            # KeyboardInterrupt, or an error while reading: the protocol is out of step.
            self.close()
            raise
        if isinstance(reply, BaseException):  # the engine raised; the worker lives on
            raise reply
        return reply

    def _await_ready(self) -> None:
        message = self._receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if message is None or message[0] != "ready":
            tail = self._stderr_tail(0)
            died = self._reap()
            if message is not None and message[0] == "error":
                raise WorkerError(f"the worker could not load engine {self.spec!r}: "
                                  f"{message[1]}") from None
            raise WorkerError(f"the worker for engine {self.spec!r} did not start ({died}):\n"
                              f"{tail}")
        self._ready = True

    def _collect(self, program: Any, stderr_offset: int) -> list[Any] | BaseException:
        """The trace, or the exception the run raised in the worker (to raise in ``run``)."""
        __tracebackhide__ = True
        deadline = time.monotonic() + self.timeout_s
        trace: list[Any] = []
        while True:
            message = self._receive(deadline)
            if message is None:
                raise self._crashed(program, trace, stderr_offset, timed_out=deadline)
            kind = message[0]
            if kind == "obs":
                trace.append(message[1])
            elif kind == "done":
                return trace if message[1] is None else message[1]
            elif kind == "crash":
                return EngineCrash(message[1], trace=message[2])
            elif kind == "error":
                return message[1]
            else:
                raise WorkerError(f"unexpected message from the worker: {kind!r}")

    def _crashed(self, program: Any, trace: list[Any], stderr_offset: int,
                 timed_out: float) -> WorkerCrash:
        from conformance.program import describe

        assert self.process is not None
        if self.process.poll() is None and time.monotonic() >= timed_out:
            how = f"timed out after {self.timeout_s:g} s"
            # faulthandler dumps the hung stack on SIGUSR1; give it a moment, then kill.
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.5)
        else:
            self.process.wait()
            how = describe_exit(self.process.returncode)
        tail = self._stderr_tail(stderr_offset)
        self.close()
        self.restarts += 1
        self.start()  # the next worker loads the engine while the main process shrinks
        index = len(trace)
        instructions = program.instructions
        if 0 < index <= len(instructions):
            where = f"at instruction [{index}] {describe(instructions[index - 1])}"
        elif index == 0:
            where = "before the first instruction (creating the params)"
        else:
            where = "after the last instruction"
        message = (f"engine {self.engine_name!r} crashed, {how}, {where}\n"
                   + (f"\nThe worker's stderr:\n{tail}\n" if tail.strip() else "")
                   + "\nProgram as a torch script:\n"
                   + program.to_script(guarded=[index] if index else []))
        return WorkerCrash(message, trace=trace, how=how)

    def _reap(self) -> str:
        if self.process is None:
            return "not started"
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        how = describe_exit(self.process.returncode)
        self.close()
        return how

    # framing -------------------------------------------------------------------------------
    def _send(self, message: Any) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.process.stdin.write(_HEADER.pack(len(data)) + data)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died; reading says how

    def _receive(self, deadline: float) -> Any | None:
        """The next message, or None when the worker died or the deadline passed."""
        assert self.process is not None
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= _HEADER.size + size:
                    data = self._buffer[_HEADER.size:_HEADER.size + size]
                    self._buffer = self._buffer[_HEADER.size + size:]
                    return pickle.loads(data)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None  # end of file: the worker died
            self._buffer += chunk

    def _stderr_size(self) -> int:
        assert self.stderr is not None
        return os.fstat(self.stderr.fileno()).st_size

    def _stderr_tail(self, offset: int) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(offset)
        text = self.stderr.read().decode("utf-8", "replace")
        return text if len(text) <= _STDERR_TAIL else "...\n" + text[-_STDERR_TAIL:]


_WORKERS: dict[int, Worker] = {}


def attach(engine: Any, spec: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Worker:
    """Run ``engine``'s programs in a worker that loads ``spec`` (the plugin calls this)."""
    detach(engine)
    worker = Worker(spec, timeout_s=timeout_s, engine_name=getattr(engine, "name", spec))
    _WORKERS[id(engine)] = worker
    return worker


def detach(engine: Any) -> None:
    worker = _WORKERS.pop(id(engine), None)
    if worker is not None:
        worker.close()


def worker_for(engine: Any) -> Worker | None:
    """The worker attached to ``engine``, or None: an engine instance given directly (a test
    that builds one) runs in the main process."""
    return _WORKERS.get(id(engine))


def close_all() -> None:
    for worker in _WORKERS.values():
        worker.close()
    _WORKERS.clear()


# --- the worker's side --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the main process dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent is already gone
            os._exit(1)


def _worker_main() -> None:
    _die_with_parent()
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # no core files: shrinking a crash crashes the worker again and again

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    requests = os.fdopen(0, "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # what the engine prints goes to stderr, never into the protocol
    faulthandler.enable(file=sys.stderr)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

    def read_exactly(size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = requests.read(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def send(message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(_HEADER.pack(len(data)) + data)

    def receive() -> Any | None:
        header = read_exactly(_HEADER.size)
        if header is None:
            return None
        data = read_exactly(_HEADER.unpack(header)[0])
        return None if data is None else pickle.loads(data)

    first = receive()
    if first is None:
        return
    _, spec, path = first
    sys.path[:] = path
    try:
        from conformance.engines import load_engine

        engine = load_engine(spec)
    except Exception as exc:
        send(("error", f"{type(exc).__name__}: {exc}"))
        return
    from conformance import interpret

    send(("ready",))
    while (request := receive()) is not None:
        program = request[1]
        try:
            # Each observation goes out as it is made, so a crash leaves the trace up to the
            # crashing instruction.
            interpret.run(engine, program, on_observation=lambda o: send(("obs", o)))
        except EngineCrash as crash:
            send(("crash", str(crash), crash.trace))
            continue
        except Exception as exc:
            send(("error", _portable(exc)))
            continue
        send(("done", None))


def _portable(exc: Exception) -> Exception:
    """``exc`` with the worker's traceback as a note, or a RuntimeError saying what it was if
    it does not survive pickling."""
    text = "".join(traceback.format_exception(exc))
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"in the engine's worker process:\n{text}")
    # BaseException.add_note, which Python 3.10 lacks
    notes = [*getattr(copy, "__notes__", []), f"in the engine's worker process:\n{text}"]
    copy.__notes__ = notes
    return copy


if __name__ == "__main__":
    _worker_main()
