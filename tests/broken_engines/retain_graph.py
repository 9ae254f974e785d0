"""When a second backward raises (torch-semantics.md §1), broken in the engine's ``backward``.

torch frees a node's saved tensors when a backward without ``retain_graph`` runs it, and a later
backward raises only on reaching a node whose saved tensors are gone, after accumulating into
the leaves of branches that ran first. Each engine here gets one part of that wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch.autograd import Function

from conformance.engines.torch_engines import TorchEngine

from .ops import Context, CustomOps, with_ops

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed)."
)


class _RetainGraph(TorchEngine):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("retain_graph",)


class NeverFreesGraph(_RetainGraph):
    """Saved tensors are never freed: ``retain_graph`` is ignored and a second backward through
    anything always succeeds (and accumulates again).

    What every tape that is plain Python objects does: micrograd, tinygrad's old
    ``Function.backward`` tape, and MyGrad keep the graph until it is garbage-collected.
    """

    name = "never-frees-graph"

    def backward(self, loss: Any, **arguments: Any) -> None:
        super().backward(loss, **{**arguments, "retain_graph": True})


class FreesEveryGraph(_RetainGraph):
    """After a backward without ``retain_graph`` the whole graph is released, so any later
    backward from the same output raises, even through ``x + y`` or ``x.sum()``, which save
    nothing and which torch runs again happily.

    TensorFlow's non-persistent ``GradientTape`` works this way ("A non-persistent GradientTape
    can only be used to compute one set of gradients"), and so does an engine that clears its
    tape instead of the saved tensors.
    """

    name = "frees-every-graph"

    def __init__(self) -> None:
        self._released: list[Any] = []  # graph roots; grad_fn objects cannot be weakly referenced

    def backward(self, loss: Any, **arguments: Any) -> None:
        root = loss.grad_fn
        if root is not None and any(root is released for released in self._released):
            raise RuntimeError(FREED_MESSAGE)
        super().backward(loss, **arguments)
        if not _retains(arguments) and root is not None:
            self._released.append(root)


def _retains(arguments: dict[str, Any]) -> bool:
    """Whether torch keeps the graph for these backward arguments (retain_graph, which
    defaults to create_graph)."""
    retain = arguments.get("retain_graph")
    return bool(arguments.get("create_graph", False) if retain is None else retain)


def _nodes(root: Any) -> Iterator[Any]:
    """Every node reachable from ``root``, each once."""
    seen: list[Any] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or any(node is other for other in seen):
            continue
        seen.append(node)
        yield node
        stack.extend(next_node for next_node, _ in node.next_functions)


def _saves_a_tensor(node: Any) -> bool:
    for name in dir(node):
        if name.startswith("_saved_"):
            saved = getattr(node, name)
            items = saved if isinstance(saved, (list, tuple)) else [saved]
            if any(isinstance(item, torch.Tensor) for item in items):
                return True
    return False


class RaisesAfterAccumulating(_RetainGraph):
    """The freed-graph check runs *after* the backward walk: a second backward through a freed
    graph accumulates every contribution into the leaves and only then raises.

    Raising is right, but torch raises on reaching the first node whose saved tensors are gone,
    before that node's inputs get anything, so on a single-path graph the grads stay unchanged
    (torch-semantics.md §1, "What a failed second backward leaves behind"). An engine that
    validates in a separate pass, or keeps the buffers and only marks them, ends up here.
    """

    name = "raises-after-accumulating"

    def backward(self, loss: Any, **arguments: Any) -> None:
        saving = [node for node in _nodes(loss.grad_fn) if _saves_a_tensor(node)]
        super().backward(loss, **{**arguments, "retain_graph": True})
        if any(node.metadata.get("released") for node in saving):
            raise RuntimeError(FREED_MESSAGE)
        if not _retains(arguments):
            for node in saving:
                node.metadata["released"] = True


class SqrtOnContext(Function):
    """sqrt with its result kept on ``ctx``, not saved: nothing for a backward to free."""

    @staticmethod
    def forward(ctx: Context, x: torch.Tensor) -> torch.Tensor:
        result = x.sqrt()
        ctx.result = result.detach()
        return result

    @staticmethod
    def backward(ctx: Context, grad: torch.Tensor) -> torch.Tensor:
        return grad / (2 * ctx.result)


class SqrtKeepsResultUnsaved(CustomOps):
    """``sqrt`` keeps its result on the context object instead of saving it for backward, so
    a backward without ``retain_graph`` frees nothing of it and a second backward through
    ``sqrt`` alone succeeds (and accumulates again), where torch raises.

    torch's docs warn that a custom Function must use ``save_for_backward`` ("storing tensors
    directly on ctx ... are not checked for in-place modification or freeing"; pytorch/pytorch
    #31536), and tapes of plain Python objects (micrograd) keep every value alive. Caught only
    where sqrt stands alone: behind ``abs(x) + c`` (abs saves its input) the second backward
    raised at abs anyway, so the old generator could not see it.
    """

    name = "sqrt-keeps-result-unsaved"
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("retain_graph::test_each_op_frees_like_torch[sqrt]",)
    functions: ClassVar[Mapping[str, type[Function]]] = with_ops(sqrt=SqrtOnContext)
