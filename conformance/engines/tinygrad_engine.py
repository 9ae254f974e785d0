"""tinygrad (https://github.com/tinygrad/tinygrad), tested through its own API.

Written against tinygrad 0.14.0. Its CPU backend compiles kernels with clang; the known
deviations below are that device's. ``DEV=PYTHON`` (tinygrad's pure-Python interpreter, no
compiler needed) is another device, which does not set aside exactly the same runs.

tinygrad's API differs from torch's in ways that shape this adapter; docs/engines/tinygrad.md
has the details and a reproduction script for every finding below.

- There is no ``requires_grad`` and no leaf/non-leaf distinction: ``Tensor.backward`` writes a
  ``.grad`` into every live floating-point tensor with storage that the loss depends on. So
  ``tensor(value, requires_grad=...)`` is ``Tensor(value)`` either way, except that a 0-d value
  becomes a storage-less constant that never gets a grad; a param gets its buffer with
  ``clone()``.
- Graphs are immutable values that are never freed, so ``backward`` has no ``retain_graph``:
  the suite's ``retain_graph`` is not passed on, and tinygrad behaves as if it were always True.
- Tensors are lazy. Values are read with ``Tensor.numpy()``, which computes a copy and leaves
  the tensor itself unrealized: realizing it in place would change what later reads observe.
- ``nn.optim.SGD(params, lr, momentum, weight_decay, nesterov)`` has one set of
  hyperparameters; several param groups are several ``SGD`` objects combined with
  ``nn.optim.OptimizerGroup``, as tinygrad's own training scripts do. The optimizer refuses to
  step unless ``TRAINING`` is set, so ``step`` runs under ``Context(TRAINING=1)``.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from conformance.adapter import Capabilities, Diverges, Engine, KnownDeviation
from conformance.compare import array_mismatch, divergence, first_divergence, program_tolerance
from conformance.errors import ErrorKind
from conformance.graphs import reached
from conformance.ops import ALL_OPS, PYTHON_OPERATORS
from conformance.program import (
    Backward,
    EditGrad,
    Forward,
    MakeSGD,
    Program,
    SetHyperparameter,
    Step,
    Update,
    ZeroGrad,
)
from conformance.runner import reference_trace

Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]
Trace = Sequence[Any]  # list[conformance.interpret.Observation]


# --- ops ---------------------------------------------------------------------------------------
def _axis_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdim": bool(params.get("keepdim", False))}


def _reduce(method: str) -> Impl:
    return lambda a, p: getattr(a[0], method)(**_axis_kwargs(p))


def _method(method: str) -> Impl:
    return lambda a, p: getattr(a[0], method)()


def _index(index: Any) -> Any:
    """The index in the form the script writes it: the same int, slice, ``...``, ``None``,
    list or tuple; an int64 array (an index tensor) becomes a tinygrad int Tensor. Bool masks
    never come: "index:bool_mask" is declared unsupported."""
    from tinygrad import Tensor

    if isinstance(index, tuple):
        return tuple(_index(part) for part in index)
    if isinstance(index, np.ndarray):
        return Tensor(np.array(index, copy=True))
    return index


def _where(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    from tinygrad import Tensor

    return Tensor(p["cond"]).where(a[0], a[1])


def _operator(function: Callable[..., Any]) -> Impl:
    return lambda a, p: function(*a)


def _linear(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """``F.linear(x, weight[, bias])``: tinygrad's ``x.linear(weight, bias)`` takes the weight
    as (in, out), so the script's torch-layout (out, in) weight is transposed, as tinygrad's
    own ``nn.Linear.__call__`` does (``x.linear(self.weight.transpose(), self.bias)``)."""
    return a[0].linear(a[1].transpose(), *a[2:])


def _cross_entropy(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """``F.cross_entropy(logits, target[, reduction])``: tinygrad's ``cross_entropy(Y,
    reduction)`` takes class indices (an int Tensor) like torch's, classes on axis 1 (axis 0
    for 1-D logits), as torch; only a reduction the call passes is passed."""
    from tinygrad import Tensor

    target = Tensor(np.array(p["target"], copy=True))
    return a[0].cross_entropy(target, **({"reduction": p["reduction"]} if "reduction" in p
                                         else {}))


# tinygrad's max(axis)/min(axis) return the values only: that is max_dim/min_dim's ``.values``.
OPS: dict[str, Impl] = {
    **{op: _operator(function) for op, function in PYTHON_OPERATORS.items()},
    "exp": _method("exp"),
    "log": _method("log"),
    "sqrt": _method("sqrt"),
    "tanh": _method("tanh"),
    "sigmoid": _method("sigmoid"),
    "relu": _method("relu"),
    "abs": _method("abs"),
    "clamp": lambda a, p: a[0].clamp(min_=p.get("min"), max_=p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("max"),
    "amin": _reduce("min"),
    "maximum": lambda a, p: a[0].maximum(a[1]),
    "minimum": lambda a, p: a[0].minimum(a[1]),
    "reshape": lambda a, p: a[0].reshape(tuple(p["shape"])),
    "transpose": lambda a, p: a[0].transpose(p["dim0"], p["dim1"]),
    "unsqueeze": lambda a, p: a[0].unsqueeze(p["dim"]),
    "getitem": lambda a, p: a[0][_index(p["index"])],
    "cat": lambda a, p: a[0].cat(*a[1:], dim=p["dim"]),
    "stack": lambda a, p: a[0].stack(*a[1:], dim=p["dim"]),
    "where": _where,
    "linear": _linear,
    "cross_entropy": _cross_entropy,
    # no "mse_loss": tinygrad has no MSE function (op:mse_loss is declared unsupported)
}


# --- errors ------------------------------------------------------------------------------------
# (exception type, substring of tinygrad's message, category), each found by triggering it.
ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    # Tensor.gradient: `assert gradient is not None or self.shape == tuple()`
    (AssertionError, "backward must be called on a scalar tensor", ErrorKind.NON_SCALAR_BACKWARD),
    # tinygrad never compares backward's `gradient` with the output's shape; a wrong shape fails
    # wherever it first meets another shape: Tensor.backward's own check on each grad, or one
    # of these generic broadcast/reshape errors inside the gradient computation. The suite's
    # forwards are always well-shaped, so only a wrong `gradient` can raise them.
    (AssertionError, "grad shape must match tensor shape", ErrorKind.GRADIENT_SHAPE),
    (RuntimeError, "cannot broadcast", ErrorKind.GRADIENT_SHAPE),
    # Tensor._broadcast_to's "cannot broadcast (3, 2) to new_shape=(3, 2, 3)" (its other
    # ValueError, "cannot broadcast tensor to fewer dimensions", is the 0-d step's: a declared
    # gap)
    (ValueError, "cannot broadcast (", ErrorKind.GRADIENT_SHAPE),
    (ValueError, "size mismatch, can't reshape", ErrorKind.GRADIENT_SHAPE),
    (IndexError, "objects cannot be broadcast to a single shape", ErrorKind.GRADIENT_SHAPE),
    # Tensor._getitem on an int index past the end (integer lists are not checked: a finding)
    (IndexError, "is out of bounds", ErrorKind.INDEX_OUT_OF_RANGE),
    # Optimizer.__init__ and LARS.__init__: the only two checks tinygrad's SGD makes
    (ValueError, "Invalid learning rate", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid momentum value", ErrorKind.INVALID_HYPERPARAMETER),
    # LAMB.__init__ (Adam, AdamW)
    (ValueError, "Invalid weight_decay value", ErrorKind.INVALID_HYPERPARAMETER),
    # Optimizer.__init__: `assert len(self.params) != 0, "optimizer must have at least one param"`
    (AssertionError, "optimizer must have at least one param", ErrorKind.EMPTY_PARAMETER_LIST),
    # A hand-written update or grad edit while .grad is None, in Python itself, as in torch:
    # `lr * w.grad` and `w.grad *= s` raise TypeError, `w.grad.assign(...)` AttributeError.
    (TypeError, "NoneType", ErrorKind.NONE_GRAD),
    (AttributeError, "'NoneType' object has no attribute", ErrorKind.NONE_GRAD),
)


def _none_grad_step(error: Exception) -> bool:
    """step() with a param whose .grad is None: Optimizer.schedule_step's unwrap(t.grad)
    raises a bare AssertionError (no message: told by where it was raised). torch skips such a
    param; the gap is declared ("step_none_grad"), so only a run that diverged before (a
    backward tinygrad refused left the grad None) meets it, and it is not a crash there."""
    if type(error) is not AssertionError or str(error):
        return False
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    return bool(frames) and frames[-1] == "unwrap" and "schedule_step" in frames


# --- findings: what tinygrad does differently from torch ---------------------------------------
# Each finding is one KnownDeviation naming its witnesses. Every ``applies`` also sees runs that
# crashed (EngineCrash): there the trace stops before the crashing instruction.
def _missed(*kinds: ErrorKind) -> Callable[[Program, Trace], bool]:
    """Runs where the reference raised one of ``kinds`` and tinygrad went on without an error."""

    def predicate(program: Program, trace: Trace) -> bool:
        pairs = zip(trace, reference_trace(program), strict=False)
        return any(o.error is None and r.error in kinds for o, r in pairs)

    return predicate


def _raised_alone(kind: ErrorKind) -> Callable[[Program, Trace], bool]:
    """Runs where tinygrad raised ``kind`` and the reference did not raise."""

    def predicate(program: Program, trace: Trace) -> bool:
        pairs = zip(trace, reference_trace(program), strict=False)
        return any(o.error is kind and r.error is None for o, r in pairs)

    return predicate


def _uses(ops: Collection[str], program: Program) -> bool:
    return any(
        node.op in ops
        for instruction in program.instructions if isinstance(instruction, Forward)
        for node in instruction.nodes
    )


def _first_divergence(program: Program, trace: Trace) -> tuple[Any, Any] | None:
    """The first (engine, reference) observations that differ, or None."""
    found = first_divergence(program, trace, reference_trace(program))
    return None if found is None else found[:2]


def _instruction(program: Program, observation: Any) -> Any:
    return program.instructions[observation.index - 1] if observation.index else None


class _GradDifference(NamedTuple):
    """One param's grad that differs right after a backward (:func:`_grads_at_backward`)."""

    param: str
    engine: np.ndarray
    reference: np.ndarray
    why: str
    before: np.ndarray
    """The param's value right before the backward (the engine's, which the reference took)."""


