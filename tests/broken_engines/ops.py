"""Ops written as ``torch.autograd.Function``s: a forward and a hand-written backward each.

Each Function saves what torch's own node saves (a tensor exactly when torch's does, never a
leaf that torch does not save), so a second backward and an in-place change between backwards
behave as in torch (torch-semantics.md §1, §8). :class:`CustomOps` runs these correct versions
and is a control; the broken engines in ``conventions``, ``indexing`` and ``broadcasting``
replace one Function by a subclass with one wrong line in its backward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch.autograd import Function

from conformance.adapter import Capabilities
from conformance.engines.torch_engines import TorchEngine
from conformance.torchlike import _dim_kwargs, _torch_index

Context = Any  # torch.autograd.function.FunctionCtx


def _shape(value: Any) -> torch.Size | None:
    return value.shape if isinstance(value, torch.Tensor) else None


def sum_to_shape(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Undo broadcasting: sum the prepended dims, then the dims that were stretched from 1."""
    leading = grad.dim() - len(shape)
    if leading:
        grad = grad.sum(dim=tuple(range(leading)))
    stretched = tuple(d for d, size in enumerate(shape) if size == 1 and grad.shape[d] != 1)
    if stretched:
        grad = grad.sum(dim=stretched, keepdim=True)
    return grad


