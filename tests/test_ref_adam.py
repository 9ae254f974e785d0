"""reference.optim.Adam, AdamW and every optimizer's state_dict, held to torch 2.13 bit for bit.

The properties run a drawn program (params of drawn dtypes and shapes in drawn param groups,
then steps with drawn grads, None grads, hyperparameter changes and state_dict round trips)
on the reference here and on torch in a worker process, on torch's vectorized CPU kernels
(AVX2 or AVX512, what users run): their multiply-adds in ``add(alpha=)``, ``lerp_`` and
``addcmul_`` are fused, and the reference transcribes that. Measured on torch 2.13, Adam,
AdamW and SGD then agree with the reference exactly but for sqrt's last bit (see
``PARAM_TOLERANCE``). On a CPU without them (torch's capability DEFAULT, unfused kernels)
these properties are skipped.

Example counts: a few dozen per property in the default run; ``--hypothesis-profile thorough``
(conformance.profiles) runs 1000 per property.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ref_cases import engine_fixture, leaf, normalise_message, to_numpy

import reference

tl_fixture = engine_fixture

# The default run keeps each property to a few dozen examples (the project's CI runs every test
# with `pytest -n 2`); a named profile such as `thorough` sets the count itself.
DEFAULT_RUN_EXAMPLES = 30
EXAMPLES = (
    DEFAULT_RUN_EXAMPLES
    if settings.get_current_profile_name() == "default"
    else settings.default.max_examples
)
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KINDS = ("SGD", "Adam", "AdamW")
DTYPES = ("float32", "float64")
SHAPES = ((), (3,), (2, 2), (0,))

# --- Programs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Set these grads (None: no grad), apply ``changes`` to ``param_groups``, optionally move
    to a fresh optimizer through ``state_dict()``/``load_state_dict()``, then ``step()``."""

    grads: tuple[np.ndarray | None, ...]
    changes: tuple[tuple[int, str, Any], ...] = ()
    reload: bool = False


@dataclass(frozen=True)
class Program:
    kind: str
    params: tuple[np.ndarray, ...]
    groups: tuple[tuple[tuple[int, ...], dict[str, Any]], ...]  # param indices, overrides
    defaults: dict[str, Any]
    steps: tuple[Step, ...] = field(default=())

    def script(self) -> str:
        """The program as a torch script, for a failure message."""
        lines = ["import torch", "from torch import tensor"]
        for i, value in enumerate(self.params):
            lines.append(
                f"p{i} = torch.tensor({value.tolist()!r}, dtype=torch.{value.dtype}, requires_grad=True)"
            )
        lines.append(f"def make(): return torch.optim.{self.kind}({self._groups()}, **{self.defaults!r})")
        lines.append("opt = make()")
        for step in self.steps:
            for i, grad in enumerate(step.grads):
                grad_text = "None" if grad is None else f"tensor({grad.tolist()!r}, dtype=torch.{grad.dtype})"
                lines.append(f"p{i}.grad = {grad_text}")
            for group, key, value in step.changes:
                lines.append(f"opt.param_groups[{group}][{key!r}] = {value!r}")
            if step.reload:
                lines.append("saved = opt.state_dict(); opt = make(); opt.load_state_dict(saved)")
            lines.append("opt.step()")
        return "\n".join(lines)

    def _groups(self) -> str:
        groups = []
        for indices, overrides in self.groups:
            params = ", ".join(f"p{i}" for i in indices)
            groups.append(f"{{'params': [{params}], **{overrides!r}}}")
        return "[" + ", ".join(groups) + "]"


def make_optimizer(tl: Any, program: Program, params: list[Any]) -> Any:
    groups = [{"params": [params[i] for i in indices], **overrides} for indices, overrides in program.groups]
    return getattr(tl.optim, program.kind)(groups, **program.defaults)


