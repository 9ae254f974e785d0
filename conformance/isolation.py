"""Run programs on the engine under test in a worker process the suite can lose.

The engines this suite tests are native code: a wrong index ends in a segmentation fault, an
``abort()``, an ``exit()`` or a hang, not in a Python exception. So the engine under test runs
in a *persistent worker process*, one per engine and session, fed one program at a time; the
reference, Hypothesis and the comparisons stay in the main process, so shrinking works as
before. When the worker dies or a program exceeds its time limit the program fails with
:class:`WorkerCrash` (an :class:`~conformance.errors.EngineCrash`, with the signal, the exit
status or "timed out after N s"), and a fresh worker takes over for the next program.

Fresh workers are *forked* from a loader process that imported the engine once (a fork
server, as ``multiprocessing``'s ``forkserver`` and torch's DataLoader workers do): shrinking a
crash runs hundreds of crashing candidates, and a worker that had to import torch again for
each would spend seconds per candidate where a fork takes milliseconds. So there are two
processes behind a :class:`Worker`:

- the **loader**, started with ``python -m conformance.isolation``: it imports and builds the
  engine from the spec the plugin was given (``--engine``, with the main process's
  ``sys.path``; the engine is never pickled), then only forks workers and reports how each
  ended. It runs no program, so it never crashes with one;
- the **worker**, a fork of the loader: it runs :func:`conformance.interpret.run` on each
  program it is sent and sends each :class:`~conformance.interpret.Observation` as it is made
  (pickled, whatever its fields), so a crash still leaves the trace up to the crashing
  instruction: a known deviation's ``applies(program, trace)`` scopes a crash exactly as it
  scopes a Python exception.

Each talks to the main process over its own Unix socket: the worker's socket is created by the
main process and handed to the loader with the request to fork (``SCM_RIGHTS``), so a worker
that dies mid-message leaves nothing behind for the next one to misread. ``faulthandler``
writes the Python stack of a crash (and, at a time-out, of the hang) to the processes' shared
stderr file, which the failure message quotes. POSIX only (fork, signals, Unix sockets).

Why hand-rolled rather than a library:

- ``concurrent.futures.ProcessPoolExecutor`` cannot stop a running task: a hang would hold the
  pool until the session ends, and a dead worker breaks the whole pool (``BrokenProcessPool``,
  with no signal number); ``multiprocessing.Pool`` loses tasks silently when a worker dies;
- pytest-xdist restarts a worker per *test*, not per program: the whole property, Hypothesis
  and its shrinking die with the engine, so no minimal crashing program is found;
- ``multiprocessing``'s ``forkserver`` re-imports pytest's ``__main__`` in the server and
  gives no exit status for a process that died mid-task; the loader here is the same idea in
  a hundred lines with nothing hidden.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import select
import signal
import socket
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
"""How long the loader may take to import and build the engine (not counted per program)."""

HANG_STACK_WAIT_S = 0.5
"""At a time-out, how long the hung worker gets to write its stack before it is killed."""

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


class _Channel:
    """Pickled messages, each framed by its length, over one end of a Unix socket; the
    request to fork a worker carries that worker's socket along (``SCM_RIGHTS``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []

    def send(self, message: Any, fds: tuple[int, ...] = ()) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _HEADER.pack(len(data)) + data
        try:
            sent = socket.send_fds(self.sock, [frame], list(fds)) if fds else 0
            self.sock.sendall(frame[sent:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the other side died; reading says how

    def receive(self, deadline: float | None = None) -> Any | None:
        """The next message, or None at end of file (the other side died or closed) or when
        ``deadline`` (a ``time.monotonic()`` value) passed."""
        while True:
            if len(self.buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= _HEADER.size + size:
                    data = self.buffer[_HEADER.size:_HEADER.size + size]
                    self.buffer = self.buffer[_HEADER.size + size:]
                    return pickle.loads(data)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    return None
            try:
                chunk, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 4)
            except ConnectionResetError:
                chunk, fds = b"", []
            self.fds.extend(fds)
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


# --- the main process's side --------------------------------------------------------------------


class Worker:
    """One engine's worker process, replaced after each crash by a fresh fork of its loader.

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
        self.loader: subprocess.Popen[bytes] | None = None
        self.control: _Channel | None = None  # to the loader
        self.channel: _Channel | None = None  # to the worker, once forked
        self.stderr: IO[bytes] | None = None
        self._loaded = False
        self._worker_pid: int | None = None
        self.restarts = 0

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loader unless it is alive: it loads the engine while the caller goes on."""
        if self.loader is not None:
            return
        self.stderr = tempfile.TemporaryFile(prefix="conformance-worker-")  # noqa: SIM115 (closed in close())
        ours, theirs = socket.socketpair()
        with theirs:
            self.loader = subprocess.Popen(
                [sys.executable, "-m", "conformance.isolation", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # a terminal's Ctrl-C reaches the main process only
            )
        self.control = _Channel(ours)
        self._loaded = False
        self.control.send(("load", self.spec, list(sys.path)))

    def close(self) -> None:
        """Kill the worker and its loader (if any) and wait for them: no process outlives
        this call."""
        self._kill_worker()
        loader, self.loader = self.loader, None
        if loader is not None and not self._loaded:
            loader.kill()  # still importing the engine: nothing of it to keep
        if self.control is not None:
            self.control.close()  # the loader reaps what is left and exits
            self.control = None
        if loader is not None:
            try:
                loader.wait(5)
            except subprocess.TimeoutExpired:
                loader.kill()
                loader.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    @property
    def pid(self) -> int | None:
        """The process that runs the programs (None before the first program)."""
        return self._worker_pid

    # running -------------------------------------------------------------------------------
    def run(self, program: Any) -> list[Any]:
        __tracebackhide__ = True  # a failure shows the property, not this module's plumbing
        self.start()
        try:
            channel = self._fork_worker()
            stderr_offset = self._stderr_size()
            channel.send(("run", program))
            reply = self._collect(channel, program, stderr_offset)
        except (WorkerCrash, WorkerError):
            raise
        except BaseException:
            # KeyboardInterrupt, or an error while reading: the protocol is out of step.
            self.close()
            raise
        if isinstance(reply, BaseException):  # the engine raised; the worker lives on
            raise reply
        return reply

    def _fork_worker(self) -> _Channel:
        """The live worker's channel, after asking the loader for a fork if there is none."""
        if self.channel is not None:
            return self.channel
        assert self.control is not None
        if not self._loaded:
            self._await_loaded()
        ours, theirs = socket.socketpair()
        with theirs:
            self.control.send(("fork",), fds=(theirs.fileno(),))
        reply = self.control.receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if reply is None or reply[0] != "forked":
            ours.close()
            raise WorkerError(f"the loader of engine {self.spec!r} stopped forking workers "
                              f"({self._reap_loader()}):\n{self._stderr_tail(0)}")
        self._worker_pid = reply[1]
        self.channel = _Channel(ours)
        return self.channel

    def _await_loaded(self) -> None:
        assert self.control is not None
        message = self.control.receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if message is None or message[0] != "ready":
            tail = self._stderr_tail(0)
            died = self._reap_loader()
            if message is not None and message[0] == "error":
                raise WorkerError(f"the worker could not load engine {self.spec!r}: "
                                  f"{message[1]}") from None
            raise WorkerError(f"the worker for engine {self.spec!r} did not start ({died}):\n"
                              f"{tail}")
        self._loaded = True

    def _collect(self, channel: _Channel, program: Any,
                 stderr_offset: int) -> list[Any] | BaseException:
        """The trace, or the exception the run raised in the worker (to raise in ``run``)."""
        __tracebackhide__ = True
        deadline = time.monotonic() + self.timeout_s
        trace: list[Any] = []
        while True:
            message = channel.receive(deadline)
            if message is None:
                raise self._crashed(program, trace, stderr_offset,
                                    timed_out=time.monotonic() >= deadline)
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
                 timed_out: bool) -> WorkerCrash:
        from conformance.program import describe

        if timed_out:
            how = f"timed out after {self.timeout_s:g} s"
            self._dump_hung_stack()
        returncode = self._kill_worker()
        if not timed_out:
            how = ("died with its loader" if returncode is None  # the loader was killed
                   else describe_exit(returncode))
        tail = self._stderr_tail(stderr_offset)
        self.restarts += 1
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

    def _dump_hung_stack(self) -> None:
        """Ask the hung worker for its stack (faulthandler, on SIGUSR1) and give it until its
        stderr stops growing, at most ``HANG_STACK_WAIT_S``."""
        assert self._worker_pid is not None
        before = self._stderr_size()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._worker_pid, signal.SIGUSR1)
        deadline = time.monotonic() + HANG_STACK_WAIT_S
        size = before
        while time.monotonic() < deadline:
            time.sleep(0.02)
            grown, size = size, self._stderr_size()
            if size > before and grown == size:
                return

    def _kill_worker(self) -> int | None:
        """Kill the worker (it may be dead already) and return its exit status, as
        ``Popen.returncode`` gives it, from the loader that reaps it; None without one."""
        pid, self._worker_pid = self._worker_pid, None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still the worker's
        if self.control is None:
            return None
        self.control.send(("reap", pid))
        reply = self.control.receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if reply is None:
            self._reap_loader()
            return None
        return int(reply[1])

    def _reap_loader(self) -> str:
        loader = self.loader
        if loader is None:
            return "not started"
        if loader.poll() is None:
            loader.kill()
        loader.wait()
        how = describe_exit(loader.returncode)
        self.close()
        return how

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


# --- the loader's and the worker's side --------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, even by SIGKILL (the
    loader's parent is the main process; a worker's is the loader)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent is already gone
            os._exit(1)


