"""Generate expression graphs over named params: the forward half of a training step.

The generator keeps a pool of available values (the params it was given, then every node
it emits) and grows a DAG by applying drawn ops to drawn pool values, so subexpressions are
shared and params are used more than once. Every value nobody consumed is reduced and added
into the loss, so every param the graph was given reaches the loss.

Edges are reached on purpose: values come from a pool rich in exact zeros, ±1 and repeats
(kinks and ties), indices have duplicates, negatives and empty slices. Ops with a singular
point (log, sqrt, division, fractional powers) get operands that are positive by construction
(``abs(x) + c``), so that rounding differences between engines never meet a singularity
inside a generated graph; their conventions *at* the singularity are tested on leaves, where
the value is exact (``conformance.properties.test_conventions``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance.choices import (
    Draw,
    bool_arrays,
    boolean,
    choose,
    class_indices,
    integer,
    integers,
    permutation,
    subset,
    values,
)
from conformance.ops import ALL_OPS
from conformance.program import Const, Forward, Node, Operand, Param, Ref
from conformance.shapes import (
    Shape,
    broadcastable_shapes,
    promote,
    result_shape,
    stretching_shapes,
)

POW_EXPONENTS = (2.0, 3.0, 1.0, 0.0, -1.0, 0.5, 1.5, -0.5)
LOSS_REDUCTIONS: tuple[dict[str, str], ...] = ({}, {}, {"reduction": "sum"}, {"reduction": "mean"})
"""A loss's reduction as users pass it: mostly left to the default ("mean"), sometimes given."""
CLAMP_BOUNDS = ({"min": 0.0}, {"min": -1.0, "max": 1.0}, {"max": 0.5}, {"min": -0.5, "max": 2.0})

BARE_INDEX_FORMS = ("int", "slice", "ellipsis", "none", "list", "tensor", "mask")


def draw_index(draw: Draw, shape: Shape, *, masks: bool = True) -> Any:
    """Indices for a tensor of ``shape`` (``ndim >= 1``) that torch and NumPy agree on, in every
    form a user writes between the brackets (``conformance.ops.Index``): a bare int (negative
    too), slice (with steps, empty too), ``...`` or ``None``; an integer list or int64 index
    tensor (duplicates and negatives); a bool mask (all-False too; not with ``masks=False``);
    or a tuple mixing them (a 1-tuple too: ``x[(1,)]`` is another call than ``x[1]``). The form
    is drawn first, each bare form about as often as any other and tuples three times as
    often, since engines route each form through different code."""
    bare = [form for form in BARE_INDEX_FORMS if masks or form != "mask"]
    form = choose(draw, [*bare, "tuple", "tuple", "tuple"])
    size = shape[0]
    # Each form reaches its edges on purpose: -1 (the last element, the negative int users
    # write most), a stepped slice and an open-ended one, a repeated index (its grads add up).
    if form == "int" and size > 0:
        return -1 if boolean(draw) else integer(draw, -size, size - 1)
    if form in ("int", "slice"):
        edges = [slice(None, None, 2), slice(1, None), slice(None, -1)]
        return choose(draw, edges) if boolean(draw) else _slice(draw, size)
    if form == "ellipsis":
        return Ellipsis
    if form == "none":
        return None
    if form in ("list", "tensor") and size > 0:
        chosen = integers(draw, -size, size - 1, min_size=1, max_size=4)
        if boolean(draw):
            chosen = [*chosen, chosen[0]]  # a duplicate
        return chosen if form == "list" else np.array(chosen, dtype=np.int64)
    if form == "mask":
        return draw(bool_arrays(shape[: integer(draw, 1, len(shape))]))
    kinds = [_basic_index, _list_index] + ([_mask_index] if masks else [])
    parts = choose(draw, kinds)(draw, shape)
    advanced = any(isinstance(p, (list, np.ndarray)) for p in parts)
    if advanced and parts[0] is not None and integer(draw, 0, 5) == 0:
        parts = (None, *parts)  # x[None, [0, 1]]: where engines misplace the new dim
    return parts


indices = st.composite(draw_index)
""":func:`draw_index` as a strategy."""