def plain(value: Any) -> Any:
    """Engine tensors as NumPy copies, recursively; everything else as is."""
    if isinstance(value, (torch.Tensor, reference.Tensor)):
        return to_numpy(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def snapshot(params: list[Any], opt: Any) -> dict[str, Any]:
    """What a user can see after a step: values, version counters, state, hyperparameters."""
    return {
        "params": [to_numpy(p) for p in params],
        "versions": [p._version for p in params],
        "state": [plain(opt.state[p]) if p in opt.state else "no state" for p in params],
        "param_groups": [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups],
    }


def run_program(tl: Any, program: Program, *, follow: list[Any] | None = None) -> list[Any]:
    """The program's trace on engine ``tl``: a snapshot after every step, what a step raised
    (which ends the run), and the final ``state_dict()``.

    With ``follow`` (torch's trace of the same program) the params take torch's values after
    each step, through ``.data`` so that version counters do not see it: each step then starts
    from torch's state, and a one-ulp difference of ``sqrt`` cannot grow over later steps.
    """
    params = [leaf(tl, value, dtype=str(value.dtype)) for value in program.params]
    opt = make_optimizer(tl, program, params)
    trace: list[Any] = []
    for number, step in enumerate(program.steps, 1):
        for group, key, value in step.changes:
            opt.param_groups[group][key] = value
        for p, grad in zip(params, step.grads, strict=True):
            p.grad = None if grad is None else leaf(tl, grad, dtype=str(grad.dtype), requires_grad=False)
        if step.reload:
            saved = opt.state_dict()
            opt = make_optimizer(tl, program, params)
            opt.load_state_dict(saved)
        try:
            opt.step()
        except Exception as error:  # any type: compared with torch's
            trace.append((f"step {number} raised", type(error).__name__, normalise_message(str(error))))
            break
        trace.append((f"after step {number}", snapshot(params, opt)))
        if follow is not None and follow[number - 1][0] == trace[-1][0]:
            for p, value in zip(params, follow[number - 1][1]["params"], strict=True):
                p.data.copy_(leaf(tl, value, dtype=str(value.dtype), requires_grad=False))
    saved = opt.state_dict()
    trace.append(("state_dict()", list(plain(saved["state"]).items()), plain(saved["param_groups"])))
    return trace


# --- Comparing traces exactly --------------------------------------------------------------------


def first_difference(actual: Any, expected: Any, path: str = "") -> str | None:
    """Where two traces first differ (arrays: dtype, shape, then values exactly, nan == nan and
    the sign of zero counted), or None."""
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        if not (isinstance(actual, np.ndarray) and isinstance(expected, np.ndarray)):
            return f"{path}: {actual!r} != {expected!r}"
        if actual.dtype != expected.dtype or actual.shape != expected.shape:
            return f"{path}: {actual.dtype}{list(actual.shape)} != {expected.dtype}{list(expected.shape)}"
        # The sign of zero counts; a NaN's sign bit does not (x86 makes 0/0 a negative NaN).
        numbers = ~np.isnan(expected) if expected.dtype.kind == "f" else np.ones(expected.shape, bool)
        same = np.array_equal(actual, expected, equal_nan=True) and np.array_equal(
            np.signbit(actual[numbers]), np.signbit(expected[numbers])
        )
        return None if same else f"{path}:\n  reference {actual!r}\n  torch     {expected!r}"
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(actual) != list(expected):
            return f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            found = first_difference(actual[key], expected[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)) and type(actual) is type(expected):
        if len(actual) != len(expected):
            return f"{path}: {len(actual)} items != {len(expected)}: {actual!r} != {expected!r}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            found = first_difference(a, e, f"{path}[{index}]")
            if found:
                return found
        return None
    same = actual == expected or (
        isinstance(actual, float)
        and isinstance(expected, float)
        and math.isnan(actual)
        and math.isnan(expected)
    )
    if not same or type(actual) is not type(expected):
        return f"{path}: {actual!r} ({type(actual).__name__}) != {expected!r} ({type(expected).__name__})"
    return None


# Why params are compared with a tolerance, and only params. torch's CPU sqrt is not correctly
# rounded (measured on torch 2.13 with ATEN_CPU_CAPABILITY=default: 633 of 100,000 float32 and
# 657 of 100,000 float64 values in [0, 4) differ from NumPy's correctly rounded sqrt by one ulp),
# so Adam's denominator may differ by an ulp; every other op of both loops matches bit for bit.
# Within one step from the same state (see run_program's `follow`), with ε the dtype's epsilon:
#   step, exp_avg, exp_avg_sq, max_exp_avg_sq come before the sqrt: exactly equal;
#   sqrt(v): relative difference ≤ ε; `/ sqrt(bias_correction2)` and `+ eps` each round once
#   more: ≤ 3ε; `(-step_size * exp_avg) / denom` (numerator identical): ≤ 4ε of |update|;
#   `p + update` rounds once more: ≤ 4ε·|update| + ε·|p_new|.
# |update| ≤ |p_new| + |p_before| (decoupled decay only shrinks p: lr·wd ≤ 1 here), so
#   |p_reference - p_torch| ≤ 5ε·(|p_new| + |p_before|) (+ the smallest subnormal).
# A wrong op, order or constant moves values by far more (the bias corrections and eps
# placement change the update by a factor, not by ulps). SGD has no sqrt: compared exactly.
PARAM_ULPS = 5


def param_difference(actual: np.ndarray, expected: np.ndarray, before: np.ndarray) -> str | None:
    """How a param after a step differs from torch's beyond PARAM_ULPS (see above), or None."""
    exact = first_difference(actual, expected)
    if exact is None or actual.dtype != expected.dtype or actual.shape != expected.shape:
        return exact
    if not np.array_equal(np.isfinite(actual), np.isfinite(expected)):
        return exact
    finite = np.isfinite(expected)
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return exact
    info = np.finfo(expected.dtype)
    with np.errstate(all="ignore"):
        bound = PARAM_ULPS * info.eps * (np.abs(expected) + np.abs(before)) + info.smallest_subnormal
        error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    if np.all(error[finite] <= bound[finite]):
        return None
    return f"{exact}\n  |difference| {error} > bound {bound}"


def trace_difference(actual: list[Any], expected: list[Any], program: Program) -> str | None:
    """Where the reference's trace first differs from torch's: params within PARAM_ULPS for
    Adam and AdamW, everything else exactly."""
    if len(actual) != len(expected) or any(a[0] != e[0] for a, e in zip(actual, expected, strict=False)):
        return f": events {[a[0] for a in actual]} != {[e[0] for e in expected]}"
    before = list(program.params)
    for index, (event, want) in enumerate(zip(actual, expected, strict=True)):
        if not event[0].startswith("after") or program.kind == "SGD":
            found = first_difference(event, want, f"[{index}]")
        else:
            got_state, want_state = event[1], want[1]
            found = first_difference(
                {k: v for k, v in got_state.items() if k != "params"},
                {k: v for k, v in want_state.items() if k != "params"},
                f"[{index}] {event[0]}",
            )
            for i, (got, expected_value) in enumerate(
                zip(got_state["params"], want_state["params"], strict=True)
            ):
                found = found or param_difference(got, expected_value, before[i])
                found = f"[{index}] {event[0]} p{i}{found}" if found and not found.startswith("[") else found
            before = want_state["params"]
        if found:
            return found
    return None


def assert_same_trace(actual: list[Any], expected: list[Any], program: Program, *, what: str) -> None:
    __tracebackhide__ = True
    difference = trace_difference(actual, expected, program)
    assert difference is None, f"{what}: traces differ at trace{difference}\nprogram:\n{program.script()}"


def assert_reference_follows_torch(program: Program, torch_trace: list[Any]) -> list[Any]:
    """Run the reference following torch's trace; the traces must agree. Returns the trace."""
    __tracebackhide__ = True
    trace = run_program(reference, program, follow=torch_trace)
    assert_same_trace(trace, torch_trace, program, what=f"reference {program.kind} vs torch")
    return trace


# --- torch on its vectorized kernels, in a worker process ---------------------------------------------

_WORKER = """
import os, pickle, sys
protocol = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # anything torch prints must not corrupt the protocol stream
sys.path[:0] = pickle.loads(bytes.fromhex(sys.argv[1]))
import importlib, torch
assert torch.backends.cpu.get_cpu_capability() != "DEFAULT", "torch's unfused fallback kernels"
run_program = importlib.import_module(sys.argv[2]).run_program
for program in iter(lambda: pickle.load(sys.stdin.buffer), None):
    pickle.dump(run_program(torch, program), protocol)
    protocol.flush()
"""


class TorchWorker:
    """Runs programs on torch in a child process, on the CPU kernels torch picks (a
    ``ATEN_CPU_CAPABILITY`` of the caller's is dropped: the reference follows the vectorized
    ones)."""

    def __init__(self) -> None:
        env = {key: value for key, value in os.environ.items() if key != "ATEN_CPU_CAPABILITY"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, pickle.dumps(sys.path).hex(), __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def run(self, program: Program) -> list[Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the torch worker has no pipes")
        try:
            pickle.dump(program, stdin)
            stdin.flush()
            return pickle.load(stdout)
        except (EOFError, BrokenPipeError) as error:
            raise RuntimeError(
                f"the torch worker died (exit code {self.process.poll()}); its stderr is "
                "in the captured output above"
            ) from error

    def close(self) -> None:
        stdin: BinaryIO | None = self.process.stdin
        if stdin is not None and self.process.poll() is None:
            pickle.dump(None, stdin)
            stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def torch_worker() -> Iterator[Callable[[Program], list[Any]]]:
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "DEFAULT":
        pytest.skip("torch runs its unfused fallback kernels on this CPU (capability DEFAULT); "
                    "the reference follows the vectorized ones")
    worker = TorchWorker()
    yield worker.run
    worker.close()


# --- Strategies ------------------------------------------------------------------------------------

BETAS = st.one_of(
    # 0.5 and the float32 neighbours of 1 - 0.5 straddle lerp's branch point |1 - beta1| < 0.5.
    st.sampled_from([0.0, 0.5, 0.4999999, 0.5000001, 0.9, 0.999]),
    st.floats(0.0, 1.0, exclude_max=True),
)
HYPER: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "Adam": {
        "lr": st.one_of(st.sampled_from([0.0, 1e-3, 0.1, 1.0]), st.floats(0.0, 1.0)),
        "betas": st.tuples(BETAS, BETAS),
        "eps": st.one_of(st.sampled_from([0.0, 1e-8, 1e-3]), st.floats(0.0, 1.0)),
        "weight_decay": st.one_of(st.sampled_from([0, 0.0, 0.01]), st.floats(0.0, 1.0)),
        "amsgrad": st.booleans(),
        "maximize": st.booleans(),
    },
    "SGD": {
        "lr": st.one_of(st.sampled_from([0.0, 1e-3, 0.1]), st.floats(0.0, 1.0)),
        "momentum": st.one_of(st.sampled_from([0.0, 0.9]), st.floats(0.0, 1.0)),
        "dampening": st.one_of(st.sampled_from([0.0, 0.5]), st.floats(0.0, 1.0)),
        "weight_decay": st.one_of(st.sampled_from([0.0, 0.1]), st.floats(0.0, 1.0)),
        "maximize": st.booleans(),
    },
}
HYPER["AdamW"] = HYPER["Adam"]


def values(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    width = 32 if dtype == "float32" else 64
    elements = st.one_of(st.just(0.0), st.floats(-4.0, 4.0, width=width))
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


def hyperparameters(draw: st.DrawFn, kind: str, *, label: str) -> dict[str, Any]:
    """Some of ``kind``'s hyperparameters (the others left to the defaults)."""
    keys = draw(st.sets(st.sampled_from(sorted(HYPER[kind]))), label=f"{label}: keys")
    drawn = {key: draw(HYPER[kind][key], label=f"{label}: {key}") for key in sorted(keys)}
    if kind == "SGD" and drawn.get("momentum", 0) > 0 and drawn.get("dampening", 0) == 0:
        drawn["nesterov"] = draw(st.booleans(), label=f"{label}: nesterov")
    return drawn


@st.composite
def programs(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = ("Adam", "AdamW"),
    min_steps: int = 1,
    max_steps: int = 5,
    none_grads: bool = False,
    changes: bool = False,
    reloads: bool = False,
) -> Program:
    """A program for one of ``kinds``; grads may be None only with ``none_grads`` (then param 0
    has none at the first step and one at the last), ``changes`` sets hyperparameters between
    steps, ``reloads`` moves to a fresh optimizer through a state dict before some steps."""
    kind = draw(st.sampled_from(kinds), label="kind")
    count = draw(st.integers(1, 3), label="number of params")
    dtypes = [draw(st.sampled_from(DTYPES), label=f"p{i} dtype") for i in range(count)]
    shapes = [draw(st.sampled_from(SHAPES), label=f"p{i} shape") for i in range(count)]
    params = tuple(
        draw(values(d, s), label=f"p{i}") for i, (d, s) in enumerate(zip(dtypes, shapes, strict=True))
    )
    order = draw(st.permutations(range(count)), label="param order across groups")
    group_count = draw(st.integers(1, count), label="number of groups")
    cuts = (
        sorted(
            draw(
                st.sets(st.integers(1, count - 1), min_size=group_count - 1, max_size=group_count - 1),
                label="group cuts",
            )
        )
        if count > 1
        else []
    )
    bounds = [0, *cuts, count]
    groups = tuple(
        (tuple(order[a:b]), hyperparameters(draw, kind, label=f"group {g} overrides"))
        for g, (a, b) in enumerate(itertools.pairwise(bounds))
    )
    defaults = hyperparameters(draw, kind, label="constructor")
    if kind == "SGD" and reloads and "momentum" not in defaults:
        # A round trip matters for SGD only through its momentum buffers: give most programs one.
        defaults["momentum"] = draw(st.floats(0.0, 1.0), label="constructor: momentum")
    step_count = draw(st.integers(max(min_steps, 2 if none_grads else 1), max_steps), label="steps")
    steps = []
    for number in range(step_count):
        grads: list[np.ndarray | None] = []
        for i, value in enumerate(params):
            missing = none_grads and draw(st.integers(0, 2), label=f"step {number} p{i} grad is None") == 0
            if none_grads and i == 0:
                missing = number == 0 or (missing and number < step_count - 1)
            grads.append(
                None
                if missing
                else draw(values(str(value.dtype), value.shape), label=f"step {number} grad p{i}")
            )
        step_changes: list[tuple[int, str, Any]] = []
        if changes and number > 0:
            for g in range(len(groups)):
                changed = hyperparameters(draw, kind, label=f"step {number} group {g} change")
                # Switching amsgrad on once params have state raises KeyError in torch:
                # test_switching_amsgrad_on_after_a_step_raises_key_error covers it once.
                changed.pop("amsgrad", None)
                step_changes.extend((g, key, value) for key, value in changed.items())
        reload = reloads and number > 0 and draw(st.booleans(), label=f"step {number} reload")
        steps.append(Step(tuple(grads), tuple(step_changes), reload))
    return Program(kind, params, groups, defaults, tuple(steps))


# --- Properties: Adam and AdamW against torch ------------------------------------------------------


@PROPERTY
@given(program=programs())
def test_adam_trajectory_with_drawn_hyperparameters_and_groups_matches_torch(torch_worker, program):
    assert_reference_follows_torch(program, torch_worker(program))


@PROPERTY
@given(program=programs(none_grads=True))
def test_adam_skips_a_param_whose_grad_is_none_then_resumes_like_torch(torch_worker, program):
    torch_trace = torch_worker(program)
    trace = assert_reference_follows_torch(program, torch_trace)
    before = {"params": list(program.params), "state": ["no state"] * len(program.params)}
    for step, (label, *event), followed in zip(program.steps, trace, torch_trace, strict=False):
        if not label.startswith("after"):
            break
        after = event[0]
        for i, grad in enumerate(step.grads):
            if grad is None:
                # A skipped param keeps its value and its state: no step counted, no decay.
                difference = first_difference(
                    [after["params"][i], after["state"][i]], [before["params"][i], before["state"][i]]
                )
                assert difference is None, f"p{i} changed at {label} with grad None: {difference}"
        # The next step starts from torch's params (the reference follows them: see
        # run_program), which may differ from the reference's own by an ulp, and its own state.
        before = {"params": followed[1]["params"], "state": after["state"]}
    assert trace[0][1]["state"][0] == "no state", "p0 had no grad at step 1 but got state"


@PROPERTY
@given(program=programs(changes=True, min_steps=2))
def test_adam_hyperparameter_changes_between_steps_take_effect_like_torch(torch_worker, program):
    assert_reference_follows_torch(program, torch_worker(program))


# --- Properties: state_dict round trips, SGD included ------------------------------------------------


def without_reloads(program: Program) -> Program:
    steps = tuple(Step(step.grads, step.changes, reload=False) for step in program.steps)
    return Program(program.kind, program.params, program.groups, program.defaults, steps)


@PROPERTY
@given(program=programs(kinds=KINDS, min_steps=2, none_grads=True, changes=True, reloads=True))
def test_state_dict_round_trip_into_a_fresh_optimizer_continues_the_trajectory_exactly(
    torch_worker, program
):
    assert_reference_follows_torch(program, torch_worker(program))
    # The reference on its own: a round trip must change nothing, bit for bit.
    with_reloads = run_program(reference, program)
    difference = first_difference(with_reloads, run_program(reference, without_reloads(program)))
    assert difference is None, (
        f"reference {program.kind}: with reloads vs without differ at trace{difference}\n"
        f"program:\n{program.script()}"
    )


# --- Validation: same exception type and message as torch --------------------------------------

NUMBER = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, -0.1, -1, 0, 1, 2, True, math.nan, math.inf, -math.inf]),
    st.floats(-2.0, 2.0),
)
BETAS_ARGUMENT = st.one_of(
    st.tuples(NUMBER, NUMBER),
    st.lists(NUMBER, min_size=1, max_size=3),
    st.tuples(NUMBER, NUMBER).map(list),
)
# Variant flags only in the combinations torch itself refuses (a flag torch accepts selects a
# kernel the reference does not have, and the reference says so instead).
FLAGS = st.sampled_from([{}, {"fused": True, "foreach": True}, {"fused": True, "differentiable": True}])
PARAMS_FORMS = ("one leaf", "empty list", "non-leaf", "a tensor, not a list", "shared by two groups")


