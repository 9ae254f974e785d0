"""Calls as users write them (torch-semantics.md §9), each broken on one route a user reaches
only by writing the call the short way: a default argument, a group that names few keys, a
bare int, slice, list or index tensor between the brackets, the hand-written update loop.

Each engine is a control (torch, :class:`.sgd.HandWrittenSGD`) with one method changed. Index
bugs dispatch on the index's form in the engine's getitem, as an engine with one code path per
form does, and send only that form through a :class:`.ops.GetItem` with a wrong backward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from conformance.engines.torch_engines import TorchEngine
from conformance.torchlike import _torch_index

from .ops import GetItem
from .sgd import HandSGD, HandWrittenSGD


class _AsWritten(TorchEngine):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ()


class _AsWrittenSGD(HandWrittenSGD):
    control: ClassVar[bool] = False
    catches_in: ClassVar[tuple[str, ...]] = ("sgd",)


# === defaults ================================================================================
class KerasLrSGD(HandSGD):
    def __init__(self, params: Iterable[Any], lr: float = 0.01, **options: Any) -> None:
        super().__init__(params, lr, **options)


class DefaultLrIsKeras(_AsWrittenSGD):
    """``SGD(params)`` without ``lr`` steps with 0.01 (Keras's and TensorFlow's default) instead
    of torch's 0.001.

    torch had no default lr until github.com/pytorch/pytorch/pull/114467 chose 1e-3 (the review
    of the earlier github.com/pytorch/pytorch/pull/53698 asked "Keras chose the value to be
    0.01 ... is there other library ... that stands for 0.001?"); tensorflow/swift-models#60:
    "We and Keras both default to 0.01". Needs a program that leaves lr out.
    """

    name = "default-lr-is-keras"
    sgd_class = KerasLrSGD


class ClearGradZeroesSGD(HandSGD):
    def zero_grad(self, set_to_none: bool = False) -> None:
        super().zero_grad(set_to_none)


class ZeroGradDefaultKeepsGrads(_AsWrittenSGD):
    """``zero_grad()`` with no argument zeroes grads in place (``set_to_none=False``); an
    explicit ``set_to_none=True`` still sets them to None.

    torch's default before 2.0 (github.com/pytorch/pytorch/pull/92731 flipped it), and still
    Paddle's: ``Optimizer.clear_grad(set_to_zero=True)``. Only the call without the argument
    shows it.
    """

    name = "zero-grad-default-keeps-grads"
    catches_in = ("zero_grad::test_zero_grad_default_sets_none", "zero_grad")
    sgd_class = ClearGradZeroesSGD


class BackwardRetainsByDefault(_AsWritten):
    """``loss.backward()`` without ``retain_graph`` keeps the graph (a default of True), so a
    second plain backward runs and accumulates where torch raises "Trying to backward through
    the graph a second time"; an explicit ``retain_graph=False`` (or None) still frees it.

    Language bindings re-declare backward's signature and get this default wrong: torch.rb's
    first version wrote ``retain_graph: false`` until review asked for torch's ``nil``
    (→ ``create_graph``), github.com/ankane/torch.rb/pull/8; R torch had to "correct the
    default", github.com/mlverse/torch/pull/811. Needs a second backward after an omitted
    retain_graph, through a node that saved a tensor.
    """

    name = "backward-retains-by-default"
    catches_in = ("retain_graph",)

    def backward(self, loss: Any, **arguments: Any) -> None:
        arguments.setdefault("retain_graph", True)
        super().backward(loss, **arguments)


# === param groups ============================================================================
class BuiltInDefaultsSGD(HandSGD):
    BUILT_IN: ClassVar[Mapping[str, Any]] = {
        "lr": 0.001, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
        "nesterov": False, "maximize": False,
    }

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group({**self.BUILT_IN, **param_group})


class GroupInheritsBuiltInDefaults(_AsWrittenSGD):
    """A param group dict fills the keys it does not name from SGD's signature defaults, not
    from the constructor's arguments: ``SGD([{"params": [p]}], lr=0.1, momentum=0.9)`` steps
    with lr 0.001 and no momentum.

    The wrong source for inherited keys is a recurring optimizer-wrapper bug: the SAM
    optimizer's groups lacked the base optimizer's defaults until github.com/davda54/sam/pull/65
    ("update default values using default values of the base optimizer"). Needs a group that
    leaves out a key the constructor passes.
    """

    name = "group-inherits-built-in-defaults"
    catches_in = ("sgd::test_param_groups", "sgd")
    sgd_class = BuiltInDefaultsSGD


class ConstructorWinsSGD(HandSGD):
    def __init__(self, params: Iterable[Any], **passed: Any) -> None:
        self.passed = passed  # read by add_param_group, which super().__init__ calls
        super().__init__(params, **passed)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group({**param_group, **self.passed})


class ConstructorOverridesGroups(_AsWrittenSGD):
    """The constructor's arguments are merged over each group's own keys (``{**group,
    **kwargs}`` instead of ``group.setdefault``), so a group's override of a key the
    constructor also passes is lost.

    The classic merge-order slip (github.com/nu-radio/NuRadioMC/pull/945, "Fix order such that
    kwargs override the defaults"); torch's ``add_param_group`` uses ``setdefault``
    (github.com/pytorch/pytorch/pull/82270 discusses it). Needs a group overriding a key the
    constructor passes, with a different value.
    """

    name = "constructor-overrides-groups"
    catches_in = ("sgd::test_param_groups", "sgd")
    sgd_class = ConstructorWinsSGD


# === indices as written ======================================================================
def _as_tuple(index: Any) -> tuple[Any, ...]:
    """``x[i]`` is ``x[(i,)]`` for torch: the tuple :class:`.ops.GetItem` expects."""
    return index if isinstance(index, tuple) else (index,)


class _RoutesOneForm(_AsWritten):
    """torch's getitem, except that indices of one form go through ``route``."""

    catches_in: ClassVar[tuple[str, ...]] = ("indexing",)
    route: ClassVar[type[GetItem]] = GetItem

    @staticmethod
    def takes(index: Any) -> bool:
        return False

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        if op == "getitem" and self.takes(params["index"]):
            index = _torch_index(torch, params["index"])
            return self.route.apply(operands[0], _as_tuple(index))
        return super().apply(op, operands, params)


def _is_int(part: Any) -> bool:
    return isinstance(part, int) and not isinstance(part, bool)


class GetItemIntAsSlice(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        (i,) = index
        dense = torch.zeros(shape, dtype=dtype)
        dense[i : i + 1] = grad.unsqueeze(0)  # x[-1] → dense[-1:0], which is empty
        return dense


class BareNegativeIntAsEmptySlice(_RoutesOneForm):
    """The backward of a bare ``x[i]`` writes the gradient into ``dense[i:i+1]``, which for
    ``i = -1`` is the empty ``dense[-1:0]``: ``x[-1]`` gets a zero gradient (other negatives and
    the tuple route ``x[(-1,)]`` are right).

    ipythonblocks#7 ("If the index is -1 it will make a slice of -1:0, which results in
    nothing"); the Array API spec's own text had the same off-by-one
    (github.com/data-apis/array-api/pull/117: "The equivalent slice for a negative integer index
    should be n+i:n+i+1"). Needs a bare ``-1``.
    """

    name = "bare-negative-int-as-empty-slice"
    catches_in = ("indexing", "accumulation::test_losses_accumulate")
    route = GetItemIntAsSlice

    @staticmethod
    def takes(index: Any) -> bool:
        return _is_int(index)


class GetItemSliceUnstrided(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        (part,) = index
        start, _, _ = part.indices(shape[0])
        dense = torch.zeros(shape, dtype=dtype)
        dense[start : start + grad.shape[0]] = grad  # the step is forgotten
        return dense


class BareSliceStepIgnoredInBackward(_RoutesOneForm):
    """The backward of a bare slice ``x[a:b:s]`` writes the gradient into the contiguous
    ``dense[a : a + n]``, forgetting the step: ``x[::2]`` sends its gradient to elements 0, 1
    instead of 0, 2 (the forward, done by the array library, is right).

    MLX's strided-slice gradient is silently misplaced the same way, "broadcast over the whole
    half-open span [start, stop) instead of being deposited at start"
    (github.com/ml-explore/mlx/issues/4444); Odyssey's N-D ``__getitem__`` "ignores the step
    component of each Slice" (HomericIntelligence/Odyssey#3695). Needs a bare slice with a
    step over 1 that selects two or more elements.
    """

    name = "bare-slice-step-ignored-in-backward"
    route = GetItemSliceUnstrided

    @staticmethod
    def takes(index: Any) -> bool:
        return isinstance(index, slice)


class GetItemAssigns(GetItem):
    @staticmethod
    def index_backward(shape: torch.Size, dtype: torch.dtype, index: Any,
                       grad: torch.Tensor) -> Any:
        dense = torch.zeros(shape, dtype=dtype)
        dense[index] = grad  # index_put_(accumulate=False): one copy of a duplicate wins
        return dense


class IndexTensorGradAssigned(_RoutesOneForm):
    """An index held in an int64 tensor (``x[t]``, ``x[:, t]``) has its backward written as
    ``dense[index] = grad`` (``index_put_`` with ``accumulate=False``), so a duplicate index
    gets the gradient of one copy instead of the sum; integer lists take a correct route.

    torch's own ``IndexPutBackward0``/``ScatterBackward0`` give exactly this with repeated
    indices (github.com/pytorch/pytorch/issues/146299), and ``index_put_``'s documentation
    leaves duplicates undefined without ``accumulate=True``. Needs an index tensor holding a
    duplicate.
    """

    name = "index-tensor-grad-assigned"
    route = GetItemAssigns

    @staticmethod
    def takes(index: Any) -> bool:
        return any(isinstance(part, np.ndarray) and part.dtype != np.bool_
                   for part in _as_tuple(index))


class ListIndexReadAsTuple(_AsWritten):
    """A bare integer list ``x[[i, j]]`` is read as the tuple ``x[i, j]``: one element of a
    2-D tensor instead of two rows, and an index error on a vector.

    NumPy's legacy rule for non-tuple sequences, deprecated with "Using a non-tuple sequence
    for multidimensional indexing is deprecated; use arr[tuple(seq)]" (cupy/cupy#4285 copied
    the warning); numpy/numpy#6564: numpy "incorrectly treating the outermost list like it were
    a tuple". Needs a bare list (a tuple holding a list is right).
    """

    name = "list-index-read-as-tuple"
    catches_in = ("indexing",)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        if op == "getitem" and isinstance(params["index"], list):
            return operands[0][tuple(params["index"])]
        return super().apply(op, operands, params)


# === the hand-written loop ===================================================================
class NoGradUpdateKeepsVersion(_AsWritten):
    """A user's in-place update under ``no_grad`` (``w -= lr * w.grad``, ``w.sub_``, ``w.add_``,
    ``w.mul_``) does not bump ``w``'s version counter, so a backward through a graph retained
    from before the update silently uses the new values where torch raises "modified by an
    inplace operation".

    torch's in-place kernels once skipped the bump for inputs marked non-differentiable
    (github.com/pytorch/pytorch/issues/14571: "Observed modified var2.grad"); its fused SGD
    still does (this suite's known deviation FUSED_STEP_KEEPS_VERSION). Needs a retained graph
    that saved a param, an update of that param, and a backward through it again.
    """

    name = "no-grad-update-keeps-version"
    catches_in = ("training_loops::test_hand_written_loop", "training_loops")

    def update(self, param: Any, form: str, scalar: float) -> Any:
        version = param._version
        bound = super().update(param, form, scalar)
        torch._C._autograd._unsafe_set_version_counter((bound,), (version,))
        return bound


class DataUpdateBumpsVersion(_AsWritten):
    """``w.data.sub_(lr * w.grad)`` is run as ``w.detach().sub_(...)``, which shares ``w``'s
    version counter: a later backward through a graph retained from before the update raises
    "modified by an inplace operation", where torch's ``.data`` is invisible to autograd and
    the backward silently uses the new value.

    TorchDynamo traced ``x.data`` as ``x.detach()`` until github.com/pytorch/pytorch/pull/131403
    ("mutations on .data should be invisible to autograd"); pytorch/pytorch#6990 explains the
    difference. Needs an update through ``.data`` of a param a retained graph saved, and a
    backward through it again.
    """

    name = "data-update-bumps-version"
    catches_in = ("training_loops::test_hand_written_loop", "training_loops")

    def update(self, param: Any, form: str, scalar: float) -> Any:
        if form == "data":
            param.detach().sub_(scalar * param.grad)
            return param
        return super().update(param, form, scalar)


class GradZeroReallocates(_AsWritten):
    """``w.grad.zero_()`` replaces the grad by a fresh zero tensor instead of zeroing it in
    place: the values are right, but the grad is a new object, so a reference the user holds
    (or a hook, a DDP bucket view) keeps the old gradient.

    FTorch's ``torch_tensor_zero_grad`` moved a new tensor into the grad, so "get_gradient
    must be called after every call to ... zero_grad" (github.com/Cambridge-ICCS/FTorch/pull/341).
    Only the suite's grad-identity check sees it. Needs a ``w.grad.zero_()`` on a grad that is
    not None.
    """

    name = "grad-zero-reallocates"
    catches_in = ("training_loops::test_hand_written_loop", "training_loops")

    def edit_grad(self, param: Any, form: str, scalar: float) -> None:
        if form == "zero_":
            param.grad = torch.zeros_like(param.grad)
            return
        super().edit_grad(param, form, scalar)


class IsubRebindsToNewTensor(_AsWritten):
    """``with no_grad(): w -= lr * w.grad`` rebinds ``w`` to a new tensor instead of updating it
    in place: the tensor defines ``__sub__`` but not ``__isub__``, so Python falls back to
    ``w = w - lr * w.grad``, which under ``no_grad`` does not require grad and has no grad.
    The optimizer and the graph keep the old leaf; the user's ``w`` is a constant from now on.

    Exactly what R's torch users hit, where there is no ``-=``: "w1 <- w1 - learning_rate *
    w1$grad ... now w1$grad is undefined ... You are creating a copy of w, not modifying it in
    place" (github.com/mlverse/torch/issues/124). Needs the ``-=`` form of the update.
    """

    name = "isub-rebinds-to-new-tensor"
    catches_in = ("training_loops::test_hand_written_loop", "training_loops")

    def update(self, param: Any, form: str, scalar: float) -> Any:
        if form == "isub":
            with torch.no_grad():
                return param - scalar * param.grad
        return super().update(param, form, scalar)