def _slice(draw: Draw, size: int) -> slice:
    """A slice of a dim of ``size``: each bound None or in [-size - 2, size + 2] (past the
    ends too), a step of None, 1, 2 or 3."""
    def bound() -> int | None:
        return None if boolean(draw) else integer(draw, -size - 2, size + 2)
    start, stop = bound(), bound()
    return slice(start, stop, choose(draw, [None, 1, 2, 3]))


def _basic_index(draw: Draw, shape: Shape) -> tuple[Any, ...]:
    parts: list[Any] = []
    count = integer(draw, 1, len(shape))
    for size in shape[:count]:
        if size > 0 and boolean(draw):
            parts.append(integer(draw, -size, size - 1))
        else:
            parts.append(_slice(draw, size))
    if boolean(draw):
        parts.insert(integer(draw, 0, len(parts)), None)
    if count < len(shape) and boolean(draw):
        parts.append(Ellipsis)
    return tuple(parts)


def _list_index(draw: Draw, shape: Shape) -> tuple[Any, ...]:
    # One or two integer lists or int64 index tensors of one length (torch broadcasts them);
    # a slice may precede.
    length = integer(draw, 1, 4)
    parts: list[Any] = []
    dim = 0
    if len(shape) > 1 and boolean(draw):
        parts.append(_slice(draw, shape[0]))
        dim = 1
    lists = integer(draw, 1, min(2, len(shape) - dim))
    for size in shape[dim : dim + lists]:
        if size == 0:
            return (slice(None),)
        chosen = integers(draw, -size, size - 1, min_size=length, max_size=length)
        parts.append(np.array(chosen, dtype=np.int64) if boolean(draw) else chosen)
    return _with_none_or_ellipsis(draw, parts, consumed=dim + lists, ndim=len(shape))


def _mask_index(draw: Draw, shape: Shape) -> tuple[Any, ...]:
    dims = integer(draw, 1, len(shape))
    mask = draw(bool_arrays(shape[:dims]))
    return _with_none_or_ellipsis(draw, [mask], consumed=dims, ndim=len(shape))


def _with_none_or_ellipsis(
    draw: Draw, parts: list[Any], *, consumed: int, ndim: int
) -> tuple[Any, ...]:
    """``parts`` with, sometimes, a ``None`` at either end and a trailing ``...``. Never a
    ``None`` between two advanced indices: where NumPy then puts the result's dims is a rule
    this suite does not test."""
    parts = list(parts)
    if boolean(draw):
        parts.insert(choose(draw, [0, len(parts)]), None)
    if consumed < ndim and boolean(draw):
        parts.append(Ellipsis)
    return tuple(parts)


@dataclass(frozen=True)
class _Value:
    """A pool entry: a param or node the generator may use as an operand."""

    name: str
    shape: Shape
    dtype: np.dtype
    positive: bool  # > 0 by construction, never the result of cancellation


@dataclass(frozen=True)
class GraphInfo:
    """A generated forward with the loss's shape and dtype (for a backward ``gradient``)."""

    forward: Forward
    shape: Shape
    dtype: np.dtype


def reached(forward: Forward, params: Collection[str]) -> frozenset[str]:
    """The names among ``params`` that ``forward``'s loss depends on: those a backward of it
    gives a grad (every operand that names a param or node carries a gradient; conditions,
    indices and targets are node parameters, not operands)."""
    nodes = {node.out: node for node in forward.nodes}
    found: set[str] = set()
    seen: set[str] = set()
    pending = [forward.loss]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in nodes:
            pending += [operand.name for operand in nodes[name].operands
                        if isinstance(operand, Ref)]
        elif name in params:
            found.add(name)
    return frozenset(found)


