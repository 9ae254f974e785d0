"""MLX (https://github.com/ml-explore/mlx), tested on the functional tier.

Written against mlx 0.32.4 with the ``mlx-cpu`` backend (``pip install 'mlx[cpu]'``).
docs/engines/mlx.md has the install steps, the translation table, the capability gaps and
every finding with a script that reproduces it.

MLX arrays have no ``.grad``: gradients come from function transforms (``mx.grad``,
``mx.vjp``) and optimizers take gradients as input (``opt.apply_gradients(grads, params)``),
so this is a :class:`~conformance.adapter.FunctionalEngine`. How the adapter writes each call
is what an MLX user writes:

- ``loss.backward()`` is ``mx.grad(loss_fn)(params)``; ``loss.backward(g)`` is
  ``mx.vjp(loss_fn, params, [g])``;
- ``torch.optim.SGD/Adam/AdamW(params, lr=...)`` is ``optim.SGD/Adam/AdamW(learning_rate=...)``
  followed by ``opt.init(params)`` (the params the torch constructor is given); several param
  groups are an ``optim.MultiOptimizer`` of one optimizer per group, each picking its params by
  name;
- ``opt.step()`` is ``opt.apply_gradients(grads, params)`` on a dict of the params that have a
  grad (a None grad is left out of the dict, so MLX neither moves that param nor touches its
  state), then ``mx.eval`` of the new params and the optimizer state, as MLX training loops do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import (
    Capabilities,
    Diverges,
    FunctionalEngine,
    KnownDeviation,
)
from conformance.compare import FoundDivergence, array_mismatch, divergence, program_tolerance
from conformance.errors import ErrorKind
from conformance.interpret import crashed_at
from conformance.ops import index_parts
from conformance.program import (
    Backward,
    Forward,
    MakeOptimizer,
    ReloadOptimizer,
    SetGrad,
    SetGradNone,
    SetHyperparameter,
    Step,
)
from conformance.runner import reference_trace


def _mlx() -> tuple[Any, Any, Any]:
    """``mlx.core``, ``mlx.nn`` and ``mlx.optimizers``, imported on first use."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    return mx, nn, optim


Impl = Callable[[Sequence[Any], Mapping[str, Any]], Any]


def _axis(params: Mapping[str, Any]) -> dict[str, Any]:
    """torch's ``dim``/``keepdim`` as MLX's ``axis``/``keepdims``; nothing for a full
    reduction."""
    if params.get("dim") is None:
        return {}
    return {"axis": params["dim"], "keepdims": bool(params.get("keepdim", False))}


def _reduce(function: str) -> Impl:
    return lambda a, p: getattr(_mlx()[0], function)(a[0], **_axis(p))


def _unary(function: str) -> Impl:
    return lambda a, p: getattr(_mlx()[0], function)(a[0])


def _reduction(params: Mapping[str, Any]) -> dict[str, Any]:
    """A loss's ``reduction`` exactly when the program passes one: MLX's own default is what
    a call that leaves it out gets."""
    return {"reduction": params["reduction"]} if "reduction" in params else {}


