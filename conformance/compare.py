"""Compare two traces of the same program: the engine under test against the reference.

After every instruction (:func:`divergence`), at the tolerances of :mod:`conformance.tolerance`
(which says why they are what they are), and at the end of the program against the reference
run on its own (:func:`drift`), where a difference that following hides could have added up.
NaN and infinity must occur in the same places, with the same sign.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from conformance.adapter import LOCAL_FIELDS
from conformance.errors import ErrorKind
from conformance.interpret import Observation
from conformance.program import Backward, Program, Step, Update
from conformance.tolerance import (
    DRIFT_MIN_STEPS,
    DRIFT_ULPS,
    EPSILON,
    TOLERANCE,
    drift_tolerance,
    program_epsilon,
    program_tolerance,
    scaled_difference,
    updates,
)

FIELDS = ("error", "values", "grads", "grad identity", "grad history", "aliasing", "drift")
"""What a divergence can be in: the error raised (its category, or raising at all), param
values, grads (values or None-ness), whether a grad is the same object as before, whether
it requires grad, which grads share memory; or, in a run that agreed after every
instruction, final param values that drifted from the reference's run on its own
(:func:`drift`)."""


@dataclass(frozen=True)
class FoundDivergence:
    """Where and how a run first diverged from the reference: what a known deviation's
    :class:`~conformance.adapter.Diverges` is matched against."""

    index: int
    """The observation: 0 before any instruction, i after instruction i."""
    fields: frozenset[str]
    """Which of :data:`FIELDS` differ there."""
    engine_error: ErrorKind | None
    reference_error: ErrorKind | None
    dtypes: frozenset[str]
    """The dtypes of the params whose values or grads differ there."""
    problems: tuple[str, ...]
    params: frozenset[str] = frozenset()
    """The names of the params whose values or grads differ there."""
    shapes: frozenset[tuple[int, ...]] = frozenset()
    """The shapes of the params whose values or grads differ there."""
    largest: float = float("inf")
    """The largest of those differences, as ``max|engine - reference| / max(1,
    max|reference|)`` (``tolerance.scaled_difference``); infinite where one is not a distance
    (NaN or infinity in other places, another shape, a grad on one side only) or the
    divergence is in something else (an error, an identity)."""
    parts: tuple[FoundDivergence, ...] = ()
    """Where it is in the values or grads of several params and nothing else: the
    difference of each param alone (a step can show two findings at once, one per param)."""
    aspects: tuple[FoundDivergence, ...] = ()
    """Where it is in several of :data:`FIELDS`: the difference in each field alone (a
    backward can show two findings at once: a missing error, and a grad that is a new
    object)."""


EXCUSED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "conformance_excused", default=frozenset()
)
"""Observations (their indices) whose differences a known deviation confined to them describes
(``KnownDeviation.local``, set by :func:`conformance.runner.check_against_reference`): the
comparison looks past them, so :func:`divergence` is the first difference elsewhere."""


class Divergence(AssertionError):
    """The engine's observable state differs from the reference's; ``found`` says where."""

    def __init__(self, message: str, found: FoundDivergence | None = None,
                 program: Program | None = None) -> None:
        super().__init__(message)
        self.found = found
        self.program = program


def array_mismatch(
    actual: np.ndarray, expected: np.ndarray, *, tolerance: float = 0.0
) -> str | None:
    """Why ``actual`` is not ``expected`` within tolerance, or None if it is; ``tolerance``
    raises the dtype's own one (see ``program_tolerance``)."""
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != {expected.dtype}"
    if actual.tobytes() == expected.tobytes():
        return None  # the same bits (NaNs and infinities in the same places): most reads
    if actual.dtype.kind != "f":
        return "values differ"
    a, e = actual, expected
    if not (np.isfinite(actual).all() and np.isfinite(expected).all()):
        nan_a, nan_e = np.isnan(actual), np.isnan(expected)
        if not np.array_equal(nan_a, nan_e):
            return "NaN in different places"
        inf_a, inf_e = np.isinf(actual), np.isinf(expected)
        if not np.array_equal(inf_a, inf_e) or not np.array_equal(actual[inf_a], expected[inf_e]):
            return "infinity in different places"
        finite = ~(nan_e | inf_e)
        if not finite.any():
            return None
        a, e = actual[finite], expected[finite]
    a = a.astype(np.float64)
    e = e.astype(np.float64)
    tol = max(TOLERANCE[expected.dtype], tolerance) * max(1.0, float(np.max(np.abs(e))))
    worst = float(np.max(np.abs(a - e)))
    if worst > tol:
        return f"max |difference| {worst:.3g} > tolerance {tol:.3g} ({expected.dtype})"
    return None


