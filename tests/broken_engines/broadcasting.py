"""Reducing a broadcast gradient back to an operand's shape, broken in ``add``'s backward."""

from __future__ import annotations

from typing import ClassVar

import torch

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
