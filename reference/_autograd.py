"""Grad mode, saved tensors, graph nodes and the backward walker.

The walker reproduces the observable order of torch's engine (torch/csrc/autograd/engine.cpp):
a ready queue ordered by node creation number, newest first; a leaf's accumulation node
outranks every other node, so a leaf is written as soon as all its contributions are in;
contributions to one node are summed in the order their producers ran. Every gradient is
reduced to its input's shape and cast to its dtype once, here, as torch's
``validate_outputs`` does, so no op's derivative has to.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from reference._dtypes import legacy_type_name
from reference._numerics import sum_to

if TYPE_CHECKING:
    from reference._tensor import Tensor

ERR_BACKWARD_TWICE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward."
)

_Function = TypeVar("_Function", bound=Callable[..., Any])


# --------------------------------------------------------------------------- grad mode


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """Whether ops record a graph right now.

    >>> import reference
    >>> with reference.no_grad():
    ...     reference.is_grad_enabled()
    False
    """
    return _GradMode.enabled


class _GradModeContext:
    """Sets grad mode for a ``with`` block; an instance also decorates a function."""

    _mode: bool

    def __init__(self) -> None:
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(_GradMode.enabled)
        _GradMode.enabled = self._mode

    def __exit__(self, *exc_info: object) -> None:
        _GradMode.enabled = self._previous.pop()

    def __call__(self, function: _Function) -> _Function:
        @functools.wraps(function)
        def run_in_mode(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return run_in_mode  # type: ignore[return-value]


class _NoArgumentContext(_GradModeContext):
    """Also usable as a bare decorator (``@no_grad`` as well as ``@no_grad()``), like torch."""

    def __new__(cls, function: Callable[..., Any] | None = None) -> Any:
        if function is None:
            return super().__new__(cls)
        return cls()(function)


class no_grad(_NoArgumentContext):
    """Ops inside produce tensors that do not require grad; ``backward()`` still works.

    >>> import reference
    >>> w = reference.tensor([1.0], requires_grad=True)
    >>> with reference.no_grad():
    ...     (w * 2).requires_grad
    False
    """

    _mode = False


class enable_grad(_NoArgumentContext):
    """Turns graph recording back on inside a ``no_grad`` block (``step(closure)`` uses it)."""

    _mode = True


class set_grad_enabled(_GradModeContext):
    """Sets grad mode at construction, like torch; as a ``with`` block it restores on exit.

    >>> import reference
    >>> with reference.set_grad_enabled(False):
    ...     reference.is_grad_enabled()
    False
    """

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self._mode = mode
        self._at_construction = _GradMode.enabled
        _GradMode.enabled = mode

    def __enter__(self) -> None:
        self._previous.append(self._at_construction)
        _GradMode.enabled = self._mode


# --------------------------------------------------------------------------- saved tensors


class VersionCounter:
    """Counts in-place writes; shared by a tensor, its views and its ``detach()``es."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class SavedTensor:
    """A tensor kept for backward, with the version it had when saved.

    It keeps the storage and the version counter, not the Tensor, so that a node saving
    its own output does not form a reference cycle (torch saves outputs the same way).
    """

    __slots__ = ("_counter", "_data", "_producer", "_saved_version", "requires_grad")

    def __init__(
        self, tensor: Tensor, producer: str | None, *, requires_grad: bool | None = None
    ) -> None:
        self._data: np.ndarray | None = tensor._data
        self._counter = tensor._version_counter
        self._saved_version = tensor._version_counter.value
        # "output 0 of MulBackward0" for a non-leaf, as torch names it in the message.
        self._producer = producer
        # Whether a formula reading it computes, under create_graph, a grad that requires grad.
        self.requires_grad = tensor._requires_grad if requires_grad is None else requires_grad

    def unpack(self) -> np.ndarray:
        if self._data is None:
            raise RuntimeError(ERR_BACKWARD_TWICE)
        if self._counter.value != self._saved_version:
            raise RuntimeError(self._modified_message(self._data))
        return self._data

    def release(self) -> None:
        self._data = None

    def _modified_message(self, data: np.ndarray) -> str:
        shape = ", ".join(str(size) for size in data.shape)
        described = f"[{legacy_type_name(data.dtype)} [{shape}]]"
        if self._producer is not None:
            described += f", which is {self._producer},"
        return (
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: {described} is at version {self._counter.value}; expected "
            f"version {self._saved_version} instead. Hint: enable anomaly detection to find the "
            "operation that failed to compute its gradient, with "
            "torch.autograd.set_detect_anomaly(True, check_nan=False)."
        )