def _linear(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    """``mlx.nn.Linear.__call__``'s own two forms: ``addmm(bias, x, weight.T)`` with a bias,
    ``x @ weight.T`` without."""
    mx = _mlx()[0]
    if len(a) == 3:
        return mx.addmm(a[2], a[0], a[1].T)
    return a[0] @ a[1].T


class UnsafeIndex(Exception):
    """An integer index outside its axis, which the adapter refuses to pass to MLX.

    MLX 0.32.4 does not bounds-check integer indices: ``x[3]`` on three elements reads past
    the buffer, ``x[-4]`` can end in a segmentation fault, and the backward of such an index
    scatters into memory outside the grad (OUT_OF_RANGE_INDEX_UNCHECKED). Deliberately mapped
    to no ErrorKind: the run fails as an engine crash, recorded as that deviation, instead of
    corrupting the worker's heap for the programs after it.
    """


def _dims_consumed(part: Any) -> int:
    return 0 if part is None or part is Ellipsis else 1


def _refuse_out_of_range(shape: tuple[int, ...], index: Any) -> None:
    parts = index_parts(index)
    consumed = [_dims_consumed(part) for part in parts]
    dim = 0
    for position, part in enumerate(parts):
        if part is Ellipsis:
            dim = len(shape) - sum(consumed[position + 1:])
            continue
        if isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            entries = [int(part)]
        elif isinstance(part, list) or (isinstance(part, np.ndarray) and part.dtype.kind == "i"):
            entries = [int(i) for i in np.asarray(part).ravel()]
        else:
            entries = []
        if entries and dim < len(shape):
            size = shape[dim]
            bad = [i for i in entries if not -size <= i < size]
            if bad:
                raise UnsafeIndex(
                    f"index {bad} is out of range for an axis of size {size}; MLX "
                    f"{_mlx()[0].__version__} does not bounds-check integer indices (it reads "
                    "and, in backward, writes outside the array), so the adapter does not run "
                    "it (docs/engines/mlx.md, OUT_OF_RANGE_INDEX_UNCHECKED)")
        dim += consumed[position]


def _mlx_index(index: Any) -> Any:
    """The index as the script writes it: ints, slices, ``None``, ``...`` and lists as they
    are; a NumPy index array becomes an ``mx.array`` (what an MLX user indexes with)."""
    if isinstance(index, tuple):
        return tuple(_mlx_index(part) for part in index)
    if isinstance(index, np.ndarray):
        return _mlx()[0].array(index)
    return index


def _getitem(a: Sequence[Any], p: Mapping[str, Any]) -> Any:
    _refuse_out_of_range(tuple(a[0].shape), p["index"])
    return a[0][_mlx_index(p["index"])]


OPS: dict[str, Impl] = {
    "add": lambda a, p: operator.add(*a),
    "sub": lambda a, p: operator.sub(*a),
    "mul": lambda a, p: operator.mul(*a),
    "div": lambda a, p: operator.truediv(*a),
    "pow": lambda a, p: operator.pow(*a),
    "matmul": lambda a, p: operator.matmul(*a),
    "neg": lambda a, p: operator.neg(a[0]),
    "exp": _unary("exp"),
    "log": _unary("log"),
    "sqrt": _unary("sqrt"),
    "tanh": _unary("tanh"),
    "sigmoid": _unary("sigmoid"),
    "relu": lambda a, p: _mlx()[1].relu(a[0]),
    "abs": _unary("abs"),
    "clamp": lambda a, p: _mlx()[0].clip(a[0], p.get("min"), p.get("max")),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    # MLX has one max: mx.max(x, axis) returns the values (torch's x.max(dim).values).
    "max_dim": _reduce("max"),
    "min_dim": _reduce("min"),
    "amax": _reduce("max"),
    "amin": _reduce("min"),
    "maximum": lambda a, p: _mlx()[0].maximum(a[0], a[1]),
    "minimum": lambda a, p: _mlx()[0].minimum(a[0], a[1]),
    "reshape": lambda a, p: _mlx()[0].reshape(a[0], tuple(p["shape"])),
    "transpose": lambda a, p: _mlx()[0].swapaxes(a[0], p["dim0"], p["dim1"]),
    "unsqueeze": lambda a, p: _mlx()[0].expand_dims(a[0], p["dim"]),
    "getitem": _getitem,
    "cat": lambda a, p: _mlx()[0].concatenate(list(a), axis=p["dim"]),
    "stack": lambda a, p: _mlx()[0].stack(list(a), axis=p["dim"]),
    "where": lambda a, p: _mlx()[0].where(_mlx()[0].array(p["cond"]), a[0], a[1]),
    "linear": _linear,
    "mse_loss": lambda a, p: _mlx()[1].losses.mse_loss(a[0], a[1], **_reduction(p)),
    "cross_entropy": lambda a, p: _mlx()[1].losses.cross_entropy(
        a[0], _mlx()[0].array(p["target"]), **_reduction(p)),
}

TORCH_DEFAULT_LR = 0.001
"""torch.optim.SGD's, Adam's and AdamW's default lr: MLX's optimizers have no default
learning rate, so a torch call that leaves lr out is written with torch's value."""

MLX_NAMES = {"lr": "learning_rate", "momentum": "momentum", "dampening": "dampening",
             "weight_decay": "weight_decay", "nesterov": "nesterov", "betas": "betas",
             "eps": "eps"}
"""torch's hyperparameter names as MLX's optimizers spell them (constructor arguments and the
attributes apply_single reads at every step)."""

CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


@dataclass
class MLXOptimizer:
    """What the suite holds as "the optimizer": the MLX optimizer, and the names under which
    each held param (in the groups' order) goes into its parameter and gradient dicts."""

    optimizer: Any
    keys: list[str]
    groups: list[Any]
    """The optimizer of each param group (the one optimizer itself for a single group)."""


def _key(position: int) -> str:
    # Not a bare digit: mlx.utils.tree_unflatten (MultiOptimizer splits trees with it) reads
    # "0" as a list index.
    return f"param{position}"


# --- the known deviations -------------------------------------------------------------------
# Each evidence script was run on mlx 0.32.4 (mlx-cpu, Linux x86_64); the torch values in its
# comments were printed by torch 2.13.0+cpu.

Predicate = Callable[[Any, Any], bool]


def _uses(ops: frozenset[str], program: Any) -> bool:
    return any(node.op in ops for instruction in program.instructions
               if isinstance(instruction, Forward) for node in instruction.nodes)


def _first_divergence(program: Any, trace: Any) -> FoundDivergence | None:
    return divergence(program, trace, reference_trace(program, functional=True))


def _after(program: Any, found: FoundDivergence) -> Any:
    return program.instructions[found.index - 1] if found.index else None


def _grads_differ_at_backward(ops: frozenset[str], *, dtypes: frozenset[str] = frozenset(),
                              only_nonfinite: bool = False) -> Predicate:
    """Runs of a program using one of ``ops`` whose first difference is in grads alone, at a
    backward where neither side raised (and, given ``dtypes``, only in params of those;
    ``only_nonfinite``: only in where a grad is infinite or NaN).

    A predicate, not a Diverges: a Diverges cannot say which op a divergence involves, and
    Diverges(at=(Backward,), fields=("grads",)) alone would set aside every wrong gradient."""

    def applies(program: Any, trace: Any) -> bool:
        if not _uses(ops, program):
            return False
        found = _first_divergence(program, trace)
        if (found is None or not isinstance(_after(program, found), Backward)
                or found.fields != {"grads"} or found.engine_error or found.reference_error):
            return False
        if dtypes and not found.dtypes <= dtypes:
            return False
        if only_nonfinite:
            got, want = trace[found.index], reference_trace(program, functional=True)[found.index]
            tolerance = program_tolerance(program)
            pairs = [(got.grads[name], want.grads[name]) for name in found.params]
            whys = [array_mismatch(actual, expected, tolerance=tolerance)
                    for actual, expected in pairs if actual is not None and expected is not None]
            return bool(whys) and all(why is not None and why.endswith("in different places")
                                      for why in whys)
        return True

    return applies


def _first_difference_at_step(kinds: frozenset[str]) -> Callable[[Any, Any], Any]:
    """The first divergence of a run with an optimizer of ``kinds``, where it is in param
    values alone, right after a step where neither side raised; else None."""

    def found_at_step(program: Any, trace: Any) -> FoundDivergence | None:
        if not any(isinstance(i, MakeOptimizer) and i.kind in kinds
                   for i in program.instructions):
            return None
        found = _first_divergence(program, trace)
        if (found is None or not isinstance(_after(program, found), Step)
                or found.fields != {"values"} or found.engine_error or found.reference_error):
            return None
        return found

    return found_at_step


_SGD_STEP = _first_difference_at_step(frozenset({"sgd"}))
_ADAM_STEP = _first_difference_at_step(frozenset({"adam", "adamw"}))
_ANY_STEP = _first_difference_at_step(frozenset({"sgd", "adam", "adamw"}))


def _given(program: Any, name: str) -> list[Any]:
    """Every value the program gives hyperparameter ``name``: in the constructor, in a group,
    or between steps."""
    values = []
    for instruction in program.instructions:
        if isinstance(instruction, MakeOptimizer):
            values += [instruction.defaults[name]] if name in instruction.defaults else []
            values += [g.overrides[name] for g in instruction.groups if name in g.overrides]
        elif isinstance(instruction, SetHyperparameter) and instruction.key == name:
            values.append(instruction.value)
    return values


def _dampened_momentum(program: Any, trace: Any) -> bool:
    """An SGD run with momentum and dampening, first diverging in param values at a step."""
    return (_SGD_STEP(program, trace) is not None
            and any(value for value in _given(program, "dampening"))
            and any(value for value in _given(program, "momentum")))


def _adam_stepped_without_grad(program: Any, trace: Any) -> bool:
    """An Adam or AdamW run first diverging in param values at a step, after an earlier step
    that ran while a param the optimizer holds had no grad (torch did not count that step
    for it; MLX's one step counter did)."""
    found = _ADAM_STEP(program, trace)
    if found is None:
        return False
    held: set[str] = set()
    with_grad: set[str] = set()
    for instruction in program.instructions[: found.index - 1]:
        if isinstance(instruction, MakeOptimizer):
            held = {name for group in instruction.groups for name in group.params}
        elif isinstance(instruction, SetGrad):
            with_grad.add(instruction.param)
        elif isinstance(instruction, SetGradNone):
            with_grad.discard(instruction.param)
        elif isinstance(instruction, Step) and held - with_grad:
            return True
    return False


FLOAT64_EXP = KnownDeviation(
    property=("conventions::test_convention[exp]", "conventions::test_convention[sigmoid]"),
    reason=(
        "on the CPU, mx.exp of a float64 array is accurate to float32 precision only (exp(1) "
        "= 2.7182817459106445, 3e-8 relative error; torch: 2.718281828459045), and so are "
        "mx.sigmoid and both ops' gradients (exp's gradient is exp itself); torch computes "
        "them to float64 precision. mx.tanh, mx.log and mx.sqrt are float64-accurate"
    ),
    evidence="""\
import math
import mlx.core as mx
x = mx.array([1.0, 2.0], dtype=mx.float64)
print(repr(mx.exp(x).tolist()), [math.exp(1.0), math.exp(2.0)])
# [2.7182817459106445, 7.3890557289123535] [2.718281828459045, 7.38905609893065]  (torch.exp: the latter)
print(repr(mx.grad(lambda a: mx.exp(a).sum())(x).tolist()))
# [2.7182817459106445, 7.3890557289123535]
print(repr(mx.sigmoid(x).tolist()), [1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(-2.0))])
# [0.7310585726593212, 0.8807970727201677] [0.7310585786300049, 0.8807970779778823]
# (torch.sigmoid: the latter)
print(repr(mx.tanh(x).tolist()), [math.tanh(1.0), math.tanh(2.0)])
# [0.7615941559557649, 0.9640275800758169] [0.7615941559557649, 0.9640275800758169]
""",
    name="float64 exp and sigmoid at float32 precision",
    applies=_grads_differ_at_backward(frozenset({"exp", "sigmoid"}),
                                      dtypes=frozenset({"float64"})),
)

CLIP_BOUNDS_EXCLUSIVE = KnownDeviation(
    property="conventions::test_convention[clamp]",
    reason=(
        "mx.clip's gradient is 0 at its bounds (x == a_min or x == a_max): its bounds are "
        "exclusive, where torch's clamp passes the gradient through at the bounds (inclusive)"
    ),
    evidence="""\
import mlx.core as mx
x = mx.array([0.0, 0.5, 1.0, 2.0])
print(mx.grad(lambda a: mx.clip(a, 0.0, 1.0).sum())(x))
# array([0, 1, 0, 0], dtype=float32); torch x.clamp(0, 1): [1., 1., 1., 0.]
print(mx.grad(lambda a: mx.clip(a, 0.0, None).sum())(x))
# array([0, 1, 1, 1], dtype=float32); torch x.clamp(min=0): [1., 1., 1., 1.]
""",
    name="clip's gradient is 0 at its bounds",
    applies=_grads_differ_at_backward(frozenset({"clamp"})),
)

DIM_REDUCTION_TIES = KnownDeviation(
    property=("conventions::test_convention[max_dim]", "conventions::test_convention[min_dim]"),
    reason=(
        "MLX has one max: mx.max(x, axis) splits the gradient evenly among the tied extremes "
        "of a slice, which is torch's amax(dim); torch's x.max(dim).values (and min) gives all "
        "of it to the returned index (the first occurrence)"
    ),
    evidence="""\
import mlx.core as mx
x = mx.array([[2.0, 2.0, 1.0]])
print(mx.grad(lambda a: mx.max(a, axis=1).sum())(x))
# array([[0.5, 0.5, 0]], dtype=float32); torch x.max(1).values: [[1., 0., 0.]]
print(mx.grad(lambda a: mx.min(a, axis=1).sum())(-x))
# array([[0.5, 0.5, 0]], dtype=float32); torch x.min(1).values: [[1., 0., 0.]]
print(mx.grad(lambda a: mx.max(a))(x))                 # [[0.5, 0.5, 0]]; torch x.max(), x.amax(1): the same
""",
    name="max(dim)/min(dim) split ties",
    applies=_grads_differ_at_backward(frozenset({"max_dim", "min_dim"})),
)

MAXIMUM_TIES = KnownDeviation(
    property=("conventions::test_convention[maximum]", "conventions::test_convention[minimum]",
              "conventions::test_broadcast_gradient[maximum]",
              "conventions::test_broadcast_gradient[minimum]"),
    reason=(
        "where the two operands of mx.maximum or mx.minimum are equal, the whole gradient "
        "goes to the second operand; torch.maximum and torch.minimum split it evenly (0.5 each)"
    ),
    evidence="""\
import mlx.core as mx
a, b = mx.array([1.0, 2.0]), mx.array([1.0, 1.0])
print(*mx.grad(lambda a, b: mx.maximum(a, b).sum(), argnums=(0, 1))(a, b))
# array([0, 1], dtype=float32) array([1, 0], dtype=float32); torch.maximum: a.grad [0.5, 1.], b.grad [0.5, 0.]
print(*mx.grad(lambda a, b: mx.minimum(a, b).sum(), argnums=(0, 1))(a, b))
# array([0, 0], dtype=float32) array([1, 1], dtype=float32); torch.minimum: a.grad [0.5, 0.], b.grad [0.5, 1.]
""",
    name="maximum/minimum give ties to the second operand",
    applies=_grads_differ_at_backward(frozenset({"maximum", "minimum"})),
)

POW_AT_ZERO_BASE = KnownDeviation(
    property=("conventions::test_convention[pow]", "conventions::test_convention[pow_scalar_base]"),
    reason=(
        "the gradient of x ** y at a base x of 0 is not special-cased: d/dy = x ** y * log(x) "
        "is -inf (0 ** 0 * log 0) and d/dx = y * x ** (y - 1) is NaN at y = 0 (0 * inf); "
        "torch gives 0 for both (its pow backward masks base 0 with exponent >= 0, and "
        "exponent 0)"
    ),
    evidence="""\
import mlx.core as mx
x, y = mx.array([0.0, 0.0, 0.0]), mx.array([0.0, 1.0, 2.0])
print(*mx.grad(lambda x, y: (x ** y).sum(), argnums=(0, 1))(x, y))
# array([-nan, 1, 0], dtype=float32) array([-inf, 0, 0], dtype=float32);
# torch (x ** y).sum().backward(): x.grad [0., 1., 0.], y.grad [0., 0., 0.]
print(mx.grad(lambda e: (0.0 ** e).sum())(y))
# array([-inf, 0, 0], dtype=float32); torch (0.0 ** y): y.grad [0., 0., 0.]
print(mx.grad(lambda e: (2.0 ** e).sum())(y))
# array([0.693147, 1.38629, 2.77259], dtype=float32): as torch away from base 0
""",
    name="pow's gradient at base 0 is NaN/-inf",
    applies=_grads_differ_at_backward(frozenset({"pow"}), only_nonfinite=True),
)

OUT_OF_RANGE_INDEX_UNCHECKED = KnownDeviation(
    property="indexing::test_out_of_range_index_raises",
    reason=(
        "an integer index outside its axis (bare, in a tuple, in a list or an index array) is "
        "not bounds-checked: x[3] on three elements reads past the buffer, x[-4] can end in a "
        "segmentation fault, and the backward scatters outside the grad; torch raises "
        "IndexError. The adapter refuses such an index (an unclassified UnsafeIndex, so an "
        "engine crash) so that the worker's heap is not corrupted for the programs after it"
    ),
    evidence="""\
# Run it in a throwaway process: x[-4] can end in a segmentation fault.
import mlx.core as mx
x = mx.array([1.0, 2.0, 3.0])
print(x[3])                        # array(0, dtype=float32)
# torch: IndexError: index 3 is out of bounds for dimension 0 with size 3
print(x[mx.array([0, 3])])         # array([1, 0], dtype=float32); torch: the same IndexError
print(mx.grad(lambda a: a[3])(x))  # array([0, 0, 0], dtype=float32): the 1 went outside the grad
print(x[-4])                       # Segmentation fault (exit status 139)
""",
    name="integer indices not bounds-checked",
    diverges=Diverges(at=(Forward,), crash=True, message=r"UnsafeIndex: index .* is out of range"),
)

HYPERPARAMETERS_UNCHECKED = KnownDeviation(
    property=("sgd::test_invalid_hyperparameters_raise",
              "adam::test_invalid_hyperparameters_raise[adam]",
              "adam::test_invalid_hyperparameters_raise[adamw]"),
    reason=(
        "the optimizers accept a negative learning rate (SGD, Adam, AdamW), momentum (SGD) "
        "and weight_decay (SGD, AdamW); torch raises ValueError ('Invalid learning rate', "
        "'Invalid momentum value', 'Invalid weight_decay value'). MLX does check what torch "
        "checks of nesterov, betas and eps, with torch's rules"
    ),
    evidence="""\
import mlx.optimizers as optim
optim.SGD(learning_rate=-0.1)                      # torch: ValueError: Invalid learning rate: -0.1
optim.SGD(learning_rate=0.1, momentum=-0.1)        # torch: ValueError: Invalid momentum value: -0.1
optim.SGD(learning_rate=0.1, weight_decay=-1)      # torch: ValueError: Invalid weight_decay value: -1
optim.Adam(learning_rate=-0.1)                     # torch: ValueError: Invalid learning rate: -0.1
optim.AdamW(learning_rate=0.1, weight_decay=-0.1)  # torch: ValueError: Invalid weight_decay value: -0.1
print("all accepted")                              # all accepted
for bad in ({"betas": [1.0, 0.999]}, {"eps": -1e-8}):
    try:
        optim.Adam(learning_rate=0.1, **bad)
    except ValueError as error:
        print("ValueError:", error)
# ValueError: Adam beta1 should be in [0, 1), 1.0 was provided instead
# ValueError: Adam epsilon should be >=0, -1e-08 was provided instead
""",
    name="negative lr, momentum, weight_decay accepted",
    diverges=Diverges(at=(MakeOptimizer,), fields=("error",), engine_error=None,
                      reference_error=ErrorKind.INVALID_HYPERPARAMETER),
)

DAMPENED_FIRST_STEP = KnownDeviation(
    property=("sgd::test_hyperparameter[dampening]",),
    reason=(
        "SGD with momentum dampens the first step's gradient too: its buffer starts at zeros "
        "(v = momentum * 0 + (1 - dampening) * g), where torch's first buffer is the gradient "
        "itself, undampened (buf = g), and dampening applies from the second step on"
    ),
    evidence="""\
import mlx.core as mx
import mlx.optimizers as optim
opt = optim.SGD(learning_rate=0.1, momentum=0.9, dampening=0.5)
params = {"w": mx.array([0.0])}
opt.init(params)
params = opt.apply_gradients({"w": mx.array([1.0])}, params)
print(params["w"], opt.state["w"]["v"])  # array([-0.05], dtype=float32) array([0.5], dtype=float32)
# torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.5), w.grad = [1.], step():
# w == [-0.1], state[w]["momentum_buffer"] == [1.]
""",
    name="dampening on the first momentum step",
    diverges=Diverges(at=(Step,), fields=("values",)),
    applies=_dampened_momentum,
    local=True,
)

ADAM_ONE_STEP_COUNT = KnownDeviation(
    property=("adam::test_none_grads_are_skipped[adam]", "adam::test_none_grads_are_skipped[adamw]"),
    reason=(
        "Adam and AdamW count steps per optimizer (state['step'], incremented by every "
        "apply_gradients call) and correct each param's bias with that count, so a param that "
        "had no grad at some steps (left out of the gradients) is corrected as if it had been "
        "stepped; torch counts each param's own steps, only those where it had a grad"
    ),
    evidence="""\
import mlx.core as mx
import mlx.optimizers as optim
opt = optim.Adam(learning_rate=0.1, bias_correction=True)
params = {"a": mx.array([0.0]), "b": mx.array([0.0])}
opt.init(params)
params.update(opt.apply_gradients({"a": mx.array([1.0])}, params))  # b has no grad: left out
params.update(opt.apply_gradients({"b": mx.array([1.0])}, params))  # b's first step
print(opt.state["step"], params["b"])  # array(2, dtype=uint64) array([-0.0744129], dtype=float32)
# torch.optim.Adam([a, b], lr=0.1): a.grad = [1.], b.grad None, step(); then a.grad None,
# b.grad = [1.], step(): b == [-0.1], state[b]["step"] == 1
""",
    name="one step count for all params",
    diverges=Diverges(at=(Step,), fields=("values",)),
    applies=_adam_stepped_without_grad,
    local=True,
)

def _checkpoint_dropped_a_change(program: Any, trace: Any) -> bool:
    """A run first diverging in param values at a step after a state_dict round trip that
    came after a hyperparameter other than lr was changed (MLX's checkpoint holds lr only)."""
    found = _ANY_STEP(program, trace)
    if found is None:
        return False
    changed = False
    for instruction in program.instructions[: found.index - 1]:
        if isinstance(instruction, SetHyperparameter) and instruction.key != "lr":
            changed = True
        elif isinstance(instruction, ReloadOptimizer) and changed:
            return True
    return False


CHECKPOINT_DROPS_HYPERPARAMETERS = KnownDeviation(
    property="optimizers::test_state_dict_round_trip[sgd]",
    reason=(
        "an optimizer's checkpoint, its state tree (what mlx.utils.tree_flatten(opt.state) "
        "saves), holds the step count, the learning rate and each param's buffers; momentum, "
        "dampening, nesterov, weight_decay, betas and eps are Python attributes, so a fresh "
        "optimizer loaded from it keeps its constructor's values where they were changed "
        "between steps; torch's state_dict() holds every param group's hyperparameters and "
        "load_state_dict restores them"
    ),
    evidence="""\
import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten
opt = optim.SGD(learning_rate=0.1)
params = {"w": mx.array([0.0])}
opt.init(params)
opt.momentum = 0.5                          # torch: opt.param_groups[0]["momentum"] = 0.5
opt.learning_rate = 0.2                     # torch: opt.param_groups[0]["lr"] = 0.2
params = opt.apply_gradients({"w": mx.array([1.0])}, params)
checkpoint = tree_flatten(opt.state)
print([key for key, _ in checkpoint])       # ['step', 'learning_rate', 'w.v']
fresh = optim.SGD(learning_rate=0.1)
fresh.state = tree_unflatten(checkpoint)
print(fresh.learning_rate, fresh.momentum)  # array(0.2, dtype=float32) 0.0
params = fresh.apply_gradients({"w": mx.array([1.0])}, params)
print(params["w"])                          # array([-0.4], dtype=float32)
# torch: state = opt.state_dict(); SGD([w], lr=0.1).load_state_dict(state) restores lr 0.2 and
# momentum 0.5, and the second step gives w == tensor([-0.5000])
""",
    name="checkpoint keeps lr only",
    applies=_checkpoint_dropped_a_change,
)


def _unreduced_cross_entropy_before_it(program: Any, trace: Any) -> bool:
    """A run that crashed at, or first diverged after, an instruction at or after a forward
    with a cross_entropy that passes no reduction (MLX's default, 'none', keeps one loss per
    sample, so what follows sees another shape: a shape error, a non-scalar loss, other grads)."""
    crashed = crashed_at(program, trace)
    if crashed is not None:
        reached = program.instructions[: len(trace)]
    else:
        found = _first_divergence(program, trace)
        if found is None:
            return False
        reached = program.instructions[: found.index]
    return any(node.op == "cross_entropy" and "reduction" not in node.params
               for instruction in reached if isinstance(instruction, Forward)
               for node in instruction.nodes)


CROSS_ENTROPY_NO_REDUCTION = KnownDeviation(
    property="backward_errors::test_gradient_of_wrong_shape_raises",
    reason=(
        "mlx.nn.losses.cross_entropy reduces with 'none' unless told otherwise: one loss per "
        "sample, where torch's cross_entropy defaults to 'mean' (a 0-d loss); what follows then "
        "sees another shape (a reshape to () raises ValueError '[reshape] Cannot reshape array "
        "of size 2 into shape ()', a backward() without gradient raises, grads differ). "
        "mse_loss defaults to 'mean' in both"
    ),
    evidence="""\
import mlx.core as mx
import mlx.nn as nn
logits, target = mx.array([[1.0, 2.0], [0.5, 0.1]]), mx.array([1, 0])
print(nn.losses.cross_entropy(logits, target))                    # array([0.313262, 0.513015], dtype=float32)
print(nn.losses.cross_entropy(logits, target, reduction="mean"))  # array(0.413138, dtype=float32)
# torch.nn.functional.cross_entropy(logits, target): tensor(0.4131); its default reduction is 'mean'
print(nn.losses.mse_loss(logits, logits * 0))  # array(1.315, dtype=float32): 'mean', as torch
""",
    name="cross_entropy's default reduction is 'none'",
    applies=_unreduced_cross_entropy_before_it,
    # Reached under the ci profile by backward_errors::test_gradient_of_wrong_shape_raises
    # only (cross_entropy is one of the ops a graph draws); the quick profile does not reach it.
    rare=True,
)


KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    FLOAT64_EXP,
    CLIP_BOUNDS_EXCLUSIVE,
    DIM_REDUCTION_TIES,
    MAXIMUM_TIES,
    POW_AT_ZERO_BASE,
    OUT_OF_RANGE_INDEX_UNCHECKED,
    HYPERPARAMETERS_UNCHECKED,
    DAMPENED_FIRST_STEP,
    ADAM_ONE_STEP_COUNT,
    CHECKPOINT_DROPS_HYPERPARAMETERS,
    CROSS_ENTROPY_NO_REDUCTION,
)


