"""Rounding that is biased: every result one ulp away from zero.

Two correctly rounded engines differ by rounding errors that point every which way and mostly
cancel; an engine whose errors all point the same way drifts, a little further with every op
and every step. After each instruction that stays far inside the tolerance (the reference
takes the engine's params after every step); only the comparison of the run's end with the
reference's run on its own sees it add up (``conformance.tolerance``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from conformance.engines.torch_engines import TorchEngine


def _outward(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` moved one ulp away from zero (zeros stay), its gradient passing straight
    through: the result a kernel rounding away from zero would have given."""
    value = tensor.detach()
    outward = torch.nextafter(value, torch.copysign(torch.full_like(value, torch.inf), value))
    return tensor + torch.where(value == 0, torch.zeros_like(value), outward - value)


class RoundsAwayFromZero(TorchEngine):
    """Every op's result and every param update is one ulp further from zero than torch's:
    kernels that round away from zero instead of to nearest.

    xboot/libonnx#20: with a rounding mode other than round-to-nearest left set by the caller
    (``fesetround(FE_UPWARD)``), the runtime's results changed until it set FE_TONEAREST
    itself; pytorch/FBGEMM#5648: its fp32-to-bf16 conversion rounded halves away from zero,
    differently per backend. One ulp per op, in the same direction: the smallest bias there is.
    """

    name = "rounds-away-from-zero"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("training_loops", "sgd", "adam")

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        result = super().apply(op, operands, params)
        floating = isinstance(result, torch.Tensor) and result.dtype.is_floating_point
        return _outward(result) if floating else result

    def step(self, optimizer: Any) -> None:
        super().step(optimizer)
        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.copy_(_outward(param))

    def update(self, param: Any, form: str, scalar: float) -> Any:
        result = super().update(param, form, scalar)
        with torch.no_grad():
            param.copy_(_outward(param))
        return result
