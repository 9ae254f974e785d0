"""``reference.autograd``: ``backward`` and ``grad``, with torch's checks on their arguments.

``create_graph=True`` is accepted for what it implies about the forward graph (it is
retained, and ``.grad`` is accumulated out of place, as in torch); the gradients themselves
carry no graph of the backward pass, so higher-order gradients are out of scope.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from reference import _autograd
from reference._tensor import Tensor, python_type_name

_CREATE_GRAPH_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the parameter "
    "and its gradient which can cause a memory leak. We recommend using autograd.grad when "
    "creating the graph to avoid this. If you have to use this function, make sure to reset the "
    ".grad fields of your parameters to None after use to break the cycle and avoid the leak."
)


class _WarnedOnce:
    create_graph = False


def _shape_string(shape: tuple[int, ...]) -> str:
    return "torch.Size([" + ", ".join(str(size) for size in shape) + "])"


def _as_tuple(tensors: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (tensors,) if isinstance(tensors, Tensor) else tuple(tensors)


def _make_grads(
    outputs: tuple[Tensor, ...], grad_outputs: tuple[Tensor | None, ...]
) -> tuple[np.ndarray | None, ...]:
    """torch.autograd._make_grads: check each given gradient, create ones for scalars."""
    grads: list[np.ndarray | None] = []
    for position, (output, gradient) in enumerate(zip(outputs, grad_outputs, strict=True)):
        if gradient is None:
            if output._requires_grad and output._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            grads.append(np.ones(output.shape, dtype=output.dtype) if output._requires_grad else None)
            continue
        if not isinstance(gradient, Tensor):
            raise TypeError(f"gradients can be either Tensors or None, but got {python_type_name(gradient)}")
        if gradient.shape != output.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{position}] has a shape of "
                f"{_shape_string(gradient.shape)} and output[{position}] has a shape of "
                f"{_shape_string(output.shape)}."
            )
        grads.append(gradient._data.astype(output.dtype, copy=False))
    return tuple(grads)


def _root(outputs: tuple[Tensor, ...], grads: tuple[np.ndarray | None, ...]) -> _autograd.Node:
    edges = []
    for position, output in enumerate(outputs):
        edge = _autograd.gradient_edge(output)
        if edge is None:
            raise RuntimeError(
                f"element {position} of tensors does not require grad and does not have a grad_fn"
            )
        edges.append(edge)
    if len(outputs) == 1:
        return edges[0]
    return _autograd.GraphRoot(
        tuple(edges),
        tuple((output.shape, output.dtype) for output in outputs),
        tuple(grad for grad in grads if grad is not None),
    )


def backward(
    tensors: Tensor | Sequence[Tensor],
    grad_tensors: Tensor | Sequence[Tensor | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Any = None,
) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the leaves they reach.

    >>> import reference
    >>> x = reference.tensor([1.0, 2.0], requires_grad=True)
    >>> reference.autograd.backward((x * x).sum())
    >>> x.grad
    tensor([2., 4.])
    """
    if inputs is not None:
        raise NotImplementedError("backward(inputs=...) is not supported by the reference")
    outputs = _as_tuple(tensors)
    if grad_tensors is None:
        given: tuple[Tensor | None, ...] = (None,) * len(outputs)
    else:
        given = (grad_tensors,) if isinstance(grad_tensors, Tensor) else tuple(grad_tensors)
    grads = _make_grads(outputs, given)
    root = _root(outputs, grads)
    if create_graph and not _WarnedOnce.create_graph:
        _WarnedOnce.create_graph = True  # torch warns once per process
        warnings.warn(_CREATE_GRAPH_WARNING, UserWarning, stacklevel=3)
    keep_graph = create_graph if retain_graph is None else retain_graph
    first = next(grad for grad in grads if grad is not None)
    _autograd.run_backward(root, first, keep_graph, create_graph=create_graph)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Tensor | Sequence[Tensor | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``; no ``.grad`` is written.

    Only the part of the graph that leads to ``inputs`` runs, and (without
    ``retain_graph``) its saved tensors are freed, as by ``backward()``.

    >>> import reference
    >>> x = reference.tensor([1.0, 2.0], requires_grad=True)
    >>> reference.autograd.grad((x * x).sum(), [x])
    (tensor([2., 4.]),)
    >>> x.grad is None
    True
    """
    output_tuple = _as_tuple(outputs)
    input_tuple = _as_tuple(inputs)
    if grad_outputs is None:
        given: tuple[Tensor | None, ...] = (None,) * len(output_tuple)
    else:
        given = (grad_outputs,) if isinstance(grad_outputs, Tensor) else tuple(grad_outputs)
    grads = _make_grads(output_tuple, given)
    root = _root(output_tuple, grads)
    targets: dict[_autograd.Node, None] = {}
    for tensor in input_tuple:
        edge = _autograd.gradient_edge(tensor)
        if edge is None:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
        targets[edge] = None
    keep_graph = create_graph if retain_graph is None else retain_graph
    first = next(grad for grad in grads if grad is not None)
    captured = _autograd.run_backward(root, first, keep_graph, capture=targets)
    results: list[Tensor | None] = []
    for position, tensor in enumerate(input_tuple):
        edge = _autograd.gradient_edge(tensor)
        found = captured.get(edge) if edge is not None else None
        if found is None:
            if not allow_unused:
                raise RuntimeError(
                    f"The differentiated Tensor at index {position} appears to not have been "
                    "used in the graph. Set allow_unused=True if this is the desired behavior."
                )
            results.append(None)
            continue
        results.append(Tensor._wrap(np.array(found, dtype=tensor.dtype, copy=True)))
    return tuple(results)