def _loader_main(control_fd: int) -> None:
    _die_with_parent()
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # no core files: shrinking a crash crashes the worker again and again

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    faulthandler.enable(file=sys.stderr)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    control = _Channel(socket.socket(fileno=control_fd))
    first = control.receive()
    if first is None:
        return
    _, spec, path = first
    sys.path[:] = path
    try:
        from conformance import interpret  # noqa: F401 (imported once, for every worker)
        from conformance.engines import load_engine

        engine = load_engine(spec)
        # A torch-like engine may import its module on first use (the built-in torch engines
        # do, so that the main process never imports torch): import it here, once, for every
        # worker forked from this loader.
        getattr(engine, "module", None)
    except Exception as exc:
        control.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    control.send(("ready",))
    workers: set[int] = set()
    while (request := control.receive()) is not None:
        if request[0] == "fork":
            (fd,) = control.fds
            control.fds.clear()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    control.sock.close()
                    _die_with_parent()
                    _serve(engine, _Channel(socket.socket(fileno=fd)))
                    status = 0
                finally:
                    os._exit(status)  # never back into the loader's loop
            os.close(fd)
            workers.add(pid)
            control.send(("forked", pid))
        elif request[0] == "reap":
            _, status = os.waitpid(request[1], 0)
            workers.discard(request[1])
            control.send(("reaped", os.waitstatus_to_exitcode(status)))
    for pid in workers:  # the main process closed the channel: nothing outlives the loader
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _serve(engine: Any, channel: _Channel) -> None:
    """A forked worker's loop: run each program sent until the main process closes the
    socket."""
    from conformance import interpret

    while (request := channel.receive()) is not None:
        program = request[1]
        try:
            # Each observation goes out as it is made, so a crash leaves the trace up to the
            # crashing instruction.
            interpret.run(engine, program, on_observation=lambda o: channel.send(("obs", o)))
        except EngineCrash as crash:
            channel.send(("crash", str(crash), crash.trace))
            continue
        except Exception as exc:
            channel.send(("error", _portable(exc)))
            continue
        channel.send(("done", None))


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
    _loader_main(int(sys.argv[1]))
