"""The reproduction script a failure prints is faithful: run under torch, it prints exactly
the states the interpreter observed when running the same program on the torch engine."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import find, given, settings

from conformance import strategies as cs
from conformance.interpret import Observation, run
from conformance.program import tensor_literal

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
            lines.append(f"    {name} = {value.tolist()}   grad = {grad_text}")
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


@settings(max_examples=40, deadline=None)
@given(program=cs.programs(ENGINE.capabilities, max_instructions=8))
def test_script_prints_what_the_engine_did(program):
    trace = run(ENGINE, program)
    raised = [o.index for o in trace if o.error is not None]
    script = program.to_script(guarded=raised)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(script, "<reproduction>", "exec"), {})
    assert _normalized(buffer.getvalue()) == _expected_output(trace), script


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
