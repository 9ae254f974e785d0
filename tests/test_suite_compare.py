"""``compare.first_divergence``: what assert_same_trace raises on, and what adapters' ``applies``
predicates ask about. Traces come from the reference run on drawn programs."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.compare import first_divergence, program_tolerance
from conformance.engines.reference_engine import ReferenceEngine
from conformance.interpret import run
from conformance.program import Backward, Forward, Node, Param, Program, Ref
from conformance.runner import reference_engine

ENGINE = reference_engine()
PROGRAMS = cs.programs(ENGINE.capabilities, max_instructions=6)


def _shifted(observation, name, delta):
    values = {**observation.values, name: observation.values[name] + delta}
    return dataclasses.replace(observation, values=values)


@settings(max_examples=30, deadline=None)
@given(program=PROGRAMS)
def test_a_trace_does_not_diverge_from_itself(program):
    trace = run(ENGINE, program)
    assert first_divergence(program, trace, run(ENGINE, program)) is None


@settings(max_examples=30, deadline=None)
@given(program=PROGRAMS, data=st.data())
def test_the_first_shifted_value_is_where_it_diverges(program, data):
    trace = run(ENGINE, program)
    at = data.draw(st.integers(0, len(trace) - 1), label="observation")
    name = data.draw(st.sampled_from(sorted(trace[at].values)), label="param")
    value = trace[at].values[name]
    assume(value.size and np.all(np.isfinite(value)))  # a shift moves no infinity
    # 1000 tolerances beyond the value's scale: a difference no dtype's tolerance accepts.
    scale = max(1.0, float(np.max(np.abs(value), initial=0.0)))
    delta = np.asarray(1000 * program_tolerance(program) * scale + 1.0, dtype=value.dtype)
    changed = [*trace[:at], _shifted(trace[at], name, delta), *trace[at + 1:]]

    found = first_divergence(program, changed, trace)

    assert found is not None
    got, want, problems = found
    assert (got.index, want.index) == (trace[at].index, trace[at].index)
    assert any(problem.startswith(f"{name}: ") for problem in problems), problems


@settings(max_examples=30, deadline=None)
@given(program=PROGRAMS)
def test_a_difference_within_the_tolerance_is_no_divergence(program):
    trace = run(ENGINE, program)
    last = trace[-1]
    name = sorted(last.values)[0]
    value = last.values[name]
    assume(value.size and np.all(np.isfinite(value)))  # a shift moves no infinity
    tolerance = program_tolerance(program)
    scale = max(1.0, float(np.max(np.abs(value), initial=0.0)))
    delta = np.asarray(tolerance * scale / 4, dtype=value.dtype)
    changed = [*trace[:-1], _shifted(last, name, delta)]
    assert first_divergence(program, changed, trace) is None


def test_a_grad_on_one_side_only_is_a_grads_difference_alone():
    """Where the engine has a grad and the reference None (torch-fused under a random seed: a
    backward that raised in the reference went through in the engine), the grad's
    requires_grad is no second difference: the divergence's fields are {"grads"}, so a
    deviation declared on grads (and the error) matches it."""
    from conformance.compare import divergence
    from conformance.program import Backward, Forward, Node, Param, Program, Ref

    program = Program((Param("p0", np.ones(2)),), (
        Forward("loss0", (Node("loss0", "sum", (Ref("p0"),)),)),
        Backward("loss0", create_graph=True),  # grads' history is compared in this program
    ))
    expected = run(ENGINE, program)
    assert expected[-1].grads["p0"] is not None
    engine = [*expected[:-1], dataclasses.replace(expected[-1], grad_requires_grad={"p0": False})]
    reference = [*expected[:-1], dataclasses.replace(
        expected[-1], grads={"p0": None}, grad_requires_grad={"p0": None}, same_grad={"p0": None})]
    found = divergence(program, engine, reference)
    assert found is not None
    assert found.fields == {"grads"}, found.fields
    problems = first_divergence(program, engine, reference)[2]
    assert not any("requires_grad" in problem for problem in problems), problems


class _RecordsCalls(ReferenceEngine):
    """The reference, logging when each program starts and each tensor is made."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start_program(self) -> None:
        self.calls.append("start")

    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> object:
        self.calls.append("tensor")
        return super().tensor(value, requires_grad=requires_grad)


def test_each_program_starts_with_start_program_before_its_first_tensor():
    """One adapter runs many programs: ``start_program`` marks where each begins, so that an
    adapter can reset what must not leak from one into the next (a compiled step, a cache)."""
    engine = _RecordsCalls()
    programs = [
        Program((Param("p0", np.ones(2, dtype=np.float32)),),
                (Forward("loss", (Node("loss", "sum", (Ref("p0"),)),)), Backward("loss"))),
        Program((Param("p0", np.ones(3)), Param("p1", np.zeros(()))), ()),
    ]
    for program in programs:
        run(engine, program)
    starts = [i for i, call in enumerate(engine.calls) if call == "start"]
    assert len(starts) == len(programs)
    assert starts[0] == 0  # before the first program's first tensor
    first, second = engine.calls[:starts[1]], engine.calls[starts[1]:]
    assert first.count("tensor") >= 1  # the first program's param (and any constants)
    assert second == ["start", "tensor", "tensor"]  # the second's two params, after its start


def test_grads_share_memory_only_where_their_elements_overlap():
    """torch's observed aliasing: the 0-d sums' grads are one element of one buffer (an
    accumulation into one changes the other); stack's backward gives each param a disjoint
    view of one buffer, which accumulate apart, as the reference's separate grads do."""
    import torch

    from conformance.engines.torch_engines import TorchEngine

    engine = TorchEngine()
    a, b = (torch.zeros((), requires_grad=True) for _ in range(2))
    (a.sum() + b.sum()).backward()
    assert engine.shares_memory(a.grad, b.grad)
    p0, p1 = (torch.zeros((), requires_grad=True) for _ in range(2))
    torch.stack([p1, p0]).amax(0).sum().backward()
    assert p0.grad.untyped_storage().data_ptr() == p1.grad.untyped_storage().data_ptr()
    assert not engine.shares_memory(p0.grad, p1.grad)
