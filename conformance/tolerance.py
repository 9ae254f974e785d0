"""How close the engine must come to the reference, and why: every tolerance, in one place.

A run is compared twice. Both comparisons scale by the values' own size: a difference counts
in ulps of ``max(1, max|expected|)``, elementwise over the array (``epsilon`` below is the ulp
of 1: 2**-23 for float32, 2**-52 for float64).

**After every instruction** (:func:`conformance.compare.divergence`): the reference takes the
engine's params after each step or hand-written update and its grads before each step
(:func:`conformance.interpret.run`, ``follow``), so every instruction is checked from the same
state and the two sides differ only by the rounding of that one instruction. What can round
differently in one instruction:

- a forward of at most a few dozen ops (``max_ops`` per loss, a ``linear`` or ``matmul`` a
  dot product of up to 4 terms, reductions over at most 24 elements), its backward (each op's
  gradient is one to three roundings), and an optimizer's update (SGD ~6 roundings per element,
  Adam ~12): some 100 roundings deep at most;
- two correctly rounded implementations of one op differ by at most 1 ulp of its result; a
  fused multiply-add (torch's ``add(alpha=)``, BLAS), another summation order (torch's
  vectorized cascade, tinygrad's fused kernels) or another libm (``exp``, ``log``, ``tanh``
  are faithful, not correctly rounded; tinygrad evaluates its own polynomials) each add a few;
- an error in an operand of size up to 16 (values are drawn in [-4, 4], their products in
  [-16, 16]) is an error of up to 16 ulps of a result of size 1, and ``max(1, ...)`` only
  rescales results larger than 1.

So 100 roundings, times a few ulps, times 16 is about 2**12 ulps at worst; we allow 2**10
(the worst case needs every rounding at its bound, in the same direction, through the largest
operands), in float32 and float64 alike: the count is of roundings, and an ulp is relative to
its dtype. How much of it conforming engines use is measured:
``bench/bench_tolerance.py`` prints the largest difference each built-in engine shows, per
dtype, on the suite's longest programs (docs/benchmarks.md): torch's largest is 3.4 ulps in
float32 and 2.1 in float64, paddle's 5.0 in float32. float64 used to get 2**19, slack that let
paddle's and tinygrad's float32 optimizer coefficients on float64 params (measured at up to
5e5 float64 ulps after one step) pass one step at a time: a difference hidden in the
tolerance. They are known deviations now, confined to the steps they show in
(``KnownDeviation.local``): excused there, and the run compared on.
A program holding both dtypes is compared at the
float32 tolerance (:func:`program_tolerance`): torch computes a float64 param's grad in
float32 wherever a 0-dim float64 tensor meets a float32 one.
What these bounds do not see, by design, is a difference of a few ulps per instruction that
is the *same* every time: following resets it after every step.

**At the end of the program, without following** (:func:`conformance.compare.drift`): the
engine's final params against the reference run on its own, in programs where at least
:data:`DRIFT_MIN_STEPS` updates succeeded. Each side has by then rounded along the whole
run, and how far rounding carries a program's params depends on the program: a long loop of
small steps barely amplifies it, while Adam's ``m / sqrt(v)`` on a small ``v`` or a loss
that grows the params multiplies it. The suite measures that amplification, ``kappa``, on
the program itself (:func:`rounding_amplification`): the reference runs the program once in
float32 and once in float64, and ``kappa`` is how many float32 ulps apart their final params
are: how far float32 rounding alone moved the result. (To first order a rounding error is
linear in epsilon, so the same program in float64 is moved ``kappa`` float64 ulps.) An engine
rounding as accurately as the reference is moved about as far, in other directions, so the
two end at most a few ``kappa`` apart; we allow :data:`DRIFT_ULPS` ``* max(1, kappa)`` ulps
of the program's least precise dtype. An engine that errs by one ulp per op *in the same
direction* (a truncating conversion, a constant rounded to float32, a biased update) goes
further: its errors add up instead of cancelling, and the comparison shows it.

One amplification the two precisions cannot show: Adam's bias corrections ``1 - beta**t``,
which torch (and so the reference) computes in Python floats whatever the params' dtype. Where
beta is close to 1 that subtraction cancels: ``beta**t`` computed another way (an engine that
multiplies an accumulator by beta every step, as paddle does) differs by a few float64 ulps,
and ``1 - beta**t`` then by ``beta / (1 - beta)`` times as many, relative to itself; the
step, which it divides, by as much. For a float64 program that is up to ``lr * beta / (1 -
beta)`` float64 ulps per step (:func:`bias_correction_amplification`), which ``kappa`` is
raised to; for float32 params it is 2**29 times smaller, nothing. ``lr`` stands for the step's
size, which Adam keeps near ``lr`` while ``v`` is not 0; where a grad's square underflows the
step is ``lr * m / eps``, so the reference's own run says how far each step moved, and the
larger counts.

The amplification is estimated only where the final params are more than
``DRIFT_ULPS`` ulps apart (most runs agree to a few ulps), and a run whose two precisions
raise different errors or end at non-finite values in different places is not compared (its
amplification is unknown). A flipped kink (``max`` of two values that tie in one precision)
moves the float32 run as well, so ``kappa`` grows with it.

A kink both precisions put on the same side is invisible to ``kappa``: Adam's first step
moves a param by about ``lr``, so a param drawn as 2 lands within an ulp of clamp's bound 1,
above it in both of the reference's runs and exactly on it in a hand-written Adam that rounds
the step otherwise (a correct Adam: the catalogue's control). From there the runs take
different grads and end far apart. Such a run is not compared at its end
(:func:`conformance.compare.crossed_a_kink`): at some backward the engine's grads are further
from the reference's own than one instruction may differ, from params still within the drift
bound of each other. Params already further apart when grads jump are a drift all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from conformance.interpret import Observation
from conformance.program import (
    AddParamGroup,
    Backward,
    Const,
    Forward,
    MakeOptimizer,
    Node,
    Operand,
    Param,
    Program,
    SetGrad,
    SetHyperparameter,
    Step,
    Update,
)

EPSILON: dict[np.dtype, float] = {
    np.dtype("float32"): 2.0**-23,
    np.dtype("float64"): 2.0**-52,
}
"""The ulp of 1 in each float dtype (``np.finfo(dtype).eps``)."""

INSTRUCTION_ULPS: dict[np.dtype, float] = {
    np.dtype("float32"): 2.0**10,
    np.dtype("float64"): 2.0**10,
}
"""How many ulps (of ``max(1, max|expected|)``) one instruction may differ by; see above."""

TOLERANCE: dict[np.dtype, float] = {dtype: INSTRUCTION_ULPS[dtype] * EPSILON[dtype]
                                    for dtype in EPSILON}
"""The per-instruction tolerance as a relative difference: 2**-13 (float32), 2**-42 (float64)."""

DRIFT_ULPS = 8.0
"""How many times the reference's own rounding (``kappa``) the engine's final params may be
from the reference's, unfollowed (see above). Measured (``bench/bench_tolerance.py``, 600
long programs each): torch, torch-foreach and torch-fused use at most 3.0 of it; an engine
rounding every op one ulp away from zero exceeds it in 9 of 40 long SGD loops
(tests/test_suite_tolerance.py)."""

DRIFT_MIN_STEPS = 2
"""Updates (``step()`` or a hand-written one) a run needs before its end is compared without
following: after one, the following run and the unfollowed one are still the same run."""


def program_epsilon(program: Program) -> float:
    """The ulp of 1 in the least precise float dtype among the program's params."""
    dtypes = [param.value.dtype for param in program.params]
    return max((EPSILON[d] for d in dtypes if d in EPSILON), default=0.0)


