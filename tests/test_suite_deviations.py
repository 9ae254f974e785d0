"""Known deviations as the plugin runs them: strict xfails, scoped set-asides (crashes too),
stale entries and usage errors. Each case runs the suite in a subprocess on a small torch-based
engine defined here, restricted with ``-k`` to the properties involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conformance.adapter import Diverges
from conformance.program import (
    Backward,
    Forward,
    Group,
    MakeSGD,
    Node,
    Param,
    Program,
    Ref,
)

ROOT = Path(__file__).resolve().parents[1]

ENGINES = '''
import os
from typing import Any, ClassVar
from conformance.adapter import Diverges, KnownDeviation
from conformance.engines.torch_engines import TorchEngine
from conformance.interpret import crashed_at
from conformance.program import Step, ZeroGrad


def _step_with_a_none_grad(program: Any, trace: Any) -> bool:
    """The run crashed (a partial trace) at a Step while some grad was None."""
    return (isinstance(crashed_at(program, trace), Step)
            and any(grad is None for grad in trace[-1].grads.values()))


class CrashesOnNoneGrad(TorchEngine):
    """step() raises an exception no ErrorKind describes when a param's grad is None."""

    name = "crashes-on-none-grad"

    def step(self, optimizer: Any) -> None:
        if any(p.grad is None for group in optimizer.param_groups for p in group["params"]):
            raise KeyError("grad")
        super().step(optimizer)


class CrashScoped(CrashesOnNoneGrad):
    name = "crash-scoped"
    known_deviations: ClassVar = (*TorchEngine.known_deviations, KnownDeviation(
        property=("sgd::test_none_grads_are_skipped", "sgd::test_unused_param_example"),
        reason="step() raises KeyError when a grad is None",
        applies=_step_with_a_none_grad,
    ))  # torch's own too: its grads of 0-d sums share memory, in any property


class CrashUnscoped(CrashesOnNoneGrad):
    name = "crash-unscoped"
    known_deviations: ClassVar = (KnownDeviation(
        property="sgd::test_none_grads_are_skipped", reason="step() raises KeyError",
    ),)


class CountsCrashes(CrashUnscoped):
    """Appends a line to $CRASH_LOG each time its step() raises."""

    name = "counts-crashes"

    def step(self, optimizer: Any) -> None:
        try:
            super().step(optimizer)
        except KeyError:
            with open(os.environ["CRASH_LOG"], "a") as log:
                log.write("crash\\n")
            raise


class SetsEverythingAside(TorchEngine):
    """Every param starts one off, so every run diverges, and a scoped deviation applies to
    every run (only runs that diverge are ever set aside); a second property claimed as a
    deviation: that property can only fail on Hypothesis's health check, never on a check."""

    name = "sets-everything-aside"

    def tensor(self, value: Any, *, requires_grad: bool) -> Any:
        return super().tensor(value + 1 if requires_grad else value, requires_grad=requires_grad)
    known_deviations: ClassVar = (
        KnownDeviation(property="sgd::test_steps_match_reference", reason="everywhere",
                       applies=lambda program, trace: True),
        KnownDeviation(property="sgd::test_param_groups", reason="claimed, not witnessed"),
    )


class StaleDeviation(TorchEngine):
    name = "stale"
    known_deviations: ClassVar = (
        *TorchEngine.known_deviations,
        KnownDeviation(property="sgd::test_no_such_property", reason="renamed long ago"),
        KnownDeviation(property="zero_grad::test_zero_grad_default_sets_none",
                       reason="fixed upstream since"),
    )


class RareUnreached(TorchEngine):
    name = "rare-unreached"
    known_deviations: ClassVar = (
        *TorchEngine.known_deviations,
        KnownDeviation(property="zero_grad::test_zero_grad_default_sets_none",
                       reason="seen once in a while", rare=True),
    )


class _ZeroGradKeepsGrads(TorchEngine):
    """zero_grad() leaves every grad as it is: the bug the witnesses below meet first."""

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        pass


class WitnessMeetsAnotherBug(_ZeroGradKeepsGrads):
    """Declares a deviation after step() in grads; its witness fails after zero_grad()."""

    name = "witness-meets-another-bug"
    known_deviations: ClassVar = (KnownDeviation(
        property="zero_grad::test_zero_grad_default_sets_none",
        reason="step() writes into p.grad", diverges=Diverges(at=(Step,), fields=("grads",)),
    ),)