def _grads_at_backward(ops: Collection[str], program: Program,
                       trace: Trace) -> list[_GradDifference] | None:
    """For a run using one of ``ops`` whose first difference is right after a backward that
    raised nowhere: each grad whose values differ there (empty where only something else
    differs); None for every other run."""
    first = _first_divergence(program, trace)
    if first is None or not _uses(ops, program):
        return None
    got, want = first
    if not isinstance(_instruction(program, got), Backward) or got.error or want.error:
        return None
    tolerance = program_tolerance(program)
    before = trace[got.index - 1].values
    return [_GradDifference(name, got.grads[name], grad, why, before[name])
            for name, grad in want.grads.items()
            if grad is not None and got.grads[name] is not None
            and (why := array_mismatch(got.grads[name], grad, tolerance=tolerance)) is not None]


def _tie_split(*ops: str) -> Callable[[Program, Trace], bool]:
    """Runs using one of ``ops`` that first differ at a backward that raised nowhere."""

    def predicate(program: Program, trace: Trace) -> bool:
        return _grads_at_backward(ops, program, trace) is not None

    return predicate


def _nonfinite_grad_differs(op: str) -> Callable[[Program, Trace], bool]:
    """Runs using ``op`` that first differ at a backward that raised nowhere, and only in where
    a grad is NaN or infinite."""

    def predicate(program: Program, trace: Trace) -> bool:
        differing = _grads_at_backward({op}, program, trace)
        if not differing:
            return False
        return all(d.why.endswith("in different places") for d in differing)

    return predicate


TANH_FLUSHED_BELOW = 1e-7
"""|x| under which tinygrad's tanh (2 * sigmoid(2x) - 1) gives 0: about 3e-8, with margin."""


def _grads_flushed_by_tanh(program: Program, trace: Trace) -> bool:
    """Runs using tanh that first differ at a backward that raised nowhere, only in grad values
    (no other field, no grad None on one side only), and there only where the engine's grad is
    0 or the param is tiny (below :data:`TANH_FLUSHED_BELOW`): a kink after a tanh that gave 0
    for a tiny input (abs, relu, clamp: their grad at 0 is 0), alone in the loss or summed
    with other terms (``p.tanh().abs().sum() + p.abs().sum()``: 1 where torch gives 2)."""
    differing = _grads_at_backward({"tanh"}, program, trace)
    if not differing:
        return False
    found = divergence(program, trace, reference_trace(program))
    assert found is not None  # _grads_at_backward found the same first difference
    if found.fields != {"grads"} or found.params != {d.param for d in differing}:
        return False
    return all(d.engine.shape == d.reference.shape == d.before.shape
               and bool(np.all((d.engine == 0) | (d.engine == d.reference)
                               | (np.abs(d.before) < TANH_FLUSHED_BELOW)))
               for d in differing)


def _grad_dtype_not_its_params(program: Program, trace: Trace) -> bool:
    """Runs where a grad came out in another dtype than its param's: they first differ at a
    backward that raised nowhere, only in grads whose dtypes differ; or tinygrad crashed at a
    backward while such a grad was already there (the crash's trace ends before it)."""
    if len(trace) <= len(program.instructions):  # crashed at instruction len(trace)
        return isinstance(program.instructions[len(trace) - 1], Backward) and any(
            grad is not None and grad.dtype != trace[-1].values[name].dtype
            for name, grad in trace[-1].grads.items())
    differing = _grads_at_backward(OPS, program, trace) or []
    return bool(differing) and all(d.why.startswith("dtype ") for d in differing)


KINKS = ("abs", "relu", "clamp")


def _grads_at_nan_kinks(program: Program, trace: Trace) -> bool:
    """Runs using abs, relu or clamp that first differ at a backward that raised nowhere, in
    grad values only where the param itself is NaN (the kink's branch taken at NaN)."""
    differing = _grads_at_backward(KINKS, program, trace) or []
    return bool(differing) and all(
        d.engine.shape == d.reference.shape == d.before.shape
        and bool(np.all(np.isnan(d.before) | (d.engine == d.reference)))
        and bool(np.isnan(d.before).any())
        for d in differing
    )


MAX_MIN = ("max", "min", "amax", "amin", "max_dim", "min_dim", "maximum", "minimum")


def _grads_at_nan_max_min(program: Program, trace: Trace) -> bool:
    """Runs using a max or min that first differ at a backward that raised nowhere, only in
    grads of params holding a NaN (where the NaN's share of the grad went)."""
    differing = _grads_at_backward(MAX_MIN, program, trace) or []
    return bool(differing) and all(bool(np.isnan(d.before).any()) for d in differing)


