"""The compiled-torch engines (``conformance.engines.torch_compile``) really compile, share a
compiled function only between calls that Dynamo would trace the same, and keep no state from
one program to the next. Each test checks what Dynamo itself counts (``counters``), or what
only a compiled op leaves behind (a ``CompiledFunctionBackward`` node)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dynamo = pytest.importorskip("torch._dynamo")
from torch._dynamo.utils import counters  # noqa: E402

from conformance.engines import load_engine  # noqa: E402
from conformance.engines.torch_compile import (  # noqa: E402
    TorchCompileEngine,
    TorchCompileStepEngine,
)
from conformance.interpret import run  # noqa: E402
from conformance.program import (  # noqa: E402
    Backward,
    Forward,
    Group,
    MakeOptimizer,
    Node,
    Param,
    Program,
    Ref,
    Step,
)


def _graphs() -> int:
    """How many graphs Dynamo has compiled since the counters were last cleared."""
    return int(counters["stats"]["unique_graphs"])


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    counters.clear()
    yield
    dynamo.reset()


def _leaf(values, dtype=np.float32):
    return torch.tensor(np.array(values, dtype=dtype), requires_grad=True)


def test_registered_under_their_names():
    assert isinstance(load_engine("torch-compile"), TorchCompileEngine)
    assert isinstance(load_engine("torch-compile-step"), TorchCompileStepEngine)


def test_a_forward_op_runs_compiled():
    engine = TorchCompileEngine()
    out = engine.apply("mul", [_leaf([1.0, 2.0]), 3.0], {})
    # eager: MulBackward0; a compiled region is one autograd node of AOTAutograd's
    assert type(out.grad_fn).__name__ == "CompiledFunctionBackward"
    assert _graphs() == 1
    assert out.tolist() == [3.0, 6.0]


def test_one_compiled_function_per_signature_whatever_the_float():
    engine = TorchCompileEngine()
    x = _leaf([1.0, 2.0])
    first = engine.apply("mul", [x, 2.0], {})
    second = engine.apply("mul", [x, 0.5], {})
    assert (first.tolist(), second.tolist()) == ([2.0, 4.0], [0.5, 1.0])
    assert len(engine._compiled) == 1
    assert _graphs() == 1  # dynamic=True: the float is an input of the one graph


@pytest.mark.parametrize("other", [
    pytest.param(("sum", lambda: [_leaf([[1.0, 2.0]])], {"dim": 1}), id="another dim"),
    pytest.param(("sum", lambda: [_leaf([[1.0, 2.0], [3.0, 4.0]])], {"dim": 0}),
                 id="another shape"),
    pytest.param(("sum", lambda: [_leaf([[1.0, 2.0]], np.float64)], {"dim": 0}),
                 id="another dtype"),
    pytest.param(("sum", lambda: [torch.tensor([[1.0, 2.0]])], {"dim": 0}),
                 id="no requires_grad"),
    pytest.param(("amax", lambda: [_leaf([[1.0, 2.0]])], {"dim": 0}), id="another op"),
])
def test_the_cache_separates_what_compiles_differently(other):
    engine = TorchCompileEngine()
    engine.apply("sum", [_leaf([[1.0, 2.0]])], {"dim": 0})
    op, operands, params = other
    engine.apply(op, operands(), params)
    assert len(engine._compiled) == 2
    assert _graphs() == 2


def test_each_compiled_function_has_a_code_object_of_its_own():
    # Dynamo's cache, recompile limit and automatic-dynamic decisions are per code object.
    engine = TorchCompileEngine()
    engine.apply("sum", [_leaf([1.0, 2.0])], {})
    engine.apply("mean", [_leaf([1.0, 2.0])], {})
    codes = {compiled._torchdynamo_orig_callable.__code__ for compiled in engine._compiled.values()}
    assert len(codes) == 2


def _sgd_program(*, backward: bool) -> Program:
    """One 1-d param, an SGD step, and (if ``backward``) a backward before it."""
    forward = Forward("loss", (Node("loss", "sum", (Ref("p0"),)),))
    steps = [MakeOptimizer(groups=(Group(("p0",)),), defaults={"lr": 0.5}), Step()]
    instructions = [forward, Backward("loss"), *steps] if backward else steps
    return Program(params=(Param("p0", np.array([1.0, 2.0], dtype=np.float32)),),
                   instructions=tuple(instructions))


def test_the_step_runs_compiled():
    trace = run(TorchCompileStepEngine(), _sgd_program(backward=True))
    assert trace[-1].values["p0"].tolist() == [0.5, 1.5]
    assert _graphs() == 1


def test_a_step_without_grads_does_not_leave_the_next_program_eager():
    # torch 2.13: once a compiled step ran with no grad (nothing to trace), Dynamo skips
    # Optimizer.step's code for every optimizer; start_program's reset keeps that in its program.
    engine = TorchCompileStepEngine()
    run(engine, _sgd_program(backward=False))
    assert _graphs() == 0
    trace = run(engine, _sgd_program(backward=True))
    assert trace[-1].values["p0"].tolist() == [0.5, 1.5]
    assert _graphs() == 1


def test_without_the_reset_the_skip_leaks():
    # The premise of the test above, on torch itself: without start_program, the second
    # program's step runs eagerly. If torch stops leaking, this fails: then the reset (and its
    # cost) can go.
    engine = TorchCompileStepEngine()
    run(engine, _sgd_program(backward=False))
    engine.start_program = lambda: None  # type: ignore[method-assign]
    trace = run(engine, _sgd_program(backward=True))
    assert trace[-1].values["p0"].tolist() == [0.5, 1.5]
    assert _graphs() == 0


def test_a_view_with_other_strides_compiles_apart():
    engine = TorchCompileEngine()
    square = _leaf([[1.0, 2.0], [3.0, 4.0]])
    engine.apply("sum", [square * 1.0], {"dim": 0})
    assert engine.apply("sum", [(square * 1.0).t()], {"dim": 0}).tolist() == [3.0, 7.0]
    assert len(engine._compiled) == 2