def _mismatches(
    actual: Observation, expected: Observation, tolerance: float, history: bool
) -> list[tuple[str, str | None, str]]:
    """``(field, param, text)`` for each way the two states differ (param None: not one's)."""
    problems: list[tuple[str, str | None, str]] = []
    if actual.error != expected.error:
        problems.append(("error", None,
                         f"error: engine {_error(actual)}, reference {_error(expected)}"))
    for name, value in expected.values.items():
        why = array_mismatch(actual.values[name], value, tolerance=tolerance)
        if why:
            problems.append(("values", name,
                             f"{name}: {why}\n{_pair(actual.values[name], value)}"))
    for name, grad in expected.grads.items():
        got = actual.grads[name]
        if (got is None) != (grad is None):
            problems.append(("grads", name,
                             f"{name}.grad: engine {_short(got)}, reference {_short(grad)}"))
        elif got is not None and grad is not None:
            why = array_mismatch(got, grad, tolerance=tolerance)
            if why:
                problems.append(("grads", name, f"{name}.grad: {why}\n{_pair(got, grad)}"))
        if actual.same_grad[name] != expected.same_grad[name]:
            problems.append(("grad identity", name,
                f"{name}.grad identity: in the engine, {_identity(actual.same_grad[name])}; "
                f"in the reference, {_identity(expected.same_grad[name])}"
            ))
        # A grad on one side only is a grads difference; its requires_grad (None where there
        # is no grad) would only repeat it, and a deviation declared on "grads" should match.
        if (history and got is not None and grad is not None
                and actual.grad_requires_grad[name] != expected.grad_requires_grad[name]):
            problems.append(("grad history", name,
                f"{name}.grad.requires_grad: engine {actual.grad_requires_grad[name]}, "
                f"reference {expected.grad_requires_grad[name]}"
            ))
    if actual.aliased_grads != expected.aliased_grads:
        problems.append(("aliasing", None,
            f"grads sharing memory: engine {_pairs(actual)}, reference {_pairs(expected)} "
            "(an accumulation into one of them changes the other)"
        ))
    return problems


def _pairs(observation: Observation) -> str:
    pairs = observation.aliased_grads
    return ", ".join(f"{a}.grad & {b}.grad" for a, b in pairs) if pairs else "none"


def assert_same_trace(
    engine_name: str,
    program: Program,
    actual: Sequence[Observation],
    expected: Sequence[Observation],
) -> None:
    """Raise :class:`Divergence` at the first observation where the engine differs."""
    __tracebackhide__ = True
    found = divergence(program, actual, expected)
    if found is None:
        return
    want = expected[found.index]
    raised = [o.index for o in (*actual, *expected) if o.error is not None]
    excused = sorted(EXCUSED.get())
    raise Divergence(
        f"engine {engine_name!r} diverged from the reference after instruction "
        f"[{want.index}] {want.label}:\n  - "
        + "\n  - ".join(problem.replace("\n", "\n    ") for problem in found.problems)
        + (f"\n\n(Earlier, after instructions {excused}, it differed as a known deviation "
           "describes; the reference took its params there and compared on.)"
           if excused else "")
        + "\n\nReproduce with this torch script; it prints the state after each "
        "instruction (torch's output is the expected one):\n\n"
        + program.to_script(guarded=sorted(set(raised))),
        found,
        program,
    )


def divergence(
    program: Program, actual: Sequence[Observation], expected: Sequence[Observation]
) -> FoundDivergence | None:
    """Where the engine's trace first differs from the reference's, and how; None where they
    agree as far as both go."""
    first = _first(program, actual, expected)
    return None if first is None else first[1]


def excusable(program: Program, found: FoundDivergence) -> bool:
    """Whether a known deviation confined to its instructions (``KnownDeviation.local``) may
    excuse this difference: it is in what the reference can take from the engine and go on
    from (:data:`~conformance.adapter.LOCAL_FIELDS`: param values, grads, a grad's identity),
    or in the error a ``backward()`` raised (a backward changes nothing but grads, and the
    reference takes those). An error anywhere else leaves state the reference cannot take
    (an optimizer not built, a step's momentum not kept), as does a grad's history or memory
    shared between grads."""
    if found.index == 0 or not found.fields <= set(LOCAL_FIELDS):
        return False
    return "error" not in found.fields or isinstance(program.instructions[found.index - 1],
                                                     Backward)


def adopts(program: Program, found: FoundDivergence) -> bool:
    """Whether the reference must take the engine's state after this excused difference
    (``interpret.run``'s ``adopt``) for the next instructions to be checked from one state:
    not where it is in param values after a step or update alone (the reference takes those
    there anyway) or in a grad's identity alone (judged anew at every observation)."""
    after = program.instructions[found.index - 1]
    followed = {"values"} if isinstance(after, (Step, Update)) else set()
    return bool(found.fields - followed - {"grad identity"})


