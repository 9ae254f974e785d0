"""Functional engines (``conformance.FunctionalEngine``): gradients from a ``vjp``, optimizer
steps that take gradients as input. The control is torch through its derived functional tier
(:class:`conformance.functional.Functionalized`); each broken engine changes one thing a
functional engine's author writes by hand: how a missing gradient enters a step, how an
optimizer's state starts.

They run the properties marked ``functional`` only (the rest are not applicable), so what
they show is that the functional tier catches optimizer bugs on drawn gradients and gradient
bugs through ``vjp``, not only the stateful one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.engines.torch_engines import TorchEngine
from conformance.functional import Functionalized

from .sgd import DampeningOnFirstStep


class FunctionalTorch(Functionalized):
    """CONTROL: torch through the functional protocol: each ``loss.backward()`` a vjp through
    fresh leaves, each ``step()`` on grads handed in (``p.grad = g`` or None, then
    ``opt.step()``), compared with the reference's functional tier."""

    name = "functional-torch"
    control: ClassVar[bool] = True
    catches_in: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__(TorchEngine())


class _ZeroFilled(Functionalized):
    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        filled = [self.engine.tensor(np.zeros_like(self.engine.to_numpy(p)), requires_grad=False)
                  if g is None else g for p, g in zip(params, grads, strict=True)]
        return super().optimizer_step(optimizer, params, filled)


class NoneGradStepsAsZero(_ZeroFilled):
    """A param without a gradient is stepped on a zero gradient instead of skipped: weight
    decay still shrinks it, momentum still decays its buffer, Adam counts its step.

    The shape of a functional port: JAX's optax takes a complete gradient tree, so code ported
    from torch fills the params a loss did not reach with ``zeros_like`` (optax's own
    ``MultiSteps`` accumulates zeros for them), and MLX's ``tree_map`` over a params tree needs
    a gradient leaf for every param. torch's optimizers skip ``p.grad is None``.
    """

    name = "none-grad-steps-as-zero"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("sgd::test_none_grads_are_skipped",
                                             "adam::test_none_grads_are_skipped")

    def __init__(self) -> None:
        super().__init__(TorchEngine())


class DampenedFirstMomentum(Functionalized):
    """SGD's momentum buffer starts at zero, so the first step is dampened: ``buf = (1 -
    dampening)·g`` where torch takes ``buf = g``, caught on drawn gradients.

    MLX's SGD had exactly this (fixed in github.com/ml-explore/mlx/pull/473); as a functional
    engine's optimizer state is an explicit tree, initialising it with zeros is the natural
    slip. Needs momentum and a non-zero dampening.
    """

    name = "functional-dampened-first-momentum"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("sgd::test_hyperparameter[dampening]", "sgd")

    def __init__(self) -> None:
        super().__init__(DampeningOnFirstStep())
