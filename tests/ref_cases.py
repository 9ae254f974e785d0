"""Shared helpers for the tests that hold `reference` to torch's observable behaviour.

Every behavioural test is written once against an engine module `tl` and runs twice: with
`tl = torch` (which proves the test encodes torch's real behaviour) and with `tl = reference`
(which checks the reference). A test module opts in by binding the fixture::

    from ref_cases import engine_fixture

    tl_fixture = engine_fixture  # registers the fixture named `tl`

`tl` is session-scoped so that Hypothesis tests may use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ENGINE_NAMES = ("torch", "reference")

# Every op the reference implements, by the name the case tables tag their rows with. The
# finite-difference and saved-tensor tables each check that they cover all of them.
OP_NAMES = (
    "add", "sub", "mul", "div", "neg", "pow", "square",
    "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs", "clamp",
    "sum", "mean", "softmax", "logsumexp",
    "matmul", "linear", "log_softmax", "mse_loss", "nll_loss", "cross_entropy",
    "reshape", "view", "transpose", "T", "unsqueeze", "expand", "clone", "to",
    "getitem", "index_select", "gather", "cat", "stack",
    "where", "maximum", "minimum", "max", "amax", "min", "amin",
)  # fmt: skip

SECOND_BACKWARD = "Trying to backward through the graph a second time"
MODIFIED_INPLACE = (
    "one of the variables needed for gradient computation has been modified by an inplace operation"
)


def load_engine(name: str) -> ModuleType:
    """Import the engine module `name`; skip (not fail) while `reference` does not exist yet."""
    if name == "reference":
        spec = importlib.util.find_spec("reference")
        if spec is None:
            pytest.skip("package `reference` is not importable (run with PYTHONPATH=<repo root>)")
        if spec.origin in (None, "namespace"):
            pytest.skip("reference/ has no __init__.py yet: nothing to test")
    return importlib.import_module(name)


@pytest.fixture(params=ENGINE_NAMES, scope="session", name="tl")
def engine_fixture(request: pytest.FixtureRequest) -> ModuleType:
    """The engine under test: `torch` (validates the test) or `reference` (is validated)."""
    return load_engine(request.param)


def leaf(tl: ModuleType, values: Any, *, dtype: str = "float64", requires_grad: bool = True) -> Any:
    """`tl.tensor(values, dtype=tl.<dtype>, requires_grad=...)` from Python data or an ndarray."""
    if isinstance(values, np.ndarray):
        if values.size == 0:  # nested lists cannot carry an empty array's shape
            return tl.zeros(values.shape, dtype=getattr(tl, dtype), requires_grad=requires_grad)
        values = values.tolist()
    return tl.tensor(values, dtype=getattr(tl, dtype), requires_grad=requires_grad)


def to_numpy(t: Any) -> np.ndarray:
    """A NumPy copy of an engine tensor (a copy: later in-place engine ops must not show)."""
    return np.array(t.detach().numpy(), copy=True)


def grad_of(t: Any) -> np.ndarray | None:
    """`t.grad` as a NumPy copy, or None."""
    return None if t.grad is None else to_numpy(t.grad)


def assert_array_equal(actual: Any, expected: Any, *, what: str) -> None:
    """Exact equality (nan == nan), same shape and dtype; `what` names the call that produced it."""
    __tracebackhide__ = True
    if actual is None or expected is None:
        assert actual is expected, f"{what}: got {actual!r}, expected {expected!r}"
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    np.testing.assert_array_equal(
        actual, expected, strict=True, err_msg=f"{what}: got {actual!r}, expected {expected!r}"
    )


def assert_grad(t: Any, expected: Any, *, what: str) -> None:
    """`t.grad` equals `expected` exactly (an array, or None for "no grad")."""
    __tracebackhide__ = True
    assert_array_equal(grad_of(t), expected, what=f"{what}: .grad")


_MODULE_PREFIX = re.compile(r"\b(?:torch|reference)\.")


def normalise_message(message: str) -> str:
    """Replace the module prefix of names the message prints (`torch.Size`, `torch.FloatTensor`).

    The reference lives in another module and may name its own types; everything else in the
    message must match torch's character for character.
    """
    return _MODULE_PREFIX.sub("<engine>.", message)


def engine_name(tl: ModuleType) -> str:
    return tl.__name__