def first_divergence(
    program: Program, actual: Sequence[Observation], expected: Sequence[Observation]
) -> tuple[Observation, Observation, list[str]] | None:
    """The first (engine, reference) observations that differ, with every way they differ, at
    the program's tolerance; None where the traces agree as far as both go. A known
    deviation's ``applies`` can ask it about ``(trace, runner.reference_trace(program))``."""
    first = _first(program, actual, expected)
    if first is None:
        return None
    position, found = first
    return actual[position], expected[position], list(found.problems)


_Answer = tuple[int, FoundDivergence] | None
_last_first: tuple[Program, Sequence[Observation], Sequence[Observation], int, int,
                   frozenset[int], _Answer] | None
_last_first = None


def _first(program: Program, actual: Sequence[Observation], expected: Sequence[Observation]
           ) -> _Answer:
    """The position in the traces of their first difference, and the difference. The last
    answer is kept: one run's comparison is asked for again by each known deviation that
    matches by divergence, by adapters' ``applies`` and by the check itself. It is kept with
    the objects it was computed from (so their ids stay theirs) and the traces' lengths."""
    global _last_first
    last = _last_first
    excused = EXCUSED.get()
    if (last is not None and last[0] is program and last[1] is actual and last[2] is expected
            and last[3] == len(actual) and last[4] == len(expected) and last[5] == excused):
        return last[6]
    answer = _compute_first(program, actual, expected, excused)
    _last_first = (program, actual, expected, len(actual), len(expected), excused, answer)
    return answer


def _compute_first(program: Program, actual: Sequence[Observation],
                   expected: Sequence[Observation], excused: frozenset[int] = frozenset()
                   ) -> tuple[int, FoundDivergence] | None:
    tolerance = program_tolerance(program)
    history = _has_history(program)
    params = {param.name: param.value for param in program.params}
    for position, (got, want) in enumerate(zip(actual, expected, strict=False)):
        if want.index in excused:
            continue
        found = _mismatches(got, want, tolerance, history)
        if found:
            names = sorted({name for _, name, _ in found if name in params})
            fields = sorted({field for field, _, _ in found})
            parts = tuple(_found([f for f in found if f[1] == name], got, want, params)
                          for name in names
                          ) if len(names) > 1 and all(n in params for _, n, _ in found) else ()
            aspects = tuple(_found([f for f in found if f[0] == field], got, want, params)
                            for field in fields) if len(fields) > 1 else ()
            whole = _found(found, got, want, params)
            return position, dataclasses.replace(whole, parts=parts, aspects=aspects)
    return None


def _found(found: list[tuple[str, str | None, str]], got: Observation, want: Observation,
           params: dict[str, np.ndarray]) -> FoundDivergence:
    """The divergence these problems make: all of an observation's, or one param's or one
    field's of them (``FoundDivergence.parts``, ``aspects``)."""
    names = frozenset(name for _, name, _ in found if name in params)
    return FoundDivergence(
        index=want.index, fields=frozenset(field for field, _, _ in found),
        engine_error=got.error, reference_error=want.error,
        dtypes=frozenset(str(params[name].dtype) for name in names),
        problems=tuple(text for _, _, text in found), params=names,
        shapes=frozenset(params[name].shape for name in names),
        largest=_largest(found, got, want))


def _largest(found: list[tuple[str, str | None, str]], got: Observation,
             want: Observation) -> float:
    largest = 0.0
    for field, name, _ in found:
        if field not in ("values", "grads") or name is None:
            return float("inf")
        side = "values" if field == "values" else "grads"
        a, e = getattr(got, side)[name], getattr(want, side)[name]
        distance = None if a is None or e is None else scaled_difference(a, e)
        if distance is None:
            return float("inf")
        largest = max(largest, distance)
    return largest


def _has_history(program: Program) -> bool:
    return any(isinstance(i, Backward) and i.arguments.get("create_graph")
               for i in program.instructions)


def end_distances(program: Program, actual: Sequence[Observation],
                  alone: Sequence[Observation]) -> dict[str, float] | None:
    """Each param's scaled distance (``scaled_difference``) between the engine's final value and
    the reference's run on its own (``alone``); None where the run is not compared at its end:
    fewer than ``DRIFT_MIN_STEPS`` updates, another outcome on its own (an error, a length),
    or NaN or infinity in different places."""
    if updates(program, actual) < DRIFT_MIN_STEPS or len(actual) != len(alone):
        return None
    if any(got.error != want.error for got, want in zip(actual, alone, strict=True)):
        return None
    distances = {}
    for name, value in alone[-1].values.items():
        distance = scaled_difference(actual[-1].values[name], value)
        if distance is None:
            return None
        distances[name] = distance
    return distances


