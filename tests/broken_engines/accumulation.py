"""Accumulation into ``.grad``: engines whose AccumulateGrad rule is written by hand.

Every leaf these engines create carries a hook that does the accumulation itself (the engine's
AccumulateGrad) and hands torch's own AccumulateGrad a zero tensor, which it adds in place and so
changes nothing. torch still schedules the nodes, so what a failing backward accumulated before
raising stays torch's (torch-semantics.md §1). :class:`HandAccumulation` follows §2 and is a
control; each other engine changes one line of :meth:`HandAccumulation.accumulate`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from conformance.adapter import Capabilities, KnownDeviation
from conformance.engines.torch_engines import TorchEngine


class HandAccumulation(TorchEngine):
    """CONTROL: torch-semantics.md §2 by hand: the first contribution is copied into a fresh
    ``.grad``; later ones are added in place, so a held ``.grad`` sees them."""

    name = "hand-accumulation"
    control: ClassVar[bool] = True
    catches_in: ClassVar[tuple[str, ...]] = ()
    # The first contribution is always copied, so torch's grads-share-memory deviation is gone.
    known_deviations: ClassVar[Sequence[KnownDeviation]] = ()
    # Its hooks add in place, under no_grad: the plain backward only. create_graph's
    # accumulation (out of place, with history) is not written by hand here.
    capabilities: ClassVar[Capabilities] = Capabilities(unsupported={
        "create_graph": "the hand-written accumulation implements the plain backward only"})

    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        leaf = super().tensor(value, requires_grad=requires_grad)
        if requires_grad:
            leaf_ref = weakref.ref(leaf)  # the hook lives on the leaf: no reference cycle

            def accumulate_grad(incoming: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    self.accumulate(leaf_ref(), incoming)
                return torch.zeros_like(incoming)

            leaf.register_hook(accumulate_grad)
        return leaf

    def accumulate(self, leaf: torch.Tensor, incoming: torch.Tensor) -> None:
        if leaf.grad is None:
            leaf.grad = incoming.clone(memory_format=torch.contiguous_format)
        else:
            leaf.grad.add_(incoming)


class OverwritesGrad(HandAccumulation):
    """Each backward *replaces* ``.grad`` instead of adding to it (``=`` for ``+=``).

    The classic first bug of a hand-written engine: micrograd's walk-through has exactly this
    mistake when a value is used twice, and ARENA's autograd exercise had no test for it
    (github.com/callummcdougall/ARENA_2.0/pull/18: "replace that code with
    ``grads[parent] = in_grad`` [and] all of the current tests pass").
    Visible only from the second backward on: one backward per leaf looks right.
    """

    name = "overwrites-grad"
    control = False
    catches_in = ("accumulation",)

    def accumulate(self, leaf: torch.Tensor, incoming: torch.Tensor) -> None:
        if leaf.grad is None:
            leaf.grad = incoming.clone(memory_format=torch.contiguous_format)
        else:
            leaf.grad.copy_(incoming)


class AccumulatesOutOfPlace(HandAccumulation):
    """``leaf.grad = leaf.grad + incoming``: the right values, but a new object each time.

    The natural way to write accumulation in a functional array library (NumPy, JAX), and what a
    *retained non-leaf* grad does in torch. Invisible to anyone who re-reads ``.grad``; a user
    (or an optimizer, or a gradient-clipping hook) holding the old grad object keeps stale values.
    Only the suite's grad-identity check can see it.
    """

    name = "accumulates-out-of-place"
    control = False
    catches_in = ("accumulation",)

    def accumulate(self, leaf: torch.Tensor, incoming: torch.Tensor) -> None:
        if leaf.grad is None:
            leaf.grad = incoming.clone(memory_format=torch.contiguous_format)
        else:
            leaf.grad = leaf.grad + incoming


class AliasesFirstContribution(HandAccumulation):
    """The first contribution becomes ``.grad`` without a copy (``incoming.contiguous()``,
    wrongly assumed to copy), so ``.grad`` can alias a buffer the backward pass shares.

    torch steals the incoming buffer only when nobody else holds it (``use_count`` check in
    AccumulateGrad) — and still gets it wrong for view-returning backwards, which the suite
    records as torch's known deviation ``accumulation::test_grads_are_separate_tensors``. An
    engine that always steals makes ``a.grad`` and ``b.grad`` one storage after
    ``(a + b).backward()`` too (add passes one buffer to both inputs), so a later backward that
    reaches only ``a`` also changes ``b.grad``. It declares no deviation: hiding its bug behind
    torch's would make it uncatchable by construction.
    """

    name = "aliases-first-contribution"
    control = False
    catches_in = ("accumulation", "training_loops")

    def accumulate(self, leaf: torch.Tensor, incoming: torch.Tensor) -> None:
        if leaf.grad is None:
            leaf.grad = incoming.contiguous()
        else:
            leaf.grad.add_(incoming)


class AccumulatesInFloat32(HandAccumulation):
    """Gradient buffers live in the engine's default dtype, float32, and are cast to the leaf's
    dtype when stored: a float64 leaf gets float32-rounded grads.

    torch-semantics.md §2: "The grad's dtype is the leaf's dtype; accumulation happens in that
    dtype." Engines with a global default float (tinygrad's ``dtypes.default_float``, MLX,
    JAX without ``jax_enable_x64``) silently compute in float32. Invisible for float32 leaves
    and for grads that are exact in float32 (sums of ones), so it needs a float64 param and a
    non-trivial graph.
    """

    name = "accumulates-in-float32"
    control = False
    catches_in = ("accumulation",)

    def accumulate(self, leaf: torch.Tensor, incoming: torch.Tensor) -> None:
        incoming32 = incoming.to(torch.float32)
        if leaf.grad is None:
            # a fresh contiguous copy, as the control's: .to() of a float32 incoming grad returns
            # it as it is, an expanded view a later copy_ cannot write into
            leaf.grad = incoming32.to(leaf.dtype).clone(memory_format=torch.contiguous_format)
        else:
            leaf.grad.copy_(leaf.grad.to(torch.float32) + incoming32)