def program_tolerance(program: Program) -> float:
    """The per-instruction tolerance of the least precise float dtype among the program's
    params: a mixed program's float64 grads may carry float32 rounding (see above)."""
    dtypes = [param.value.dtype for param in program.params]
    return max((TOLERANCE[d] for d in dtypes if d in TOLERANCE), default=0.0)


def updates(program: Program, trace: Sequence[Observation]) -> int:
    """How many ``step()`` calls and hand-written updates ran without raising in ``trace``."""
    return sum(
        1 for instruction, observation in zip(program.instructions, trace[1:], strict=False)
        if isinstance(instruction, (Step, Update)) and observation.error is None
        and not observation.label.startswith("skipped")
    )


def scaled_difference(actual: np.ndarray, expected: np.ndarray) -> float | None:
    """``max|actual - expected| / max(1, max|expected|)`` over the finite elements; None where
    NaN or infinity are not in the same places (no distance is meaningful there)."""
    if actual.shape != expected.shape:
        return None
    finite = np.isfinite(expected)
    if not np.array_equal(finite, np.isfinite(actual)):
        return None
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return None
    if not finite.any():
        return 0.0
    a = actual[finite].astype(np.float64)
    e = expected[finite].astype(np.float64)
    return float(np.max(np.abs(a - e))) / max(1.0, float(np.max(np.abs(e))))


def with_dtype(program: Program, dtype: type[np.floating]) -> Program:
    """``program`` with every float array in it (params, constants, ``backward`` gradients,
    grads given by ``p.grad = ...``) converted to ``dtype``: the same computation at another precision."""

    def convert(value: np.ndarray) -> np.ndarray:
        return value.astype(dtype) if value.dtype.kind == "f" else value

    def operand(value: Operand) -> Operand:
        return Const(convert(value.value)) if isinstance(value, Const) else value

    instructions = []
    for instruction in program.instructions:
        if isinstance(instruction, Forward):
            instruction = Forward(instruction.loss, tuple(
                Node(node.out, node.op, tuple(map(operand, node.operands)), node.params)
                for node in instruction.nodes))
        elif isinstance(instruction, Backward) and isinstance(instruction.gradient, np.ndarray):
            instruction = replace(instruction, gradient=convert(instruction.gradient))
        elif isinstance(instruction, SetGrad):
            instruction = SetGrad(instruction.param, convert(instruction.value))
        instructions.append(instruction)
    params = tuple(Param(param.name, convert(param.value)) for param in program.params)
    return Program(params, tuple(instructions))


