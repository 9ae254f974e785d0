"""PaddlePaddle (https://github.com/PaddlePaddle/Paddle), tested through its eager (dygraph) API.

Written against paddlepaddle 3.3.1 (the CPU wheel from PyPI). docs/engines/paddle.md has the
install steps, the capability gaps and every finding with a script that reproduces it.

Paddle's API differs from torch's in ways that shape this adapter:

- ``requires_grad`` is spelled ``stop_gradient`` (inverted). The params a program trains are
  made with ``paddle.create_parameter`` (what ``nn.Layer`` makes), not
  ``paddle.to_tensor(value, stop_gradient=False)``: Paddle's optimizers take param groups only
  for Parameters (``Optimizer._add_param_group`` writes ``param.optimize_attr``, which a plain
  eager Tensor lacks: ``AttributeError: 'Tensor' object has no attribute 'optimize_attr'``).
  Constants are ``paddle.to_tensor(value, stop_gradient=True)``.
- torch's SGD is two classes: ``paddle.optimizer.SGD`` (no momentum) and
  ``paddle.optimizer.Momentum`` (``momentum``, ``use_nesterov``). ``weight_decay`` is an L2
  regularizer that adds ``coeff * param`` to the gradient, torch's ``g + wd * p``; torch's
  ``weight_decay=0`` ("no decay") is Paddle's ``weight_decay=None``.
- A param group's ``learning_rate`` is a *scale* of the optimizer's ``learning_rate``. With
  param groups the optimizer gets ``learning_rate=1.0`` and each group its torch lr as scale:
  exact, and it also works when torch's default lr is 0 (a scale ``lr_g / lr`` would not).
- ``optimizer.clear_grad(set_to_zero=...)`` is torch's ``zero_grad(set_to_none=...)``
  inverted (and its default, ``set_to_zero=True``, is the opposite of torch 2.x's).
- ``.grad`` returns a new Python wrapper on every read, so grad identity is the identity of
  the buffer (``same_object``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Capabilities, Diverges, Engine, KnownDeviation
from conformance.compare import (
    array_mismatch,
    divergence,
    first_divergence,
    program_tolerance,
)
from conformance.errors import ErrorKind
from conformance.interpret import crashed_at as _crashed_at
from conformance.ops import PYTHON_OPERATORS, index_parts
from conformance.program import (
    AddParamGroup,
    Backward,
    Const,
    Forward,
    MakeOptimizer,
    MakeSGD,
    Ref,
    SetHyperparameter,
    Step,
    Update,
)
from conformance.runner import end_drift, reference_trace

Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]

# torch.optim.SGD's defaults for what a MakeSGD may leave out.
TORCH_SGD_DEFAULTS: dict[str, Any] = {
    "lr": 0.001, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
    "maximize": False,
}

# torch.optim.Adam's defaults; AdamW's are the same with weight_decay 0.01.
TORCH_ADAM_DEFAULTS: dict[str, Any] = {
    "lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
    "maximize": False,
}


def _paddle() -> Any:
    with warnings.catch_warnings():
        # paddle.utils.cpp_extension warns at import when ccache is not installed; it is about
        # compiling C++ extensions, which this suite never does.
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle

    return paddle


class UnsafeIndex(Exception):
    """An index this adapter refuses to pass to Paddle because Paddle would corrupt memory.

    Deliberately not mapped to any ErrorKind: the run fails as an engine crash.
    """


def _axis_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdim": bool(params.get("keepdim", False))}


def _reduce(function: str) -> Impl:
    return lambda a, p: getattr(_paddle(), function)(a[0], **_axis_kwargs(p))


def _function(function: str) -> Impl:
    return lambda a, p: getattr(_paddle(), function)(a[0])


def _activation(function: str) -> Impl:
    return lambda a, p: getattr(_paddle().nn.functional, function)(a[0])


def _transpose(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """torch's ``transpose(dim0, dim1)`` is Paddle's ``transpose(perm)`` with two axes swapped."""
    ndim = len(a[0].shape)
    perm = list(range(ndim))
    first, second = p["dim0"] % ndim, p["dim1"] % ndim
    perm[first], perm[second] = perm[second], perm[first]
    return _paddle().transpose(a[0], perm)


def _index(tensor: Any, index: Any) -> Any:
    """The index in the form the script writes it: the same int, slice, ``...``, ``None``,
    list or tuple (Paddle routes them as torch does: ``x[1]``, ``x[[0, 1]]`` and
    ``x[(1,)]`` are different calls); NumPy arrays (int64 index tensors and bool masks) become
    Paddle tensors of the same dtype.

    Two index forms make Paddle 3.3.1 index outside the tensor on the CPU, without raising:

    - an integer list or index tensor with an entry out of range: ``x[[0, 3]]`` on a size-3
      axis reads past the end, and its backward writes past the end of the grad (glibc then
      aborts with "double free or corruption (out)" or "corrupted size vs. prev_size", and the
      process hangs) — the known deviation LIST_INDEX_OUT_OF_BOUNDS;
    - an integer list or index tensor after a ``None``: Paddle applies it to another axis than
      the one it follows (``x[None, [0, 1]]`` indexes the new size-1 axis, reading a row past
      x's buffer), without a bounds check — the known deviation NONE_BEFORE_ADVANCED_INDEX.

    Such an index is refused with :class:`UnsafeIndex`, which the suite reports as an engine
    crash (a failure, recorded as that known deviation) instead of corrupting the test process.
    A ``None`` before a bool mask is passed on: Paddle checks the mask against the wrong axis,
    but it does check it.
    """
    _refuse_unsafe(tensor, index_parts(index))
    return _converted(index)


def _converted(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_converted(part) for part in index)
    if isinstance(index, np.ndarray):
        return _paddle().to_tensor(index)
    return index


def _is_integer_array(part: Any) -> bool:
    """An integer list or an int64 index tensor (not a bool mask)."""
    return isinstance(part, list) or (isinstance(part, np.ndarray) and part.dtype.kind == "i")


def _refuse_unsafe(tensor: Any, parts: tuple[Any, ...]) -> None:
    consumed = [_dims_consumed(part) for part in parts]
    dim = 0
    for position, part in enumerate(parts):
        if part is Ellipsis:
            dim = len(tensor.shape) - sum(consumed[position + 1:])
        elif _is_integer_array(part):
            entries = [int(i) for i in np.asarray(part).ravel()]
            if any(earlier is None for earlier in parts[:position]):
                raise UnsafeIndex(
                    f"index {_describe_index(parts)} has a None before the integer index "
                    f"{entries}; Paddle {_paddle().__version__} applies it to another axis, "
                    "without a bounds check, so the adapter does not run it "
                    "(docs/engines/paddle.md, NONE_BEFORE_ADVANCED_INDEX)"
                )
            size = tensor.shape[dim]
            bad = [i for i in entries if not -size <= i < size]
            if bad:
                raise UnsafeIndex(
                    f"integer index {entries} has {bad} out of range for an axis of size "
                    f"{size}; Paddle {_paddle().__version__} reads and (in backward) writes out "
                    "of bounds instead of raising, so the adapter does not run it "
                    "(docs/engines/paddle.md, LIST_INDEX_OUT_OF_BOUNDS)"
                )
        dim += consumed[position]


def _describe_index(parts: tuple[Any, ...]) -> str:
    """``[None, [0, 1]]``: the index as torch code would write it (arrays abbreviated)."""
    described = []
    for part in parts:
        if part is Ellipsis:
            described.append("...")
        elif isinstance(part, np.ndarray) and part.dtype == bool:
            described.append(f"<bool mask of shape {part.shape}>")
        elif isinstance(part, np.ndarray):
            described.append(f"tensor({part.tolist()})")
        else:
            described.append(repr(part))
    return "[" + ", ".join(described) + "]"


def _dims_consumed(part: Any) -> int:
    """How many of the indexed tensor's axes a part indexes: a bool mask all of its own."""
    if part is None or part is Ellipsis:
        return 0
    return part.ndim if isinstance(part, np.ndarray) and part.dtype == bool else 1


def _operator(function: Callable[..., Any]) -> Impl:
    return lambda a, p: function(*a)


def _linear(x: Any, weight: Any, bias: Any = None) -> Any:
    """``F.linear(x, weight[, bias])``: paddle.nn.functional.linear takes the weight as (in,
    out) (paddle.nn.Linear holds it so), torch as (out, in), so the adapter transposes the
    script's weight: a translation of layout, the same product."""
    return _paddle().nn.functional.linear(x, weight.T, bias)


def _reduction(params: Mapping[str, Any]) -> dict[str, Any]:
    """A loss's ``reduction`` when the call passes one (Paddle's default is torch's, mean)."""
    return {"reduction": params["reduction"]} if "reduction" in params else {}


# Paddle's max(x, axis) returns the values only: that is torch's max(dim).values.
OPS: dict[str, Impl] = {
    **{op: _operator(function) for op, function in PYTHON_OPERATORS.items()},
    "exp": _function("exp"),
    "log": _function("log"),
    "sqrt": _function("sqrt"),
    "tanh": _function("tanh"),
    "sigmoid": _activation("sigmoid"),
    "relu": _activation("relu"),
    "abs": _function("abs"),
    "clamp": lambda a, p: _paddle().clip(a[0], min=p.get("min"), max=p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "maximum": lambda a, p: _paddle().maximum(a[0], a[1]),
    "minimum": lambda a, p: _paddle().minimum(a[0], a[1]),
    "reshape": lambda a, p: _paddle().reshape(a[0], list(p["shape"])),
    "transpose": _transpose,
    "unsqueeze": lambda a, p: _paddle().unsqueeze(a[0], p["dim"]),
    "getitem": lambda a, p: a[0][_index(a[0], p["index"])],
    "cat": lambda a, p: _paddle().concat(list(a), axis=p["dim"]),
    "stack": lambda a, p: _paddle().stack(list(a), axis=p["dim"]),
    "where": lambda a, p: _paddle().where(_paddle().to_tensor(p["cond"]), a[0], a[1]),
    "linear": lambda a, p: _linear(*a),
    "mse_loss": lambda a, p: _paddle().nn.functional.mse_loss(a[0], a[1], **_reduction(p)),
    "cross_entropy": lambda a, p: _paddle().nn.functional.cross_entropy(
        a[0], _paddle().to_tensor(p["target"]), **_reduction(p)),
}

# (exception type, substring of Paddle's message, category), found by triggering each one.
ERROR_PATTERNS: tuple[tuple[type[Exception], str, ErrorKind], ...] = (
    # paddle/fluid/eager/backward.cc: "(Fatal) The TensorWrappers of MultiplyGradNode do not
    # exist. This may be because: You calculate backward twice for the same subgraph without
    # setting retain_graph=True. ..." (pybind turns Fatal into SystemError)
    (SystemError, "without setting retain_graph=True", ErrorKind.FREED_GRAPH),
    # paddle/base/dygraph/tensor_patch_methods.py, Tensor.backward:
    # `assert grad_tensor.shape == self.shape, "Tensor shape not match, ..."`
    (AssertionError, "Tensor shape not match", ErrorKind.GRADIENT_SHAPE),
    # "(PermissionDenied) Tensor '...' used in gradient computation has been modified by an
    # inplace operation. Its version is 1 but the expected version is 0. ..."
    (RuntimeError, "modified by an inplace operation", ErrorKind.INPLACE_MODIFIED),
    # paddle/fluid/pybind/slice_utils.h: "(OutOfRange) The starting index 3 of slice is out of
    # bounds in tensor 0-th axis, ..." and "(OutOfRange) The shape of boolean index 2 did not
    # match indexed tensor 3 along axis 0."
    (IndexError, "(OutOfRange)", ErrorKind.INDEX_OUT_OF_RANGE),
    # Optimizer._add_param_group, the same words as torch
    (ValueError, "some parameters appear in more than one parameter group",
     ErrorKind.DUPLICATE_PARAMETER),
    # paddle/optimizer/adam.py and adamw.py, the constructors' only checks: "Invalid value of
    # beta1, expect beta1 in [0,1).", the same for beta2, and "Invalid value of epsilon,
    # expect epsilon >= 0." (torch: "Invalid beta parameter at index 0: ...", "Invalid
    # epsilon value: ...")
    (ValueError, "Invalid value of beta1", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid value of beta2", ErrorKind.INVALID_HYPERPARAMETER),
    (ValueError, "Invalid value of epsilon", ErrorKind.INVALID_HYPERPARAMETER),
    # A hand-written update or grad edit while .grad is None, in Python itself, as in torch:
    # `lr * w.grad` raises TypeError, `w.grad.zero_()` and `w.add_(None, ...)` AttributeError.
    (TypeError, "NoneType", ErrorKind.NONE_GRAD),
    (AttributeError, "'NoneType' object has no attribute", ErrorKind.NONE_GRAD),
)


# --- known deviations ------------------------------------------------------------------------
# One KnownDeviation per finding. It names the properties that witness it (strict xfails) and,
# where other properties can stumble on it too, a predicate saying whether it shows in a run
# (those runs are set aside there, so the other properties keep checking everything else).
# A predicate also sees the partial trace of a run that crashed: the crashing instruction is
# program.instructions[len(trace) - 1]. Every evidence script was run against paddlepaddle
# 3.3.1; docs/engines/paddle.md puts torch 2.13's behaviour next to each.

Predicate = Callable[[Any, Any], bool]


def _attempted(program: Any, trace: Any) -> tuple[Any, ...]:
    """The instructions a run got to: all of them, or up to and including the crashing one."""
    return tuple(program.instructions[: len(trace)])


def _missed(kind: ErrorKind) -> Predicate:
    """Runs where the reference raised ``kind`` and Paddle went on without an error."""

    def applies(program: Any, trace: Any) -> bool:
        pairs = zip(trace, reference_trace(program), strict=False)
        return any(got.error is None and want.error is kind for got, want in pairs)

    return applies


def _forward_operands(program: Any, trace: Any) -> list[tuple[Any, list[Any]]]:
    """(node, operand values) for every node of every Forward the run got to, recomputed with
    Paddle from the param values the trace shows right before that Forward."""
    paddle = _paddle()
    found: list[tuple[Any, list[Any]]] = []
    for index, instruction in enumerate(_attempted(program, trace), start=1):
        if not isinstance(instruction, Forward):
            continue
        values: dict[str, np.ndarray] = dict(trace[index - 1].values)
        with paddle.no_grad():
            for node in instruction.nodes:
                operands = [_operand_value(operand, values) for operand in node.operands]
                found.append((node, operands))
                tensors = [v if isinstance(v, float) else paddle.to_tensor(v) for v in operands]
                try:
                    values[node.out] = np.array(OPS[node.op](tensors, node.params).numpy())
                except Exception:
                    break  # the engine's own run raised here too
    return found


def _operand_value(operand: Any, values: Mapping[str, np.ndarray]) -> Any:
    if isinstance(operand, Ref):
        return values[operand.name]
    if isinstance(operand, Const):
        return operand.value
    return float(operand)


def _ties_along_dim(program: Any, trace: Any) -> bool:
    """Whether some max_dim or min_dim node reduces a slice whose extreme value occurs more
    than once."""
    ops = {"max_dim": np.max, "min_dim": np.min}
    if not any(isinstance(i, Forward) and any(n.op in ops for n in i.nodes)
               for i in _attempted(program, trace)):
        return False
    for node, operands in _forward_operands(program, trace):
        if node.op not in ops:
            continue
        x, dim = operands[0], node.params["dim"]
        hits = np.sum(x == ops[node.op](x, axis=dim, keepdims=True), axis=dim)
        if np.any(hits > 1):
            return True
    return False


def _none_before_advanced_index(program: Any, trace: Any) -> bool:
    """Whether a Forward the run got to indexes with a None before an integer list or a bool
    mask (whether the run crashed there, on the adapter's refusal, or went on)."""
    return any(
        node.op == "getitem" and _has_none_before_advanced(node.params["index"])
        for instruction in _attempted(program, trace) if isinstance(instruction, Forward)
        for node in instruction.nodes
    )


def _has_none_before_advanced(index: Any) -> bool:
    parts = index_parts(index)
    advanced = [i for i, part in enumerate(parts) if isinstance(part, (list, np.ndarray))]
    return bool(advanced) and any(part is None for part in parts[: advanced[0]])


def _optimizer_at(program: Any, position: int) -> MakeSGD | None:
    """The MakeSGD that the instruction at ``position`` acts on (the last one before it)."""
    makes = [i for i in program.instructions[:position] if isinstance(i, MakeSGD)]
    return makes[-1] if makes else None


def _settings(make: MakeSGD) -> list[dict[str, Any]]:
    """Each group's hyperparameters, torch's defaults filled in."""
    base = {**TORCH_SGD_DEFAULTS, **make.defaults}
    return [{**base, **group.overrides} for group in make.groups]


def _uses_momentum(make: MakeSGD) -> bool:
    """Whether the adapter builds a paddle.optimizer.Momentum for it (see PaddleEngine.sgd)."""
    if make.kind != "sgd":
        return False
    base = {**TORCH_SGD_DEFAULTS, **make.defaults}
    return any(s["momentum"] != 0 or s["nesterov"] for s in (base, *_settings(make)))


def _group_dtypes(program: Any, make: MakeSGD) -> list[set[np.dtype]]:
    dtypes = {param.name: param.value.dtype for param in program.params}
    return [{dtypes[name] for name in group.params if name in dtypes} for group in make.groups]


def _float32_inexact(value: float) -> bool:
    return float(np.float32(value)) != float(value)


def _momentum_rounds_float64(program: Any, trace: Any) -> bool:
    """A Step the run finished on a Momentum optimizer with a float64 param in a group whose
    momentum or (non-zero) weight_decay is not a float32 number."""
    finished = program.instructions[: len(trace) - 1]
    for position, instruction in enumerate(finished):
        make = _optimizer_at(program, position)
        if not isinstance(instruction, Step) or make is None or not _uses_momentum(make):
            continue
        for hyper, dtypes in zip(_settings(make), _group_dtypes(program, make), strict=True):
            rounded = _float32_inexact(hyper["momentum"]) or (
                hyper["weight_decay"] != 0 and _float32_inexact(hyper["weight_decay"])
            )
            if np.dtype("float64") in dtypes and rounded:
                return True
    return False


def _isub_rebinds(program: Any, trace: Any) -> bool:
    """The run made a ``w -= lr * w.grad`` update (which rebinds w to a new tensor)."""
    return any(
        isinstance(instruction, Update) and instruction.form == "isub" and observation.error is None
        for instruction, observation in zip(program.instructions, trace[1:], strict=False)
    )


def _data_update_bumped_version(program: Any, trace: Any) -> bool:
    """The run made a ``w.data.sub_(...)`` update and a later backward raised the in-place
    error where the reference did not."""
    done = _attempted(program, trace)
    return (any(isinstance(i, Update) and i.form == "data" for i in done)
            and _raised_alone(ErrorKind.INPLACE_MODIFIED)(program, trace))


def _raised_alone(kind: ErrorKind) -> Predicate:
    """Runs where Paddle raised ``kind`` and the reference did not raise."""

    def applies(program: Any, trace: Any) -> bool:
        pairs = zip(trace, reference_trace(program), strict=False)
        return any(got.error is kind and want.error is None for got, want in pairs)

    return applies


def _grad_replaced_by_backward(program: Any, trace: Any) -> bool:
    """A backward gave some param a new grad tensor where it had one already."""
    return any(
        isinstance(instruction, Backward) and False in observation.same_grad.values()
        for instruction, observation in zip(program.instructions, trace[1:], strict=False)
    )


def _uses(ops: Collection[str], program: Any) -> bool:
    return any(node.op in ops for instruction in program.instructions
               if isinstance(instruction, Forward) for node in instruction.nodes)


def _grads_first_differ_at_backward(program: Any, trace: Any) -> Any:
    """The (engine, reference) observations where the run first differs, when that is at a
    Backward where neither side raised and only grads differ; else None."""
    found = first_divergence(program, trace, reference_trace(program))
    if found is None:
        return None
    got, want = found[0], found[1]
    after = program.instructions[got.index - 1] if got.index else None
    if not isinstance(after, Backward) or got.error or want.error:
        return None
    return found


def _retained_cross_entropy(program: Any, trace: Any) -> bool:
    """Runs using cross_entropy whose first difference is in grads, at a backward that is not
    the first one of its loss (a second pass through a retained graph).

    Kept as a predicate: a Diverges cannot say which op a divergence involves, and
    Diverges(at=(Backward,), fields=("grads",)) alone would set aside every wrong gradient."""
    if not _uses({"cross_entropy"}, program):
        return False
    found = _grads_first_differ_at_backward(program, trace)
    if found is None:
        return False
    index = found[0].index
    loss = program.instructions[index - 1].loss
    return any(isinstance(i, Backward) and i.loss == loss
               for i in program.instructions[: index - 1])


def _pow_nonfinite_grads(program: Any, trace: Any) -> bool:
    """Runs using pow whose first difference is at a backward, only in where a grad is
    infinite or NaN (pow at a base of -0.0).

    Kept as a predicate: a Diverges cannot say which op is involved nor that values differ
    only in their non-finite entries."""
    if not _uses({"pow"}, program):
        return False
    found = _grads_first_differ_at_backward(program, trace)
    if found is None:
        return False
    got, want = found[0], found[1]
    whys = [array_mismatch(got.grads[name], grad, tolerance=program_tolerance(program))
            for name, grad in want.grads.items()
            if grad is not None and got.grads[name] is not None]
    found_whys = [why for why in whys if why is not None]
    return bool(found_whys) and all(why.endswith("in different places") for why in found_whys)


def _stepped_under_max(program: Any, trace: Any) -> bool:
    """Runs using max_dim or min_dim whose first difference is in grads, at a backward of a
    loss whose forward came before a Step (the step changed a tensor Paddle's max/min grad
    reads: torch saves the index instead).

    Kept as a predicate: a Diverges cannot say which op is involved, nor that a Step came
    between the loss's forward and this backward."""
    if not _uses({"max_dim", "min_dim"}, program):
        return False
    found = _grads_first_differ_at_backward(program, trace)
    if found is None:
        return False
    index = found[0].index
    loss = program.instructions[index - 1].loss
    made = [i for i, instruction in enumerate(program.instructions[: index - 1])
            if isinstance(instruction, Forward) and instruction.loss == loss]
    return bool(made) and any(isinstance(instruction, Step)
                              for instruction in program.instructions[made[-1]: index - 1])


FREED_GRAPH = KnownDeviation(
    property=(
        "retain_graph::test_each_op_frees_like_torch",
        "retain_graph::test_repeated_backward_raises_like_torch",
    ),
    reason=(
        "after a backward without retain_graph, every node of the graph refuses a second "
        "backward (SystemError: the TensorWrappers of <Op>GradNode do not exist), and the "
        "error comes from the loss's own node before any leaf is touched; torch raises only "
        "when it reaches a node whose saved tensors were freed — so a graph of add, sub, "
        "neg, sum, mean, reshape, transpose, unsqueeze, basic indexing, cat and stack "
        "backwards again and accumulates, and leaves reached through such nodes first are "
        "accumulated before the error"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([2], "float64", default_initializer=Assign([1.0, 2.0]))
loss = (x + 1.0).sum()  # add and sum save no tensor in torch
loss.backward()
try:
    loss.backward()  # torch: succeeds, x.grad == [2., 2.]
except SystemError as error:
    print("SystemError:", str(error).splitlines()[0])
print(x.grad.numpy())  # [1. 1.]
""",
    # the reference takes the grads Paddle left (and its own graph, freed, stays so)
    diverges=Diverges(at=(Backward,), fields=("error", "grads"),
                      engine_error=ErrorKind.FREED_GRAPH),
    local=True,
)

DIM_REDUCTION_TIES = KnownDeviation(
    property=("conventions::test_convention[max_dim]", "conventions::test_convention[min_dim]"),
    reason=(
        "paddle.max(x, axis) and paddle.min(x, axis) split the gradient evenly among tied "
        "extremes of a slice; torch's x.max(dim).values and x.min(dim).values give all of it "
        "to the returned index (the first occurrence)"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([3], "float32", default_initializer=Assign([2.0, 2.0, 1.0]))
paddle.max(x, axis=0).backward()
print(x.grad.numpy())  # [0.5 0.5 0. ]; torch: x.max(0).values.backward() gives [1., 0., 0.]
y = paddle.create_parameter([3], "float32", default_initializer=Assign([1.0, 1.0, 2.0]))
paddle.min(y, axis=0).backward()
print(y.grad.numpy())  # [0.5 0.5 0. ]; torch: y.min(0).values.backward() gives [1., 0., 0.]
""",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_ties_along_dim,
    local=True,
)

IMPLICIT_ONES = KnownDeviation(
    property=(
        "backward_errors::test_implicit_gradient_needs_a_scalar",
        "accumulation::test_backward_with_gradient",
    ),
    reason=(
        "backward() without grad_tensor on a tensor with more than one element seeds it with "
        "ones instead of raising; torch raises 'grad can be implicitly created only for "
        "scalar outputs'"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([3], "float32", default_initializer=Assign([1.0, 2.0, 3.0]))
(x * 2.0).backward()  # torch: RuntimeError: grad can be implicitly created only for scalar outputs
print(x.grad.numpy())  # [2. 2. 2.]
""",
)

NO_GRAD_BACKWARD = KnownDeviation(
    property="backward_errors::test_backward_without_grad_raises",
    reason=(
        "backward() on a tensor that does not require grad (stop_gradient=True, no grad node) "
        "does nothing; torch raises 'element 0 of tensors does not require grad and does not "
        "have a grad_fn'"
    ),
    evidence="""\
import paddle
loss = paddle.to_tensor([1.0, 2.0], stop_gradient=True).sum()
loss.backward()  # torch: RuntimeError: element 0 of tensors does not require grad ...
print("no error")
""",
)

LIST_INDEX_OUT_OF_BOUNDS = KnownDeviation(
    property="indexing::test_out_of_range_index_raises",
    reason=(
        "an integer-list index past either end (x[[0, 3]] or x[[0, -4]] on a size-3 axis) is "
        "not bounds-checked: the forward reads memory outside x and the backward writes "
        "outside x.grad, corrupting the heap; torch raises IndexError. The adapter refuses "
        "such an index (an unclassified UnsafeIndex, i.e. an engine crash) so that the test "
        "process survives; an int index past the end does raise IndexError, as in torch"
    ),
    evidence="""\
# Run it in a throwaway process: it corrupts the heap.
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([3, 4], "float64", default_initializer=Assign([[0.0] * 4] * 3))
y = x[[0, -4]]  # torch: IndexError: index -4 is out of bounds for dimension 0 with size 3
print(y.numpy())  # row 1 is whatever lies before x's buffer
y.sum().backward()
print(x.grad.numpy())
# then, at exit: "double free or corruption (out)", and the process hangs
""",
)

NONE_BEFORE_ADVANCED_INDEX = KnownDeviation(
    property="indexing::test_index_gradient",
    reason=(
        "a None before an integer list or a bool mask makes Paddle apply the list or mask to "
        "another axis than the one it follows: x[None, [0, 1]] on a (3, 4) tensor indexes the "
        "new size-1 axis (shape [2, 3, 4], row 1 read from outside x, so the adapter refuses "
        "such an index: an unclassified UnsafeIndex, i.e. an engine crash), and x[None, mask] "
        "checks the mask against that axis (IndexError '(OutOfRange) The dimension of bool "
        "index doesn't match indexed array along dimension 0'); torch and NumPy index x's own "
        "axis: shape (1, 2, 4), and x[None, mask] is x[mask][None]. A None after the list or "
        "mask, and a trailing ..., are indexed as in torch"
    ),
    evidence="""\
import numpy as np
import paddle
x = paddle.to_tensor(np.arange(12.0).reshape(3, 4))
y = x[None, [0, 0]]  # in bounds either way; [0, 1] reads a row from outside x
print(y.shape)  # [2, 3, 4]; torch: torch.Size([1, 2, 4])
print(x[None, :, [0, 0]].shape)  # [1, 2, 4]; torch: torch.Size([1, 3, 2])
try:
    x[None, paddle.to_tensor([True, False, True])]  # torch: shape (1, 2, 4)
except IndexError as error:
    print("IndexError:", str(error).splitlines()[0])
""",
    applies=_none_before_advanced_index,
)

MOMENTUM_FLOAT32_COEFFICIENTS = KnownDeviation(
    property="sgd::test_hyperparameter[momentum]",
    reason=(
        "Momentum passes momentum and weight_decay to its kernel as float32 attributes, so a "
        "float64 param is updated with float32(0.9) instead of 0.9 (relative error ~3e-8, far "
        "above float64 rounding); torch uses the Python floats"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
p = paddle.create_parameter([1], "float64", default_initializer=Assign([1.0]))
opt = paddle.optimizer.Momentum(learning_rate=1.0, momentum=0.9, parameters=[p])
for _ in range(2):
    p.sum().backward()
    opt.step()
    opt.clear_grad(set_to_zero=False)
print(repr(p.item()))  # -1.899999976158142 = -(1 + float32(0.9)); torch: -1.9
q = paddle.create_parameter([1], "float64", default_initializer=Assign([1.0]))
opt = paddle.optimizer.Momentum(learning_rate=1.0, momentum=0.5, weight_decay=0.1, parameters=[q])
(q * 0.0).sum().backward()
opt.step()
print(repr(q.item()))  # 0.8999999985098839 = 1 - float32(0.1); torch: 0.9
""",
    # a step each (excused), or, where every step is within rounding, their sum at the end
    diverges=Diverges(at=(Step,), fields=("values", "drift"), dtypes=("float64",)),
    applies=_momentum_rounds_float64,
    local=True,
)

NO_HYPERPARAMETER_VALIDATION = KnownDeviation(
    property=("sgd::test_invalid_hyperparameters_raise", "adam::test_invalid_hyperparameters_raise"),
    reason=(
        "SGD and Momentum accept a negative learning rate, momentum or weight_decay, and "
        "use_nesterov=True with momentum=0; Adam and AdamW accept a negative learning rate or "
        "weight_decay (they do reject a beta outside [0, 1) and a negative epsilon, as torch "
        "does); torch's constructors raise ValueError for each"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
p = paddle.create_parameter([1], "float32", default_initializer=Assign([1.0]))
# torch's SGD raises ValueError for each: "Invalid learning rate: -0.1", "Invalid momentum
# value: -0.1", "Invalid weight_decay value: -0.1", "Nesterov momentum requires a momentum ..."
paddle.optimizer.SGD(learning_rate=-0.1, parameters=[p])
paddle.optimizer.Momentum(learning_rate=0.1, momentum=-0.1, parameters=[p])
paddle.optimizer.SGD(learning_rate=0.1, weight_decay=-0.1, parameters=[p])
paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.0, use_nesterov=True, parameters=[p])
# torch's Adam and AdamW: "Invalid learning rate: -0.1", "Invalid weight_decay value: -0.1"
paddle.optimizer.Adam(learning_rate=-0.1, parameters=[p])
paddle.optimizer.Adam(learning_rate=0.1, weight_decay=-0.1, parameters=[p])
paddle.optimizer.AdamW(learning_rate=-0.1, parameters=[p])
paddle.optimizer.AdamW(learning_rate=0.1, weight_decay=-0.1, parameters=[p])
print("all accepted")
for options in ({"beta1": 1.0}, {"beta2": -0.1}, {"epsilon": -1e-8}):  # rejected, as in torch
    try:
        paddle.optimizer.Adam(learning_rate=0.1, parameters=[p], **options)
    except ValueError as error:
        print("ValueError:", error)  # Invalid value of beta1, expect beta1 in [0,1). ...
""",
    name="no hyperparameter validation",
    diverges=Diverges(at=(MakeOptimizer,), fields=("error",), engine_error=None,
                      reference_error=ErrorKind.INVALID_HYPERPARAMETER),
)

PARAMETER_LISTS_NOT_CHECKED = KnownDeviation(
    property="sgd::test_invalid_param_lists_raise",
    reason=(
        "an optimizer accepts an empty parameter list and a non-leaf tensor; torch raises "
        "'optimizer got an empty parameter list' and 'can't optimize a non-leaf Tensor' "
        "(a param in two groups is rejected by both, with the same message)"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
p = paddle.create_parameter([1], "float32", default_initializer=Assign([1.0]))
paddle.optimizer.SGD(learning_rate=0.1, parameters=[])  # torch: optimizer got an empty parameter list
h = p * 2.0
paddle.optimizer.SGD(learning_rate=0.1, parameters=[h])  # torch: can't optimize a non-leaf Tensor
print("both accepted; h.is_leaf =", h.is_leaf)
""",
)

ZEROED_GRAD_REPLACED = KnownDeviation(
    property="zero_grad::test_zero_grad_keep_zeroes_in_place",
    reason=(
        "clear_grad(set_to_zero=True) (torch's zero_grad(set_to_none=False)) zeroes the grad in "
        "place, but the next backward writes a new grad tensor instead of accumulating into "
        "it, so a reference held across zero_grad keeps showing zeros; and a grad assigned "
        "in between (p.grad = g) is written over, not accumulated onto: g is lost. torch "
        "accumulates into the same tensor, and onto g"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([2], "float32", default_initializer=Assign([1.0, 2.0]))
opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=[x])
(x * 3.0).sum().backward()
held = x.grad
opt.clear_grad(set_to_zero=True)
print(held.numpy(), held._is_shared_buffer_with(x.grad))  # [0. 0.] True
(x * 3.0).sum().backward()
print(x.grad.numpy(), held.numpy())  # [3. 3.] [0. 0.]; torch: the held grad is x.grad, [3., 3.]
opt.clear_grad(set_to_zero=True)
x.grad = paddle.to_tensor([1.0, 1.0])
(x * 3.0).sum().backward()
print(x.grad.numpy())  # [3. 3.]; torch: [4., 4.] (found 2026-12-05, once runs were checked past
                       # the freed-graph deviation that used to set them aside)
""",
    # grads too: the value a program assigned in between is lost with the object replaced
    diverges=Diverges(at=(Backward,), fields=("grad identity", "grads")),
    applies=_grad_replaced_by_backward,
    local=True,
)

STEP_KEEPS_VERSION = KnownDeviation(
    property="retain_graph::test_step_between_backwards",
    reason=(
        "optimizer.step() updates params in place without bumping their inplace_version, so "
        "a retained graph that saved a param backwards again silently with the stepped "
        "value, where torch raises 'one of the variables needed for gradient computation "
        "has been modified by an inplace operation'; and max(x, axis)/min(x, axis), whose "
        "grad compares the stepped x with the saved max, gives NaN grads, where torch's "
        "max(dim)/min(dim) saved the index and backwards correctly"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
a = paddle.create_parameter([2], "float64", default_initializer=Assign([1.0, 2.0]))
b = paddle.create_parameter([2], "float64", default_initializer=Assign([3.0, 4.0]))
loss = (a * b).sum()  # multiply saves a and b
loss.backward(retain_graph=True)
paddle.optimizer.SGD(learning_rate=0.1, parameters=[a, b]).step()
print(a.inplace_version, b.inplace_version)  # 0 0
loss.backward()  # torch: RuntimeError: ... modified by an inplace operation
print(a.grad.numpy())  # [5.9 7.8] = 3 + 2.9, 4 + 3.8: the second pass used the stepped b
c = paddle.create_parameter([3], "float32", default_initializer=Assign([1.0, 2.0, 0.0]))
loss = paddle.max(c, axis=0)  # paddle's max grad reads c and the max; torch saves the index
loss.backward(retain_graph=True)
paddle.optimizer.SGD(learning_rate=0.1, parameters=[c]).step()  # c = [1.0, 1.9, 0.0]
loss.backward()
print(c.grad.numpy())  # [nan nan nan]: no element equals the saved max; torch: [0., 2., 0.]
""",
    diverges=Diverges(at=(Backward,), fields=("error", "grads")),
    applies=lambda program, trace: (
        _missed(ErrorKind.INPLACE_MODIFIED)(program, trace) or _stepped_under_max(program, trace)
    ),
    local=True,
)

HAND_WRITTEN_UPDATES = KnownDeviation(
    property="training_loops::test_hand_written_loop",  # carried by HAND_WRITTEN_LOOP
    reason=(
        "two of the hand-written updates behave differently: Tensor has no __isub__, so "
        "`with paddle.no_grad(): w -= lr * w.grad` rebinds w to a new tensor (stop_gradient, "
        "no grad, not the optimizer's param, whose values stay as they were), where torch "
        "updates w in place and keeps its grad; and w.data shares w's inplace_version, so "
        "`w.data.sub_(lr * w.grad)` makes a later backward through a retained graph raise "
        "'(PermissionDenied) ... modified by an inplace operation', where torch's .data update "
        "is invisible to autograd and that backward runs with the new values"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
w = paddle.create_parameter([2], "float64", default_initializer=Assign([1.0, 2.0]))
param = w
(w * w).sum().backward()                 # w.grad = [2, 4]
with paddle.no_grad():
    w -= 0.1 * w.grad                    # Tensor has no __isub__: w = w - 0.1 * w.grad
print(w is param, w.numpy(), param.numpy())   # False [0.8 1.6] [1. 2.]; torch: w is param, [0.8 1.6]
print(w.grad, w.stop_gradient)           # None True; torch: w.grad [2., 4.], w.requires_grad True
v = paddle.create_parameter([2], "float64", default_initializer=Assign([1.0, 2.0]))
loss = (v * v).sum()
loss.backward(retain_graph=True)
v.data.sub_(0.1 * v.grad)                # .data shares v's inplace_version
print(v.inplace_version)                 # 1; torch: v._version stays 0
try:
    loss.backward()                      # torch: runs, v.grad = [2, 4] + [1.6, 3.2] = [3.6, 7.2]
except RuntimeError as error:
    print("RuntimeError:", str(error).splitlines()[0][:90])
""",
    applies=lambda program, trace: (
        _isub_rebinds(program, trace) or _data_update_bumped_version(program, trace)
    ),
)

def _inplace_error_accumulated_differently(program: Any, trace: Any) -> bool:
    """Runs whose first difference is a backward where both Paddle and the reference raised
    the in-place error (so only the grads accumulated before the error can differ)."""
    found = first_divergence(program, trace, reference_trace(program))
    return (found is not None and found[0].error is ErrorKind.INPLACE_MODIFIED
            and found[1].error is ErrorKind.INPLACE_MODIFIED)


# Both findings fail training_loops::test_hand_written_loop, so they are one deviation. It
# also carries HAND_WRITTEN_UPDATES (below, not listed on its own): since the suite draws Adam
# and AdamW too, training_loops::test_training_loop no longer meets an isub or .data update
# that diverges within its ci examples, so that finding needs this witness. Its grad edits
# (p.grad.zero_() refused outside no_grad) are the declared gap edit_grad: 16 of the 18 runs
# of training_loops::test_training_loop it set aside (ci) crashed there.
HAND_WRITTEN_LOOP = KnownDeviation(
    property="training_loops::test_hand_written_loop",
    reason=(
        "two findings of the hand-written loop. (1) When a backward through a retained graph "
        "raises the in-place error (a saved param was updated), the leaves accumulated before "
        "the error differ from torch's: Paddle accumulates the leaves whose branch needs no "
        "modified tensor whatever their position, torch only those its node order reaches "
        "first (loss = p0.sum() + (p1 * p1).sum(): torch leaves p0.grad alone, Paddle adds to "
        "it). (2) HAND_WRITTEN_UPDATES: w -= lr * w.grad rebinds w; w.data.sub_ bumps the "
        "version"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
p0 = paddle.create_parameter([1], "float32", default_initializer=Assign([1.0]))
p1 = paddle.create_parameter([1], "float32", default_initializer=Assign([2.0]))
loss0 = p0.sum() + (p1 * p1).sum()
loss0.backward(retain_graph=True)
with paddle.no_grad():
    p1.sub_(0.1 * p1.grad)
try:
    loss0.backward()          # both raise: ... modified by an inplace operation
except RuntimeError as error:
    print("RuntimeError:", str(error).splitlines()[0][:60])
print(p0.grad.numpy())        # [2.]; torch: p0.grad == [1.] (not accumulated before the error)
""",
    applies=lambda program, trace: (
        _inplace_error_accumulated_differently(program, trace)
        or _isub_rebinds(program, trace)
        or _data_update_bumped_version(program, trace)
    ),
)

RETAINED_CROSS_ENTROPY = KnownDeviation(
    property="accumulation::test_repeated_backward_accumulates",
    reason=(
        "cross_entropy's backward is wrong from the second pass through a retained graph on: "
        "each later backward adds a wrong gradient in the target class's column (the other "
        "columns are right), so k backward passes do not give k times the grad; torch's "
        "log_softmax/nll_loss backward gives the same gradient on every pass"
    ),
    evidence="""\
import numpy as np
import paddle
from paddle.nn.initializer import Assign
q = paddle.create_parameter([3], "float32", default_initializer=Assign(
    np.array([0.5, 1.0, -1.0], dtype=np.float32)))
loss = paddle.nn.functional.cross_entropy(q, paddle.to_tensor(np.array(1)))
loss.backward(retain_graph=True)
print(q.grad.numpy())  # [ 0.3482 -0.4259  0.0777], as torch
loss.backward()
print(q.grad.numpy())  # [ 0.6964 -2.8518  0.1554]; torch: [ 0.6964 -0.8518  0.1554]
p = paddle.create_parameter([1], "float32", default_initializer=Assign(np.zeros(1, np.float32)))
loss = paddle.nn.functional.cross_entropy(p, paddle.to_tensor(np.array(0)))
for _ in range(3):
    loss.backward(retain_graph=True)
    print(p.grad.numpy())  # [0.] [-2.] [-6.]; torch: 0 every time (one class: softmax - 1 = 0)
""",
    name="cross_entropy wrong on a retained graph's later backwards",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_retained_cross_entropy,
    local=True,
)

POW_AT_NEGATIVE_ZERO = KnownDeviation(
    property="conventions::test_convention[pow_scalar_exponent]",
    reason=(
        "d(x ** 0.5)/dx at a base of -0.0 is +inf; torch's is -inf (0.5 * x ** -0.5 with "
        "(-0.0) ** -0.5 = -inf); at +0.0 both give +inf"
    ),
    evidence="""\
import numpy as np
import paddle
from paddle.nn.initializer import Assign
x = paddle.create_parameter([3], "float32", default_initializer=Assign(
    np.array([-0.0, 0.0, 1.0], dtype=np.float32)))
(x ** 0.5).sum().backward()
print(x.grad.numpy())  # [inf inf 0.5]; torch: tensor([-inf, inf, 0.5000])
""",
    name="pow's grad at -0.0",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_pow_nonfinite_grads,
    local=True,
)

def _values_first_differ_at_step(program: Any, trace: Any) -> tuple[int, set[str]] | None:
    """(position of the Step, names of the params whose values differ) where a run that did
    not crash first differs from the reference right after a Step, in param values only;
    else None."""
    if _crashed_at(program, trace) is not None:
        return None
    found = divergence(program, trace, reference_trace(program))
    if not Diverges(at=(Step,), fields=("values",)).matches(program, found, None):
        return None
    assert found is not None
    got, want = trace[found.index], reference_trace(program)[found.index]
    tolerance = program_tolerance(program)
    names = {name for name, value in want.values.items()
             if array_mismatch(got.values[name], value, tolerance=tolerance) is not None}
    return found.index - 1, names


def _groups_at(program: Any, position: int) -> list[tuple[dict[str, Any], dict[str, Any], Any]]:
    """(the constructor's arguments, the group's overrides, the group) of each group of the
    optimizer the instruction at ``position`` acts on."""
    make = _optimizer_at(program, position)
    if make is None:
        return []
    return [(dict(make.defaults), dict(group.overrides), group) for group in make.groups]


def _adamw_rounds_decay(program: Any, trace: Any) -> bool:
    """The run first differs right after a Step of an AdamW optimizer, in the values of
    float64 params only, each in a group whose weight_decay (torch's default 0.01 included)
    is not a float32 number; or it agrees after every instruction and its end drifts, in
    such params only (a small decay over a few steps stays inside the float64 tolerance of
    one step)."""
    found = _values_first_differ_at_step(program, trace)
    if found is None:
        drifted = end_drift(program, trace) if _crashed_at(program, trace) is None else None
        if drifted is None:
            return False
        found = len(program.instructions), set(drifted.params)
    position, names = found
    make = _optimizer_at(program, position)
    if make is None or make.kind != "adamw":
        return False
    dtypes = {param.name: param.value.dtype for param in program.params}
    rounded: set[str] = set()
    for defaults, overrides, group in _groups_at(program, position):
        decay = {"weight_decay": 0.01, **defaults, **overrides}["weight_decay"]
        if decay != 0 and _float32_inexact(decay):
            rounded.update(group.params)
    return bool(names) and all(dtypes[name] == np.dtype("float64") and name in rounded
                               for name in names)


def _group_amsgrad_ignored(program: Any, trace: Any) -> bool:
    """The run first differs right after a Step of an Adam or AdamW optimizer, in the values
    of a param whose group sets an amsgrad other than the constructor's."""
    found = _values_first_differ_at_step(program, trace)
    if found is None:
        return False
    position, names = found
    make = _optimizer_at(program, position)
    if make is None or make.kind not in ("adam", "adamw"):
        return False
    ignored: set[str] = set()
    for defaults, overrides, group in _groups_at(program, position):
        if "amsgrad" in overrides and overrides["amsgrad"] != defaults.get("amsgrad", False):
            ignored.update(group.params)
    return bool(names & ignored)


NAN_SENSITIVE_OPS = frozenset({"abs", "max", "min", "max_dim", "min_dim", "relu", "maximum",
                               "minimum"})
"""The ops whose grads at a NaN input differ from torch's (each confirmed on paddle 3.3.1)."""


def _grad_at_nan(program: Any, trace: Any) -> bool:
    """Runs using an op of :data:`NAN_SENSITIVE_OPS` whose first difference is in grads at a
    backward, with a param that is NaN right before it (an optimizer step made it NaN). The
    differences need not sit at the NaN elements: minimum(nan, x) gives x's grad 0 in paddle,
    torch gives it the grad. Params turn NaN only where Adam with eps=0 divides 0 by 0, so
    this sets aside few runs.

    Or: runs using maximum or minimum whose first difference is in grads at a backward, every
    differing grad element NaN in the engine where the reference's is infinite (an infinite
    grad, from exp of a param an Adam step with v = 0 sent to -3e4, times paddle's 0/1 mask).

    Kept as a predicate: a Diverges cannot say which op is involved nor that a param was NaN."""
    if not _uses(NAN_SENSITIVE_OPS, program):
        return False
    found = _grads_first_differ_at_backward(program, trace)
    if found is None:
        return False
    got, want, _ = found
    before = trace[got.index - 1].values
    if any(np.isnan(value).any() for value in before.values()):
        return True
    if not _uses({"maximum", "minimum"}, program):
        return False
    differing = [(got.grads[name], grad) for name, grad in want.grads.items()
                 if grad is not None and got.grads[name] is not None
                 and not np.array_equal(got.grads[name], grad, equal_nan=True)]
    tolerance = program_tolerance(program)
    return bool(differing) and all(
        mine.shape == theirs.shape
        and np.array_equal(np.isnan(mine), np.isinf(theirs) | np.isnan(theirs))
        and array_mismatch(mine[~np.isnan(mine)], theirs[~np.isnan(mine)],
                           tolerance=tolerance) is None
        for mine, theirs in differing)


GRAD_AT_NAN = KnownDeviation(
    property=("adam::test_hyperparameter[amsgrad-adamw]",
              "adam::test_hyperparameter[amsgrad-adam]"),
    reason=(
        "grads at a NaN input differ from torch's: abs's is NaN (torch: 0, grad * sgn(x) and "
        "sgn(nan) is 0); min(), max(), min(dim) and max(dim) give every element NaN (torch "
        "gives the grad to the NaN element); relu gives the NaN element 0, and maximum and "
        "minimum give both operands 0 where one is NaN (torch: the grad); and maximum and "
        "minimum multiply an infinite grad by their 0/1 mask, so both operands get NaN "
        "(torch: the infinite grad to the selected one, 0 to the other). The suite meets "
        "them where Adam with eps=0 divides 0 by 0 on a param whose grad is 0 (torch does the "
        "same), or with v = 0 sends a param to -3e4, and a later loss takes such an op of it"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
def grad(op):
    p = paddle.create_parameter([3], "float32", default_initializer=Assign([0.0, 0.0, float("nan")]))
    op(p).sum().backward()
    return p.grad.numpy()
print(grad(paddle.abs))                                    # [0. 0. nan]; torch: [0., 0., 0.]
print(grad(paddle.min), grad(lambda p: paddle.max(p, 0)))  # [nan nan nan] twice; torch: [0., 0., 1.]
print(grad(paddle.nn.functional.relu))                     # [0. 0. 0.]; torch: [0., 0., 1.]
print(grad(lambda p: paddle.maximum(p, paddle.zeros([3]))))  # [0.5 0.5 0.]; torch: [0.5, 0.5, 1.]
p = paddle.create_parameter([1], "float32", default_initializer=Assign([-1e5]))
paddle.minimum(p, p).abs().exp().sum().backward()  # exp(1e5) = inf: an infinite grad
print(p.grad.numpy())                                      # [nan]; torch: [-inf]
""",
    name="grads at NaN inputs or of infinite grads",
    diverges=Diverges(at=(Backward,), fields=("grads",)),
    applies=_grad_at_nan,
    local=True,
    rare=True,
)

def _eps_zero(program: Any) -> bool:
    """Whether an Adam or AdamW of the program may run with ``eps = 0``: in its constructor's
    arguments, a group's, an added group's or a later ``param_groups[i]["eps"] = 0``."""
    values = []
    for instruction in program.instructions:
        if isinstance(instruction, MakeOptimizer) and instruction.kind != "sgd":
            values.append(instruction.defaults.get("eps"))
            values += [group.overrides.get("eps") for group in instruction.groups]
        elif isinstance(instruction, AddParamGroup):
            values.append(instruction.group.overrides.get("eps"))
        elif isinstance(instruction, SetHyperparameter) and instruction.key == "eps":
            values.append(instruction.value)
    return any(value == 0 for value in values)


def _non_finite_step_at_eps_zero(program: Any, trace: Any) -> bool:
    """Runs of an Adam with ``eps = 0`` whose first difference is in params right after a
    step, every element of a differing param (beyond rounding) that differs non-finite on
    both sides (NaN against an infinity).

    Kept as a predicate: a Diverges cannot say that eps is 0 nor that the values differ only
    in where they are NaN."""
    if not _eps_zero(program):
        return False
    found = first_divergence(program, trace, reference_trace(program))
    if found is None:
        return False
    got, want = found[0], found[1]
    after = program.instructions[got.index - 1] if got.index else None
    if not isinstance(after, Step) or got.error or want.error:
        return False
    tolerance = program_tolerance(program)
    differing = [(got.values[name], value) for name, value in want.values.items()
                 if array_mismatch(got.values[name], value, tolerance=tolerance) is not None]
    return bool(differing) and all(
        mine.shape == theirs.shape and _differ_only_non_finite(mine, theirs, tolerance)
        for mine, theirs in differing)


def _differ_only_non_finite(mine: np.ndarray, theirs: np.ndarray, tolerance: float) -> bool:
    """Where either is NaN or infinite both are (which one may differ), and the finite rest
    agrees within the comparison's tolerance."""
    odd = ~np.isfinite(mine) | ~np.isfinite(theirs)
    if np.isfinite(mine[odd]).any() or np.isfinite(theirs[odd]).any():
        return False
    return array_mismatch(mine[~odd], theirs[~odd], tolerance=tolerance) is None


ADAM_EPS_ZERO_NON_FINITE = KnownDeviation(
    property=("adam::test_none_grads_are_skipped[adam]",
              "adam::test_none_grads_are_skipped[adamw]",
              "adam::test_hyperparameter[betas-adamw]"),
    reason=(
        "with eps = 0 and v = 0, Adam's and AdamW's step is m / 0 and Paddle's kernel reaches "
        "other non-finite values than torch: a param already at -inf stepped by another "
        "infinite update becomes NaN (torch: -inf + -inf = -inf), and a gradient of 1e-45 "
        "gives -inf where torch gives NaN (torch computes (-lr * m) / 0, whose product "
        "underflows to 0 first: 0 / 0; Paddle divides m by 0 first: inf). Reached only "
        "when eps = 0 and a grad's square underflows or is 0"
    ),
    evidence="""\
import numpy as np
import paddle
from paddle.nn.initializer import Assign
def run(kind, betas, grads):
    p = paddle.create_parameter([1], "float32", default_initializer=Assign(np.zeros(1, "float32")))
    opt = getattr(paddle.optimizer, kind)(learning_rate=0.1, beta1=betas[0], beta2=betas[1],
                                          epsilon=0.0, parameters=[p])
    for g in grads:
        p.grad = paddle.to_tensor(np.array([g], "float32"))
        opt.step()
    return p.item()
print(run("AdamW", (0.9, 0.0), [1.0, 0.0, 0.0]))       # nan; torch: -inf
print(run("Adam", (0.0, 0.999), [1.401298464324817e-45]))  # -inf; torch: nan
""",
    name="Adam with eps = 0: other infinities and NaNs",
    diverges=Diverges(at=(Step,), fields=("values",)),
    applies=_non_finite_step_at_eps_zero,
    local=True,
    rare=True,
)

ADAMW_FLOAT32_WEIGHT_DECAY = KnownDeviation(
    property="adam::test_hyperparameter[weight_decay-adamw]",
    reason=(
        "AdamW passes its weight_decay coefficient to the adamw kernel as a float32 "
        "attribute, so a float64 param decays by 1 - lr * float32(wd) (torch's default 0.01, "
        "0.1 and 0.9 are not float32 numbers; relative error ~1e-8, far above float64 "
        "rounding); betas and epsilon stay float64; torch uses the Python float"
    ),
    evidence="""\
import numpy as np
import paddle
from paddle.nn.initializer import Assign
p = paddle.create_parameter([1], "float64", default_initializer=Assign(np.ones(1)))
opt = paddle.optimizer.AdamW(learning_rate=1.0, weight_decay=0.1, parameters=[p])
(p * 0.0).sum().backward()  # a zero grad: the step is the decay alone
opt.step()
print(repr(p.item()))  # 0.8999999985098839 = 1 - float32(0.1); torch: 0.9
q = paddle.create_parameter([1], "float64", default_initializer=Assign(np.zeros(1)))
opt = paddle.optimizer.AdamW(learning_rate=0.1, parameters=[q])  # weight_decay 0.01
for _ in range(2):
    (q * 1.0).sum().backward()
    opt.step()
    opt.clear_grad(set_to_zero=False)
print(repr(q.item()))  # -0.1998999980032345; torch: -0.19989999800099933
""",
    name="AdamW's weight_decay rounded to float32",
    # a step each (excused), or, where every step is within rounding, their sum at the end
    diverges=Diverges(at=(Step,), fields=("values", "drift"), dtypes=("float64",)),
    applies=_adamw_rounds_decay,
    local=True,
)

ADAM_FLOAT32_BETA_POWERS = KnownDeviation(
    # test_steps_match_reference[adam] was a witness too, until its programs no longer mixed
    # float32 and float64 params (step_mixed_dtypes): its 60 ci programs then never drifted
    # by this, while its Adam runs elsewhere do (set aside in 6 properties)
    property="adam::test_param_groups[adamw]",
    reason=(
        "Adam and AdamW keep beta1**t and beta2**t as accumulator tensors of the param's dtype "
        "(beta1_pow_acc, beta2_pow_acc in state_dict()), multiplied by beta every step; for a "
        "float32 param, float32(0.999) = 0.99900001 makes 1 - beta2**t 1.3e-5 too small "
        "relative to itself, so every step is about 6e-6 too long. Each step is far inside "
        "the float32 tolerance; over a run the error adds up (the end-of-run comparison). "
        "torch computes the bias corrections in Python floats; float64 params agree"
    ),
    evidence="""\
import numpy as np
import paddle
import torch
from paddle.nn.initializer import Assign
p = paddle.create_parameter([1], "float32", default_initializer=Assign(np.zeros(1, "float32")))
opt = paddle.optimizer.Adam(learning_rate=1.0, parameters=[p])
q = torch.zeros(1, requires_grad=True)
topt = torch.optim.Adam([q], lr=1.0)
for _ in range(3):  # a constant grad of 1: each step moves lr = 1 exactly, in torch
    (p * 1.0).sum().backward(); opt.step(); opt.clear_grad()
    (q * 1.0).sum().backward(); topt.step(); topt.zero_grad()
print(repr(p.item()), repr(q.item()))  # -2.9999897480010986 -3.0: 29 float32 ulps of 3
print({k: str(v.dtype) for k, v in opt.state_dict().items() if "pow" in k})  # paddle.float32
""",
    name="Adam's bias correction from float32 beta powers",
    diverges=Diverges(fields=("drift",), dtypes=("float32",)),
)

GROUP_AMSGRAD_IGNORED = KnownDeviation(
    property="adam::test_param_groups[adam]",
    reason=(
        "Adam and AdamW take amsgrad for the whole optimizer (a constructor argument; "
        "Adam._update_param_group reads a group's beta1, beta2, epsilon and lazy_mode, AdamW's "
        "also weight_decay), so a param group's 'amsgrad' key is silently ignored and the "
        "group runs with the constructor's; torch's amsgrad is per group"
    ),
    evidence="""\
import paddle
from paddle.nn.initializer import Assign
grads = [4.0, 0.0, 0.0]  # the second moment shrinks: amsgrad's running maximum matters
def run(group, **options):
    p = paddle.create_parameter([1], "float32", default_initializer=Assign([0.0]))
    opt = paddle.optimizer.Adam(learning_rate=0.1, beta2=0.5,
                                parameters=[{"params": [p], **group}], **options)
    for g in grads:
        (p * g).sum().backward()
        opt.step()
        opt.clear_grad(set_to_zero=False)
    return p.item()
print(run({"amsgrad": True}))                # -0.2611 (no amsgrad); torch: -0.1976
print(run({}, amsgrad=True))                 # -0.1976, as torch
print(run({"amsgrad": False}, amsgrad=True))  # -0.1976 (amsgrad); torch: -0.2611
""",
    name="a param group's amsgrad ignored",
    diverges=Diverges(at=(Step,), fields=("values",)),
    applies=_group_amsgrad_ignored,
    local=True,
    rare=True,
)

KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    RETAINED_CROSS_ENTROPY,
    POW_AT_NEGATIVE_ZERO,
    HAND_WRITTEN_LOOP,
    FREED_GRAPH,
    DIM_REDUCTION_TIES,
    IMPLICIT_ONES,
    NO_GRAD_BACKWARD,
    LIST_INDEX_OUT_OF_BOUNDS,
    NONE_BEFORE_ADVANCED_INDEX,
    MOMENTUM_FLOAT32_COEFFICIENTS,
    NO_HYPERPARAMETER_VALIDATION,
    PARAMETER_LISTS_NOT_CHECKED,
    ZEROED_GRAD_REPLACED,
    STEP_KEEPS_VERSION,
    ADAMW_FLOAT32_WEIGHT_DECAY,
    GRAD_AT_NAN,
    GROUP_AMSGRAD_IGNORED,
    ADAM_FLOAT32_BETA_POWERS,
    ADAM_EPS_ZERO_NON_FINITE,
)


class PaddleEngine(Engine):
    """Paddle's eager Tensors, ``paddle.optimizer.SGD`` and ``paddle.optimizer.Momentum``."""

    name: ClassVar[str] = "paddle"
    capabilities: ClassVar[Capabilities] = Capabilities(unsupported={
        "hyper:dampening": "paddle.optimizer.Momentum(learning_rate, momentum, parameters, "
                           "use_nesterov, weight_decay, grad_clip, multi_precision, "
                           "rescale_grad, use_multi_tensor, name) has no dampening: its "
                           "update is velocity = mu * velocity + grad",
        "hyper:maximize": "none of paddle.optimizer.SGD, Momentum, Adam and AdamW has a "
                          "maximize argument",
        "set_hyperparameter": "Paddle optimizers have no public per-group setter: set_lr() "
                              "sets the one base learning rate (a group's learning_rate is a "
                              "fixed scale of it), and momentum, use_nesterov and weight_decay "
                              "are fixed at construction",
        "create_graph": "Tensor.backward(grad_tensor, retain_graph) has no create_graph "
                        "argument (higher-order grads go through paddle.grad)",
        "add_param_group": "paddle.optimizer.Optimizer has no public add_param_group: the "
                           "only route is the private Optimizer._add_param_group (the "
                           "constructor's helper for a list of dicts)",
        "state_dict": "Momentum, Adam and AdamW key each accumulator in state_dict() by a "
                      "name unique in the process (create_parameter_0.w_0_moment1_0), and a "
                      "fresh optimizer names its accumulators anew at its first step "
                      "(..._moment1_1), so after set_state_dict(state) that step raises "
                      "AssertionError 'Optimizer set error, ..._moment1_1 should in state "
                      "dict': a state dict loads only into an optimizer whose names restart, "
                      "in another process (plain SGD has no state to load); torch's "
                      "load_state_dict into a fresh optimizer continues the trajectory "
                      "(docs/engines/paddle.md, STATE_DICT_NAMES)",
        "edit_grad": "a user's in-place edit of a grad as the script writes it (p.grad.zero_(), "
                     "p.grad.scale_(s), p.grad.div_(s), outside no_grad) raises ValueError "
                     "'(InvalidArgument) Leaf Var () that doesn't stop gradient can't use "
                     "inplace strategy': after a backward a grad is a leaf with "
                     "stop_gradient=False; under paddle.no_grad() the same edit works; torch "
                     "edits the grad in place either way",
        "step_mixed_dtypes": "an optimizer keeps one learning-rate tensor, of its first "
                             "param's dtype: with float32 and float64 params in one Momentum, "
                             "Adam or AdamW optimizer, step() raises ValueError '(InvalidArgument)"
                             " The type of data we are trying to retrieve (float64) does not "
                             "match the type of data (float32) currently contained in the "
                             "container', and SGD steps with the lr rounded to the first "
                             "param's dtype (docs/engines/paddle.md); torch steps each param in "
                             "its own dtype",
    })
    known_deviations: ClassVar[Sequence[KnownDeviation]] = KNOWN_DEVIATIONS

    def __init__(self) -> None:
        self.paddle = _paddle()

    def version(self) -> str:
        paddle = self.paddle
        return f"{paddle.__version__} (commit {paddle.version.commit[:10]}), {paddle.get_device()}"

    # --- tensors ---------------------------------------------------------------------------
    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        paddle = self.paddle
        if not requires_grad:
            return paddle.to_tensor(value, stop_gradient=True)
        # Assign copies the values exactly (float64 and -0.0 included).
        return paddle.create_parameter(
            shape=list(value.shape), dtype=str(value.dtype),
            default_initializer=paddle.nn.initializer.Assign(value),
        )

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.array(tensor.numpy(), copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, loss: Any, **arguments: Any) -> None:
        # Tensor.backward(grad_tensor=None, retain_graph=False): torch's retain_graph=None
        # (meaning create_graph's value, False) is passed as it is, and Paddle reads it as False.
        if "create_graph" in arguments:
            raise NotImplementedError("declared unsupported: create_graph")
        positional: tuple[Any, ...] = ()
        if "gradient" in arguments:
            positional = (self.paddle.to_tensor(arguments["gradient"]),)
        loss.backward(*positional, **{k: v for k, v in arguments.items() if k != "gradient"})

    def grad(self, param: Any) -> Any | None:
        return param.grad

    def set_grad_none(self, param: Any) -> None:
        # Positional on purpose: Paddle 3.3.1's Tensor.clear_gradient ignores the keyword
        # (clear_gradient(set_to_zero=False) zeroes the grad instead of removing it).
        param.clear_gradient(False)

    def set_grad(self, param: Any, value: np.ndarray) -> None:
        param.grad = self.paddle.to_tensor(value)

    def same_object(self, first: Any, second: Any) -> bool:
        # Every read of `param.grad` is a new Python wrapper (`p.grad is p.grad` is False), so
        # `is` says nothing. The wrappers share the grad's DenseTensor: a user holding an old
        # wrapper sees later values exactly when both still point at the same allocation. The
        # interpreter holds the previous wrapper, so its allocation is alive and cannot be
        # reused by a new grad in between; an allocation Paddle released (clear_gradient,
        # grad = None) leaves the old wrapper uninitialized, which compares as different.
        return bool(first._is_shared_buffer_with(second))

    def shares_memory(self, first: Any, second: Any) -> bool:
        return bool(first._is_shared_buffer_with(second))

    # --- optimizer ---------------------------------------------------------------------------
    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        optimizer = self.paddle.optimizer
        base = {**TORCH_SGD_DEFAULTS, **defaults}
        settings = [{**base, **{k: v for k, v in g.items() if k != "params"}} for g in groups]
        for hyper in (base, *settings):
            _refuse_unsupported(hyper)
        use_momentum = any(s["momentum"] != 0 or s["nesterov"] for s in (base, *settings))
        plain = len(groups) == 1 and set(groups[0]) == {"params"}
        options: dict[str, Any] = {}  # what the call passes besides the params
        if plain:
            # SGD(params, **defaults): only what is given; Paddle's defaults are torch's
            # (learning_rate 0.001, no weight decay, no nesterov)
            parameters: list[Any] = list(groups[0]["params"])
            if "lr" in defaults:
                options["learning_rate"] = float(defaults["lr"])
            if "weight_decay" in defaults:
                options["weight_decay"] = _weight_decay(defaults["weight_decay"])
            if use_momentum and "nesterov" in defaults:
                options["use_nesterov"] = bool(defaults["nesterov"])
        else:
            parameters = [
                _paddle_group(group["params"], hyper, use_momentum)
                for group, hyper in zip(groups, settings, strict=False)
            ]
            # Every group carries its own weight_decay. The optimizer's must be None: Paddle
            # applies it to every param whose group says None (Optimizer.
            # _create_regularization_of_grad falls back to it), so a group could not turn an
            # optimizer-wide decay off.
            options = {"learning_rate": 1.0, "weight_decay": None}
            if use_momentum:
                options["use_nesterov"] = bool(base["nesterov"])
        if use_momentum:
            # torch's SGD without momentum is momentum 0, Paddle's Momentum default is 0.9:
            # the momentum in effect is always passed.
            return optimizer.Momentum(momentum=float(base["momentum"]), parameters=parameters,
                                      **options)
        return optimizer.SGD(parameters=parameters, **options)

    def optimizer(
        self, kind: str, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
    ) -> Any:
        if kind == "sgd":
            return self.sgd(groups, defaults)
        if kind not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer kind {kind!r}")
        return self._adam(kind, groups, defaults)

    def _adam(self, kind: str, groups: Sequence[Mapping[str, Any]],
              defaults: Mapping[str, Any]) -> Any:
        """``paddle.optimizer.Adam`` / ``AdamW``: torch's betas are ``beta1``/``beta2``, eps is
        ``epsilon``, amsgrad is amsgrad. Adam's ``weight_decay`` is an L2 regularizer (torch's
        Adam ``g + wd * p``; ``None`` for torch's 0), AdamW's a decoupled coefficient
        (``p -= lr * coeff * p``, a float, 0.0 for none). Param groups as for SGD: the
        optimizer's learning_rate 1.0 and each group's torch lr as its scale; a group names
        its betas, eps and amsgrad only where it overrides them (Paddle fills the rest from the
        constructor's arguments), and always its weight_decay."""
        adamw = kind == "adamw"
        base = {**TORCH_ADAM_DEFAULTS, "weight_decay": 0.01 if adamw else 0.0, **defaults}
        overrides = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        for hyper in (base, *overrides):
            if hyper.get("maximize"):
                raise NotImplementedError("Paddle's Adam and AdamW have no maximize")
        options: dict[str, Any] = {}  # what the call passes besides the params and groups
        if "betas" in defaults:
            options["beta1"], options["beta2"] = (float(b) for b in defaults["betas"])
        if "eps" in defaults:
            options["epsilon"] = float(defaults["eps"])
        if "amsgrad" in defaults:
            options["amsgrad"] = bool(defaults["amsgrad"])

        def decay(value: float) -> float | None:
            return float(value) if adamw else _weight_decay(value)

        parameters: list[Any]
        if len(groups) == 1 and not overrides[0]:
            parameters = list(groups[0]["params"])
            if "lr" in defaults:
                options["learning_rate"] = float(defaults["lr"])
            if "weight_decay" in defaults:
                options["weight_decay"] = decay(defaults["weight_decay"])
        else:
            parameters = [
                _paddle_adam_group(group["params"], {**base, **extra}, extra, decay)
                for group, extra in zip(groups, overrides, strict=True)
            ]
            # As for SGD: Adam's optimizer-wide regularizer would apply to every group that
            # says None, so it is None and each group carries its own.
            options["learning_rate"] = 1.0
            options["weight_decay"] = decay(base["weight_decay"]) if adamw else None
        optimizer = self.paddle.optimizer
        build = optimizer.AdamW if adamw else optimizer.Adam
        return build(parameters=parameters, **options)

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        # Paddle 3.3.1's Optimizer.zero_grad(set_to_none=True) is torch's, as clear_grad(
        # set_to_zero=not set_to_none); its clear_grad() alone would zero instead.
        optimizer.zero_grad(**arguments)

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        raise NotImplementedError("declared unsupported: set_hyperparameter")

    # --- a user's own updates ----------------------------------------------------------------
    def update(self, param: Any, form: str, scalar: float) -> Any:
        # torch's spelling where Paddle has it (paddle.no_grad, sub_, add_(alpha=), .data);
        # Paddle's mul_ takes a Tensor only (mul_(0.5): AttributeError "'float' object has no
        # attribute 'shape'"), and its in-place multiply by a number is scale_.
        paddle = self.paddle
        if form == "data":
            param.data.sub_(scalar * param.grad)
            return param
        with paddle.no_grad():
            if form == "isub":
                param -= scalar * param.grad  # Tensor has no __isub__: this rebinds param
            elif form == "sub_":
                param.sub_(scalar * param.grad)
            elif form == "add_":
                param.add_(param.grad, alpha=-scalar)
            elif form == "mul_":
                param.scale_(scalar)
            else:
                raise ValueError(f"unknown update form {form!r}")
        return param

    def grad_requires_grad(self, grad: Any) -> bool:
        # Paddle's requires_grad is `not stop_gradient`; a grad is a leaf with
        # stop_gradient=False after every backward (GRADS_REQUIRE_GRAD).
        return not grad.stop_gradient

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        for error_type, fragment, kind in ERROR_PATTERNS:
            if isinstance(error, error_type) and fragment in str(error):
                return kind
        return None


def _refuse_unsupported(hyper: Mapping[str, Any]) -> None:
    """The suite never draws declared gaps; a program that still asks for one must not pass."""
    if hyper["dampening"] != 0:
        raise NotImplementedError(f"Paddle has no dampening (got {hyper['dampening']!r})")
    if hyper["maximize"]:
        raise NotImplementedError("Paddle has no maximize")


def _weight_decay(value: float) -> float | None:
    """torch's ``weight_decay=0`` means no decay term at all: Paddle's ``None``."""
    return None if value == 0 else float(value)


def _paddle_group(params: Sequence[Any], hyper: Mapping[str, Any], momentum: bool) -> dict:
    group: dict[str, Any] = {
        "params": list(params),
        "learning_rate": float(hyper["lr"]),
        "weight_decay": _weight_decay(hyper["weight_decay"]),
    }
    if momentum:
        group["momentum"] = float(hyper["momentum"])
        group["use_nesterov"] = bool(hyper["nesterov"])
    return group


def _paddle_adam_group(params: Sequence[Any], hyper: Mapping[str, Any],
                       extra: Mapping[str, Any],
                       decay: Callable[[float], float | None]) -> dict[str, Any]:
    """One of Adam's or AdamW's param groups: its lr as a scale of 1.0, its weight_decay,
    and the betas, eps and amsgrad it overrides. Paddle's Adam reads amsgrad from the
    constructor only: a group's "amsgrad" key is passed as a user would write it, and
    ignored (GROUP_AMSGRAD_IGNORED)."""
    group: dict[str, Any] = {
        "params": list(params),
        "learning_rate": float(hyper["lr"]),
        "weight_decay": decay(hyper["weight_decay"]),
    }
    if "betas" in extra:
        group["beta1"], group["beta2"] = (float(b) for b in extra["betas"])
    if "eps" in extra:
        group["epsilon"] = float(extra["eps"])
    if "amsgrad" in extra:
        group["amsgrad"] = bool(extra["amsgrad"])
    return group
