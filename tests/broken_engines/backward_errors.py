"""What ``backward()`` refuses (torch-semantics.md §2), broken in the engine's ``backward``."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import torch

from conformance.engines.torch_engines import TorchEngine


class _BackwardErrors(TorchEngine):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("backward_errors",)


class ImplicitOnesForNonScalar(_BackwardErrors):
    """``out.backward()`` on a non-scalar output seeds it with ones (as if ``out.sum()``)
    instead of raising "grad can be implicitly created only for scalar outputs".

    PaddlePaddle's ``Tensor.backward`` does exactly this (its ``grad_tensor`` defaults to ones
    of the output's shape) and MyGrad adopted it on purpose (github.com/rsokl/MyGrad/pull/337).
    """

    name = "implicit-ones-for-non-scalar"

    def backward(self, loss: Any, **arguments: Any) -> None:
        gradient = arguments.pop("gradient", None)
        seed = torch.ones_like(loss) if gradient is None else torch.tensor(gradient)
        loss.backward(seed, **arguments)


class BroadcastsGradientArgument(_BackwardErrors):
    """``out.backward(gradient=g)`` broadcasts a ``g`` whose shape differs but broadcasts to
    ``out``'s, instead of raising "Mismatch in shape".

    Seeding with ``np.broadcast_to(g, out.shape)`` is the one-line way to accept scalars and
    ``(1,)`` gradients; torch never broadcasts ``gradient``.
    """

    name = "broadcasts-gradient-argument"

    def backward(self, loss: Any, **arguments: Any) -> None:
        gradient = arguments.pop("gradient", None)
        seed = None if gradient is None else torch.tensor(gradient)
        if seed is not None and seed.shape != loss.shape:
            with contextlib.suppress(RuntimeError):  # not broadcastable: torch raises its error
                seed = seed.expand(loss.shape)
        loss.backward(seed, **arguments)


class ImplicitGradientOnlyForZeroDim(_BackwardErrors):
    """``out.backward()`` without a gradient is accepted only for 0-dim outputs; shapes (1,) and
    (1, 1), which torch accepts on the CPU, raise.

    tinygrad asserted ``self.shape == tuple()`` ("backward can only be called for scalar
    tensors", github.com/tinygrad/tinygrad/pull/5771), and PyTorch's CUDA path once disagreed
    with its CPU path about ``(1,)`` (github.com/pytorch/pytorch/issues/24027).
    """

    name = "implicit-gradient-only-for-zero-dim"

    def backward(self, loss: Any, **arguments: Any) -> None:
        if "gradient" not in arguments and loss.dim() != 0:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        super().backward(loss, **arguments)