def rounding_amplification(
    program: Program, run_reference: Callable[[Program], list[Observation]]
) -> float:
    """``kappa``: how many float32 ulps (of ``max(1, max|value|)``) apart the reference's final
    params are when it runs ``program`` in float32 and in float64; infinity where the two runs
    raise different errors or end non-finite in different places (no estimate)."""
    single = run_reference(with_dtype(program, np.float32))
    double = run_reference(with_dtype(program, np.float64))
    if len(single) != len(double) or any(
            a.error != b.error for a, b in zip(single, double, strict=True)):
        return float("inf")
    worst = 0.0
    for name, value in double[-1].values.items():
        distance = scaled_difference(single[-1].values[name], value.astype(np.float32))
        if distance is None:
            return float("inf")
        worst = max(worst, distance)
    return worst / EPSILON[np.dtype("float32")]


ADAM_KINDS = ("adam", "adamw")
ADAM_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999)}
"""torch's defaults for what :func:`bias_correction_amplification` reads."""


def _bias_correction_factor(settings: Mapping[str, Any], moved: float = 0.0) -> float:
    """``step * beta / (1 - beta)`` of a group's larger beta (the step-1 correction, the
    worst), where the step is ``lr`` or, larger, how far the step ``moved`` the params."""
    try:
        betas = [float(beta) for beta in settings["betas"]]
        lr = abs(float(settings["lr"]))
    except (TypeError, ValueError):
        return 0.0  # not numbers: the optimizer raises, and never steps
    if not all(0.0 <= beta < 1.0 for beta in betas):
        return 0.0
    return max(lr, moved) * max(beta / (1.0 - beta) for beta in betas)


def _moved(alone: Sequence[Any], index: int) -> float:
    """How far instruction ``index`` moved the params in the reference's own run, relative to
    ``max(1, max|param|)`` after it (the largest over the params; non-finite ones left out)."""
    if index >= len(alone):
        return 0.0
    largest = 0.0
    for name, after in alone[index].values.items():
        before = alone[index - 1].values[name]
        if before.shape != after.shape or after.size == 0:
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: left out below
            change = np.abs(after.astype(np.float64) - before.astype(np.float64))
        finite = np.isfinite(change)
        if finite.any():
            scale = max(1.0, float(np.max(np.abs(after[finite]))))
            largest = max(largest, float(np.max(change[finite])) / scale)
    return largest


def bias_correction_amplification(program: Program,
                                  alone: Sequence[Any] | None = None) -> float:
    """An upper bound on how many ulps of the program's least precise dtype (of ``max(1,
    |param|)``) Adam's bias corrections, computed another way in float64, can move its params
    (see above): over its ``step()`` calls, the largest ``lr * beta / (1 - beta)`` of the
    optimizer's groups, in float64 ulps. Given the reference's own run (``alone``), a step
    that moved the params further than ``lr`` counts with that move instead: where ``v`` is 0
    (a grad whose square underflows), Adam's step is ``lr * m / eps``, thousands of ``lr``
    (paddle, dev seed 3: a float64 AdamW with ``betas=(0.99, 0.0)`` moved a param by 1.2e5
    and ended 17 float64 ulps from the reference, its running beta powers a few ulps off)."""
    total = 0.0
    groups: list[dict[str, Any]] = []  # the Adam optimizer's groups' settings; [] for others
    defaults: Mapping[str, Any] = {}
    for index, instruction in enumerate(program.instructions, start=1):
        if isinstance(instruction, MakeOptimizer):
            defaults = {**ADAM_DEFAULTS, **instruction.defaults}
            groups = [{**defaults, **group.overrides} for group in instruction.groups
                      ] if instruction.kind in ADAM_KINDS else []
        elif isinstance(instruction, AddParamGroup) and groups:
            groups.append({**defaults, **instruction.group.overrides})
        elif isinstance(instruction, SetHyperparameter) and 0 <= instruction.group < len(groups):
            groups[instruction.group][instruction.key] = instruction.value
        elif isinstance(instruction, Step) and groups:
            moved = 0.0 if alone is None else _moved(alone, index)
            total += max(_bias_correction_factor(group, moved) for group in groups)
    return total * EPSILON[np.dtype("float64")] / program_epsilon(program)


def drift_tolerance(program: Program, amplification: float,
                    alone: Sequence[Any] | None = None) -> float:
    """The final comparison's tolerance, relative to ``max(1, max|expected|)``; ``alone``: the
    reference's own run, for how far its Adam steps moved (:func:`bias_correction_amplification`)."""
    kappa = max(1.0, amplification, bias_correction_amplification(program, alone))
    return DRIFT_ULPS * kappa * program_epsilon(program)
