"""The op set a generated graph may use, and how each op prints in a torch script.

An op is named by a string; its operands are tensors or Python floats and its keyword
parameters are plain Python values (ints, bools, tuples, indices). Adapters implement
``Engine.apply(op, operands, params)``; scripts render an op with ``render``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Index = Any
"""An index exactly as a user writes it between the brackets of ``x[...]``: an int, a slice,
``None``, ``...``, a list of ints, a NumPy int64 array (an index tensor), a NumPy bool array
(a mask), or a tuple of those. ``x[1]`` and ``x[(1,)]`` are different calls (many engines
route ints, slices, lists, tensors and tuples through different code), so they are
different indices here, and each prints as it was made."""


def render_index(index: Index) -> str:
    """What goes between the brackets: ``1``, ``::2``, ``[0, 0]``, ``1, ::2``, ``(-1,)``,
    ``1:,`` (a 1-tuple holding a slice, which cannot be parenthesised)."""
    if isinstance(index, tuple):
        if len(index) == 1:
            part = _render_index_part(index[0])
            return f"{part}," if isinstance(index[0], slice) else f"({part},)"
        return ", ".join(_render_index_part(part) for part in index)
    return _render_index_part(index)


def index_parts(index: Index) -> tuple[Any, ...]:
    """The index as a tuple of parts (a bare part is a 1-tuple): for adapters and shape
    rules that need the parts, not for calling an engine."""
    return index if isinstance(index, tuple) else (index,)


def _render_index_part(part: Any) -> str:
    if part is None:
        return "None"
    if part is Ellipsis:
        return "..."
    if isinstance(part, slice):
        text = ":".join("" if v is None else str(v) for v in (part.start, part.stop))
        return text if part.step is None else f"{text}:{part.step}"
    if isinstance(part, list):
        return "[" + ", ".join(str(i) for i in part) + "]"
    if isinstance(part, np.ndarray):
        dtype = ", dtype=torch.int64" if part.dtype.kind == "i" and part.size == 0 else ""
        return f"torch.tensor({part.tolist()}{dtype})"
    return str(part)


def _dims(params: Mapping[str, Any]) -> str:
    dim = params.get("dim")
    if dim is None:
        return ""
    keepdim = ", keepdim=True" if params.get("keepdim") else ""
    return f"dim={dim}{keepdim}"


Render = Callable[[Sequence[str], Mapping[str, Any]], str]


@dataclass(frozen=True)
class OpInfo:
    """One op: how many tensor operands it takes and how it prints in a torch script."""

    name: str
    arity: int  # -1: a list of tensors (cat, stack); linear's third operand (bias) is optional
    render: Render


def _method(method: str) -> Render:
    return lambda a, p: f"{a[0]}.{method}()"


def _binary(symbol: str) -> Render:
    return lambda a, p: f"({a[0]} {symbol} {a[1]})"


def _reduction(method: str) -> Render:
    return lambda a, p: f"{a[0]}.{method}({_dims(p)})"


def _render_clamp(a: Sequence[str], p: Mapping[str, Any]) -> str:
    bounds = ", ".join(f"{k}={p[k]!r}" for k in ("min", "max") if p.get(k) is not None)
    return f"{a[0]}.clamp({bounds})"


def _render_max_dim(method: str) -> Render:
    def render(a: Sequence[str], p: Mapping[str, Any]) -> str:
        return f"{a[0]}.{method}({_dims(p)}).values"

    return render


def _reduction_arg(p: Mapping[str, Any]) -> str:
    """``, reduction='sum'`` when the call passes a reduction; nothing when it leaves it out."""
    return f", reduction={p['reduction']!r}" if "reduction" in p else ""


def _render_linear(a: Sequence[str], p: Mapping[str, Any]) -> str:
    return f"torch.nn.functional.linear({', '.join(a)})"  # x, weight and, if passed, bias


def _render_mse_loss(a: Sequence[str], p: Mapping[str, Any]) -> str:
    return f"torch.nn.functional.mse_loss({a[0]}, {a[1]}{_reduction_arg(p)})"


def _render_cross_entropy(a: Sequence[str], p: Mapping[str, Any]) -> str:
    target = _render_index_part(p["target"])  # an int64 array: torch.tensor([2, 0])
    return f"torch.nn.functional.cross_entropy({a[0]}, {target}{_reduction_arg(p)})"


OPS: dict[str, OpInfo] = {
    info.name: info
    for info in [
        OpInfo("add", 2, _binary("+")),
        OpInfo("sub", 2, _binary("-")),
        OpInfo("mul", 2, _binary("*")),
        OpInfo("div", 2, _binary("/")),
        OpInfo("pow", 2, _binary("**")),
        OpInfo("matmul", 2, _binary("@")),
        OpInfo("neg", 1, lambda a, p: f"(-{a[0]})"),
        OpInfo("exp", 1, _method("exp")),
        OpInfo("log", 1, _method("log")),
        OpInfo("sqrt", 1, _method("sqrt")),
        OpInfo("tanh", 1, _method("tanh")),
        OpInfo("sigmoid", 1, _method("sigmoid")),
        OpInfo("relu", 1, _method("relu")),
        OpInfo("abs", 1, _method("abs")),
        OpInfo("clamp", 1, _render_clamp),
        OpInfo("sum", 1, _reduction("sum")),
        OpInfo("mean", 1, _reduction("mean")),
        OpInfo("max", 1, _reduction("max")),
        OpInfo("min", 1, _reduction("min")),
        OpInfo("max_dim", 1, _render_max_dim("max")),
        OpInfo("min_dim", 1, _render_max_dim("min")),
        OpInfo("amax", 1, _reduction("amax")),
        OpInfo("amin", 1, _reduction("amin")),
        OpInfo("maximum", 2, lambda a, p: f"torch.maximum({a[0]}, {a[1]})"),
        OpInfo("minimum", 2, lambda a, p: f"torch.minimum({a[0]}, {a[1]})"),
        OpInfo("reshape", 1, lambda a, p: f"{a[0]}.reshape({tuple(p['shape'])!r})"),
        OpInfo("transpose", 1, lambda a, p: f"{a[0]}.transpose({p['dim0']}, {p['dim1']})"),
        OpInfo("unsqueeze", 1, lambda a, p: f"{a[0]}.unsqueeze({p['dim']})"),
        OpInfo("getitem", 1, lambda a, p: f"{a[0]}[{render_index(p['index'])}]"),
        OpInfo("cat", -1, lambda a, p: f"torch.cat([{', '.join(a)}], dim={p['dim']})"),
        OpInfo("stack", -1, lambda a, p: f"torch.stack([{', '.join(a)}], dim={p['dim']})"),
        OpInfo("where", 2, lambda a, p: f"torch.where({_render_index_part(p['cond'])}, {a[0]}, {a[1]})"),
        # Modules and losses as users write them (torch.nn.functional, spelt out: the script
        # imports torch only). linear's operands are x, weight and an optional bias; the
        # params hold what is not a tensor operand: a passed reduction, cross_entropy's
        # int64 class-index target (a constant).
        OpInfo("linear", 3, _render_linear),
        OpInfo("mse_loss", 2, _render_mse_loss),
        OpInfo("cross_entropy", 1, _render_cross_entropy),
    ]
}

ALL_OPS: frozenset[str] = frozenset(OPS)

PYTHON_OPERATORS: Mapping[str, Callable[..., Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "neg": operator.neg,
}
"""The ops a tensor library spells with Python's operators (``a + b``, ``-a``), as functions of
the operands. Adapters apply them this way, so that a Python float works on either side."""