class _Builder:
    def __init__(
        self, draw: Draw, loss: str, inputs: Sequence[_Value], ops: Sequence[str],
        dtypes: Sequence[np.dtype], masks: bool, available: Collection[str],
        one_element_losses: bool = True, scalar_bases: bool = True,
    ) -> None:
        self.draw = draw
        self.one_element_losses = one_element_losses
        self.scalar_bases = scalar_bases
        self.masks = masks
        self.loss = loss
        self.ops = ops
        # Every op the engine has: the helpers that make operands positive, reduce values
        # into the loss and name it use only these, so an op declared unsupported never
        # appears, not even as glue.
        self.available = frozenset(available)
        self.dtypes = dtypes
        self.pool: list[_Value] = list(inputs)
        self.params = frozenset(value.name for value in inputs)
        self.uses: dict[str, int] = {value.name: 0 for value in inputs}
        self.nodes: list[Node] = []

    # --- emitting ------------------------------------------------------------------------
    def emit(
        self, op: str, args: Sequence[_Value | Const | float], params: dict[str, Any] | None = None,
        *, positive: bool = False, name: str | None = None,
    ) -> _Value:
        params = params or {}
        operands: list[Operand] = []
        shapes: list[Shape | None] = []
        dtypes: list[np.dtype] = []
        tensor_shapes: list[Shape] = []
        for arg in args:
            if isinstance(arg, _Value):
                operands.append(Ref(arg.name))
                self.uses[arg.name] += 1
                shapes.append(arg.shape)
                dtypes.append(arg.dtype)
                tensor_shapes.append(arg.shape)
            elif isinstance(arg, Const):
                operands.append(arg)
                shapes.append(arg.value.shape)
                dtypes.append(arg.value.dtype)
                tensor_shapes.append(arg.value.shape)
            else:
                operands.append(float(arg))
                shapes.append(None)
        out = name or f"{self.loss}_{len(self.nodes)}"
        shape = result_shape(op, shapes, params)
        value = _Value(out, shape, promote(dtypes, tensor_shapes), positive)
        self.nodes.append(Node(out, op, tuple(operands), params))
        self.pool.append(value)
        self.uses[out] = 0
        return value

    def pick(self, *, where: Callable[[_Value], bool] = lambda v: True) -> _Value | None:
        candidates = [value for value in reversed(self.pool) if where(value)]
        if not candidates:
            return None
        return choose(self.draw, candidates)

    def const(self, shape: Shape, dtype: np.dtype, *, positive: bool = False) -> Const:
        return Const(self.draw(values(shape, dtype, positive=positive)))

    def can(self, *ops: str) -> bool:
        return all(op in self.available for op in ops)

    def positive(self, value: _Value) -> _Value | None:
        """``value`` itself if positive by construction, else ``abs(value) + c`` (or, with
        the ops the engine has, ``exp(value)``, ``value * value + c``, ``sigmoid(value)``);
        None if the engine has none of them (the caller then emits nothing)."""
        if value.positive:
            return value
        shift = choose(self.draw, [0.5, 1.0, 2.0])
        if self.can("abs", "add"):
            return self.emit("add", [self.emit("abs", [value]), shift], positive=True)
        if self.can("exp"):
            return self.emit("exp", [value], positive=True)
        if self.can("mul", "add"):
            return self.emit("add", [self.emit("mul", [value, value]), shift], positive=True)
        if self.can("sigmoid"):
            return self.emit("sigmoid", [value], positive=True)
        return None

    def reduce_all(self, value: _Value) -> _Value | None:
        """``value`` reduced to one element: ``sum`` or ``mean`` (drawn), else ``max``/``min``
        where the engine has only those; None where it has none."""
        options = [op for op in ("sum", "mean") if self.can(op)]
        if not options and int(np.prod(value.shape)) > 0:
            options = [op for op in ("max", "min", "amax", "amin") if self.can(op)][:1]
        if not options:
            return None
        op = choose(self.draw, options)
        params = {"dim": tuple(range(len(value.shape)))} if op in ("amax", "amin") else None
        return self.emit(op, [value], params)

    def rename_last(self, name: str) -> _Value:
        """Give the newest node the name ``name`` (the loss), where no op may name it."""
        node, value = self.nodes[-1], self.pool[-1]
        assert node.out == value.name
        assert self.uses[value.name] == 0
        del self.uses[value.name]
        self.nodes[-1] = Node(name, node.op, node.operands, node.params)
        self.pool[-1] = _Value(name, value.shape, value.dtype, value.positive)
        self.uses[name] = 0
        return self.pool[-1]

    def other_dtype(self, dtype: np.dtype) -> np.dtype:
        """Usually ``dtype``; sometimes another supported one, to exercise promotion."""
        return choose(self.draw, [dtype, *[d for d in self.dtypes if d != dtype]])

    # --- op families ---------------------------------------------------------------------
    def grow(self, op: str) -> None:
        x = self.pick()
        assert x is not None
        if op in ("neg", "exp", "tanh", "sigmoid", "relu", "abs"):
            self.emit(op, [x], positive=op in ("exp", "sigmoid"))
        elif op in ("log", "sqrt"):
            operand = self.positive(x)
            if operand is not None:
                self.emit(op, [operand], positive=op == "sqrt")
        elif op == "clamp":
            self.emit(op, [x], dict(choose(self.draw, CLAMP_BOUNDS)))
        elif op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
            self.binary(op, x)
        elif op == "matmul":
            self.matmul(x)
        elif op in ("sum", "mean", "max", "min", "amax", "amin", "max_dim", "min_dim"):
            self.reduction(op, x)
        elif op == "reshape":
            self.emit(op, [x], {"shape": _reshape(self.draw, x.shape)}, positive=x.positive)
        elif op == "transpose" and len(x.shape) >= 2:
            dims = permutation(self.draw, range(len(x.shape)))
            self.emit(op, [x], {"dim0": dims[0], "dim1": dims[1]}, positive=x.positive)
        elif op == "unsqueeze":
            dim = integer(self.draw, -len(x.shape) - 1, len(x.shape))
            self.emit(op, [x], {"dim": dim}, positive=x.positive)
        elif op == "getitem" and len(x.shape) >= 1:
            index = draw_index(self.draw, x.shape, masks=self.masks)
            self.emit(op, [x], {"index": index}, positive=x.positive)
        elif op in ("cat", "stack"):
            self.join(op, x)
        elif op == "where":
            self.where(x)
        elif op == "linear":
            self.linear(x)
        elif op == "mse_loss":
            self.mse_loss(x)
        elif op == "cross_entropy":
            self.cross_entropy(x)

    def binary(self, op: str, x: _Value) -> None:
        draw = self.draw
        scalar_ok = op not in ("maximum", "minimum")
        kinds = ["const", "value"] + (["scalar"] * 2 if scalar_ok else [])
        kind = choose(draw, kinds)
        if kind == "scalar":
            self.binary_scalar(op, x)
            return
        other: _Value | Const | None = None
        if kind == "value":
            other = self.pick(where=lambda v: _broadcasts(v.shape, x.shape))
        if other is None:
            stretching = stretching_shapes(x.shape)
            kept = broadcastable_shapes(x.shape)
            shape = choose(draw, stretching if stretching and boolean(draw) else kept)
            positive = op in ("div", "pow")
            other = self.const(shape, self.other_dtype(x.dtype), positive=positive)
        if op == "div" and isinstance(other, _Value):
            other = self.positive(other) or self.const(other.shape, other.dtype, positive=True)
        if op == "pow":
            base = self.positive(x)  # a tensor exponent needs a positive base
            if base is None:
                return
            x = base
        left, right = (other, x) if op not in ("div", "pow") and boolean(draw) else (x, other)
        self.emit(op, [left, right], positive=op == "pow" or (op == "div" and x.positive))

    def binary_scalar(self, op: str, x: _Value) -> None:
        draw = self.draw
        on_left = boolean(draw)
        if op == "pow":
            if on_left and self.scalar_bases:
                self.emit(op, [choose(draw, [2.0, 0.5, 3.0]), x], positive=True)
                return
            exponent = choose(draw, POW_EXPONENTS)
            if exponent != int(exponent) or exponent < 0:
                base = self.positive(x)
                if base is None:
                    return
                x = base
            self.emit(op, [x, exponent], positive=x.positive)
            return
        if op == "div":
            denominator = self.positive(x) if on_left else None
            if denominator is not None:
                self.emit(op, [choose(draw, [1.0, -2.0, 0.5]), denominator])
            else:
                self.emit(op, [x, choose(draw, [2.0, -0.5, 4.0, 3.0])])
            return
        scalar = choose(draw, [0.0, 1.0, -1.0, 2.0, 0.5, -3.0])
        self.emit(op, [scalar, x] if on_left else [x, scalar])

    def matmul(self, x: _Value) -> None:
        if len(x.shape) not in (1, 2):
            self.reduce_all(x)
            return
        draw = self.draw
        k = x.shape[-1] if boolean(draw) else x.shape[0]
        on_left = k == x.shape[-1]
        def fits(v):
            return (v.dtype == x.dtype and len(v.shape) in (1, 2)
                        and (v.shape[0] == k if on_left else v.shape[-1] == k))
        other: _Value | Const | None = self.pick(where=fits) if boolean(draw) else None
        if other is None:
            n = integer(draw, 1, 3)
            shape = choose(draw, [(k,), (k, n)] if on_left else [(k,), (n, k)])
            other = self.const(shape, x.dtype)
        self.emit("matmul", [x, other] if on_left else [other, x])

    def reduction(self, op: str, x: _Value) -> None:
        draw = self.draw
        size = int(np.prod(x.shape))
        needs_dim = op in ("amax", "amin", "max_dim", "min_dim")
        if (needs_dim and not x.shape) or (op in ("max", "min") and size == 0):
            if not self.can("sum"):
                return
            op, needs_dim = "sum", False
        if not x.shape or op in ("max", "min") or (not needs_dim and boolean(draw)):
            self.emit(op, [x], positive=x.positive)
            return
        dims = [d for d in range(len(x.shape)) if x.shape[d] > 0 or op in ("sum", "mean")]
        if not dims:
            self.reduce_all(x)
            return
        dim = choose(draw, dims)
        dim -= len(x.shape) * boolean(draw)
        params = {"dim": dim, "keepdim": boolean(draw)}
        self.emit(op, [x], params, positive=x.positive and op != "mean")

    def join(self, op: str, x: _Value) -> None:
        draw = self.draw
        if op == "cat" and not x.shape:
            if not self.can("stack"):
                return
            op = "stack"
        dim = integer(draw, 0, len(x.shape) - (1 if op == "cat" else 0))
        count = integer(draw, 1, 2)
        parts: list[_Value | Const] = [x]
        for _ in range(count):
            def fits(v: _Value) -> bool:
                if v.dtype != x.dtype or len(v.shape) != len(x.shape):
                    return False
                return all(a == b or (op == "cat" and i == dim)
                           for i, (a, b) in enumerate(zip(v.shape, x.shape, strict=False)))
            other = self.pick(where=fits) if boolean(draw) else None
            if other is None:
                shape = list(x.shape)
                if op == "cat":
                    shape[dim] = integer(draw, 0, 3)
                parts.append(self.const(tuple(shape), x.dtype))
            else:
                parts.append(other)
        order = permutation(draw, range(len(parts)))
        self.emit(op, [parts[i] for i in order], {"dim": dim})

    def where(self, x: _Value) -> None:
        draw = self.draw
        cond = draw(bool_arrays(choose(draw, broadcastable_shapes(x.shape))))
        other: _Value | Const | None = self.pick(where=lambda v: _broadcasts(v.shape, x.shape))
        if other is None or boolean(draw):
            other = self.const(choose(draw, broadcastable_shapes(x.shape)), x.dtype)
        args = [x, other] if boolean(draw) else [other, x]
        self.emit("where", args, {"cond": cond})

    # --- modules and losses, as users write them ----------------------------------------
    def vector_or_matrix(self, x: _Value, *, nonempty: bool = False) -> _Value | None:
        """A 1-D or 2-D pool value (``x`` itself if it is one), else ``x`` flattened; None
        when ``nonempty`` asks for at least one element and the choice has none."""
        def fits(v: _Value) -> bool:
            return len(v.shape) in (1, 2) and (not nonempty or int(np.prod(v.shape)) > 0)
        chosen = x if fits(x) else self.pick(where=fits)
        if chosen is None and self.can("reshape"):
            chosen = self.emit("reshape", [x], {"shape": (-1,)}, positive=x.positive)
        if chosen is None:
            return None
        return chosen if fits(chosen) else None

    def linear(self, x: _Value) -> None:
        """``F.linear(x, weight[, bias])`` with weight (out, in) and bias (out,) as nn.Linear
        holds them: params of fitting shape and dtype when the pool has them, else constants."""
        draw = self.draw

        def takes(v: _Value, weight: _Value) -> bool:
            return len(v.shape) in (1, 2) and v.shape[-1] == weight.shape[1] and v.dtype == weight.dtype

        def weight_param(v: _Value) -> bool:
            return (v.name in self.params and len(v.shape) == 2
                    and any(takes(u, v) for u in self.pool if u is not v))

        weight: _Value | Const | None = None
        if integer(draw, 0, 3) > 0:  # prefer a param, as nn.Linear holds one
            weight = self.pick(where=weight_param)
        if isinstance(weight, _Value):
            held = weight
            chosen = self.pick(where=lambda v: v is not held and takes(v, held))
            assert chosen is not None
            x, out = chosen, held.shape[0]
        else:
            flat = self.vector_or_matrix(x)
            if flat is None:
                return  # no 1-D or 2-D value, and no reshape to make one
            x = flat
            # out: the length of a 1-D param when there is one (to be the bias), else drawn
            bias_param = self.pick(where=lambda v: v.name in self.params and len(v.shape) == 1
                                   and v.shape[0] > 0 and v.dtype == flat.dtype)
            out = bias_param.shape[0] if bias_param is not None and boolean(draw) else (
                integer(draw, 1, 3))
            weight = self.const((out, x.shape[-1]), x.dtype)
        args: list[_Value | Const] = [x, weight]
        if boolean(draw):
            bias: _Value | Const | None = self.pick(
                where=lambda v: v.name in self.params and v.shape == (out,) and v.dtype == x.dtype
            )
            args.append(bias if bias is not None and integer(draw, 0, 3) > 0
                        else self.const((out,), x.dtype))
        self.emit("linear", args)

    def mse_loss(self, x: _Value) -> None:
        """``F.mse_loss`` of a value against a constant target of its shape (either way round),
        with the reduction left out or passed."""
        draw = self.draw
        target = self.const(x.shape, self.other_dtype(x.dtype))
        params = dict(choose(draw, LOSS_REDUCTIONS))
        self.emit("mse_loss", [x, target] if boolean(draw) else [target, x], params)

    def cross_entropy(self, x: _Value) -> None:
        """``F.cross_entropy`` of logits (N, C) with class indices (N,), or (C,) with a 0-dim
        class index: an int64 constant of valid classes, drawn."""
        draw = self.draw
        logits = self.vector_or_matrix(x, nonempty=True)
        if logits is None:
            return
        classes = logits.shape[-1]
        target = draw(class_indices(logits.shape[:-1], classes))
        params = {"target": target, **choose(draw, LOSS_REDUCTIONS)}
        self.emit("cross_entropy", [logits], params)

    # --- finishing -----------------------------------------------------------------------
    def finish_scalar(self) -> _Value:
        """Reduce every unconsumed value and add them up into the loss (with the ops the
        engine has: without ``add``, only the newest reduced value reaches the loss), of one
        of :data:`LOSS_SHAPES`."""
        draw = self.draw
        sinks = [value for value in self.pool if self.uses[value.name] == 0]
        reduced = [value for sink in sinks if (value := self.reduce_all(sink)) is not None]
        if not reduced:
            raise InvalidArgument(
                "a scalar loss needs sum, mean, max or min, and the engine has none of them")
        combine = next((op for op in ("add", "sub") if self.can(op)), None)
        total = reduced[-1]
        if combine is not None:
            total = reduced[0]
            for term in reduced[1:]:
                total = self.emit(combine, [total, term])
        if not self.can("reshape"):
            return self.rename_last(self.loss)
        final_shape = choose(draw, LOSS_SHAPES) if self.one_element_losses else ()
        return self.emit("reshape", [total], {"shape": final_shape}, name=self.loss)

    def finish_tensor(self) -> _Value:
        """The loss is the newest value, as it is (any shape), through a no-op view (or, for an
        engine without reshape, the newest node renamed)."""
        last = self.pool[-1]
        shape = last.shape
        if not self.one_element_losses and shape and math.prod(shape) == 1:
            shape = ()  # the engine's backward() takes a one-element loss only as 0-d
        if self.can("reshape"):
            return self.emit("reshape", [last], {"shape": shape}, name=self.loss)
        if not self.nodes or self.nodes[-1].out != last.name:
            raise InvalidArgument("a non-scalar loss needs at least one op, or reshape")
        return self.rename_last(self.loss)