# --------------------------------------------------------------------------- nodes

_function_sequence = itertools.count()
# Accumulation nodes sort above every function node (torch gives them UINT64_MAX).
_accumulate_sequence = itertools.count(1 << 62)

InputMeta = tuple[tuple[int, ...], np.dtype]


class Node:
    """A vertex of the backward graph: one gradient in, one gradient per input out."""

    __slots__ = ("__weakref__", "input_meta", "next_nodes", "seq")

    seq: int
    next_nodes: tuple[Node | None, ...]
    input_meta: tuple[InputMeta, ...]

    def name(self) -> str:
        raise NotImplementedError

    def apply(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        raise NotImplementedError

    def grads_require_grad(self, incoming: bool) -> tuple[bool, ...]:
        """Under ``create_graph``: per next node, whether the grad passed to it requires grad,
        given whether the incoming grad does. A vector-Jacobian product is linear in the
        incoming grad, so by default each output of it requires grad iff that does."""
        return (incoming,) * len(self.next_nodes)

    def release(self) -> None:
        """Free what was saved for backward (after a backward without ``retain_graph``)."""

    def retain(self, grad: np.ndarray) -> None:
        """Store ``grad`` in a non-leaf's ``.grad`` if ``retain_grad()`` asked for it."""

    @property
    def next_functions(self) -> tuple[tuple[Node | None, int], ...]:
        return tuple((node, 0) for node in self.next_nodes)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"


class OpSpec(Protocol):
    """What a function node needs from its op's table entry."""

    @property
    def grad_fn_name(self) -> str: ...

    def vjp(self, node: FunctionNode, grad: np.ndarray) -> tuple[np.ndarray | None, ...]: ...

    def grads_require_grad(self, node: FunctionNode, incoming: bool) -> tuple[bool, ...]: ...


class FunctionNode(Node):
    """The backward of one op call: the op's entry, which inputs need grad, what was saved."""

    __slots__ = ("attrs", "compute_dtype", "needs", "op", "retained", "saved")

    def __init__(
        self,
        op: OpSpec,
        needs: tuple[bool, ...],
        next_nodes: tuple[Node | None, ...],
        input_meta: tuple[InputMeta, ...],
        compute_dtype: np.dtype,
    ) -> None:
        self.seq = next(_function_sequence)
        self.op = op
        self.needs = needs
        self.next_nodes = next_nodes
        self.input_meta = input_meta
        self.compute_dtype = compute_dtype
        self.saved: dict[str, SavedTensor | tuple[SavedTensor, ...]] = {}
        self.attrs: dict[str, Any] = {}
        self.retained: weakref.ref[Tensor] | None = None

    def name(self) -> str:
        return self.op.grad_fn_name

    def apply(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        return self.op.vjp(self, grad)

    def grads_require_grad(self, incoming: bool) -> tuple[bool, ...]:
        return self.op.grads_require_grad(self, incoming)

    def release(self) -> None:
        for saved in self.saved.values():
            for item in saved if isinstance(saved, tuple) else (saved,):
                item.release()

    def retain(self, grad: np.ndarray) -> None:
        """torch's retains_grad hook: the non-leaf's ``.grad`` is replaced, never added in place."""
        tensor = self.retained() if self.retained is not None else None
        if tensor is None:
            return
        if tensor._grad is None:
            tensor._grad = type(tensor)._wrap(np.array(grad, copy=True))
        else:
            tensor._grad = type(tensor)._wrap(np.asarray(tensor._grad._data + grad))


class AccumulateGrad(Node):
    """Writes the gradient that reaches a leaf into its ``.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable: Tensor) -> None:
        self.seq = next(_accumulate_sequence)
        self.variable = variable
        self.next_nodes = ()
        self.input_meta = ()

    def name(self) -> str:
        return "AccumulateGrad"

    def accumulate(
        self, grad: np.ndarray, in_place: bool = True, *, requires_grad: bool = False
    ) -> None:
        """Add ``grad`` into the leaf's ``.grad`` (torch's AccumulateGrad::accumulateGrad).

        ``in_place=False`` is ``create_graph=True`` (grad mode on during backward): the first
        grad is a copy and later ones a new sum, each carrying history (``requires_grad``)
        when ``grad`` does or, for a sum, the old grad did. In place (grad mode off) the grad
        keeps its object and its flags, even one that requires grad from an earlier
        create_graph backward (measured on torch 2.13)."""
        variable = self.variable
        existing = variable._grad
        if existing is None:
            # A fresh tensor: the incoming array may be shared with other branches or the user.
            variable._grad = type(variable)._wrap(np.array(grad, dtype=variable.dtype, copy=True))
            if requires_grad and not in_place:
                mark_history(variable._grad, "CopyBackwards")
        elif in_place:
            # So a reference the user holds to .grad sees the new value.
            existing._data += grad
            existing._version_counter.value += 1
        else:
            # create_graph=True: torch adds out of place, the sum being a new tensor.
            variable._grad = type(variable)._wrap(np.asarray(existing._data + grad))
            if requires_grad or existing._requires_grad:
                mark_history(variable._grad, "AddBackward0")


class GradHistory(Node):
    """The ``grad_fn`` of a gradient computed under ``create_graph=True`` from tensors that
    require grad: it makes the gradient a non-leaf that requires grad, as in torch, and
    carries no graph. Higher-order gradients are out of the reference's scope."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self.seq = next(_function_sequence)
        self.next_nodes = ()
        self.input_meta = ()
        self._name = name

    def name(self) -> str:
        return self._name

    def apply(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        raise NotImplementedError("higher-order gradients are out of the reference's scope")


def mark_history(tensor: Tensor, name: str) -> None:
    """Make ``tensor`` a non-leaf that requires grad, with a :class:`GradHistory`."""
    tensor._requires_grad = True
    tensor.grad_fn = GradHistory(name)


class GraphRoot(Node):
    """The start of a backward pass from several outputs, handing each its gradient."""

    __slots__ = ("grads",)

    def __init__(
        self,
        edges: tuple[Node | None, ...],
        input_meta: tuple[InputMeta, ...],
        grads: tuple[np.ndarray, ...],
    ) -> None:
        self.seq = next(_function_sequence)
        self.next_nodes = edges
        self.input_meta = input_meta
        self.grads = grads

    def name(self) -> str:
        return "GraphRoot"

    def apply(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        return self.grads


def grad_accumulator(leaf: Tensor) -> AccumulateGrad:
    """The one accumulation node of a leaf; edges from every use point to it.

    Held weakly by the leaf, as in torch: it lives as long as some graph uses it.
    """
    node = leaf._accumulator() if leaf._accumulator is not None else None
    if node is None:
        node = AccumulateGrad(leaf)
        leaf._accumulator = weakref.ref(node)
    return node


def gradient_edge(tensor: Tensor) -> Node | None:
    """Where a gradient for ``tensor`` must be sent, or None if it needs none."""
    if tensor.grad_fn is not None:
        return tensor.grad_fn
    if tensor._requires_grad:
        return grad_accumulator(tensor)
    return None


# --------------------------------------------------------------------------- the walker


def _count_dependencies(root: Node, needed: dict[Node, bool] | None) -> dict[Node, int]:
    dependencies: dict[Node, int] = {}
    seen: dict[Node, None] = {root: None}
    stack = [root]
    while stack:
        node = stack.pop()
        for next_node in node.next_nodes:
            if next_node is None or (needed is not None and not needed[next_node]):
                continue
            dependencies[next_node] = dependencies.get(next_node, 0) + 1
            if next_node not in seen:
                seen[next_node] = None
                stack.append(next_node)
    return dependencies


def _needed_for(root: Node, targets: dict[Node, None]) -> dict[Node, bool]:
    """Which nodes lead to a target (torch's exec_info): only those run in autograd.grad."""
    needed: dict[Node, bool] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            needed[node] = node in targets or any(
                needed.get(child, False) for child in node.next_nodes if child is not None
            )
            continue
        if node in needed:
            continue
        needed[node] = False  # provisional, so a node is expanded once
        stack.append((node, True))
        for child in node.next_nodes:
            if child is not None and child not in needed:
                stack.append((child, False))
    return needed


def _conform(grad: np.ndarray, meta: InputMeta) -> np.ndarray:
    shape, dtype = meta
    if grad.shape != shape:
        grad = sum_to(grad, shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def run_backward(
    root: Node,
    grad: np.ndarray,
    keep_graph: bool,
    *,
    create_graph: bool = False,
    capture: dict[Node, None] | None = None,
) -> dict[Node, np.ndarray]:
    """Propagate ``grad`` from ``root`` through the graph.

    Without ``capture`` every leaf reached accumulates into its ``.grad``. With ``capture``
    (``autograd.grad``) only nodes leading to a captured node run, and the gradient reaching
    each captured node is returned instead of accumulated.
    """
    needed = None if capture is None else _needed_for(root, capture)
    dependencies = _count_dependencies(root, needed)
    buffers: dict[Node, np.ndarray] = {root: grad}
    # Under create_graph: whether the grad buffered for a node requires grad (the root's,
    # the gradient argument or ones, does not: a gradient that requires grad is out of scope).
    requires: dict[Node, bool] = {root: False}
    captured: dict[Node, np.ndarray] = {}
    ready: list[tuple[int, Node]] = [(-root.seq, root)]
    with np.errstate(all="ignore"):
        while ready:
            _, node = heapq.heappop(ready)
            node_grad = buffers.pop(node, None)
            if node_grad is None:
                continue
            if needed is not None:
                if capture is not None and node in capture:
                    captured[node] = node_grad
                if not any(needed[child] for child in node.next_nodes if child is not None):
                    continue  # nothing downstream is wanted: torch does not run it
            elif isinstance(node, AccumulateGrad):
                node.accumulate(node_grad, in_place=not create_graph,
                                requires_grad=requires.pop(node, False))
                continue
            else:
                node.retain(node_grad)
            flags = node.grads_require_grad(requires.pop(node, False)) if create_graph else None
            input_grads = node.apply(node_grad)
            if not keep_graph:
                node.release()
            for position, (next_node, meta, input_grad) in enumerate(zip(
                node.next_nodes, node.input_meta, input_grads, strict=True
            )):
                if next_node is None or (needed is not None and not needed[next_node]):
                    continue
                if input_grad is not None:
                    input_grad = _conform(np.asarray(input_grad), meta)
                    pending = buffers.get(next_node)
                    buffers[next_node] = input_grad if pending is None else pending + input_grad
                    if flags is not None:
                        requires[next_node] = requires.get(next_node, False) or flags[position]
                dependencies[next_node] -= 1
                if dependencies[next_node] == 0:
                    heapq.heappush(ready, (-next_node.seq, next_node))
    return captured


def walk_graph(root: Node) -> Iterator[Node]:
    """Every node reachable from ``root`` (for debugging and tests), in discovery order."""
    seen: dict[Node, None] = {root: None}
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for next_node in node.next_nodes:
            if next_node is not None and next_node not in seen:
                seen[next_node] = None
                stack.append(next_node)
