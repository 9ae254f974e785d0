"""Reducing a broadcast gradient back to an operand's shape, broken in ``add``'s backward."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from conformance.engines.torch_engines import TorchEngine

from .ops import Add, CustomOps, Sub, with_ops


def unbroadcast_averaging(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    leading = grad.dim() - len(shape)
    if leading:
        grad = grad.sum(dim=tuple(range(leading)))
    stretched = tuple(d for d, size in enumerate(shape) if size == 1 and grad.shape[d] != 1)
    if stretched:
        grad = grad.mean(dim=stretched, keepdim=True)  # the bug: sum, not mean
    return grad


class AddAveragingStretchedDims(Add):
    unbroadcast = staticmethod(unbroadcast_averaging)


class SubAveragingStretchedDims(Sub):
    unbroadcast = staticmethod(unbroadcast_averaging)


class BroadcastSizeOneDimsAveraged(CustomOps):
    """The ``unbroadcast`` of ``add`` and ``sub`` sums the prepended broadcast dims but
    *averages* the dims stretched from size 1 (``(3, 1) + (3, 4)``: the (3, 1) operand gets a
    quarter of its gradient).

    The prepended-dims loop and the size-1 loop are separate code paths in every hand-written
    ``unbroadcast`` and the second is the one that goes wrong (github.com/HomericIntelligence
    /Odyssey/pull/2080 fixed its size-1 loop; tt-metal's mul skipped it entirely,
    github.com/tenstorrent/tt-metal/issues/40008). Shapes stay right, so torch's own shape
    check does not help; a grad of an operand with a stretched size-1 dim is needed. The
    suite's random graphs rarely stretch a param (in the first catalogue run, 5012 examples
    until a training-loop property happened to), which is why ``test_broadcast_gradient``
    was added: it stretches both operands of every binary op on purpose.
    """

    name = "broadcast-size-one-dims-averaged"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("conventions::test_broadcast_gradient",)
    functions = with_ops(add=AddAveragingStretchedDims, sub=SubAveragingStretchedDims)


class _BiasGradAveragedOverBatch(torch.autograd.Function):
    """The identity on the bias, whose backward divides by the batch size: composed after the
    broadcast add's sum over the batch, the bias gets the *mean* of its rows' gradients."""

    @staticmethod
    def forward(ctx: Any, bias: torch.Tensor, batch: int) -> torch.Tensor:
        ctx.batch = batch
        return bias.view_as(bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad / ctx.batch, None  # the bug: db = dout.mean(0), not dout.sum(0)


class LinearBiasGradAveraged(TorchEngine):
    """``nn.Linear``'s bias gradient is the *mean* over the batch of the output gradient
    instead of its sum (``db = dout.mean(0)``); the weight gradient and the forward are right.

    The hand-written linear layers of educational engines and NumPy tutorials compute
    ``db = np.sum(dout, axis=0)``, and averaging there (mixing up the loss's ``mean`` reduction
    with the layer's backward) is the classic slip; it is invisible for a single sample (batch 1,
    or a 1-D input) and for ``sum``-reduced checks of a batch whose output gradient is zero,
    so it needs a batched input with a nonzero output gradient.
    """

    name = "linear-bias-grad-averaged"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("training_loops::test_minibatch_gradient_accumulation",
                                             "accumulation")

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        if op == "linear" and len(operands) == 3 and operands[0].dim() > 1:
            x, weight, bias = operands
            batch = math.prod(x.shape[:-1])
            return F.linear(x, weight) + _BiasGradAveragedOverBatch.apply(bias, batch)
        return super().apply(op, operands, params)
