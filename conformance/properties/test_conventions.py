"""Gradient conventions at kinks, ties and singular points, on exact leaf values.

relu/abs at 0 → 0; clamp's bounds are inclusive; sqrt/log at 0 → inf; full max/min/amax/amin
and maximum/minimum split ties evenly; max(dim)/min(dim) give all to the returned index;
where gives all to the picked branch (and 0·inf = nan leaks through); pow's special cases;
an operand stretched by broadcasting gets its gradient summed over the stretched dims.
Values come from a tiny pool ({0, -0, ±1, 0.5, 2}), so ties and zeros are the common case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance import strategies as cs
from conformance.graphs import CLAMP_BOUNDS, POW_EXPONENTS
from conformance.program import Backward, Forward, Node, Operand, Param, Program, Ref
from conformance.runner import check_against_reference

pytestmark = pytest.mark.functional  # one backward of a fresh loss: vjp on a functional engine

KINK_VALUES = (0.0, -0.0, 1.0, -1.0, 0.5, 2.0)
SHAPES = ((), (3,), (2, 3), (4, 1))


def _leaf(data: Any, engine: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Param:
    value = data.draw(hnp.arrays(dtype, shape, elements=st.sampled_from(KINK_VALUES)), label=name)
    return Param(name, value)


def _program(params: tuple[Param, ...], op: str, operands: tuple[Operand, ...],
             op_params: dict[str, Any], reduce: str) -> Program:
    forward = Forward("loss0", (
        Node("y", op, operands, op_params),
        Node("loss0", reduce, (Ref("y"),)),
    ))
    return Program(params, (forward, Backward("loss0")))


UNARY = ("relu", "abs", "sqrt", "log", "exp", "tanh", "sigmoid", "neg", "clamp")
REDUCTIONS = ("max", "min", "amax", "amin", "max_dim", "min_dim", "sum", "mean")
BINARY = ("maximum", "minimum", "pow", "mul", "div", "add", "sub")


def _cases() -> list[Any]:
    ops = [*UNARY, *REDUCTIONS, *BINARY, "pow_scalar_exponent", "pow_scalar_base", "where"]
    features = {"pow_scalar_base": ("pow_scalar_base",)}
    return [pytest.param(op, marks=pytest.mark.requires(f"op:{op.split('_scalar')[0]}",
                                                        *features.get(op, ())), id=op)
            for op in ops]


@pytest.mark.parametrize("case", _cases())
@given(data=st.data())
def test_convention(engine, case, data):
    caps = engine.capabilities
    dtype = data.draw(st.sampled_from(caps.dtypes), label="dtype")
    shape = data.draw(st.sampled_from(SHAPES), label="shape")
    x = _leaf(data, engine, "p0", shape, dtype)
    params: tuple[Param, ...] = (x,)
    op: str = case
    operands: tuple[Operand, ...] = (Ref("p0"),)
    op_params: dict[str, Any] = {}
    if case == "clamp":
        op_params = dict(data.draw(st.sampled_from(CLAMP_BOUNDS), label="bounds"))
    elif case in REDUCTIONS and case not in ("max", "min") and shape:
        dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
        op_params = {"dim": dim, "keepdim": data.draw(st.booleans(), label="keepdim")}
    elif case in ("amax", "amin", "max_dim", "min_dim"):
        op = "max" if case in ("amax", "max_dim") else "min"
    elif case in BINARY:
        y = _leaf(data, engine, "p1", shape, dtype)
        params, operands = (x, y), (Ref("p0"), Ref("p1"))
    elif case == "pow_scalar_exponent":
        # The exponents singular at a zero base first (Hypothesis favours early choices):
        # they are where pow's conventions differ, at +0.0 and -0.0.
        exponents = sorted(POW_EXPONENTS, key=lambda e: e == int(e) and e >= 0)
        op, operands = "pow", (Ref("p0"), data.draw(st.sampled_from(exponents), label="e"))
    elif case == "pow_scalar_base":
        base = data.draw(st.sampled_from([0.0, 2.0, 0.5]), label="base")
        op, operands = "pow", (base, Ref("p0"))
    elif case == "where":
        y = _leaf(data, engine, "p1", shape, dtype)
        params, operands = (x, y), (Ref("p0"), Ref("p1"))
        op_params = {"cond": data.draw(hnp.arrays(np.dtype(bool), shape), label="cond")}
    reduce = data.draw(cs.reductions(engine.capabilities), label="reduction")
    check_against_reference(engine, _program(params, op, operands, op_params, reduce))


STRETCHED_PAIRS = (((), (2, 3)), ((1,), (3,)), ((3, 1), (1, 4)), ((4, 1), (2, 1, 3)),
                   ((2, 1, 3), (1, 2, 1)), ((1, 1), (3,)))
POSITIVE_VALUES = (0.5, 1.0, 1.5, 2.0)  # valid bases and divisors; ties for maximum/minimum


@pytest.mark.parametrize(
    "op", [pytest.param(op, marks=pytest.mark.requires(f"op:{op}"), id=op) for op in BINARY]
)
@given(data=st.data())
def test_broadcast_gradient(engine, op, data):
    """``op(x, y)`` where broadcasting stretches both operands (a size-1 dim, or missing
    leading dims): each grad has its operand's shape and is the *sum* over the stretched dims."""
    dtype = data.draw(st.sampled_from(engine.capabilities.dtypes), label="dtype")
    shapes = data.draw(st.sampled_from(STRETCHED_PAIRS).flatmap(st.permutations), label="shapes")
    params = tuple(
        Param(name, data.draw(hnp.arrays(dtype, shape, elements=st.sampled_from(POSITIVE_VALUES)),
                              label=name))
        for name, shape in zip(("p0", "p1"), shapes, strict=True)
    )
    reduce = data.draw(cs.reductions(engine.capabilities), label="reduction")
    check_against_reference(engine, _program(params, op, (Ref("p0"), Ref("p1")), {}, reduce))


@pytest.mark.requires("op:where", "op:sqrt", "op:sum")
@given(data=st.data())
def test_where_leaks_nan_from_the_unpicked_branch(engine, data):
    """``where(c, sqrt(x), y)`` at x = 0 where c is False: the sqrt branch gets grad 0, and
    sqrt's backward turns 0 · inf into NaN in x.grad, as in torch."""
    dtype = data.draw(st.sampled_from(engine.capabilities.dtypes), label="dtype")
    x = _leaf(data, engine, "p0", (3,), dtype)
    y = _leaf(data, engine, "p1", (3,), dtype)
    cond = data.draw(hnp.arrays(np.dtype(bool), (3,)), label="cond")
    forward = Forward("loss0", (
        Node("s", "sqrt", (Ref("p0"),)),
        Node("w", "where", (Ref("s"), Ref("p1")), {"cond": cond}),
        Node("loss0", "sum", (Ref("w"),)),
    ))
    check_against_reference(engine, Program((x, y), (forward, Backward("loss0"))))