def _grads_written_before_error(kind: ErrorKind) -> Callable[[Program, Trace], bool]:
    """Runs where tinygrad raised ``kind`` in an instruction that also changed some grad."""

    def predicate(program: Program, trace: Trace) -> bool:
        for before, after in itertools.pairwise(trace):
            if after.error is not kind:
                continue
            for name, grad in after.grads.items():
                old = before.grads[name]
                if (grad is None) != (old is None) or (
                    grad is not None and old is not None
                    and not np.array_equal(grad, old, equal_nan=True)
                ):
                    return True
        return False

    return predicate


def _grad_changed_by_step(program: Program, trace: Trace) -> bool:
    """torch's step and a user's in-place update of a param never touch ``.grad``; tinygrad's
    lazy grads follow the params."""
    for index, instruction in enumerate(program.instructions, start=1):
        if not isinstance(instruction, (Step, Update)) or index >= len(trace):
            continue
        before, after = trace[index - 1], trace[index]
        for name, grad in before.grads.items():
            later = after.grads[name]
            if (grad is not None and later is not None and grad.shape == later.shape
                    and not np.array_equal(grad, later, equal_nan=True)):
                return True
    return False


def _retained_graph_follows_update(program: Program, trace: Trace) -> bool:
    """Runs that first differ at a backward through a loss whose param a step or an in-place
    update changed since its forward, where neither side raised: torch had saved only what
    the update did not touch (sigmoid, exp, tanh save their output), so it computes with the
    values of the forward; tinygrad's lazy graph reads the param as it is now."""
    first = _first_divergence(program, trace)
    if first is None:
        return False
    got, want = first
    backward = _instruction(program, got)
    if not isinstance(backward, Backward) or got.error or want.error:
        return False
    since = program.instructions[:got.index - 1]
    forwards = [i for i, instruction in enumerate(since)
                if isinstance(instruction, Forward) and instruction.loss == backward.loss]
    if not forwards:
        return False
    forward = since[forwards[-1]]
    assert isinstance(forward, Forward)
    inputs = reached(forward, [param.name for param in program.params])
    return any((isinstance(instruction, Step) and bool(inputs))
               or (isinstance(instruction, Update) and instruction.param in inputs)
               for instruction in since[forwards[-1] + 1:])


def _float64_step_differs(program: Program, trace: Trace) -> bool:
    """Runs that first differ at a step, in the values of float64 params only."""
    first = _first_divergence(program, trace)
    if first is None:
        return False
    got, want = first
    if not isinstance(_instruction(program, got), Step) or got.error or want.error:
        return False
    tolerance = program_tolerance(program)
    differing = [name for name, value in want.values.items()
                 if array_mismatch(got.values[name], value, tolerance=tolerance) is not None]
    return bool(differing) and all(want.values[name].dtype == np.float64 for name in differing)


def _step_failure(program: Program, trace: Trace) -> str | None:
    """For a run that crashed at a Step: the failure tinygrad's step() meets first, following
    tinygrad/nn/optim.py. Group by group (OptimizerGroup.schedule_step), Optimizer.schedule_step
    first unwraps every param's grad ("none grad": classified NONE_GRAD, not a crash, so no
    crashed run ends there; it ends the walk), then LARS._step updates the momentum
    buffers param by param ("momentum switched on": the optimizer was built without buffers;
    never a float64 param's float32 buffer: "step_float64" is declared unsupported), then
    every param is assigned its update (never a 0-d param here: "step_0d_param" is declared
    unsupported). None for other runs."""
    crashed = len(trace) - 1
    if crashed >= len(program.instructions) or not isinstance(program.instructions[crashed], Step):
        return None
    done = program.instructions[:crashed]
    made = [(i, instruction) for i, instruction in enumerate(done)
            if isinstance(instruction, MakeSGD)]
    if not made:
        return None
    position, make = made[-1]
    built = [group.overrides.get("momentum", make.defaults.get("momentum", 0.0))
             for group in make.groups]
    momentum = list(built)
    for instruction in done[position + 1:]:
        if isinstance(instruction, SetHyperparameter) and instruction.key == "momentum":
            momentum[instruction.group] = instruction.value
    state = trace[-1]
    for group, momentum_when_built, momentum_now in zip(make.groups, built, momentum, strict=True):
        names = [name for name in dict.fromkeys(group.params) if name in state.grads]
        if any(state.grads[name] is None for name in names):
            return "none grad"
        if momentum_now and not momentum_when_built:
            return "momentum switched on"
    return None


def _step_fails_with(failure: str) -> Callable[[Program, Trace], bool]:
    """Runs that crashed at a Step with ``failure`` (see :func:`_step_failure`)."""

    def predicate(program: Program, trace: Trace) -> bool:
        return _step_failure(program, trace) == failure

    return predicate


NEVER_FREES = KnownDeviation(
    property=(
        "retain_graph::test_repeated_backward_raises_like_torch",
        *(f"retain_graph::test_each_op_frees_like_torch[{op}]" for op in (
            "abs", "amax", "amin", "clamp", "cross_entropy", "div", "exp", "linear", "log",
            "matmul", "max", "max_dim", "maximum", "min", "min_dim", "minimum", "mul", "pow",
            "relu", "sigmoid", "sqrt", "tanh", "where",
        )),
    ),
    reason=(
        "tinygrad never frees a graph (there is no retain_graph): a second backward() through "
        "saved tensors succeeds and accumulates again, where torch raises 'Trying to backward "
        "through the graph a second time'"
    ),
    evidence="""\
from tinygrad import Tensor
x = Tensor([1.0, 2.0])
loss = (x * x).sum()
loss.backward()
loss.backward()        # torch: RuntimeError: Trying to backward through the graph a second time
print(x.grad.numpy())  # [4. 8.]; torch leaves x.grad == [2., 4.]
""",
    diverges=Diverges(at=(Backward,), fields=("error", "grads"), engine_error=None,
                      reference_error=ErrorKind.FREED_GRAPH),
    local=True,  # the reference takes the grads it accumulated, and its graph stays freed
)

STEP_CHANGES_LAZY_RESULTS = KnownDeviation(
    property="retain_graph::test_step_between_backwards",
    reason=(
        "grads and graphs read a param's buffer lazily, so an optimizer step, or a user's own "
        "in-place update (p -= lr * p.grad, p.assign(...), p *= 0.5: tinygrad's assign), "
        "changes what was computed before it: p.grad then reads as the gradient at the new "
        "value of p (and the next backward accumulates onto that), where torch's step and "
        "no_grad updates never change p.grad; and a second backward through a retained graph "
        "silently uses the updated values, where torch raises 'one of the variables needed for "
        "gradient computation has been modified by an inplace operation' (or, where it saved "
        "only an op's output, as for sigmoid, computes with the forward's values)"
    ),
    evidence="""\
import numpy as np
from tinygrad import Tensor, Context
from tinygrad.nn.optim import SGD
x = Tensor(np.array([1.0, 2.0], dtype=np.float32))
loss = (x * x).sum()
loss.backward()                             # x.grad = 2x = [2, 4]
opt = SGD([x], lr=0.25)
with Context(TRAINING=1):
    opt.step()                              # x = [0.5, 1]
print(x.numpy(), x.grad.numpy())            # [0.5 1. ] [1. 2.]; torch: grad [2, 4]
loss.backward()                             # torch: RuntimeError (x was modified in place)
print(x.grad.numpy())                       # [2. 4.]: [1, 2] + 2 * [0.5, 1]
w = Tensor(np.array([1.0, 2.0]))
loss = (w * w).sum()
loss.backward()                             # w.grad = 2w = [2, 4]
w -= 0.1 * w.grad                           # the hand-written update: w = [0.8, 1.6]
print(w.numpy(), w.grad.numpy())            # [0.8 1.6] [1.6 3.2]; torch: grad [2, 4]
loss.backward()                             # torch: RuntimeError (w was modified in place)
print(w.grad.numpy())                       # [3.2 6.4]
""",
    # grads right after a step or update; then a backward's grads, or its missing error
    # (a lazy grad is read, and shows the update, at whichever instruction comes next: a grad
    # edit or zero_grad too; tinygrad dev seed 5 met it at p0.grad.zero_())
    diverges=Diverges(at=(Step, Update, Backward, EditGrad, ZeroGrad), fields=("grads", "error")),
    applies=lambda program, trace: (
        _grad_changed_by_step(program, trace)
        or _missed(ErrorKind.INPLACE_MODIFIED)(program, trace)
        or _retained_graph_follows_update(program, trace)
    ),
    local=True,
)