class MLXEngine(FunctionalEngine):
    """``mx.array``, ``mx.grad``/``mx.vjp`` and ``mlx.optimizers.SGD/Adam/AdamW``."""

    name: ClassVar[str] = "mlx"
    capabilities: ClassVar[Capabilities] = Capabilities(unsupported={
        "hyper:maximize": "none of mlx.optimizers.SGD(learning_rate, momentum, weight_decay, "
                          "dampening, nesterov), Adam and AdamW has a maximize argument",
        "hyper:amsgrad": "mlx.optimizers.Adam(learning_rate, betas, eps, bias_correction) and "
                         "AdamW have no amsgrad",
        "hyper:adam:weight_decay": "mlx.optimizers.Adam(learning_rate, betas, eps, "
                                   "bias_correction) has no weight_decay (torch's L2 term "
                                   "g + wd * p); AdamW's decoupled decay is another algorithm",
        "backward_one_element": "mx.grad takes a 0-d loss only: one of shape (1,) or (1, 1) "
                                "raises ValueError ('[vjp] Output shape (1) does not match "
                                "cotangent shape ()'), where torch's backward() accepts any "
                                "one-element loss (docs/engines/mlx.md)",
        "index:bool_mask": "MLX has no boolean-mask indexing: x[mx.array([True, False, True])] "
                           "raises ValueError 'boolean indices are not yet supported' (an "
                           "output shape that depends on values)",
        "step_float64": "MLX's optimizers keep the learning rate as an mx.array made from the "
                        "Python float, which is float32 (mx.array(0.1).dtype), and compute "
                        "Adam's bias corrections 1 - beta ** step in float32, whatever the "
                        "param's dtype: a float64 param moves by a float32-precision amount "
                        "(SGD lr=0.1: 1.0 - 0.1 * 1.0 gives 0.8999999985098839, torch 0.9); "
                        "docs/engines/mlx.md, 'step_float64'",
        "steps_at_param_precision": "Adam's and AdamW's bias corrections are computed in "
                                    "float32 from the Python betas (1 - 0.999 ** 1 gives "
                                    "0.000999987, 1.3e-5 off), so a float32 param's first "
                                    "step with lr=0.1 moves it by 0.0999993 where torch's "
                                    "moves it by 0.1 (6 float32 ulps of 1.0); over a run that "
                                    "adds up (10 to 31 ulps after 2 or 3 steps), so the end "
                                    "of a run is not compared with the reference's own run "
                                    "(docs/engines/mlx.md)",
        "add_param_group": "an MLX optimizer takes new params through init(), but with the "
                           "optimizer's own hyperparameters: there is no group with overrides "
                           "to add, and MultiOptimizer's optimizers are fixed at construction",
    })
    known_deviations: ClassVar[Sequence[KnownDeviation]] = KNOWN_DEVIATIONS

    def __init__(self) -> None:
        self.mx, self.nn, self.optim = _mlx()
        self.dtypes = {np.dtype("float32"): self.mx.float32,
                       np.dtype("float64"): self.mx.float64}

    def version(self) -> str:
        return f"{self.mx.__version__}, {self.mx.default_device()}"

    # --- arrays ------------------------------------------------------------------------------
    def array(self, value: np.ndarray) -> Any:
        # mx.array(a float64 ndarray) makes a float32 array unless the dtype is given.
        dtype = self.dtypes.get(value.dtype)
        return self.mx.array(value) if dtype is None else self.mx.array(value, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return OPS[op](operands, params)

    # --- gradients ---------------------------------------------------------------------------
    def vjp(self, forward: Callable[[Sequence[Any]], Any], params: Sequence[Any],
            cotangent: Any | None) -> Sequence[Any]:
        mx = self.mx
        if cotangent is None:
            grads = mx.grad(forward)(list(params))
        else:
            _, grads = mx.vjp(lambda *arrays: forward(list(arrays)), list(params), [cotangent])
        mx.eval(grads)
        return list(grads)

    # --- optimizers --------------------------------------------------------------------------
    def optimizer(self, kind: str, groups: Sequence[Mapping[str, Any]],
                  defaults: Mapping[str, Any]) -> Any:
        keys: list[str] = []
        params: dict[str, Any] = {}
        members: list[list[str]] = []
        for group in groups:
            names = [_key(len(keys) + i) for i in range(len(group["params"]))]
            keys += names
            params.update(zip(names, group["params"], strict=True))
            members.append(names)
        built = [self._build(kind, {**defaults, **{k: v for k, v in group.items()
                                                   if k != "params"}})
                 for group in groups]
        if len(built) == 1:
            optimizer = built[0]
        else:
            filters = [self._member_of(names) for names in members[:-1]]
            optimizer = self.optim.MultiOptimizer(built, filters)
        optimizer.init(params)
        return MLXOptimizer(optimizer, keys, built)

    @staticmethod
    def _member_of(names: list[str]) -> Callable[..., bool]:
        chosen = frozenset(names)
        return lambda path, gradient: path in chosen

    def _build(self, kind: str, hyperparameters: Mapping[str, Any]) -> Any:
        arguments = {"learning_rate": TORCH_DEFAULT_LR}
        for name, value in hyperparameters.items():
            if name not in MLX_NAMES:
                raise NotImplementedError(f"mlx.optimizers.{CLASSES[kind]} has no {name!r}")
            arguments[MLX_NAMES[name]] = value
        if kind != "sgd":
            # torch's Adam and AdamW always correct the moments' bias; MLX's do so only when
            # asked (bias_correction defaults to False): this is how MLX spells torch's Adam.
            arguments["bias_correction"] = True
        return getattr(self.optim, CLASSES[kind])(**arguments)

    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        held: MLXOptimizer = optimizer
        current = dict(zip(held.keys, params, strict=True))
        given = {key: grad for key, grad in zip(held.keys, grads, strict=True)
                 if grad is not None}
        updated = held.optimizer.apply_gradients(given, current)
        stepped = [updated.get(key, current[key]) for key in held.keys]
        self.mx.eval(stepped, held.optimizer.state)
        return stepped

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        target = optimizer.groups[group]
        if key == "lr":
            target.learning_rate = value
        elif key in MLX_NAMES:
            setattr(target, MLX_NAMES[key], value)
        else:
            raise NotImplementedError(f"MLX optimizers have no {key!r}")

    def state_dict(self, optimizer: Any) -> Any:
        # The optimizer's state tree (step, learning_rate, each param's buffers), as a
        # checkpoint saves it: mlx.utils.tree_flatten(opt.state) into mx.save_safetensors.
        return self._utils().tree_flatten(optimizer.optimizer.state)

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        optimizer.optimizer.state = self._utils().tree_unflatten(list(state))

    @staticmethod
    def _utils() -> Any:
        import mlx.utils

        return mlx.utils

    # --- errors ------------------------------------------------------------------------------
    def classify(self, error: Exception) -> ErrorKind | None:
        message = str(error)
        if isinstance(error, ValueError):
            if "[vjp] Output shape" in message and "does not match cotangent shape ()." in message:
                return ErrorKind.NON_SCALAR_BACKWARD  # mx.grad's cotangent is a scalar 1
            if "[vjp] Output shape" in message:
                return ErrorKind.GRADIENT_SHAPE
            for fragment in ("Nesterov momentum requires", "Adam beta", "Adam epsilon"):
                if fragment in message:
                    return ErrorKind.INVALID_HYPERPARAMETER
        return None
