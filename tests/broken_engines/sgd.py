"""``SGD.step()`` (torch-semantics.md §6), written by hand and then broken one line at a time.

:class:`HandSGD` is §6 as a plain per-parameter loop on top of ``torch.optim.Optimizer`` (which
brings param groups, ``state``, ``zero_grad`` and the param-list checks). Its engine,
:class:`HandWrittenSGD`, is a control; every other engine swaps in a subclass that overrides
one small method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from conformance.adapter import HYPERPARAMETERS
from conformance.engines.torch_engines import TorchEngine


class HandSGD(torch.optim.Optimizer):
    """torch.optim.SGD from its documented algorithm, one parameter at a time."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.001,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        self.validate(lr=lr, momentum=momentum, dampening=dampening,
                      weight_decay=weight_decay, nesterov=nesterov)
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    @staticmethod
    def validate(*, lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            # SGD's own keys: torch's load_state_dict adds "differentiable" to the defaults,
            # not to the loaded groups
            hyper = {key: self.hyper(index, key) for key in HYPERPARAMETERS}
            for position, p in enumerate(group["params"]):
                grad = self.gradient(p)
                if grad is None:
                    continue
                self.update(p, grad, self.state_of(p, position), hyper)
        return loss

    # --- the pieces a broken engine overrides --------------------------------------------
    def hyper(self, group: int, key: str) -> Any:
        return self.param_groups[group][key]

    def gradient(self, p: torch.Tensor) -> torch.Tensor | None:
        return p.grad

    def state_of(self, p: torch.Tensor, position: int) -> dict[str, Any]:
        return self.state[p]

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
               hyper: Mapping[str, Any]) -> None:
        g = -grad if hyper["maximize"] else grad
        g = self.decayed(g, p, hyper)
        g = self.with_momentum(g, state, hyper)
        p.add_(g, alpha=-hyper["lr"])

    def decayed(self, g: torch.Tensor, p: torch.Tensor, hyper: Mapping[str, Any]) -> torch.Tensor:
        if hyper["weight_decay"] != 0:
            g = g.add(p, alpha=hyper["weight_decay"])
        return g

    def with_momentum(self, g: torch.Tensor, state: dict[str, Any],
                      hyper: Mapping[str, Any]) -> torch.Tensor:
        momentum = hyper["momentum"]
        if momentum == 0:
            return g
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.clone(g).detach()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - hyper["dampening"])
        return g.add(buf, alpha=momentum) if hyper["nesterov"] else buf


class HandWrittenSGD(TorchEngine):
    """CONTROL: torch with its SGD replaced by :class:`HandSGD`."""

    name = "hand-written-sgd"
    control: ClassVar[bool] = True
    catches_in: ClassVar[tuple[str, ...]] = ()
    sgd_class: ClassVar[type[torch.optim.Optimizer]] = HandSGD
    """The optimizer class ``SGD(...)`` builds (each broken engine names its own)."""
    # Only its optimizer is not torch's: the properties that construct none run torch's
    # autograd on the draws of torch's own run (CI's README command), so they are left out.
    suite_options: ClassVar[tuple[str, ...]] = ("-m", "optimizer")

    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        return self.sgd_class([dict(group) for group in groups], **defaults)


class _BrokenSGD(HandWrittenSGD):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("sgd",)


# --- dampening on the first momentum step ----------------------------------------------------
class DampenedFirstBuffer(HandSGD):
    def with_momentum(self, g: torch.Tensor, state: dict[str, Any],
                      hyper: Mapping[str, Any]) -> torch.Tensor:
        if hyper["momentum"] != 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(g)  # so the first buf = (1 - d)·g
        return super().with_momentum(g, state, hyper)


class DampeningOnFirstStep(_BrokenSGD):
    """The momentum buffer starts at zero, so the first step is dampened too:
    ``buf = (1 - dampening)·g`` where torch takes ``buf = g``.

    Exactly MLX's SGD before github.com/ml-explore/mlx/pull/473 ("when we are in the first round
    of iteration where v is zero, we should update v to gradient instead of
    (1-dampening) * gradient"); PyTorch documented its choice only in 2025
    (github.com/pytorch/pytorch/pull/152833). Needs momentum and a non-zero dampening.
    """

    name = "dampening-on-first-step"
    sgd_class = DampenedFirstBuffer