def crossed_a_kink(program: Program, actual: Sequence[Observation],
                   alone: Sequence[Observation], tolerance: float) -> bool:
    """Whether a backward of the run gave the engine grads further from the reference's own
    (``alone``) than one instruction may differ (``program_tolerance``), from params still
    within ``tolerance`` of each other: a kink (of clamp, relu, abs, max, ...) that an update
    reached and that the two runs' roundings put on different sides. Where the run goes after
    that depends on the side rounding chose, not on how accurately each side rounds, so its
    end says nothing about drift. Params already apart by more than ``tolerance`` when grads
    jump are a drift, not a kink."""
    jump = program_tolerance(program)
    for index, instruction in enumerate(program.instructions, start=1):
        if not isinstance(instruction, Backward):
            continue
        for name, want in alone[index - 1].values.items():
            apart = scaled_difference(actual[index - 1].values[name], want)
            if apart is None or apart > tolerance:
                return False
        for name, want_grad in alone[index].grads.items():
            got_grad = actual[index].grads[name]
            if want_grad is None or got_grad is None:
                continue
            apart = scaled_difference(got_grad, want_grad)
            if apart is None or apart > jump:
                return True
    return False


def drift(
    program: Program,
    actual: Sequence[Observation],
    alone: Sequence[Observation],
    amplification: Callable[[], float],
) -> FoundDivergence | None:
    """Whether the engine's final params drifted from the reference's run on its own
    (``alone``: no following), in a run that agreed after every instruction; None where they
    are within :func:`conformance.tolerance.drift_tolerance`, or where the run is not compared
    (:func:`end_distances`). ``amplification`` is called only where needed: it runs the
    reference twice more."""
    distances = end_distances(program, actual, alone)
    if distances is None:
        return None
    last, want = actual[-1], alone[-1]
    if max(distances.values(), default=0.0) <= drift_tolerance(program, 0.0, alone):
        return None
    kappa = amplification()
    tolerance = drift_tolerance(program, kappa, alone)
    far = {name: distance for name, distance in distances.items() if distance > tolerance}
    if not far or crossed_a_kink(program, actual, alone, tolerance):
        return None
    epsilon = program_epsilon(program)
    dtype = next(str(dtype) for dtype, eps in EPSILON.items() if eps == epsilon)
    problems = tuple(
        f"{name}: max |difference| = {distance / epsilon:.1f} ulps of {dtype} (of max(1, "
        f"max|{name}|)) > {tolerance / epsilon:.1f} = {DRIFT_ULPS:g} x max(1, kappa), "
        f"kappa = {kappa:.2f}\n{_pair(last.values[name], want.values[name])}"
        for name, distance in far.items()
    )
    dtypes = {param.name: str(param.value.dtype) for param in program.params}
    return FoundDivergence(
        index=want.index, fields=frozenset({"drift"}), engine_error=last.error,
        reference_error=want.error, dtypes=frozenset(dtypes[name] for name in far),
        problems=problems, params=frozenset(far),
    )


def raise_drift(engine_name: str, program: Program, actual: Sequence[Observation],
                found: FoundDivergence) -> None:
    """Raise the :class:`Divergence` for a run that :func:`drift` found drifting."""
    __tracebackhide__ = True
    raised = [observation.index for observation in actual if observation.error is not None]
    raise Divergence(
        f"engine {engine_name!r} drifted from the reference over "
        f"{updates(program, actual)} updates: after every "
        "instruction it agreed within rounding with a reference that took its params after "
        "each step, but the reference run on its own ends elsewhere, further than rounding "
        "carries this program (kappa: the float32 ulps its params move between a float32 and "
        "a float64 run of the reference; see conformance/tolerance.py):\n  - "
        + "\n  - ".join(problem.replace("\n", "\n    ") for problem in found.problems)
        + "\n\nReproduce with this torch script; it prints the state after each "
        "instruction (torch's output is the expected one; compare the last values):\n\n"
        + program.to_script(guarded=raised),
        found,
        program,
    )


def _error(observation: Observation) -> str:
    return "ok" if observation.error is None else f"raised {observation.error.name}"


def _short(value: np.ndarray | None) -> str:
    return "None" if value is None else np.array2string(value, precision=8, threshold=20)


def _pair(actual: np.ndarray, expected: np.ndarray) -> str:
    return f"engine:    {_short(actual)}\nreference: {_short(expected)}"


def _identity(same: bool | None) -> str:
    return {
        True: "the grad is the same object as before this instruction",
        False: "the grad is a new object, not the one it was before this instruction",
        None: "the grad is None, or was None before this instruction",
    }[same]
