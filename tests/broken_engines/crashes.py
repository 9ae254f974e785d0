"""Engines that die instead of raising: a segmentation fault, ``abort()``, ``exit()`` and a hang.

Native engines meet their errors in C: an index nobody checked reads unmapped memory, a failed
internal assertion calls ``abort()``, a library reports a bad argument and calls ``exit()``, two
threads wait on each other forever. None of that is a Python exception, so the suite must
survive the process that dies (:mod:`conformance.isolation`): each of these must give a report
whose verdict is DOES NOT CONFORM, with the crashing program shrunk and printed, and every other
property still run.

Each is the NumPy reference with one error path replaced by the crash, so that the other
programs conform; the shrinker needs a fresh worker after every crashing candidate, a fork of
the loader that built the engine once (:mod:`conformance.isolation`).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from conformance.engines.reference_engine import ReferenceEngine
from conformance.errors import ErrorKind


class _Crashes(ReferenceEngine):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ()
    crashes: ClassVar[bool] = True
    isolated: ClassVar[bool] = True  # each ends the process it runs in
    suite_options: ClassVar[tuple[str, ...]] = ()
    """Extra options for the suite's run on this engine (the catalogue test passes them)."""


class SegfaultsOnBadIndex(_Crashes):
    """An index out of range (or a mask of the wrong shape) is not checked: the gather kernel
    reads unmapped memory and the process dies of SIGSEGV, where torch raises IndexError.

    Paddle 3.3.1 does this for an integer list with an entry out of range (it writes outside
    ``x.grad`` in backward; docs/engines/paddle.md); the suite's first run of the adapter on it
    ended in ``Segmentation fault`` and nothing else.
    """

    name = "segfaults-on-bad-index"
    catches_in = ("indexing",)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        try:
            return super().apply(op, operands, params)
        except Exception as exc:
            if self.classify(exc) is ErrorKind.INDEX_OUT_OF_RANGE:
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            raise


class AbortsOnZeroingAMissingGrad(_Crashes):
    """``zero_grad(set_to_none=False)`` zeroes every param's grad in place without checking that
    it exists: an internal assertion (``assert(grad.defined())``) fails and calls ``abort()``,
    where torch skips the params whose grad is None."""

    name = "aborts-on-zeroing-a-missing-grad"
    catches_in = ("zero_grad",)

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        if arguments.get("set_to_none") is False and any(
                p.grad is None for group in optimizer.param_groups for p in group["params"]):
            os.abort()
        super().zero_grad(optimizer, **arguments)


class ExitsOnInvalidHyperparameter(_Crashes):
    """The optimizer's C library reports an invalid hyperparameter (a negative learning rate,
    nesterov without momentum) on stderr and calls ``exit(1)``, where torch raises ValueError."""

    name = "exits-on-invalid-hyperparameter"
    catches_in = ("sgd::test_invalid_hyperparameters_raise", "sgd")

    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        try:
            return super().sgd(groups, defaults)
        except Exception as exc:
            if self.classify(exc) is ErrorKind.INVALID_HYPERPARAMETER:
                os.write(2, f"sgd: invalid hyperparameter: {exc}\n".encode())
                os._exit(1)
            raise


class HangsOnGradientArgument(_Crashes):
    """``backward(gradient=...)`` hands the seed gradient to a worker thread and waits for it on
    a lock the thread never releases: a deadlock, so the process hangs. Only programs that pass
    ``gradient=`` hang; the suite's per-program time limit turns each into a failure.

    The limit here is 0.5 s: the slowest of 1500 generated programs took 0.08 s on this engine
    on a loaded 2-core machine (median 4 ms; bench/bench_program_time.py), so 0.5 s leaves a
    margin of six. Every hanging candidate a shrinker tries costs the whole limit, so shrinking
    one hanging property takes about 300 s (Hypothesis's cap of 500 shrinks at 0.5 s each);
    tests/test_suite_isolation.py runs this engine without shrinking.
    """

    name = "hangs-on-gradient-argument"
    catches_in = ("accumulation::test_backward_with_gradient", "backward_errors")
    suite_options = ("--program-timeout=0.5",)

    def backward(self, loss: Any, **arguments: Any) -> None:
        if arguments.get("gradient") is not None:
            lock = threading.Lock()
            lock.acquire()
            lock.acquire()  # never returns
        super().backward(loss, **arguments)
