"""``optimizer.zero_grad()`` (torch-semantics.md §5), broken in the engine's optimizer.

The step is :class:`.sgd.HandSGD` (proven by its control); only ``zero_grad`` changes.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

import numpy as np
import torch

from .sgd import HandSGD, HandWrittenSGD


def _zero_in_place(grad: torch.Tensor) -> None:
    """What torch's ``set_to_none=False`` does to one grad."""
    if grad.grad_fn is not None:
        grad.detach_()
    else:
        grad.requires_grad_(False)
    grad.zero_()


class _ZeroGrad(HandWrittenSGD):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("zero_grad",)


class ZeroingSGD(HandSGD):
    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    _zero_in_place(p.grad)


class ZeroGradAlwaysZeroes(_ZeroGrad):
    """``zero_grad()`` always zeroes grads in place, whatever ``set_to_none`` says: the
    torch < 2.0 default baked in.

    torch changed the default to ``set_to_none=True`` in 2.0 (github.com/pytorch/pytorch/pull
    /92731, "BC-breaking"); DeepSpeed followed months later (github.com/deepspeedai/DeepSpeed
    /pull/4438). With zeros instead of None, a following ``step()`` still moves params under
    momentum or weight decay.
    """

    name = "zero-grad-always-zeroes"
    sgd_class = ZeroingSGD


class ReallocatingSGD(HandSGD):
    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = torch.zeros_like(p.grad)


class ZeroGradKeepAllocatesNewTensor(_ZeroGrad):
    """``zero_grad(set_to_none=False)`` assigns a fresh ``zeros_like`` instead of zeroing the grad
    in place: the values are right, but a reference held across the call (a gradient hook, a
    grad-norm tracker, a DDP bucket view) keeps the old gradient.

    Only the suite's grad-identity check can see it.
    """

    name = "zero-grad-keep-allocates-new-tensor"
    catches_in = ("zero_grad::test_zero_grad_keep_zeroes_in_place", "zero_grad")
    sgd_class = ReallocatingSGD


class ZeroGradTouchesEveryParameter(_ZeroGrad):
    """The engine's ``zero_grad`` clears every parameter the engine has created (its global
    parameter registry, like a module's ``parameters()``), not just the optimizer's: a param
    left out of the optimizer loses its gradient too.

    torch-semantics.md §5: "Only parameters held by the optimizer are touched." Needs a param
    outside the optimizer that has a grad when ``zero_grad`` runs.
    """

    name = "zero-grad-touches-every-parameter"

    def __init__(self) -> None:
        self.parameters: list[weakref.ref[torch.Tensor]] = []

    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        leaf = super().tensor(value, requires_grad=requires_grad)
        if requires_grad:
            self.parameters = [ref for ref in self.parameters if ref() is not None]
            self.parameters.append(weakref.ref(leaf))
        return leaf

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        for ref in self.parameters:
            p = ref()
            if p is None or p.grad is None:
                continue
            if arguments.get("set_to_none", True):
                p.grad = None
            else:
                _zero_in_place(p.grad)
