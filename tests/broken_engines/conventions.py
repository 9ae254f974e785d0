"""Gradient conventions at kinks, ties and singular points (torch-semantics.md §4), each broken
in one op's backward. The forward, and what the op saves, stay those of :mod:`.ops`."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .ops import Abs, Clamp, CustomOps, Max, MaxDim, Maximum, Relu, Sqrt, with_ops

Context = Any


class _Convention(CustomOps):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("conventions",)


# --- relu'(0) = 1 ----------------------------------------------------------------------------
class ReluPassesAtZero(Relu):
    @staticmethod
    def passes(x: torch.Tensor) -> torch.Tensor:
        return x >= 0


class ReluGradOneAtZero(_Convention):
    """relu's backward lets the gradient through at x = 0 (``x >= 0`` for ``x > 0``).

    A subgradient, so not "wrong" maths, but not torch's: TensorFlow Playground shipped
    ``x < 0 ? 0 : 1`` (github.com/tensorflow/playground/issues/19) and the old PyTorch tutorial
    zeroed only ``h < 0`` (github.com/pytorch/tutorials/pull/269). Only exact zeros see it.
    """

    name = "relu-grad-one-at-zero"
    catches_in = ("conventions::test_convention[relu]", "conventions")
    functions = with_ops(relu=ReluPassesAtZero)


# --- abs'(0) = 1 -----------------------------------------------------------------------------
class AbsSlopeOneAtZero(Abs):
    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.where(x >= 0, 1.0, -1.0).to(grad.dtype)


class AbsGradOneAtZero(_Convention):
    """abs's backward is ``where(x >= 0, 1, -1)`` instead of ``sign(x)``: abs'(0) = 1.

    The two-branch form of the derivative, as written from the piecewise definition; torch
    (``self.sgn()``), NumPy-based engines using ``np.sign`` and JAX all give 0 at 0.
    """

    name = "abs-grad-one-at-zero"
    catches_in = ("conventions::test_convention[abs]", "conventions")
    functions = with_ops(abs=AbsSlopeOneAtZero)


# --- clamp bounds exclusive ------------------------------------------------------------------
class ClampExclusive(Clamp):
    @staticmethod
    def inside(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
        passes = torch.ones_like(x, dtype=torch.bool)
        if low is not None:
            passes &= x > low
        if high is not None:
            passes &= x < high
        return passes


class ClampBoundsExclusive(_Convention):
    """clamp's backward treats its bounds as exclusive: clamp(-1, 1)'(±1) = 0, torch gives 1.

    PyTorch itself had this until 2018 (github.com/pytorch/pytorch/pull/7049, "clamp now has
    subgradient 1 at min and max", for issue #7002); a 2026 PR proposed going back
    (github.com/pytorch/pytorch/pull/185831) and was closed.
    """

    name = "clamp-bounds-exclusive"
    catches_in = ("conventions::test_convention[clamp]", "conventions")
    functions = with_ops(clamp=ClampExclusive)


# --- sqrt'(0) finite -------------------------------------------------------------------------
class SqrtWithEpsilon(Sqrt):
    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        (result,) = ctx.saved_tensors
        return grad / (2 * result + 1e-12)


class SqrtGradFiniteAtZero(_Convention):
    """sqrt's backward adds an epsilon "for stability": sqrt'(0) = 5e11 instead of inf.

    The epsilon is too small to matter anywhere else (relative error 1e-12), so only the
    convention at the singular point (torch-semantics.md §4: sqrt at 0 → inf) shows it.
    """

    name = "sqrt-grad-finite-at-zero"
    catches_in = ("conventions::test_convention[sqrt]", "conventions")
    functions = with_ops(sqrt=SqrtWithEpsilon)


# --- max ties: all to the first ------------------------------------------------------------
class MaxFirstWinner(Max):
    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        x, _ = ctx.saved_tensors
        first = torch.zeros(x.numel(), dtype=grad.dtype)
        first[x.reshape(-1).argmax()] = grad
        return first.reshape(x.shape)


class MaxTiesAllToFirst(_Convention):
    """Full ``x.max()`` sends the whole gradient to the first maximum (``argmax``).

    PyTorch did this before 1.7 and ONNX Runtime until 2022 (github.com/microsoft/onnxruntime
    /pull/11388: "PyTorch used this logic before 1.10 ... changed to distributed logic"). torch
    now splits ties evenly. Only ties show it: the convention test's tiny value pool makes them.
    """

    name = "max-ties-all-to-first"
    catches_in = ("conventions::test_convention[max]", "conventions")
    functions = with_ops(max=MaxFirstWinner)


# --- maximum ties: both sides get everything -------------------------------------------------
class MaximumBothWin(Maximum):
    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.saved_tensors
        return torch.where(x >= y, grad, 0.0), torch.where(y >= x, grad, 0.0)


class MaximumTiesDoubleCounted(_Convention):
    """``maximum(x, y)`` at a tie gives the full gradient to *both* inputs (masks ``x >= y`` and
    ``y >= x``), so a tie counts twice; torch gives each half.

    Each mask alone is the textbook derivative; together they overlap at ties. qeep's
    MinAlong/MaxAlong had the same "1 for every element equal to the max" backward
    (github.com/sahandsafizadeh/qeep/issues/101).
    """

    name = "maximum-ties-double-counted"
    catches_in = ("conventions::test_convention[maximum]", "conventions")
    functions = with_ops(maximum=MaximumBothWin)


# --- max(dim) ties split evenly --------------------------------------------------------------
class MaxDimShared(MaxDim):
    @staticmethod
    def forward(ctx: Context, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
        values = x.max(dim=dim, keepdim=True).values
        winners = x == values
        ctx.save_for_backward(winners)
        ctx.dim, ctx.keepdim = dim, keepdim
        return values if keepdim else values.squeeze(dim)

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (winners,) = ctx.saved_tensors
        if not ctx.keepdim:
            grad = grad.unsqueeze(ctx.dim)
        share = winners / winners.sum(dim=ctx.dim, keepdim=True)
        return grad * share, None, None


class MaxDimTiesSplit(_Convention):
    """``x.max(dim).values`` splits a tie evenly, reusing the full-``max`` rule; torch gives it
    all to the returned index (the first occurrence on CPU), like ``gather``.

    The mirror image of :class:`MaxTiesAllToFirst`: torch's two reductions deliberately differ
    (torch-semantics.md §4), and an engine that implements both with one helper gets one wrong.
    """

    name = "max-dim-ties-split"
    catches_in = ("conventions::test_convention[max_dim]", "conventions")
    functions = with_ops(max_dim=MaxDimShared)