DIM_REDUCTION_TIES = KnownDeviation(
    property=("conventions::test_convention[max_dim]", "conventions::test_convention[min_dim]"),
    reason=(
        "tinygrad's max(axis)/min(axis) (its only form of max(dim).values / min(dim).values) "
        "splits the gradient evenly among tied elements; torch's max(dim)/min(dim) gives it all "
        "to the returned index (the first occurrence)"
    ),
    evidence="""\
from tinygrad import Tensor
x = Tensor([1.0, 1.0, 0.0])
x.max(axis=0).backward()
print(x.grad.numpy())   # [0.5 0.5 0. ]; torch x.max(dim=0).values.backward(): [1., 0., 0.]
y = Tensor([0.0, 0.0, 1.0])
y.min(axis=0).backward()
print(y.grad.numpy())   # [0.5 0.5 0. ]; torch y.min(dim=0).values.backward(): [1., 0., 0.]
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_tie_split("max_dim", "min_dim"),
    local=True,
)

POW_AT_NEGATIVE_ZERO = KnownDeviation(
    # The tensor-exponent case reaches it too, less often (a -0.0 base and a -1 exponent
    # drawn together): there ``applies`` sets such runs aside.
    property="conventions::test_convention[pow_scalar_exponent]",
    reason=(
        "pow's gradients at a base of -0.0 differ from torch's: d(x ** 0.5)/dx is NaN (torch: "
        "-inf), and d(x ** e)/de for e = -1 is -inf (torch: +inf = (x ** e) * log(x)); at +0.0 "
        "both agree with torch"
    ),
    evidence="""\
import numpy as np
from tinygrad import Tensor
x = Tensor(np.array([-0.0, 0.0, 1.0]))
(x ** 0.5).sum().backward()
print(x.grad.numpy())   # [nan inf 0.5]; torch: [-inf, inf, 0.5]
b, e = Tensor(np.array([-0.0, 0.0])), Tensor(np.array([-1.0, -1.0]))
(b ** e).sum().backward()
print(e.grad.numpy())   # [-inf -inf]; torch: [inf, -inf]
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_nonfinite_grad_differs("pow"),
    local=True,
)

WRONG_GRADIENT_WRITES_GRADS = KnownDeviation(
    property="backward_errors::test_gradient_of_wrong_shape_raises",
    reason=(
        "backward(gradient) never checks the gradient's shape against the output's: a wrong "
        "shape flows into the graph until some shape error or the final per-tensor check "
        "('grad shape must match tensor shape') stops it, and tensors visited before that "
        "already got their .grad; torch raises 'Mismatch in shape' before writing any grad"
    ),
    evidence="""\
from tinygrad import Tensor
p = Tensor([[2.0], [0.0], [-0.5]])
out = p.min(axis=0)                              # shape (1,)
try:
    out.backward(Tensor([1.0, 0.5, 1.0, 0.0]))   # a gradient of shape (4,)
except AssertionError as error:
    print("AssertionError:", error)
print(p.grad.numpy().ravel())   # [0. 0. 2.5]; torch: RuntimeError: Mismatch in shape ..., p.grad None
""",
    diverges=Diverges(at=(Backward,), fields=("grads",), engine_error=ErrorKind.GRADIENT_SHAPE,
                      reference_error=ErrorKind.GRADIENT_SHAPE),
)

NO_REQUIRES_GRAD = KnownDeviation(
    property="backward_errors::test_backward_without_grad_raises",
    reason=(
        "tinygrad has no requires_grad: backward() of a loss computed from constants only "
        "succeeds (and gives the constants a .grad), where torch raises 'element 0 of tensors "
        "does not require grad and does not have a grad_fn'"
    ),
    evidence="""\
from tinygrad import Tensor
c = Tensor([1.0, 2.0, 3.0])
c.sum().backward()      # torch: RuntimeError: element 0 of tensors does not require grad ...
print(c.grad.numpy())   # [1. 1. 1.]
""",
    diverges=Diverges(at=(Backward,), fields=("error", "grads"), engine_error=None,
                      reference_error=ErrorKind.NO_GRAD_FN),
)

LIST_INDEX_UNCHECKED = KnownDeviation(
    property="indexing::test_out_of_range_index_raises",
    reason=(
        "an out-of-range integer inside an index list or index tensor (x[[0, 3]] or "
        "x[Tensor([0, 3])] on 3 rows) is not an error: the row reads as zeros (tinygrad "
        "documents 'out-of-bounds indexing results in a value of 0'); torch raises "
        "IndexError. A plain int index (x[3]) does raise"
    ),
    evidence="""\
from tinygrad import Tensor
x = Tensor([[1.0, 2.0], [3.0, 4.0]])
print(x[[0, 2]].numpy())   # [[1. 2.] [0. 0.]]; torch: IndexError: index 2 is out of bounds ...
print(x[Tensor([0, 2])].numpy())   # the same, where torch raises the same IndexError
""",
    diverges=Diverges(at=(Forward,), fields=("error",), engine_error=None,
                      reference_error=ErrorKind.INDEX_OUT_OF_RANGE),
)

HYPERPARAMETERS_UNCHECKED = KnownDeviation(
    property=("sgd::test_invalid_hyperparameters_raise",
              "adam::test_invalid_hyperparameters_raise[adam]",
              "adam::test_invalid_hyperparameters_raise[adamw]"),
    reason=(
        "the optimizers check few hyperparameters: SGD only lr < 0 and momentum < 0 (a negative "
        "weight_decay and nesterov=True with momentum=0 are accepted), Adam and AdamW only lr < 0 and "
        "weight_decay < 0 (a negative eps and a beta outside [0, 1) are accepted); torch raises "
        "ValueError for each"
    ),
    evidence="""\
from tinygrad import Tensor
from tinygrad.nn.optim import SGD, AdamW
p = Tensor([1.0])
SGD([p], lr=0.1, weight_decay=-0.1)             # torch: Invalid weight_decay value: -0.1
SGD([p], lr=0.1, momentum=0.0, nesterov=True)   # torch: Nesterov momentum requires a momentum ...
AdamW([p], eps=-0.1)                            # torch: Invalid epsilon value: -0.1
AdamW([p], b1=1.0)                              # torch: Invalid beta parameter at index 0: 1.0
AdamW([p], b2=-0.1)                             # torch: Invalid beta parameter at index 1: -0.1
print("all accepted")
""",
    diverges=Diverges(at=(MakeSGD,), fields=("error",), engine_error=None,
                      reference_error=ErrorKind.INVALID_HYPERPARAMETER),
)

