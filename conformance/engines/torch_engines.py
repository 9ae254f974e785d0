"""PyTorch, with its three SGD implementations: single-tensor, foreach and fused."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from conformance.adapter import Diverges, KnownDeviation
from conformance.errors import ErrorKind
from conformance.program import Backward, Step
from conformance.torchlike import TorchLikeEngine

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
    name="grads share memory",
    # Not local: which grads share memory is observed, not whether they overlap
    # (compare.LOCAL_FIELDS), so the reference cannot take it and go on
    diverges=Diverges(fields=("aliasing", "grads"), involves=("aliasing",)),
)


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
    name="foreach nesterov writes p.grad",
    diverges=Diverges(at=(Step,), fields=("grads",)),
    local=True,  # the reference takes the written grads, and later accumulation is checked
)


FUSED_LATE_MOMENTUM_BUFFER = KnownDeviation(
    # sgd::test_hyperparameter[momentum] was its witness while that property's steps came
    # from losses over drawn subsets of params; on drawn grads every param there has a grad
    # from the first step, and a late first grad is the none-grads property's to draw
    property="sgd::test_none_grads_are_skipped",
    reason=(
        "SGD(fused=True, momentum>0) raises TypeError ('expected Tensor as element 1 in argument "
        "2, but got NoneType') at step() when a param gets its first grad after other params of "
        "its group already have momentum buffers, and the params before it are already stepped; "
        "the single-tensor loop creates the late param's buffer from its grad"
    ),
    evidence="""\
import torch
p0 = torch.tensor(0.0, requires_grad=True); p1 = torch.tensor(0.0, requires_grad=True)
opt = torch.optim.SGD([p0, p1], lr=0.1, momentum=0.9, fused=True)
p0.sum().backward(); opt.step(); opt.zero_grad()   # only p0 has a grad, and a buffer
(p0.sum() + p1.abs().sum()).backward()
opt.step()   # TypeError: expected Tensor as element 1 in argument 2, but got NoneType
# foreach=False: p0 = -0.29, p1 = 0.0 (abs'(0) = 0, so p1's first buffer is 0)
""",
    name="fused momentum crashes on a late first grad",
    diverges=Diverges(at=(Step,), crash=True),
)


FUSED_STEP_KEEPS_VERSION = KnownDeviation(
    property="retain_graph::test_step_between_backwards",
    reason=(
        "SGD(fused=True).step() updates params without bumping their version counter, so a "
        "backward through a graph retained from before the step silently uses the stepped "
        "values where the single-tensor loop raises 'one of the variables needed for gradient "
        "computation has been modified by an inplace operation'"
    ),
    evidence="""\
import torch
p0 = torch.tensor(0.5, requires_grad=True)
opt = torch.optim.SGD([p0], lr=0.1, fused=True)
loss = p0.abs().sum()              # abs saves p0
loss.backward(retain_graph=True)
opt.step()
print(p0._version)                 # 0; foreach=False: 1
loss.backward()                    # no error, p0.grad == 2.0; foreach=False: RuntimeError
""",
    name="fused step bumps no version",
    # What the backward that went through then did to the grads is this finding too: their
    # values, and after backward(create_graph=True) a new grad object with history.
    diverges=Diverges(at=(Backward,), fields=("error", "grads", "grad identity", "grad history"),
                      engine_error=None, reference_error=ErrorKind.INPLACE_MODIFIED),
)


class TorchEngine(TorchLikeEngine):
    """torch on the CPU, SGD's single-tensor loop (``foreach=False``).

    torch is imported where the engine first runs something: the main process of an isolated
    run (the default) only reads the engine's name, capabilities and deviations, so it and
    each pytest-xdist worker spare an import of torch (about 1.3 s of CPU each)."""

    name = "torch"
    sgd_options: ClassVar[Mapping[str, Any]] = {"foreach": False}
    optimizer_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "adam": {"foreach": False}, "adamw": {"foreach": False}}
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (GRADS_SHARE_MEMORY,)

    @property  # TorchLikeEngine.module is a class attribute in the other torch-like engines
    def module(self) -> Any:
        import torch

        return torch

    def version(self) -> str:
        return importlib.metadata.version("torch")  # what torch.__version__ says, unimported


class TorchForeachEngine(TorchEngine):
    """torch's multi-tensor SGD (``torch._foreach_*`` kernels)."""

    name = "torch-foreach"
    sgd_options: ClassVar[Mapping[str, Any]] = {"foreach": True}
    optimizer_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "adam": {"foreach": True}, "adamw": {"foreach": True}}
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (
        GRADS_SHARE_MEMORY,
        FOREACH_NESTEROV_WRITES_GRAD,
    )


class TorchFusedEngine(TorchEngine):
    """torch's fused SGD kernel."""

    name = "torch-fused"
    sgd_options: ClassVar[Mapping[str, Any]] = {"fused": True}
    optimizer_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "adam": {"fused": True}, "adamw": {"fused": True}}
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (
        GRADS_SHARE_MEMORY,
        FUSED_LATE_MOMENTUM_BUFFER,
        FUSED_STEP_KEEPS_VERSION,
    )