class Add(Function):
    """``a + b`` (either may be a Python float). Saves nothing, like torch's AddBackward0."""

    sign = 1.0

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> torch.Tensor:
        ctx.shapes = (_shape(a), _shape(b))
        return a + b

    @classmethod
    def backward(cls, ctx: Context, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # Like torch, hand both inputs the incoming buffer itself where no reduction is needed:
        # torch's grads-share-memory behaviour (its known deviation) depends on it.
        first, second = ctx.shapes
        other = grad if cls.sign == 1.0 else -grad
        return (None if first is None else cls.unbroadcast(grad, first),
                None if second is None else cls.unbroadcast(other, second))

    @staticmethod
    def unbroadcast(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return sum_to_shape(grad, shape)


class Sub(Add):
    """``a - b``. Saves nothing, like torch's SubBackward0."""

    sign = -1.0

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> torch.Tensor:
        ctx.shapes = (_shape(a), _shape(b))
        return a - b


class Relu(Function):
    """Saves the mask of where the gradient passes (an intermediate, never changed in place; torch
    saves the result): relu'(0) = 0, and NaN passes like in torch's ``threshold_backward``."""

    @classmethod
    def forward(cls, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(cls.passes(x))
        return x.relu()

    @staticmethod
    def passes(x: torch.Tensor) -> torch.Tensor:
        return ~(x <= 0)

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        (passes,) = ctx.saved_tensors
        return torch.where(passes, grad, 0.0)


class Abs(Function):
    """Saves x, like torch's AbsBackward0: abs'(x) = sign(x), so abs'(0) = 0."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.abs()

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * x.sign()


class Clamp(Function):
    """Saves x, like torch's ClampBackward1; the bounds are inclusive."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor, low: float | None, high: float | None) -> Any:
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return x.clamp(min=low, max=high)

    @classmethod
    def backward(cls, ctx: Context, grad: torch.Tensor) -> tuple[Any, None, None]:
        (x,) = ctx.saved_tensors
        return torch.where(cls.inside(x, ctx.low, ctx.high), grad, 0.0), None, None

    @staticmethod
    def inside(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
        passes = torch.ones_like(x, dtype=torch.bool)
        if low is not None:
            passes &= x >= low
        if high is not None:
            passes &= x <= high
        return passes


class Sqrt(Function):
    """Saves the result, like torch's SqrtBackward0: sqrt'(0) = inf."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor) -> torch.Tensor:
        result = x.sqrt()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        (result,) = ctx.saved_tensors
        return grad / (2 * result)


class Max(Function):
    """Full ``x.max()``; saves x and the result like torch's MaxBackward1. Ties share the
    gradient evenly (torch since 1.7; NaN picks the NaNs)."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor) -> torch.Tensor:
        result = x.max()
        ctx.save_for_backward(x, result)
        return result

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        x, result = ctx.saved_tensors
        winners = x.isnan() if result.isnan() else x == result
        return torch.zeros_like(x).masked_fill_(winners, grad / winners.sum())


class Maximum(Function):
    """``maximum(x, y)``; saves both like torch's MaximumBackward0; a tie gives each half."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        return torch.maximum(x, y)

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.saved_tensors
        shared = torch.where(x == y, grad / 2, grad)
        return shared.masked_fill(x < y, 0.0), shared.masked_fill(x > y, 0.0)


class MaxDim(Function):
    """``x.max(dim).values``; saves only the indices, like torch's MaxBackward0: a tie gives
    everything to the returned (first) index."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
        values, indices = x.max(dim=dim, keepdim=keepdim)
        ctx.save_for_backward(indices)
        ctx.shape, ctx.dim, ctx.keepdim = x.shape, dim, keepdim
        return values

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (indices,) = ctx.saved_tensors
        if not ctx.keepdim:
            grad, indices = grad.unsqueeze(ctx.dim), indices.unsqueeze(ctx.dim)
        zeros = torch.zeros(ctx.shape, dtype=grad.dtype)
        return zeros.scatter(ctx.dim, indices, grad), None, None


def _index_tensors(index: Any) -> list[torch.Tensor]:
    """The tensors of an advanced index (what torch's IndexBackward0 saves); a bare index is
    one part."""
    tensors = []
    for part in index if isinstance(index, tuple) else (index,):
        if isinstance(part, list):
            tensors.append(torch.tensor(part))
        elif isinstance(part, torch.Tensor):
            tensors.append(part)
    return tensors


def scatter_add(shape: torch.Size, dtype: torch.dtype, index: Any, grad: torch.Tensor) -> Any:
    """The dense gradient of ``x[index]``: zeros, with ``grad`` added where the index reached
    (duplicates summed), computed by differentiating torch's own indexing."""
    with torch.enable_grad():
        base = torch.zeros(shape, dtype=dtype, requires_grad=True)
        (dense,) = torch.autograd.grad(base[index], base, grad)
    return dense


class GetItem(Function):
    """``x[index]``. Basic indexing saves nothing and returns a view of ``x``, as torch's
    does: an op that saves the view then sees an in-place change of ``x`` (a step between two
    backwards raises). An advanced index copies and saves its index tensors (like torch's
    IndexBackward0), so only then does a second backward raise by itself."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor, index: tuple[Any, ...]) -> torch.Tensor:
        saved = _index_tensors(index)
        ctx.save_for_backward(*saved)
        ctx.advanced = bool(saved)
        ctx.shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        return x[index]

    @classmethod
    def backward(cls, ctx: Context, grad: torch.Tensor) -> tuple[Any, None]:
        if ctx.advanced:  # reading saved_tensors raises once freed, even if none was saved
            ctx.saved_tensors  # noqa: B018 -- raises after a backward without retain_graph
        return cls.index_backward(ctx.shape, ctx.dtype, ctx.index, grad), None

    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        return scatter_add(shape, dtype, index, grad)


def _apply_binary(fn: type[Function], a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    return fn.apply(a[0], a[1])


def _apply_unary(fn: type[Function], a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    return fn.apply(a[0])


def _apply_clamp(fn: type[Function], a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    return fn.apply(a[0], p.get("min"), p.get("max"))


def _apply_max_dim(fn: type[Function], a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    kwargs = _dim_kwargs(p)
    return fn.apply(a[0], kwargs["dim"], kwargs["keepdim"])


def _apply_getitem(fn: type[Function], a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    return fn.apply(a[0], _torch_index(torch, p["index"]))


_CALLS = {
    "add": _apply_binary,
    "sub": _apply_binary,
    "relu": _apply_unary,
    "abs": _apply_unary,
    "clamp": _apply_clamp,
    "sqrt": _apply_unary,
    "max": _apply_unary,  # the suite draws "max" without a dim only
    "maximum": _apply_binary,
    "max_dim": _apply_max_dim,
    "getitem": _apply_getitem,
}


CORRECT: Mapping[str, type[Function]] = MappingProxyType({
    "add": Add,
    "sub": Sub,
    "relu": Relu,
    "abs": Abs,
    "clamp": Clamp,
    "sqrt": Sqrt,
    "max": Max,
    "maximum": Maximum,
    "max_dim": MaxDim,
    "getitem": GetItem,
})


def with_ops(**replacements: type[Function]) -> Mapping[str, type[Function]]:
    """The correct Functions, with some ops' replaced: ``with_ops(relu=MyRelu)``."""
    unknown = set(replacements) - set(CORRECT)
    if unknown:
        raise ValueError(f"no hand-written Function for {sorted(unknown)}; "
                         f"known: {sorted(CORRECT)}")
    return MappingProxyType({**CORRECT, **replacements})


class CustomOps(TorchEngine):
    """CONTROL: torch with add, sub, relu, abs, clamp, sqrt, max, maximum, max(dim) and
    indexing replaced by the hand-written Functions above."""

    name = "custom-ops"
    control: ClassVar[bool] = True
    catches_in: ClassVar[tuple[str, ...]] = ()
    functions: ClassVar[Mapping[str, type[Function]]] = CORRECT
    # The Functions' backwards are first-order formulas (a mask times the grad): under
    # create_graph their grads carry other history than torch's own ops' do.
    capabilities: ClassVar[Capabilities] = Capabilities(unsupported={
        "create_graph": "the hand-written Functions' backwards are not written for create_graph"})

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        if op in self.functions:
            return _CALLS[op](self.functions[op], operands, params)
        return super().apply(op, operands, params)