def make_params(tl: Any, form: str) -> Any:
    x = leaf(tl, [1.0, 2.0])
    return {
        "one leaf": lambda: [x],
        "empty list": lambda: [],
        "non-leaf": lambda: [x * 2.0],
        "a tensor, not a list": lambda: x,
        "shared by two groups": lambda: [{"params": [x]}, {"params": [x], "lr": 0.1}],
    }[form]()


def construct(tl: Any, kind: str, form: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        opt = getattr(tl.optim, kind)(make_params(tl, form), **kwargs)
    except Exception as error:  # any type: compared with torch's
        return type(error).__name__, normalise_message(str(error))
    groups = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    return "constructed", (groups, opt.defaults)


@PROPERTY
@given(
    kind=st.sampled_from(("Adam", "AdamW")),
    form=st.sampled_from(PARAMS_FORMS),
    kwargs=st.fixed_dictionaries(
        {},
        optional={"lr": NUMBER, "betas": BETAS_ARGUMENT, "eps": NUMBER, "weight_decay": NUMBER},
    ),
    flags=FLAGS,
)
def test_adam_constructor_raises_what_torch_raises(kind, form, kwargs, flags):
    kwargs = {**kwargs, **flags}
    got, expected = construct(reference, kind, form, kwargs), construct(torch, kind, form, kwargs)
    difference = first_difference(got, expected)
    assert difference is None, f"{kind}({form}, **{kwargs!r}):\n  reference {got!r}\n  torch     {expected!r}"


# --- Fixed examples, each run on torch (proving it) and on the reference --------------------------


def test_adam_and_adamw_defaults_are_torchs(tl):
    common = {
        "lr": 0.001,
        "betas": (0.9, 0.999),
        "eps": 1e-08,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "fused": None,
    }
    adam = tl.optim.Adam([leaf(tl, [1.0])])
    adamw = tl.optim.AdamW([leaf(tl, [1.0])])
    assert adam.defaults == {**common, "weight_decay": 0, "decoupled_weight_decay": False}, adam.defaults
    assert adamw.defaults == {**common, "weight_decay": 0.01, "decoupled_weight_decay": True}, adamw.defaults


def test_adam_state_step_is_a_float32_scalar_for_float64_params(tl):
    p = leaf(tl, [1.0, -2.0])
    opt = tl.optim.Adam([p], lr=0.1, amsgrad=True)
    p.grad = leaf(tl, [0.5, 0.25], requires_grad=False)
    opt.step()
    opt.step()
    state = opt.state[p]
    assert list(state) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"], list(state)
    step = to_numpy(state["step"])
    assert step.dtype == np.float32, f"state['step'].dtype = {step.dtype}, expected float32"
    assert step.shape == (), f"state['step'].shape = {step.shape}, expected ()"
    assert step == 2.0, f"state['step'] = {step} after two steps"
    assert to_numpy(state["exp_avg"]).dtype == np.float64, "exp_avg must have the param's dtype"


def test_adam_step_bumps_the_param_version_once_adamw_twice(tl):
    p, q = leaf(tl, [1.0]), leaf(tl, [1.0])
    p.grad = leaf(tl, [0.5], requires_grad=False)
    q.grad = leaf(tl, [0.5], requires_grad=False)
    tl.optim.Adam([p]).step()  # addcdiv_
    tl.optim.AdamW([q]).step()  # mul_ (decoupled decay), then addcdiv_
    assert (p._version, q._version) == (1, 2), f"versions {p._version}, {q._version}"


def test_switching_amsgrad_on_after_a_step_raises_key_error(tl):
    p = leaf(tl, [1.0])
    opt = tl.optim.Adam([p])
    p.grad = leaf(tl, [0.5], requires_grad=False)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True
    with pytest.raises(KeyError, match="max_exp_avg_sq"):
        opt.step()


def test_three_betas_are_accepted_then_step_fails_to_unpack(tl):
    p = leaf(tl, [1.0])
    opt = tl.optim.Adam([p], betas=[0.9, 0.99, 0.5])
    assert opt.param_groups[0]["betas"] == (0.9, 0.99, 0.5), "betas are stored as a tuple"
    p.grad = leaf(tl, [0.5], requires_grad=False)
    with pytest.raises(ValueError, match=r"too many values to unpack \(expected 2\)"):
        opt.step()
    assert p not in opt.state, "the unpacking fails before any state is created"


def test_capturable_on_cpu_creates_state_then_raises_at_step(tl):
    p = leaf(tl, [1.0])
    opt = tl.optim.Adam([p], capturable=True)
    p.grad = leaf(tl, [0.5], requires_grad=False)
    with pytest.raises(AssertionError, match="If capturable=True, params and state_steps must be on"):
        opt.step()
    assert to_numpy(opt.state[p]["step"]) == 0.0, "state exists, step not counted"


LOAD_ERRORS = [
    pytest.param(
        lambda tl, p, q: [{"params": [p]}, {"params": [q]}],
        "loaded state dict has a different number of parameter groups",
        id="group count",
    ),
    pytest.param(
        lambda tl, p, q: [p],
        "loaded state dict contains a parameter group that doesn't match the size of optimizer's group",
        id="group size",
    ),
]


@pytest.mark.parametrize(("groups", "message"), LOAD_ERRORS)
@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_rejects_a_different_group_layout(tl, kind, groups, message):
    p, q = leaf(tl, [1.0]), leaf(tl, [2.0])
    saved = getattr(tl.optim, kind)([p, q], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="loaded state dict") as raised:
        getattr(tl.optim, kind)(groups(tl, p, q), lr=0.1).load_state_dict(saved)
    assert str(raised.value) == message, str(raised.value)


def test_state_dict_uses_ids_in_param_order_and_shares_the_state(tl):
    p, q, r = leaf(tl, [1.0]), leaf(tl, [2.0]), leaf(tl, [3.0])
    opt = tl.optim.Adam([{"params": [q, p]}, {"params": [r], "lr": 0.5}], lr=0.1)
    r.grad = leaf(tl, [1.0], requires_grad=False)
    p.grad = leaf(tl, [1.0], requires_grad=False)
    opt.step()
    saved = opt.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]], saved["param_groups"]
    assert list(saved["state"]) == [1, 2], f"state ids {list(saved['state'])}: p is id 1, r id 2"
    assert saved["state"][1] is opt.state[p], "state_dict() must not copy a param's state"
    assert saved["param_groups"][1]["lr"] == 0.5, saved["param_groups"][1]


