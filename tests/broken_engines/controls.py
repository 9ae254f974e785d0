"""Controls: correct engines built differently, which the suite must pass.

The others live next to the engines they anchor: :class:`.accumulation.HandAccumulation`,
:class:`.ops.CustomOps`, :class:`.sgd.HandWrittenSGD`. A broken engine differs from its
family's control by one overridden method, so when the control passes and the broken engine
fails, the bug — not the scaffolding — is what the suite caught.

torch's multi-tensor SGD (``foreach=True``), which rounds differently from the single-tensor
loop, was a control here too; it is the built-in ``torch-foreach`` engine, which CI runs on
its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from conformance.engines.reference_engine import ReferenceEngine


class ReferenceViaFunctions(ReferenceEngine):
    """CONTROL: the reference engine driven through its functional API and an explicit
    parameter loop for ``zero_grad`` — a different adapter path to the same engine.

    ``reference.add(a, b)`` instead of ``a + b`` (when both are tensors), ``reference.relu(x)``
    instead of ``x.relu()``, ``param_groups`` walked by hand instead of ``opt.zero_grad()``:
    the suite must not depend on which spelling an adapter uses.
    """

    name = "reference-via-functions"
    control: ClassVar[bool] = True
    catches_in: ClassVar[tuple[str, ...]] = ()
    FUNCTIONAL: ClassVar[tuple[str, ...]] = (
        "add", "sub", "mul", "div", "matmul", "neg", "exp", "log", "sqrt", "tanh", "sigmoid",
        "relu", "abs",
    )

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        tensors = all(isinstance(operand, self.module.Tensor) for operand in operands)
        if op in self.FUNCTIONAL and tensors:
            return getattr(self.module, op)(*operands)
        return super().apply(op, operands, params)

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        if not arguments.get("set_to_none", True):
            optimizer.zero_grad(**arguments)
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