SGD_PARAMS_UNCHECKED = KnownDeviation(
    property="sgd::test_invalid_param_lists_raise",
    reason=(
        "the optimizer accepts any tensor: a non-leaf (p * 2) and a param in two groups "
        "(OptimizerGroup) are accepted, where torch raises ValueError; and a group with no "
        "params is SGD([]), which raises AssertionError, where torch accepts "
        "SGD([{'params': []}])"
    ),
    evidence="""\
from tinygrad import Tensor
from tinygrad.nn.optim import SGD, OptimizerGroup
p, q = Tensor([1.0]), Tensor([2.0])
SGD([p, q * 2], lr=0.1)                                # torch: can't optimize a non-leaf Tensor
OptimizerGroup(SGD([p, q], lr=0.1), SGD([q], lr=0.1))  # torch: some parameters appear in ...
try:
    SGD([], lr=0.1)                                    # torch accepts SGD([{"params": []}])
except AssertionError as error:
    print("AssertionError:", error)
""",
    applies=lambda program, trace: (
        _missed(ErrorKind.NON_LEAF_PARAMETER, ErrorKind.DUPLICATE_PARAMETER)(program, trace)
        or _raised_alone(ErrorKind.EMPTY_PARAMETER_LIST)(program, trace)
    ),
)

STEP_STATE_DIFFERS = KnownDeviation(
    # training_loops::test_minibatch_gradient_accumulation was its witness while the suite
    # stepped float64 params here (lr in float32, cause 1); with step_float64 declared
    # unsupported its programs never show it, and a checkpoint's lost hyperparameters
    # (cause 3) are what the ci programs meet most (7 of 91 programs in the adamw case)
    property="optimizers::test_state_dict_round_trip[adamw]",
    reason=(
        "a step moves params by other amounts than torch's, for three causes in how tinygrad's "
        "optimizers keep their state, which show alike (param values right after a step): "
        "(1) the state is float32 whatever the param's dtype: lr ('store lr in at least float32 "
        "precision', also when changed between steps), AdamW's moments m, v (OPTIM_DTYPE) and "
        "its beta powers b1_t, b2_t, so a float64 param moves by a float32-precision amount "
        "(SGD lr=0.1: 1.0 - 0.1 gives 0.8999999985098839, not 0.9; so tinygrad declares "
        "step_float64 unsupported and the suite steps no float64 param), and a float32 param's "
        "Adam step by 1 - b2_t computed from float32(0.999) = 0.99900001, 1.3e-5 too small "
        "relative to itself (each step about 6e-6 too long), which adds up over a run (so "
        "tinygrad declares steps_at_param_precision unsupported); "
        "(2) AdamW's bias corrections use b1_t, b2_t, running products of the betas in effect "
        "at each step, where torch computes 1 - beta ** step from the current betas: after a "
        "change of betas between steps the correction differs; "
        "(3) tinygrad's optimizer checkpoint (nn.state.get_state_dict) holds tensors only: "
        "lr, buffers, moments, beta powers; momentum, weight_decay, eps and betas are Python "
        "attributes, so a fresh optimizer loaded from it keeps its constructor's values, where "
        "torch's state_dict carries each group's hyperparameters"
    ),
    name="step values: float32 state, beta powers, checkpoint without hyperparameters",
    evidence="""\
import numpy as np
from tinygrad import Tensor, Context
from tinygrad.nn.optim import SGD, Adam, AdamW
from tinygrad.nn.state import get_state_dict, load_state_dict
# (1) float32 state for a float64 param
p = Tensor(np.array([1.0]))              # float64
opt = SGD([p], lr=0.1)
p.sum().backward()
with Context(TRAINING=1):
    opt.step()
print(repr(p.numpy()[0]), opt.lr.dtype)  # 0.8999999985098839 dtypes.float; torch: 0.9
p = Tensor(np.array([1.0, 2.0]))         # float64; lr 0.5 is exact in float32
opt = AdamW([p], lr=0.5, weight_decay=0.0)
for _ in range(3):
    (p * p).sum().backward()
    with Context(TRAINING=1):
        opt.step()
    opt.zero_grad()
print(repr(p.numpy()), opt.m[0].dtype)   # [-0.33589447, 0.53698903] dtypes.float
                                         # torch: [-0.33590462, 0.53697483] (float64 state)
p = Tensor(np.array([0.0], dtype=np.float32))  # float32: the beta powers' own rounding
opt = Adam([p], lr=1.0)
for _ in range(3):
    p.sum().backward()                   # a grad of 1: torch moves p by exactly lr a step
    with Context(TRAINING=1):
        opt.step()
    opt.zero_grad()
print(repr(p.numpy()[0]), opt.b2_t.dtype)  # -2.9999697 dtypes.float; torch: -3.0
# (2) betas changed between steps
p = Tensor(np.array([1.0], dtype=np.float32))
opt = AdamW([p], lr=0.1, b1=0.5, b2=0.5, weight_decay=0.0)
for betas in [(0.5, 0.5), (0.9, 0.999)]:
    opt.b1, opt.b2 = betas               # torch: opt.param_groups[0]["betas"] = betas
    p.sum().backward()
    with Context(TRAINING=1):
        opt.step()
    opt.zero_grad()
print(p.numpy(), opt.b1_t.numpy())       # [0.79999995] [0.45]; torch: [0.88170576] (1 - 0.9 ** 2)
# (3) the checkpoint drops hyperparameters changed after construction
p = Tensor(np.array([0.0], dtype=np.float32))
opt = AdamW([p], eps=1.0)
opt.eps = 1e-8                           # torch: opt.param_groups[0]["eps"] = 1e-8
p.sum().backward()
state = get_state_dict(opt)
print(sorted(state))                     # ['b1_t', 'b2_t', 'lr', 'm.0', 'params.0', 'v.0']
opt = AdamW([p], eps=1.0)
load_state_dict(opt, state, verbose=False)
with Context(TRAINING=1):
    opt.step()
print(opt.eps, p.numpy())                # 1.0 [-0.0005]; torch: eps 1e-08, p = [-0.001]
""",
    diverges=Diverges(at=(Step,), fields=("values",), engine_error=None, reference_error=None),
    local=True,
)

# The next three are step() failures: exceptions that no ErrorKind describes, so the run stops
# with EngineCrash; each is recognised from where the run stopped and what it said. (A step
# with a param whose .grad is None is not among them: "step_none_grad" is declared unsupported,
# so the suite never steps so, and where an earlier divergence leaves tinygrad's grad None —
# a backward it refused — the step's AssertionError is classified NONE_GRAD: the run goes on
# and that earlier divergence decides which deviation it is.)
MOMENTUM_SWITCHED_ON = KnownDeviation(
    property="sgd::test_hyperparameter_changes_between_steps",
    reason=(
        "momentum cannot be switched on after construction: SGD(momentum=0) keeps no momentum "
        "buffers, so setting opt.momentum later makes step() raise IndexError ('list index out "
        "of range'); torch's param_groups[i]['momentum'] = 0.9 takes effect at the next step"
    ),
    name="momentum switched on after construction",
    evidence="""\
from tinygrad import Tensor, Context
from tinygrad.nn.optim import SGD
p = Tensor([1.0, 2.0])
opt = SGD([p], lr=0.1)                   # momentum=0: no buffers
opt.momentum = 0.9                       # torch: opt.param_groups[0]["momentum"] = 0.9
p.sum().backward()
try:
    with Context(TRAINING=1):
        opt.step()                       # torch: p = [0.9, 1.9] (the buffer starts as the grad)
except IndexError as error:
    print("IndexError:", error)
""",
    diverges=Diverges(at=(Step,), crash=True, message=r"IndexError: list index out of range"),
)

