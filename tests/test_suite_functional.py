"""The functional tier: how a program's instructions become ``vjp`` and ``optimizer_step``
calls, what a functional engine refuses, and that the reference's derived functional tier
is the same oracle as its stateful one on the programs both can run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from conformance import strategies as cs
from conformance.engines.torch_engines import TorchEngine
from conformance.functional import Functionalized
from conformance.interpret import StatefulInstruction, run
from conformance.program import (
    Backward,
    Forward,
    Group,
    MakeOptimizer,
    Node,
    Param,
    Program,
    Ref,
    SetGrad,
    SetGradNone,
    Step,
    ZeroGrad,
)
from conformance.runner import functional_reference, reference_engine

ROOT = Path(__file__).resolve().parent.parent


class _RecordsSteps(Functionalized):
    """torch's functional tier, recording what each ``optimizer_step`` and ``vjp`` got."""

    def __init__(self) -> None:
        super().__init__(TorchEngine())
        self.steps: list[tuple[list[np.ndarray], list[np.ndarray | None]]] = []
        self.vjps: list[int] = []

    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        self.steps.append(([self.to_numpy(p) for p in params],
                           [None if g is None else self.to_numpy(g) for g in grads]))
        return super().optimizer_step(optimizer, params, grads)

    def vjp(self, forward: Any, params: Sequence[Any], cotangent: Any | None) -> Sequence[Any]:
        self.vjps.append(len(params))
        return super().vjp(forward, params, cotangent)


def _params() -> tuple[Param, ...]:
    return (Param("p0", np.array([1.0, -2.0], dtype=np.float32)),
            Param("p1", np.array(3.0, dtype=np.float32)),
            Param("p2", np.array([0.5], dtype=np.float32)))


def test_a_step_gets_the_held_params_in_group_order_and_none_for_a_missing_grad():
    params = _params()
    grad = np.array([0.25, 4.0], dtype=np.float32)
    program = Program(params, (
        MakeOptimizer((Group(("p2",)), Group(("p0", "p1"), {"momentum": 0.5})), {"lr": 0.5}),
        SetGrad("p0", grad), SetGradNone("p1"), SetGrad("p2", np.array([1.0], np.float32)),
        Step(),
    ))
    engine = _RecordsSteps()
    trace = run(engine, program)
    (stepped, grads), = engine.steps
    np.testing.assert_array_equal(stepped[0], params[2].value)  # p2 first: its group is first
    np.testing.assert_array_equal(stepped[1], params[0].value)
    np.testing.assert_array_equal(grads[1], grad)
    assert grads[2] is None  # p1's
    final = trace[-1]
    np.testing.assert_array_equal(final.values["p1"], params[1].value)  # skipped, not moved
    np.testing.assert_array_equal(final.values["p0"], params[0].value - 0.5 * grad)


def test_a_backward_is_one_vjp_over_the_params_its_loss_reaches():
    params = _params()
    forward = Forward("loss", (Node("y", "mul", (Ref("p0"), Ref("p0"))),
                               Node("loss", "sum", (Ref("y"),))))
    engine = _RecordsSteps()
    trace = run(engine, Program(params, (forward, Backward("loss"))))
    assert engine.vjps == [1]  # p0 only
    np.testing.assert_array_equal(trace[-1].grads["p0"], 2 * params[0].value)
    assert trace[-1].grads["p1"] is None
    assert trace[-1].grads["p2"] is None
    # a functional engine's grads have no identity or history to observe
    assert set(trace[-1].same_grad.values()) == {None}
    assert trace[-1].aliased_grads == []


@pytest.mark.parametrize("instruction", [
    ZeroGrad(),
    Backward("loss", retain_graph=True),
    Backward("loss", create_graph=True),
], ids=["zero_grad", "retain_graph", "create_graph"])
def test_a_functional_engine_is_never_given_stateful_autograd(instruction):
    params = _params()
    forward = Forward("loss", (Node("loss", "sum", (Ref("p0"),)),))
    make = MakeOptimizer((Group(("p0",)),), {"lr": 0.1})
    program = Program(params, (make, forward, instruction))
    with pytest.raises(StatefulInstruction):
        run(_RecordsSteps(), program)


def test_a_second_backward_into_grads_already_given_is_refused():
    """Accumulation is stateful: the interpreter refuses it rather than overwrite the grads."""
    params = _params()
    forward = Forward("loss", (Node("loss", "sum", (Ref("p0"),)),))
    program = Program(params, (forward, Backward("loss"), Backward("loss")))
    with pytest.raises(StatefulInstruction, match="accumulates"):
        run(_RecordsSteps(), program)


@settings(max_examples=40, deadline=None)
@given(program=cs.programs(reference_engine().capabilities,
                           actions=["set_grads", "step", "set_grad_none", "set_hyperparameter",
                                    "reload_optimizer", "add_param_group"]))
def test_the_derived_functional_reference_is_the_stateful_one(program):
    """On programs of given grads and optimizer calls, the oracle of functional engines
    (the reference's derived functional tier) observes exactly the params and grads of the
    reference itself, bit for bit."""
    stateful, functional = run(reference_engine(), program), run(functional_reference(), program)
    assert len(stateful) == len(functional)
    for a, b in zip(stateful, functional, strict=True):
        assert a.error == b.error
        for name in a.values:
            assert a.values[name].tobytes() == b.values[name].tobytes()
            assert (a.grads[name] is None) == (b.grads[name] is None)
            if a.grads[name] is not None:
                assert a.grads[name].tobytes() == b.grads[name].tobytes()


def test_properties_of_stateful_autograd_are_reported_not_applicable(tmp_path):
    report = tmp_path / "reports"
    command = [sys.executable, "-m", "conformance",
               "tests.broken_engines.functional:FunctionalTorch", "--profile", "quick",
               "--report", str(report), "--", "-k",
               "test_zero_grad_default_sets_none or test_unused_param_example", "-p",
               "no:cacheprovider"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = {r["id"]: r["verdict"]
                for r in json.loads((report / "functional-torch.json").read_text())["results"]}
    assert verdicts["zero_grad::test_zero_grad_default_sets_none"] == "not applicable"
    assert verdicts["sgd::test_unused_param_example"] == "pass"
