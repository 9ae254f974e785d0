"""The reproduction script a failure prints is faithful: run under torch, it prints exactly
the states the interpreter observed when running the same program on the torch engine."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.interpret import Observation, run
from conformance.program import Node, Ref, render_node, tensor_literal

torch_engines = pytest.importorskip("conformance.engines.torch_engines")
ENGINE = torch_engines.TorchEngine()


def _expected_output(trace: list[Observation]) -> str:
    lines = []
    for observation in trace:
        if observation.error is not None:
            lines.append(f"[{observation.index}] raised")
        lines.append(f"[{observation.index}] ")
        for name, value in observation.values.items():
            grad = observation.grads[name]
            grad_text = None if grad is None else grad.tolist()
            history = "  (requires grad)" if observation.grad_requires_grad[name] else ""
            lines.append(f"    {name} = {value.tolist()}   grad = {grad_text}{history}")
    return "\n".join(lines)


def _normalized(output: str) -> str:
    """Keep what the comparison needs: which step raised, and the state lines."""
    lines = []
    for line in output.splitlines():
        if line.startswith("[") and " raised " in line:
            lines.append(line.split(" raised ")[0] + " raised")
        elif line.startswith("["):
            lines.append(line.split("]")[0] + "] ")
        else:
            lines.append(line)
    return "\n".join(lines)


ALL_FORMS = st.one_of(
    cs.programs(ENGINE.capabilities, max_instructions=8),
    cs.hand_written_loops(ENGINE.capabilities, max_epochs=3),
    cs.minibatch_loops(ENGINE.capabilities, max_batches=4),
)
"""Every instruction kind and call form the suite generates: omitted and given arguments,
every index form, create_graph, updates under no_grad and through .data, grad edits, every
optimizer kind with state_dict round trips and added groups, mini-batch loops."""


@settings(max_examples=500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(program=ALL_FORMS)
def test_script_is_the_program(program):
    """Exec the printed script under torch and run the same program through the torch
    adapter: the states printed after every instruction are the states observed (values,
    grads and whether each requires grad, which instructions raised). So nothing the adapter
    executes is absent from the script, and nothing in the script is skipped."""
    trace = run(ENGINE, program)
    raised = [o.index for o in trace if o.error is not None]
    script = program.to_script(guarded=raised)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
        exec(compile(script, "<reproduction>", "exec"), {})
    assert _normalized(buffer.getvalue()) == _expected_output(trace), script


@pytest.mark.parametrize(("index", "written"), [
    (-1, "x[-1]"), (slice(1, None), "x[1:]"), (Ellipsis, "x[...]"), (None, "x[None]"),
    ([0, 0], "x[[0, 0]]"), (np.array([0, -1]), "x[torch.tensor([0, -1])]"),
    (np.array([], dtype=np.int64), "x[torch.tensor([], dtype=torch.int64)]"),
    (np.array([True, False, True]), "x[torch.tensor([True, False, True])]"),
    ((-1,), "x[(-1,)]"), ((slice(1, None),), "x[1:,]"), ((slice(None),), "x[:,]"),
    ((slice(None), [2, 2]), "x[:, [2, 2]]"), ((None, 1, ...), "x[None, 1, ...]"),
])
def test_indices_print_as_written(index, written):
    """``x[-1]`` and ``x[(-1,)]`` are different calls to an engine, so they print differently."""
    node = Node("y", "getitem", (Ref("x"),), {"index": index})
    assert f"y = {written}" == f"y = {render_node(node)}"


def test_script_is_standalone_python():
    """The script imports only torch and defines everything it uses."""
    program = find(cs.programs(ENGINE.capabilities), lambda p: len(p.instructions) > 4,
                   settings=settings(database=None))
    script = program.to_script()
    assert script.startswith("import torch\n")
    compile(script, "<reproduction>", "exec")


def test_nan_and_inf_render_as_python():
    text = tensor_literal(np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32))
    assert text == (
        "torch.tensor([float('nan'), float('inf'), float('-inf'), -0.0], dtype=torch.float32)"
    )


@pytest.mark.parametrize("shape", [(0,), (0, 3), (1, 0, 3), (2, 0), (3, 1, 0)])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_empty_arrays_keep_their_shape_in_the_script(shape, requires_grad):
    """A nested list loses the dimensions after a zero (``[[]]`` is (1, 0), not (1, 0, 3)):
    a program whose ``cat`` took an empty constant of shape (1, 0, 3) printed a script that
    raised where the program had run."""
    import torch

    value = np.zeros(shape, dtype=np.float32)
    tensor = eval(tensor_literal(value, requires_grad=requires_grad), {"torch": torch})
    assert tuple(tensor.shape) == shape
    assert tensor.dtype == torch.float32
    assert tensor.requires_grad == requires_grad
    assert tensor.is_leaf