def _broadcasts(a: Shape, b: Shape) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _reshape(draw: Draw, shape: Shape) -> tuple[int, ...]:
    size = int(np.prod(shape))
    options = [(-1,), (size,), (1, size), (size, 1), (1, -1), shape]
    if size >= 4 and size % 2 == 0:
        options += [(2, size // 2), (-1, 2)]
    return tuple(choose(draw, options))


LOSS_SHAPES: tuple[tuple[int, ...], ...] = ((),) * 30 + ((1,), (1, 1))
"""A scalar loss is 0-dim, and one time in 16 of shape (1,) or (1, 1), which torch's
``backward()`` accepts as a scalar too. Some engines reject those shapes, and a program makes
several losses: at 2 in 9 (before), 14% of drawn programs had one (4% now, 400 derandomized
``programs()``), up to a quarter of a loop property's, and a known deviation about it set aside
10% of all of tinygrad's programs. ``backward_errors::test_implicit_gradient_needs_a_scalar``
draws losses of any shape, 18% of them (1,) or (1, 1), and tests those shapes there."""


@st.composite
def forwards(
    draw: Draw,
    *,
    loss: str,
    params: Sequence[Param],
    ops: Collection[str] | None = None,
    dtypes: Sequence[np.dtype] | None = None,
    min_ops: int = 0,
    max_ops: int = 6,
    min_inputs: int = 1,
    scalar: bool = True,
    masks: bool = True,
    available: Collection[str] | None = None,
    positive_params: bool = False,
    one_element_losses: bool = True,
    scalar_bases: bool = True,
) -> GraphInfo:
    """A :class:`Forward` building ``loss`` from a drawn, non-empty subset of ``params``.

    ``ops`` limits the op set grown (default: all); ``available`` is every op the engine has
    (default: all), which the glue — positive operands, reducing into the loss, naming it —
    is limited to; ``scalar=False`` leaves the loss as the newest value, of any shape, for a
    backward with an explicit ``gradient``; ``masks=False`` keeps boolean masks out of
    indexing. ``positive_params``: a param whose values are all positive serves as a positive
    operand as it is (no ``abs(x) + c`` in front of log, sqrt, div and pow), for properties
    about one op alone; only where the forward runs on the params' initial values.
    ``one_element_losses=False``: no loss of shape (1,) or (1, 1) (a scalar one is 0-d; one of
    any shape that has one element is reshaped to 0-d), for an engine whose ``backward()``
    without a gradient takes 0-d losses only. ``scalar_bases=False``: no ``pow`` with a Python
    number as its base (``2.0 ** x``; a scalar pow is then ``x ** e``).
    """
    if not params:
        raise ValueError("forwards() needs at least one param")
    if min_ops < 0 or max_ops < min_ops:
        raise ValueError(f"need 0 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}")
    op_names = sorted(ALL_OPS if ops is None else ops)
    unknown = set(op_names) - ALL_OPS
    if unknown:
        raise ValueError(f"unknown ops {sorted(unknown)}; known: {sorted(ALL_OPS)}")
    dtype_list = list(dtypes) if dtypes is not None else sorted(
        {p.value.dtype for p in params}, key=str
    )
    chosen = subset(draw, params, min_size=max(1, min_inputs))
    inputs = [_Value(p.name, p.value.shape, p.value.dtype,
                     positive=positive_params and bool((p.value > 0).all()))
              for p in chosen]
    glue = ALL_OPS if available is None else frozenset(available)
    builder = _Builder(draw, loss, inputs, op_names, dtype_list, masks, glue, one_element_losses,
                       scalar_bases)
    if op_names:
        # A list, not a count and a loop: Hypothesis's lists run long (most graphs get near
        # max_ops ops, which is what makes saved tensors, views and ties common) and shrink
        # by deleting ops anywhere.
        for index in integers(draw, 0, len(op_names) - 1, min_size=min_ops, max_size=max_ops):
            op = op_names[index]
            builder.grow(op)
    result = builder.finish_scalar() if scalar else builder.finish_tensor()
    return GraphInfo(Forward(loss, tuple(builder.nodes)), result.shape, result.dtype)