# --- nesterov with the stale buffer ----------------------------------------------------------
class StaleNesterov(HandSGD):
    def with_momentum(self, g: torch.Tensor, state: dict[str, Any],
                      hyper: Mapping[str, Any]) -> torch.Tensor:
        if not hyper["nesterov"] or "momentum_buffer" not in state:
            return super().with_momentum(g, state, hyper)
        previous = state["momentum_buffer"].clone()
        super().with_momentum(g, state, hyper)
        return g.add(previous, alpha=hyper["momentum"])


class NesterovUsesStaleBuffer(_BrokenSGD):
    """Nesterov's look-ahead uses the momentum buffer from *before* this step's update:
    ``g + momentum·buf_old`` instead of ``g + momentum·buf_new``.

    The first step is right (the buffer is a copy of g either way), so it takes nesterov and at
    least two steps to show. MLX's first Nesterov PR got the order wrong too
    (github.com/ml-explore/mlx/pull/87: "This doesn't look like the PyTorch version to me").
    """

    name = "nesterov-uses-stale-buffer"
    sgd_class = StaleNesterov


# --- weight decay after momentum -------------------------------------------------------------
class DecayAfterMomentum(HandSGD):
    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
               hyper: Mapping[str, Any]) -> None:
        g = -grad if hyper["maximize"] else grad
        g = self.with_momentum(g, state, hyper)
        g = self.decayed(g, p, hyper)
        p.add_(g, alpha=-hyper["lr"])


class WeightDecayAfterMomentum(_BrokenSGD):
    """Weight decay is added to the update after the momentum buffer instead of to the gradient
    before it, so the decay term never enters the buffer (a half-decoupled, AdamW-like SGD).

    MLX's SGD had the two in the other order until github.com/ml-explore/mlx/pull/473 ("We
    should first adjust gradients regarding to weight decay then do momentum"). Needs both
    weight_decay and momentum, and a second step.
    """

    name = "weight-decay-after-momentum"
    sgd_class = DecayAfterMomentum


# --- weight decay written into p.grad --------------------------------------------------------
class DecayInPlace(HandSGD):
    def decayed(self, g: torch.Tensor, p: torch.Tensor, hyper: Mapping[str, Any]) -> torch.Tensor:
        if hyper["weight_decay"] != 0:
            g = g.add_(p, alpha=hyper["weight_decay"])  # saves an allocation...
        return g


class WeightDecayWrittenIntoGrad(_BrokenSGD):
    """Weight decay is added *in place* to the gradient, which without ``maximize`` is ``p.grad``
    itself: after ``step()`` the user sees ``p.grad + weight_decay·p``, and the next step
    (without zero_grad) decays again.

    torch-semantics.md §6 step 2: "out of place: p.grad is never modified". The in-place form
    is the obvious micro-optimisation; with ``maximize`` the negated copy hides it.
    """

    name = "weight-decay-written-into-grad"
    sgd_class = DecayInPlace


# --- maximize flips only the final update ----------------------------------------------------
class MaximizeAtTheEnd(HandSGD):
    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
               hyper: Mapping[str, Any]) -> None:
        g = self.decayed(grad, p, hyper)
        g = self.with_momentum(g, state, hyper)
        p.add_(g, alpha=hyper["lr"] if hyper["maximize"] else -hyper["lr"])


class MaximizeNegatesOnlyTheUpdate(_BrokenSGD):
    """``maximize`` flips the sign of the final update instead of the gradient, so the momentum
    buffer holds ``+grad`` and — the visible part — weight decay pushes ``p`` *away* from zero.

    Without weight decay the two are algebraically equal (the buffer just changes sign), which
    is why it survives simple tests; kozistr/pytorch_optimizer#528 is the same family (maximize
    applied at the wrong point leaves "a subtly wrong update" once weight decay is on).
    """

    name = "maximize-negates-only-the-update"
    sgd_class = MaximizeAtTheEnd


# --- a None grad stepped as zeros ------------------------------------------------------------
class NoneAsZeros(HandSGD):
    def gradient(self, p: torch.Tensor) -> torch.Tensor | None:
        return torch.zeros_like(p) if p.grad is None else p.grad


