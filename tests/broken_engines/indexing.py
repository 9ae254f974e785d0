"""Indexing gradients (torch-semantics.md §3), each broken in ``GetItem``'s backward."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .ops import CustomOps, GetItem, scatter_add, with_ops


class _Indexing(CustomOps):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("indexing",)


# --- duplicates assigned, not summed ---------------------------------------------------------
class GetItemAssigns(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        dense = torch.zeros(shape, dtype=dtype)
        dense[index] += grad
        return dense


class IndexDuplicatesAssigned(_Indexing):
    """The backward of ``x[idx]`` is ``dense[idx] += grad``, which with an integer list holding
    a duplicate writes once (the last copy wins) instead of adding every copy.

    NumPy's famous pitfall (``a[[0, 0]] += 1`` adds 1 once; ``np.add.at`` is the fix), and
    PyTorch's own bug in 2017 (github.com/pytorch/pytorch/issues/1528, "LongTensor indexing with
    duplication not propagating gradients"). Ints, slices and masks never repeat, so only
    integer lists with a duplicate show it.
    """

    name = "index-duplicates-assigned"
    functions = with_ops(getitem=GetItemAssigns)


# --- nothing reached: no gradient at all -----------------------------------------------------
class GetItemSkipsEmpty(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        if grad.numel() == 0:
            return None
        return scatter_add(shape, dtype, index, grad)


class EmptyIndexGivesNoGrad(_Indexing):
    """When the index selected nothing (``x[0:0]``, ``x[5:10]``, an all-False mask) the backward
    returns no gradient, as an optimisation, so ``x.grad`` stays None; torch gives dense zeros.

    Engines that represent "nothing reached" sparsely (TensorFlow's IndexedSlices, torch's own
    ``sparse=True`` embeddings) or skip zero-size kernels make this choice on purpose; torch's
    dense ``.grad`` is always there once the leaf was in the graph.
    """

    name = "empty-index-gives-no-grad"
    functions = with_ops(getitem=GetItemSkipsEmpty)


# --- negative indices wrapped by the wrong dim -----------------------------------------------
def wrap_by_first_dim(index: Any, size: int) -> Any:
    def wrap(i: int) -> int:
        return i + size if i < 0 else i

    if not isinstance(index, tuple):  # a bare index: one part
        return wrap_by_first_dim((index,), size)[0]
    wrapped: list[Any] = []
    for part in index:
        if isinstance(part, int) and not isinstance(part, bool):
            part = wrap(part)
        elif isinstance(part, list):
            part = [wrap(i) for i in part]
        wrapped.append(part)
    return tuple(wrapped)


class GetItemWrapsByDim0(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        return scatter_add(shape, dtype, wrap_by_first_dim(index, shape[0]), grad)


class _NegativeIndexWrappedByDim0(_Indexing):
    """The backward turns negative indices positive by adding ``x.shape[0]`` whatever dim they
    index, so ``x[:, -1]`` on a 2×3 tensor sends its gradient to column 1, not column 2 (or
    raises when ``shape[0]`` is larger than the indexed dim).

    The forward is right (the array library wraps negatives itself); the hand-written scatter
    needs non-negative offsets and was tested on vectors only. Needs a negative index on a dim
    other than the first, of a different size.

    Out of the catalogue (the underscore) until the suite reaches that edge on purpose: with
    indices drawn form-first, ci's 60 examples (then) of the indexing properties no longer draw it
    (a negative int on a later dim of a differently sized tensor); it was caught before by
    luck of the draw, and lost when create_graph stopped being drawn for its family.
    """

    name = "negative-index-wrapped-by-dim0"
    functions = with_ops(getitem=GetItemWrapsByDim0)
