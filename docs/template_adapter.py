"""Template adapter for autograd-conformance (see docs/adapter-guide.md).

Copy this file into your own package, e.g. ``mypkg/adapter.py``, and run

    python -m conformance mypkg.adapter:MyEngine

As shipped it adapts torch itself, so it runs (and conforms) before you change anything.
Every place you are expected to change is marked ``CHANGE:``. The rule for every change:
translate the call into your engine's API; never emulate a behaviour your engine lacks and
never hide a divergence. Declare what it cannot express in ``capabilities``; list what it
does differently from torch in ``known_deviations``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from conformance import Capabilities, Diverges, ErrorKind, KnownDeviation, TorchLikeEngine
from conformance.torchlike import TORCH_ERROR_PATTERNS

# CHANGE: replace torch with your engine's module: the one with tensor(), optim.SGD, where,
# cat, stack, maximum and minimum (drop the torch import above if your engine does not need it).
MODULE = torch

# --- known deviations ----------------------------------------------------------------------------
# A deviation is something your engine *can* express but does differently from torch. It runs as
# a strict xfail: the named property must fail; if it starts passing, the run reports a "fixed
# deviation" and does not conform. So list only what you have seen fail, with a script that
# shows it on your engine.
#
# CHANGE: this one is torch's own (it is why the template conforms as-is). Delete it unless
# your engine shows the same aliasing; if it does not, the run reports it as a fixed deviation.


GRADS_SHARE_MEMORY = KnownDeviation(
    property="accumulation::test_grads_are_separate_tensors",
    reason="torch: when one gradient buffer reaches two leaves through views, their .grad "
    "share memory, so a later backward into one changes the other",
    evidence="""\
import torch
a = torch.zeros((), requires_grad=True); b = torch.zeros((), requires_grad=True)
loss = a.sum() + b.sum()
loss.backward(retain_graph=True)
loss.backward()
print(a.grad, b.grad)  # tensor(3.) tensor(3.), not tensor(2.) tensor(2.)
""",
    name="grads share memory",
    # How it shows: a run's first difference from the reference is which grads share memory
    # (perhaps with their values). Such runs are set aside in every other property, so those
    # keep checking everything else; the witness must fail, and in this way only.
    diverges=Diverges(fields=("aliasing", "grads"), involves=("aliasing",)),
)

# An example of a deviation that makes the engine *crash* (raise something classify() does not
# map, or die), scoped to the runs where it crashes at the optimizer's constructor.
#
# from conformance.program import MakeOptimizer
#
# NESTEROV_CRASH = KnownDeviation(
#     property=("sgd::test_hyperparameter[nesterov]", "sgd::test_param_groups"),
#     reason="SGD(nesterov=True) raises NotImplementedError in mytorch 0.3",
#     evidence="import mytorch\np = mytorch.zeros(2, requires_grad=True)\n"
#              "mytorch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)",
#     diverges=Diverges(at=(MakeOptimizer,), crash=True),
# )


class MyEngine(TorchLikeEngine):
    """CHANGE: one line on what this adapts (engine, device, which optimizer)."""

    # CHANGE: the engine's name. It heads the report and names the report files (NAME.json).
    name = "my-engine"
    module: ClassVar[Any] = MODULE

    # CHANGE: extra keyword arguments for module.optim.SGD, e.g. {"foreach": False}.
    sgd_options: ClassVar[Mapping[str, Any]] = {}

    # CHANGE: how your engine's exceptions map onto ErrorKind: (exception type, a substring of
    # its message, kind). The first match wins. An exception that matches nothing is an
    # EngineCrash: the property fails and prints a torch script of the program. Find each
    # message by triggering the error on your engine; keep the substrings specific.
    error_patterns: ClassVar[Sequence[tuple[type[Exception], str, ErrorKind]]] = (
        *TORCH_ERROR_PATTERNS,
        # (RuntimeError, "graph has been freed", ErrorKind.FREED_GRAPH),
    )

    # CHANGE: what your engine cannot express at all (see conformance.adapter.FEATURES). The
    # properties that need a feature are skipped with your reason, and the generated programs
    # of all other properties never use it.
    capabilities: ClassVar[Capabilities] = Capabilities(
        unsupported={
            # "index:bool_mask": "x[mask] raises NotImplementedError",
            # "hyper:dampening": "SGD has no dampening argument",
            # "zero_grad_keep": "zero_grad() always sets grads to None",
        }
    )

    # CHANGE: your engine's known deviations (see above); () if none.
    known_deviations: ClassVar[Sequence[KnownDeviation]] = (GRADS_SHARE_MEMORY,)

    def version(self) -> str:
        # CHANGE: anything that identifies the build under test (version, device, backend).
        return f"{self.module.__version__}"

    # --- the rest translates calls; TorchLikeEngine already does them the torch way ----------
    # Override a method only where your engine spells the call differently. Each override below
    # is the torch spelling, so the template behaves exactly like the base class.

    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        # A new leaf holding a copy of `value`, with the same dtype and shape.
        return self.module.tensor(value, requires_grad=requires_grad)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        # A copy of the values. Must not realize, detach in place, or otherwise change `tensor`.
        return np.array(tensor.detach().numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        # CHANGE: translate the ops your engine spells differently; see conformance.ops for each
        # op's torch spelling and conformance.torchlike.TORCH_LIKE_OPS for the default mapping.
        # if op == "amax":
        #     return operands[0].max(axis=params.get("dim"), keepdim=bool(params.get("keepdim")))
        return super().apply(op, operands, params)

    def grad(self, param: Any) -> Any | None:
        # The .grad object itself, never a copy: the suite checks that it stays the same object
        # across backward() and zero_grad(set_to_none=False). If your engine wraps .grad in a
        # new Python object at every access, override same_object() instead of copying here.
        return param.grad

    def shares_memory(self, first: Any, second: Any) -> bool:
        # Whether two params' grads share memory. Return False if your engine cannot tell.
        if first.numel() == 0 or second.numel() == 0:
            return False
        return bool(first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr())