ASSIGN_CYCLE = KnownDeviation(
    # sgd::test_steps_match_reference was its witness while SGD's rule was checked on
    # backward()'s grads; it now steps drawn grads (p.grad = ...), which read no other param.
    # The ci draws reach it once (1 of about 180 programs) in zero_grad::test_zero_grad_in_loops
    property="zero_grad::test_zero_grad_in_loops",
    reason=(
        "step() raises RuntimeError ('cycle detected in assign graph') when the grads of two "
        "params it steps read each other (loss = (p1 * p0).sum(): p0.grad is p1, p1.grad is "
        "p0, both lazy): each update reads the buffer the other overwrites; torch steps both"
    ),
    name="step of params whose grads read each other",
    evidence="""\
import numpy as np
from tinygrad import Tensor, Context
from tinygrad.nn.optim import SGD
p0 = Tensor(np.array([1.0], dtype=np.float32))
p1 = Tensor(np.array([2.0], dtype=np.float32))
opt = SGD([p0, p1], lr=0.1)
(p1 * p0).sum().backward()
try:
    with Context(TRAINING=1):
        opt.step()                       # torch: p0 = 0.8, p1 = 1.9
except RuntimeError as error:
    print("RuntimeError:", error)
""",
    diverges=Diverges(at=(Step,), crash=True, message=r"RuntimeError: cycle detected in assign graph"),
    # found under --hypothesis-seed=2 (dev); ci reaches it in one program of its witness
    rare=True,
)

FLOAT64_BACKWARD_KERNEL = KnownDeviation(
    property="accumulation::test_losses_accumulate",
    reason=(
        "a float64 backward can fail to compile: reading the grad of a float64 param whose "
        "loss sums a stack, a minimum with relu and a max of one difference raises "
        "RuntimeError 'UOp verification failed ... on Ops.WHERE dtypes.double' (a float NEG "
        "inside a double WHERE: the kernel mixes dtypes); the same graph in float32 computes "
        "torch's grads"
    ),
    evidence="""\
import numpy as np
from tinygrad import Tensor
p = Tensor(np.zeros((2, 3))).contiguous(); p.requires_grad = True    # float64
z = Tensor(np.zeros((2, 2, 3)))
c = Tensor(np.array([[[0.0, 0, 0], [3.0, 3, 3]], [[3.0, 3, 3], [3.0, -2, 0]]]))
d = p - z
loss = d.stack(z, dim=0).sum() + c.minimum(p.relu()).sum() + d.max()
loss.backward()
print(p.grad.numpy())  # RuntimeError: UOp verification failed at 173 on Ops.WHERE dtypes.double
# torch, float64: 2.1667 everywhere; tinygrad in float32: the same
""",
    name="float64 backward kernel fails type verification",
    diverges=Diverges(at=(Backward,), crash=True, message=r"UOp verification failed"),
    rare=True,
)

TANH_NEAR_ZERO = KnownDeviation(
    # adam::test_steps_match_reference[adamw] was its witness while Adam's rule was checked on
    # backward()'s grads; it now steps drawn grads. A tiny param under tanh and a kink can be
    # drawn by any property that draws graphs and compares with the reference: this one
    property="accumulation::test_repeated_backward_accumulates",
    reason=(
        "tanh is computed as 2 * sigmoid(2x) - 1, which cancels near 0: it is 0 for |x| "
        "below about 3e-8 and off by 0.1% at 1e-5 (torch: x to float32 precision), so a kink "
        "after it (abs, relu, clamp) takes its grad at 0: tanh(1e-10).abs() gives grad 0 where "
        "torch gives 1. The values stay inside the tolerance; the grads do not"
    ),
    name="tanh near 0 (2 * sigmoid(2x) - 1)",
    evidence="""\
import numpy as np
from tinygrad import Tensor
p = Tensor(np.array([1e-10, 1e-05], dtype=np.float32))
print(p.tanh().numpy())          # [0. 1.001358e-05]; torch: [1.0000e-10, 1.0000e-05]
p.tanh().abs().sum().backward()
print(p.grad.numpy())            # [0. 1.]; torch: [1., 1.]
# tinygrad/mixin/elementwise.py: tanh returns 2.0 * ((2.0 * self).sigmoid()) - 1.0, as since
# tinygrad PR #111 (2020), which noted it matches torch.tanh "upto 6-7 floating precision"
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_grads_flushed_by_tanh,
    local=True,
    # ci's draws reached it in adam::test_steps_match_reference[adamw] until the generator drew
    # its choices from Hypothesis directly (issue 15); no property's ci programs do since
    rare=True,
)

POWER_OF_A_POWER = KnownDeviation(
    # adam::test_hyperparameter_changes_between_steps[adam] was its witness while Adam's
    # properties drew forwards; they now step drawn grads. Any drawn graph may nest two pows
    property="zero_grad::test_zero_grad_default_sets_none",
    reason=(
        "a power whose exponent (or base) is itself a power with a tensor exponent fails to "
        "compile: x ** (y ** z) raises ValueError 'cannot convert float NaN to integer' from a "
        "constant folded by a rewrite of uop/symbolic.py, at the first read of anything that "
        "depends on it (the forward's value, or a grad after backward); torch computes it"
    ),
    name="power of a power fails to compile",
    evidence="""\
from tinygrad import Tensor
p = Tensor([0.0])
print(((p + 2.0) ** ((p + 0.5) ** (p + 0.5))).numpy())
# ValueError: cannot convert float NaN to integer (tinygrad/dtype.py const, called from a
# rewrite rule in tinygrad/uop/symbolic.py); the same with DEV=PYTHON. torch: tensor([1.6325]).
# (p + 0.5) ** 0.5 as the exponent (a constant exponent) computes
""",
    diverges=Diverges(crash=True, message=r"cannot convert float NaN to integer"),
    rare=True,  # no ci draws on the CPU device reach it; a DEV=PYTHON ci run did (in Adam's
    # properties, before they stepped drawn grads)
)

ZERO_D_PROMOTES = KnownDeviation(
    property="accumulation::test_backward_with_gradient",
    reason=(
        "a 0-d tensor takes part in type promotion, and backward(gradient) keeps the "
        "gradient's dtype: a float64 0-d param plus a float32 tensor is float64 (torch: "
        "float32, a 0-d tensor does not promote a dimensioned one of its kind), a float32 "
        "gradient then gives that float64 param a float32 grad (torch: a grad has its param's "
        "dtype), and a second backward raises RuntimeError 'assign dtype mismatch "
        "dtypes.float != dtypes.double' adding a float64 grad to it"
    ),
    name="0-d promotion and grads in the gradient's dtype",
    evidence="""\
import numpy as np
from tinygrad import Tensor
p0 = Tensor(np.zeros(3, dtype=np.float32)); p0.requires_grad = True
p1 = Tensor(np.array(0.0)).clone(); p1.requires_grad = True    # float64, 0-d
out = (p1 + p0).max()                                          # tinygrad: float64; torch: float32
out.backward(Tensor(np.array(0.0, dtype=np.float32)))          # a float32 gradient
print(p1.grad.dtype)                                           # dtypes.float; torch: float64
out.backward()   # RuntimeError: assign dtype mismatch dtypes.float != dtypes.double; torch: none
""",
    applies=_grad_dtype_not_its_params,
    rare=True,  # a 0-d float64 param among float32 ones, and a float32 gradient: dev seed 3
)

NAN_AT_A_KINK = KnownDeviation(
    # adam::test_hyperparameter_changes_between_steps[adamw] was its witness while Adam's
    # properties drew forwards; they now step drawn grads. A param that a step made NaN and a
    # kink after it: a training loop (AdamW, eps=0, a zero grad; or an infinite grad)
    property="training_loops::test_training_loop",
    reason=(
        "at a NaN input abs, relu and clamp take the other branch of their kink: the grad of "
        "abs(NaN) is 1 (torch 0), of relu(NaN) 0 (torch 1), of clamp(NaN, -1, 1) 1 (torch 0); "
        "a param becomes NaN in a run when, for one, AdamW with eps=0 steps a zero grad (0 / 0)"
    ),
    name="kinks at NaN",
    evidence="""\
import numpy as np
from tinygrad import Tensor
for op in ("abs", "relu"):
    p = Tensor(np.array([np.nan, -1.0, 2.0], dtype=np.float32)); p.requires_grad = True
    getattr(p, op)().sum().backward()
    print(op, p.grad.numpy())  # abs [1. -1. 1.], relu [0. 0. 1.]; torch: abs [0, -1, 1], relu [1, 0, 1]
p = Tensor(np.array([np.nan], dtype=np.float32)); p.requires_grad = True
p.clamp(-1, 1).sum().backward()
print(p.grad.numpy())          # [1.]; torch: [0.]
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_grads_at_nan_kinks,
    local=True,
    rare=True,  # a param must first become NaN: dev seed 3
)