class WitnessMeetsItsBug(_ZeroGradKeepsGrads):
    """The same bug, declared as what it is: its witness is an expected failure."""

    name = "witness-meets-its-bug"
    known_deviations: ClassVar = (KnownDeviation(
        property="zero_grad::test_zero_grad_default_sets_none",
        reason="zero_grad() keeps grads",
        diverges=Diverges(at=(ZeroGrad,), fields=("grads", "grad identity")),
    ),)


class NamedTwice(TorchEngine):
    name = "named-twice"
    known_deviations: ClassVar = (
        KnownDeviation(property="sgd::test_param_groups", reason="first reason"),
        KnownDeviation(property=("sgd::test_param_groups", "sgd::test_none_grads_are_skipped"),
                       reason="second reason"),
    )
'''


CRASHING = '''
"""Engines whose process dies, built on the NumPy reference: with no torch to import, a fresh
worker starts in a fraction of a second (shrinking a crash starts one per crashing program)."""
import ctypes
from typing import Any, ClassVar
from conformance.adapter import KnownDeviation
from conformance.engines.reference_engine import ReferenceEngine
from conformance.interpret import crashed_at
from conformance.program import Forward


def _negative(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        values = part.tolist() if hasattr(part, "tolist") else part
        values = values if isinstance(values, list) else [values]
        if any(type(v) is int and v < 0 for v in values):
            return True
    return False


class SegfaultsOnNegativeIndex(ReferenceEngine):
    """A negative integer index is not wrapped: the kernel reads before the buffer (SIGSEGV).
    The process dies, so the worker does; the partial trace still says where."""

    name = "segfaults-on-negative-index"

    def apply(self, op: str, operands: Any, params: Any) -> Any:
        if op == "getitem" and _negative(params.get("index")):
            ctypes.string_at(0)
        return super().apply(op, operands, params)


def _crashed_in_a_forward(program: Any, trace: Any) -> bool:
    return isinstance(crashed_at(program, trace), Forward)


class SegfaultScoped(SegfaultsOnNegativeIndex):
    name = "segfault-scoped"
    known_deviations: ClassVar = (KnownDeviation(
        property="indexing::test_out_of_range_index_raises",
        reason="a negative index segfaults", applies=_crashed_in_a_forward,
    ),)


class SegfaultUnscoped(SegfaultsOnNegativeIndex):
    name = "segfault-unscoped"
    known_deviations: ClassVar = (KnownDeviation(
        property="indexing::test_out_of_range_index_raises", reason="a negative index segfaults",
    ),)
'''


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engines")
    (folder / "deviating.py").write_text(textwrap.dedent(ENGINES))
    (folder / "crashing.py").write_text(textwrap.dedent(CRASHING))
    return folder


def _suite(folder: Path, engine: str, select: str, *options: str,
           **environ: str) -> subprocess.CompletedProcess[str]:
    spec = engine if ":" in engine else f"deviating:{engine}"
    command = [sys.executable, "-m", "pytest", "--pyargs", "conformance",
               "--engine", spec, "-k", select, "-p", "no:cacheprovider",
               "-q", "-rA", "--hypothesis-profile=ci", *options]
    env = {**os.environ, "PYTHONPATH": str(folder), **environ}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_scoped_crash_is_set_aside_and_still_witnessed(engines: Path) -> None:
    result = _suite(engines, "CrashScoped",  # SGD's properties: Adam's crash the same way
                    "test_sgd and (test_none_grads_are_skipped or test_unused_param_example "
                    "or test_steps_match_reference)")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "XFAIL conformance/properties/test_sgd.py::test_none_grads_are_skipped" in out, out
    assert "PASSED conformance/properties/test_sgd.py::test_steps_match_reference" in out, out


def test_unscoped_crash_fails_every_other_property(engines: Path) -> None:
    result = _suite(engines, "CrashUnscoped",
                    "test_none_grads_are_skipped or test_steps_match_reference")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "FAILED conformance/properties/test_sgd.py::test_steps_match_reference" in out, out
    assert "raised an exception its adapter does not classify" in out, out[-3000:]


def test_a_scoped_deviation_names_a_segfault_by_its_instruction(engines: Path) -> None:
    """The engine's worker dies; the trace it streamed up to the crash tells ``applies`` the
    crashing instruction, so the crash is set aside elsewhere and still witnessed."""
    result = _suite(engines, "crashing:SegfaultScoped",
                    "test_out_of_range_index_raises or test_index_gradient")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "XFAIL conformance/properties/test_indexing.py::test_out_of_range_index_raises" in out
    assert "PASSED conformance/properties/test_indexing.py::test_index_gradient" in out, out


def test_an_unscoped_segfault_fails_every_other_property(engines: Path) -> None:
    result = _suite(engines, "crashing:SegfaultUnscoped",
                    "test_out_of_range_index_raises or test_index_gradient")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "XFAIL conformance/properties/test_indexing.py::test_out_of_range_index_raises" in out
    assert "FAILED conformance/properties/test_indexing.py::test_index_gradient" in out, out
    assert "killed by signal SIGSEGV" in out, out[-3000:]


@pytest.mark.parametrize("runxfail", [False, True])
def test_a_witness_stops_at_its_first_failure(engines: Path, tmp_path: Path,
                                              runxfail: bool) -> None:
    """A witness's counterexample is never shown, so it is not shrunk: the engine fails once
    when Hypothesis finds the example and once when it replays it. ``--runxfail`` shows the
    deviation, so it shrinks as usual (many more failing runs)."""
    log = tmp_path / "crashes.log"
    result = _suite(engines, "CountsCrashes", "test_sgd and test_none_grads_are_skipped",
                    *(["--runxfail"] if runxfail else []), CRASH_LOG=str(log))
    crashes = len(log.read_text().splitlines())
    if runxfail:
        assert result.returncode == 1, result.stdout[-3000:]
        assert crashes > 2, result.stdout[-3000:]
    else:
        assert result.returncode == 0, result.stdout[-3000:]
        assert crashes == 2, result.stdout[-3000:]


def test_a_witness_failing_only_a_health_check_is_not_a_known_deviation(engines: Path) -> None:
    result = _suite(engines, "SetsEverythingAside", "test_param_groups")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "FAILED conformance/properties/test_sgd.py::test_param_groups" in out, out[-3000:]
    assert "FailedHealthCheck" in out, out[-3000:]


def test_stale_and_fixed_deviations_are_reported(engines: Path) -> None:
    result = _suite(engines, "StaleDeviation", "test_zero_grad_default_sets_none")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]  # the fixed deviation passes: a strict XPASS
    assert ("FAILED conformance/properties/test_zero_grad.py::test_zero_grad_default_sets_none"
            in out), out[-3000:]
    assert "[XPASS(strict)] known deviation of stale: fixed upstream since" in out, out[-3000:]
    assert "stale known deviations" in out, out[-3000:]
    assert "sgd::test_no_such_property: matches no collected property" in out, out[-3000:]


@pytest.mark.parametrize("profile", ["dev", "quick"])
def test_a_witness_outside_the_recorded_profile_is_not_strict(engines: Path, profile: str) -> None:
    """Under random seeds (dev) another run draws other programs, and quick draws fewer than the
    ci programs deviations are recorded against: a witness that never reached its deviation
    passes, where under ci (the test above) it is a fixed deviation."""
    result = _suite(engines, "StaleDeviation",
                    "test_zero_grad_default_sets_none", f"--hypothesis-profile={profile}")
    out = result.stdout
    assert "XPASS conformance/properties/test_zero_grad.py::test_zero_grad_default_sets_none" in out, (
        out[-3000:])
    assert "XPASS(strict)" not in out, out[-3000:]
    assert "FAILED" not in out, out[-3000:]


def test_a_rare_deviation_not_reached_passes_and_says_so(engines: Path, tmp_path: Path) -> None:
    """A rare deviation's witness that never meets it passes (a non-strict xfail), where a
    strict one would call the deviation fixed; the report's reason says it was not reached."""
    result = _suite(engines, "RareUnreached", "test_zero_grad_default_sets_none",
                    f"--junitxml={tmp_path / 'junit.xml'}")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "XPASS" in out, out[-3000:]
    assert "XPASS(strict)" not in out, out[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "conformance", "deviating:RareUnreached", "--report", str(tmp_path),
         "--", "-k", "test_zero_grad_default_sets_none"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(engines)})
    assert report.returncode == 0, report.stdout[-3000:]
    results = json.loads((tmp_path / "rare-unreached.json").read_text())["results"]
    (witness,) = [r for r in results if r["name"] == "test_zero_grad_default_sets_none"]
    assert witness["verdict"] == "pass", witness
    assert witness["reason"].startswith("not reached in this run: known deviation"), witness


def test_property_named_by_two_deviations_is_a_usage_error(engines: Path) -> None:
    result = _suite(engines, "NamedTwice", "test_param_groups")
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert "two known deviations name 'sgd::test_param_groups'" in result.stderr


def test_a_property_and_one_of_its_cases_named_by_two_deviations_is_a_usage_error() -> None:
    from conformance.adapter import KnownDeviation
    from conformance.plugin import deviations_by_property

    class Engine:
        name = "overlapping"
        known_deviations = (
            KnownDeviation(property="sgd::test_hyperparameter", reason="A"),
            KnownDeviation(property="sgd::test_hyperparameter[momentum]", reason="B"),
        )

    with pytest.raises(pytest.UsageError, match=r"'sgd::test_hyperparameter\[momentum\]'"):
        deviations_by_property(Engine())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["test_param_groups", (), ("sgd::ok", 3)])
def test_malformed_deviation_property_names_the_value(bad: object) -> None:
    from conformance.adapter import KnownDeviation

    with pytest.raises(ValueError, match=r"KnownDeviation\.property") as info:
        KnownDeviation(property=bad, reason="x")  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


def test_a_witness_failing_another_way_is_not_its_known_deviation(engines: Path) -> None:
    """A witness is an expected failure only when its failure is the one its deviation
    describes (``diverges``): a second, unrelated bug in it fails the run."""
    other = _suite(engines, "WitnessMeetsAnotherBug", "test_zero_grad_default_sets_none")
    assert other.returncode == 1, other.stdout[-3000:]
    assert "FAILED conformance/properties/test_zero_grad.py::test_zero_grad_default_sets_none" \
        in other.stdout, other.stdout[-3000:]
    assert "a way the deviation does not describe" in other.stdout, other.stdout[-3000:]
    own = _suite(engines, "WitnessMeetsItsBug", "test_zero_grad_default_sets_none")
    assert own.returncode == 0, own.stdout[-3000:]
    assert "XFAIL conformance/properties/test_zero_grad.py::test_zero_grad_default_sets_none" \
        in own.stdout, own.stdout[-3000:]


def test_a_crash_deviation_with_a_message_matches_only_crashes_that_say_it():
    program = Program((Param("p0", np.zeros(2)),), (
        MakeSGD((Group(("p0",)),), {}),
        Forward("loss0", (Node("loss0", "sum", (Ref("p0"),)),)),
        Backward("loss0"),
    ))
    backward = program.instructions[2]
    codegen = Diverges(at=(Backward,), crash=True, message=r"UOp verification failed")
    assert codegen.matches(program, None, backward, "RuntimeError: UOp verification failed at 1")
    assert not codegen.matches(program, None, backward, "RuntimeError: out of memory")
    assert not codegen.matches(program, None, program.instructions[0],
                               "UOp verification failed")  # at another instruction
    any_crash = Diverges(at=(Backward,), crash=True)
    assert any_crash.matches(program, None, backward, "RuntimeError: out of memory")


@pytest.mark.parametrize(("arguments", "message"), [
    ({"message": "boom"}, "give crash=True"),
    ({"crash": True, "message": "(unclosed"}, "not a regular expression"),
])
def test_a_bad_crash_message_is_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        Diverges(**arguments)


def test_a_failure_while_reading_grads_is_a_crash_at_that_instruction():
    """A lazy engine (tinygrad) computes a grad only when it is read: a kernel that fails
    then is the engine crashing at the backward, which a crash deviation can name."""
    from conformance.engines.reference_engine import ReferenceEngine
    from conformance.errors import EngineCrash
    from conformance.interpret import crashed_at, run

    class FailsWhenAGradIsRead(ReferenceEngine):
        def grad(self, param):
            if super().grad(param) is not None:
                raise RuntimeError("UOp verification failed at 7")
            return None

    program = Program((Param("p0", np.zeros(2)),), (
        MakeSGD((Group(("p0",)),), {}),
        Forward("loss0", (Node("loss0", "sum", (Ref("p0"),)),)),
        Backward("loss0"),
    ))
    with pytest.raises(EngineCrash, match=r"while the suite read .* after instruction \[3\]") as info:
        run(FailsWhenAGradIsRead(), program)
    assert crashed_at(program, info.value.trace) is program.instructions[2]
    assert Diverges(at=(Backward,), crash=True, message="UOp verification").matches(
        program, None, crashed_at(program, info.value.trace), str(info.value))
