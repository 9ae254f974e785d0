"""PyTorch, with its three SGD implementations: single-tensor, foreach and fused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from conformance.adapter import KnownDeviation
from conformance.program import MakeSGD
from conformance.torchlike import TorchLikeEngine


def _grads_share_memory(program: Any, trace: Any) -> bool:
    return any(observation.aliased_grads for observation in trace)


GRADS_SHARE_MEMORY = KnownDeviation(
    property="accumulation::test_grads_are_separate_tensors",
    reason=(
        "when one dense gradient buffer reaches two leaves through backward functions that "
        "return views (reshape, unsqueeze, x[None], sum of a 0-dim tensor), AccumulateGrad "
        "'steals' both views, so the two params' .grad share memory: a later backward (or a "
        "user's in-place edit) into one grad changes the other"
    ),
    evidence="""\
import torch
a = torch.zeros((), requires_grad=True); b = torch.zeros((), requires_grad=True)
loss = a.sum() + b.sum()
loss.backward(retain_graph=True)
loss.backward()
print(a.grad, b.grad)  # tensor(3.) tensor(3.); two backwards of d(loss)/da = 1 give 2
a.grad.add_(10); print(b.grad)  # tensor(13.): b.grad is a view of the same buffer
""",
    applies=_grads_share_memory,
)


def _uses_nesterov(program: Any, trace: Any) -> bool:
    for instruction in program.instructions:
        if isinstance(instruction, MakeSGD):
            groups = [instruction.defaults, *(g.overrides for g in instruction.groups)]
            if any(group.get("nesterov") for group in groups):
                return True
    return False


FOREACH_NESTEROV_WRITES_GRAD = KnownDeviation(
    property="sgd::test_hyperparameter[nesterov]",
    reason=(
        "SGD(foreach=True, nesterov=True) adds momentum * buffer into p.grad in place (when "
        "weight_decay == 0 and not maximize, the foreach path updates the grads it was given), "
        "so after step() p.grad is g + momentum * buf instead of g; the param update itself "
        "matches, but every later accumulation starts from the corrupted grad"
    ),
    evidence="""\
import torch
for foreach in (False, True):
    p = torch.tensor([0.0, 1.0], requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True, foreach=foreach)
    p.sum().backward()
    opt.step()
    print(foreach, p.grad)  # False: tensor([1., 1.])   True: tensor([1.5000, 1.5000])
""",
    applies=_uses_nesterov,
)


class TorchEngine(TorchLikeEngine):
    """torch on the CPU, SGD's single-tensor loop (``foreach=False``)."""

    name = "torch"
    module: ClassVar[Any] = torch
    sgd_options: ClassVar[Mapping[str, Any]] = {"foreach": False}
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (GRADS_SHARE_MEMORY,)


class TorchForeachEngine(TorchEngine):
    """torch's multi-tensor SGD (``torch._foreach_*`` kernels)."""

    name = "torch-foreach"
    sgd_options: ClassVar[Mapping[str, Any]] = {"foreach": True}
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (
        GRADS_SHARE_MEMORY,
        FOREACH_NESTEROV_WRITES_GRAD,
    )


class TorchFusedEngine(TorchEngine):
    """torch's fused SGD kernel."""

    name = "torch-fused"
    sgd_options: ClassVar[Mapping[str, Any]] = {"fused": True}