NAN_IN_MAX_MIN = KnownDeviation(
    # adam::test_hyperparameter[betas-adam] and [weight_decay-adamw] were its witnesses while
    # Adam's properties drew forwards; they now step drawn grads. A param that a step made NaN,
    # then a max or min over it: many steps (Adam, eps=0, a zero grad; or an infinite grad)
    property="training_loops::test_many_steps_without_zero_grad",
    reason=(
        "max and min skip a NaN where torch propagates it, and their grads follow: max([-1, "
        "NaN, NaN]) is -1 with grad [1, 0, 0] (torch: NaN, its grad spread over the NaNs, [0, "
        "0.5, 0.5]); maximum(NaN, 0.5) sends the grad to 0.5 (torch: to the NaN); max(dim) "
        "of a row holding a NaN gives that row NaN grads (torch: 1 at the NaN). A param "
        "becomes NaN in a run when Adam with eps=0 steps a zero grad (0 / 0)"
    ),
    name="max and min at NaN",
    evidence="""\
import numpy as np
from tinygrad import Tensor
for op in ("max", "min"):
    p = Tensor(np.array([-1.0, np.nan, np.nan], dtype=np.float32)); p.requires_grad = True
    out = getattr(p, op)(); out.backward()
    print(op, out.numpy(), p.grad.numpy())  # -1.0 [1. 0. 0.]; torch: nan [0, 0.5, 0.5]
v = np.array([[np.nan, 1.0], [2.0, 3.0]], dtype=np.float32)
p = Tensor(v); p.requires_grad = True
p.maximum(Tensor(np.full((2, 2), 0.5, dtype=np.float32))).sum().backward()
print(p.grad.numpy())          # [[0, 1], [1, 1]]; torch: [[1, 1], [1, 1]]
p = Tensor(v); p.requires_grad = True
p.max(axis=1).sum().backward()
print(p.grad.numpy())          # [[nan, nan], [0, 1]]; torch: [[1, 0], [0, 1]]
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_grads_at_nan_max_min,
    local=True,
    rare=True,  # a param must first become NaN (Adam, eps=0, a zero grad); no ci program since
    # Adam's properties step drawn grads
)


KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    NEVER_FREES, STEP_CHANGES_LAZY_RESULTS, DIM_REDUCTION_TIES,
    POW_AT_NEGATIVE_ZERO, WRONG_GRADIENT_WRITES_GRADS, NO_REQUIRES_GRAD, LIST_INDEX_UNCHECKED,
    HYPERPARAMETERS_UNCHECKED, SGD_PARAMS_UNCHECKED, STEP_STATE_DIFFERS, MOMENTUM_SWITCHED_ON,
    FLOAT64_BACKWARD_KERNEL, ASSIGN_CYCLE, TANH_NEAR_ZERO, POWER_OF_A_POWER, ZERO_D_PROMOTES,
    NAN_AT_A_KINK, NAN_IN_MAX_MIN,
)


# torch's hyperparameter names as tinygrad's optimizers hold them (LARS for SGD, LAMB for
# Adam and AdamW)
_ATTRIBUTES = {"momentum": "momentum", "weight_decay": "wd", "eps": "eps"}


def _one_optimizer(kind: str, params: Sequence[Any], options: Mapping[str, Any]) -> Any:
    """``SGD``, ``Adam`` or ``AdamW`` of tinygrad.nn.optim with the call's torch arguments, by
    tinygrad's names: ``betas`` is ``b1, b2``; ``lr``, ``eps`` and ``weight_decay`` keep their
    names, and Adam's and AdamW's defaults are torch's (lr 0.001, betas (0.9, 0.999), eps 1e-8,
    AdamW's weight_decay 0.01). amsgrad, maximize and Adam's weight_decay never arrive
    (declared unsupported)."""
    from tinygrad.nn import optim

    arguments = dict(options)
    if kind != "sgd" and "betas" in arguments:
        arguments["b1"], arguments["b2"] = arguments.pop("betas")
    build: dict[str, Callable[..., Any]] = {"sgd": optim.SGD, "adam": optim.Adam,
                                            "adamw": optim.AdamW}
    return build[kind](list(params), **arguments)


# op:mse_loss exists only once conformance/ops.py has the op (Capabilities rejects unknown
# features), so the gap is declared where the suite can draw it.
_LOSSES_UNSUPPORTED: dict[str, str] = {
    "op:mse_loss": "tinygrad has no MSE loss (no Tensor method or nn function: its users write "
                   "((x - y) ** 2).mean()); the adapter does not emulate it",
} if "mse_loss" in ALL_OPS else {}


# --- the adapter -------------------------------------------------------------------------------
class TinygradEngine(Engine):
    """tinygrad's ``Tensor`` and ``nn.optim.SGD`` on its default device."""

    name = "tinygrad"
    capabilities = Capabilities(unsupported={
        "hyper:dampening": "tinygrad.nn.optim.SGD(params, lr, momentum, weight_decay, nesterov, "
                           "classic, device, fused) has no dampening argument",
        "hyper:maximize": "tinygrad.nn.optim.SGD, Adam and AdamW have no maximize argument",
        "hyper:amsgrad": "tinygrad.nn.optim.AdamW(params, lr, b1, b2, eps, weight_decay, "
                         "device, fused) has no amsgrad",
        "hyper:adam:weight_decay": "tinygrad.nn.optim.Adam(params, lr, b1, b2, eps, device, "
                                   "fused) has no weight_decay (torch's L2 term g + wd * p; "
                                   "AdamW's decoupled decay is another algorithm)",
        "add_param_group": "tinygrad optimizers have no add_param_group: their params are "
                           "fixed at construction, and several param groups are an "
                           "nn.optim.OptimizerGroup of optimizers built together",
        "zero_grad_keep": "Optimizer.zero_grad() takes no argument and always sets every "
                          "param's .grad to None",
        "index:bool_mask": "tinygrad has no boolean-mask indexing: x[Tensor(mask)] raises "
                           "IndexError ('index dtype dtypes.bool is not supported') and "
                           "x[[True, False]] IndexError ('contains non-int element')",
        "create_graph": "Tensor.backward(gradient) has no create_graph argument",
        "backward_one_element": "backward() without a gradient takes a loss of shape () only: "
                                "one of shape (1,) or (1, 1) raises AssertionError ('when no "
                                "gradient is provided, backward must be called on a scalar "
                                "tensor'), where torch accepts any one-element loss "
                                "(docs/engines/tinygrad.md)",
        **_LOSSES_UNSUPPORTED,
        "update_data": "tinygrad has no .data tensor (Tensor.data() is a memoryview of the "
                       "realized buffer) and no version counter: its one in-place update is "
                       "assign(), tested as update_no_grad",
        "step_none_grad": "step() with a param whose .grad is None raises a bare AssertionError "
                          "(unwrap(t.grad) in Optimizer.schedule_step, so SGD, Adam and AdamW "
                          "alike) and steps nothing; torch skips that param (for Adam/AdamW "
                          "without counting its step) and steps the others",
        "step_0d_param": "step() on a 0-d param raises ValueError ('cannot broadcast tensor to "
                         "fewer dimensions. shape=(1,) to new_shape=()'): lr is a shape-(1,) "
                         "tensor, so the update has shape (1,) (SGD, Adam and AdamW alike); "
                         "torch steps 0-d params like any other",
        "step_float64": "the optimizers keep lr, momentum buffers and Adam's moments in "
                        "float32 (OPTIM_DTYPE) whatever the param's dtype: a float64 param "
                        "moves by a float32-precision amount (SGD lr=0.1: 1.0 - 0.1 gives "
                        "0.8999999985098839, not 0.9), and with momentum step() raises "
                        "RuntimeError ('assign dtype mismatch dtypes.float != dtypes.double'); "
                        "torch keeps a param's state in its dtype (docs/engines/tinygrad.md)",
        "steps_at_param_precision": "the optimizers keep lr, Adam's moments and beta powers "
                                    "in float32 (OPTIM_DTYPE) whatever the param's dtype "
                                    "(STEP_STATE_DIFFERS): every step differs from torch's by "
                                    "their float32 rounding, and over a run that adds up, so "
                                    "the end of nearly every run with an Adam step or a "
                                    "float64 param drifts",
    })
    known_deviations = KNOWN_DEVIATIONS

    def __init__(self) -> None:
        # tinygrad's scheduler calls sys.setrecursionlimit(10000) when it is first imported,
        # which happens lazily at the first realize. Hypothesis warns (an error under
        # filterwarnings=error) when the limit changes inside a test, so import it up front.
        import tinygrad.schedule.rangeify  # noqa: F401

    def version(self) -> str:
        from importlib.metadata import version

        from tinygrad import Device

        return f"{version('tinygrad')}, device {Device.DEFAULT}"

    # --- tensors ---------------------------------------------------------------------------
    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        from tinygrad import Tensor

        # tinygrad has no requires_grad: every float tensor with storage is differentiable.
        tensor = Tensor(np.array(value, copy=True))
        if requires_grad and tensor.device is None:
            # A 0-d value becomes a storage-less constant (device None) that backward never
            # gives a grad (docs/engines/tinygrad.md); clone() allocates its buffer.
            tensor = tensor.clone()
        return tensor

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.array(tensor.numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, loss: Any, **arguments: Any) -> None:
        from tinygrad import Tensor

        if "create_graph" in arguments:
            raise NotImplementedError("declared unsupported: create_graph")
        # Tensor.backward(gradient=None): no retain_graph in tinygrad, whose graphs are never
        # freed (see the module docstring), so a given retain_graph has nothing to go to.
        positional: tuple[Any, ...] = ()
        if "gradient" in arguments:
            positional = (Tensor(np.array(arguments["gradient"], copy=True)),)
        loss.backward(*positional)

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        param.grad = None

    def set_grad(self, param: Any, value: np.ndarray) -> None:
        from tinygrad import Tensor

        param.grad = Tensor(np.array(value, copy=True))

    def shares_memory(self, first: Any, second: Any) -> bool:
        base = first.uop.base
        return base is second.uop.base and base.has_buffer_identity()

    # --- optimizer ---------------------------------------------------------------------------
    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        return self.optimizer("sgd", groups, defaults)

    def optimizer(
        self, kind: str, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
    ) -> Any:
        from tinygrad.nn.optim import OptimizerGroup

        # tinygrad's optimizers have one set of hyperparameters: a group is one optimizer
        # built with what it overrides over what the constructor call passed; what neither
        # passes is tinygrad's default (torch's: lr 0.001, betas (0.9, 0.999), eps 1e-8,
        # AdamW's weight_decay 0.01; SGD's momentum, weight_decay and nesterov off).
        optimizers = [
            _one_optimizer(kind, group["params"],
                           {**defaults, **{k: v for k, v in group.items() if k != "params"}})
            for group in groups
        ]
        return optimizers[0] if len(optimizers) == 1 else OptimizerGroup(*optimizers)

    def state_dict(self, optimizer: Any) -> Any:
        # tinygrad has no Optimizer.state_dict(): its checkpoints take nn.state.get_state_dict
        # of the optimizer object (every Tensor attribute by its path: lr, momentum buffers,
        # Adam's moments and beta powers, and the params themselves), as its MLPerf training
        # scripts do (examples/mlperf/helpers.py get_training_state). Like torch's state_dict,
        # it holds the live tensors, not copies.
        from tinygrad.nn.state import get_state_dict

        return get_state_dict(optimizer)

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        from tinygrad.nn.state import load_state_dict

        load_state_dict(optimizer, state, verbose=False)

    def step(self, optimizer: Any) -> None:
        from tinygrad import Context

        with Context(TRAINING=1):
            optimizer.step()

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        # zero_grad() takes no argument: it is torch's set_to_none=True, the only value the
        # suite passes ("zero_grad_keep" is declared unsupported).
        if not arguments.get("set_to_none", True):
            raise NotImplementedError("declared unsupported: zero_grad_keep")
        optimizer.zero_grad()

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        target = optimizer.optimizers[group] if hasattr(optimizer, "optimizers") else optimizer
        if key == "lr":
            # lr is a tensor so that schedulers can change it without recompiling the step.
            target.lr.assign(type(target.lr)([value], dtype=target.lr.dtype))
        elif key in _ATTRIBUTES:
            target.__dict__[_ATTRIBUTES[key]] = value
        elif key == "betas":
            target.b1, target.b2 = value
        else:
            raise NotImplementedError(f"tinygrad's {type(target).__name__} has no "
                                      f"hyperparameter {key!r}")

    # --- a user's own updates -------------------------------------------------------------------
    def update(self, param: Any, form: str, scalar: float) -> Any:
        # tinygrad has no no_grad (nothing is recorded: backward differentiates the loss's own
        # graph) and no sub_/add_/mul_: its in-place update is assign(), which is what -= and
        # *= do. The forms are written the way a tinygrad user writes them.
        if form == "isub":
            param -= scalar * param.grad
        elif form == "sub_":
            param.assign(param - scalar * param.grad)
        elif form == "add_":
            param.assign(param + param.grad * -scalar)
        elif form == "mul_":
            param *= scalar
        else:
            raise NotImplementedError(f"declared unsupported: update form {form!r}")
        return param

    def edit_grad(self, param: Any, form: str, scalar: float) -> None:
        # .grad is a Tensor; assign() (and *=, /=) updates it in place, keeping the object.
        if form == "zero_":
            param.grad.assign(param.grad.zeros_like())
        elif form == "mul_":
            param.grad *= scalar
        elif form == "div_":
            param.grad /= scalar
        else:
            raise ValueError(f"unknown grad edit {form!r}")

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        if _none_grad_step(error):
            return ErrorKind.NONE_GRAD
        for error_type, fragment, kind in ERROR_PATTERNS:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None