class NoneGradSteppedAsZeros(_BrokenSGD):
    """A parameter whose ``.grad`` is None is stepped with a zero gradient instead of skipped:
    its momentum buffer keeps pushing it (and decays), weight decay shrinks it.

    Engines that allocate ``.grad`` eagerly as zeros (micrograd's ``grad = 0``, Keras variables)
    cannot even express "no gradient". Needs momentum or weight decay, a step after
    ``zero_grad()`` (or a param no loss reached).
    """

    name = "none-grad-stepped-as-zeros"
    sgd_class = NoneAsZeros
    catches_in = ("sgd", "laws")


# --- momentum state shared across groups -----------------------------------------------------
class StateByPosition(HandSGD):
    def state_of(self, p: torch.Tensor, position: int) -> dict[str, Any]:
        return self.state[position]  # type: ignore[index]


class MomentumSharedAcrossGroups(_BrokenSGD):
    """Momentum buffers are kept per *position within the group* (``self.buffers[i]``), so the
    i-th parameters of two groups share one buffer (or crash on a shape mismatch).

    A per-list state layout written for one group; ``param_groups`` came later. Only two param
    groups with momentum show it.
    """

    name = "momentum-shared-across-groups"
    catches_in = ("sgd::test_param_groups", "sgd")
    crashes = True  # buffers of different shapes meet
    sgd_class = StateByPosition


# --- group hyperparameters ignored -----------------------------------------------------------
class DefaultsOnly(HandSGD):
    def hyper(self, group: int, key: str) -> Any:
        return self.defaults[key]


class GroupHyperparametersIgnored(_BrokenSGD):
    """``step()`` reads the constructor's defaults (``self.defaults``), not each group's values,
    so per-group overrides and ``param_groups[i][key] = ...`` both do nothing.

    kozistr/pytorch_optimizer#517: an optimizer that "accepts weight_decay, validates it and
    stores it in defaults, but never applies it" is the same disconnect between what is stored
    and what ``step`` reads. Needs a group that overrides a default.
    """

    name = "group-hyperparameters-ignored"
    catches_in = ("sgd::test_param_groups", "sgd")
    sgd_class = DefaultsOnly


# --- lr read once ----------------------------------------------------------------------------
class LrFrozen(HandSGD):
    def __init__(self, params: Iterable[Any], **options: Any) -> None:
        super().__init__(params, **options)
        self.lrs = [group["lr"] for group in self.param_groups]

    def hyper(self, group: int, key: str) -> Any:
        return self.lrs[group] if key == "lr" else super().hyper(group, key)


class LrReadOnceAtConstruction(_BrokenSGD):
    """Each group's learning rate is copied at construction, so a later
    ``param_groups[i]["lr"] = ...`` (what every LR scheduler does) is ignored.

    The other hyperparameters are read per step, so only a change of lr between steps shows it.
    """

    name = "lr-read-once-at-construction"
    catches_in = ("sgd::test_hyperparameter_changes_between_steps", "sgd")
    sgd_class = LrFrozen


# --- validation ------------------------------------------------------------------------------
class NoNesterovCheck(HandSGD):
    @staticmethod
    def validate(*, lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool) -> None:
        HandSGD.validate(lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=False)


class NesterovNotValidated(_BrokenSGD):
    """The constructor forgets the rule "Nesterov momentum requires a momentum and zero
    dampening", so ``SGD(nesterov=True)`` with momentum 0 or a dampening is accepted (and then
    behaves as plain or dampened momentum SGD)."""

    name = "nesterov-not-validated"
    catches_in = ("sgd::test_invalid_hyperparameters_raise", "sgd")
    sgd_class = NoNesterovCheck


class ZeroLrRejected(HandSGD):
    @staticmethod
    def validate(*, lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool) -> None:
        if lr <= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        HandSGD.validate(lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)


class ZeroLearningRateRejected(_BrokenSGD):
    """The constructor rejects ``lr=0`` (``lr <= 0``), which torch accepts (freezing a group with
    lr 0 is a common trick, e.g. for warm-up or fine-tuning)."""

    name = "zero-learning-rate-rejected"
    sgd_class = ZeroLrRejected