def test_load_state_dict_shares_same_dtype_tensors_and_casts_others_but_step(tl):
    p = leaf(tl, [1.0, 2.0])
    opt = tl.optim.Adam([p], lr=0.1)
    p.grad = leaf(tl, [0.5, -1.0], requires_grad=False)
    opt.step()
    saved = opt.state_dict()
    same = tl.optim.Adam([p], lr=0.5)
    same.load_state_dict(saved)
    assert all(same.state[p][k] is opt.state[p][k] for k in opt.state[p]), "same dtype: shared"
    assert same.param_groups[0]["lr"] == 0.1, "hyperparameters come from the state dict"
    opt.step()
    assert to_numpy(same.state[p]["step"]) == 2.0, "the shared step tensor counts the old optimizer's step"
    narrow = leaf(tl, [1.0, 2.0], dtype="float32")
    cast = tl.optim.Adam([narrow])
    cast.load_state_dict(saved)
    dtypes = {k: str(to_numpy(v).dtype) for k, v in cast.state[narrow].items()}
    assert dtypes == {"step": "float32", "exp_avg": "float32", "exp_avg_sq": "float32"}, dtypes
    assert cast.state[narrow]["step"] is opt.state[p]["step"], "step is never cast, so shared"


def test_loading_adam_state_into_adamw_decays_decoupled(tl):
    p = leaf(tl, [1.0])
    saved = tl.optim.Adam([p], weight_decay=0.1).state_dict()
    adamw = tl.optim.AdamW([p])
    adamw.load_state_dict(saved)
    group = adamw.param_groups[0]
    assert (group["weight_decay"], group["decoupled_weight_decay"]) == (0.1, True), group
