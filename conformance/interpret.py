"""Run a :class:`~conformance.program.Program` on an engine and record what a user can observe.

After every instruction the interpreter records: whether it raised (and the error's category),
every param's value, every param's grad (None or values), and whether each grad is still the
object it was after the previous instruction. Comparing two such traces is all a property needs.
"""

from __future__ import annotations

import collections
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.adapter import AnyEngine, Engine, FunctionalEngine
from conformance.errors import EngineCrash, ErrorKind
from conformance.graphs import reached
from conformance.program import (
    AddParamGroup,
    Backward,
    Const,
    EditGrad,
    Forward,
    Group,
    Instruction,
    MakeOptimizer,
    Program,
    Ref,
    ReloadOptimizer,
    SetGrad,
    SetGradNone,
    SetHyperparameter,
    Step,
    Update,
    ZeroGrad,
    describe,
)

RUNS: collections.Counter[int] = collections.Counter()
"""Programs run so far, per engine instance (``id``): the plugin reports examples per property."""


@dataclass
class Observation:
    """The observable state right after one instruction (index 0: before any)."""

    index: int
    label: str
    error: ErrorKind | None
    values: dict[str, np.ndarray]
    grads: dict[str, np.ndarray | None]
    same_grad: dict[str, bool | None]
    """Per param: is the grad the same object as at the previous observation? None where
    either grad is None."""
    grad_requires_grad: dict[str, bool | None]
    """Per param: does its grad itself require grad (``backward(create_graph=True)``)? None
    where the grad is None."""
    aliased_grads: list[tuple[str, str]]
    """Pairs of params whose grads share memory (accumulating into one changes the other)."""


class _Optimizing:
    """What both interpreters do alike: build the optimizer, add a group to it, rebuild it
    from its ``state_dict`` (the engine's calls have the same names in both tiers), and let
    the oracle's params follow another run's."""

    engine: Any
    optimizer: Any
    built: list[MakeOptimizer | AddParamGroup]  # how the optimizer was made

    params: dict[str, Any]

    def _named(self, name: str) -> Any:
        """The engine's object a group names."""
        raise NotImplementedError

    def follow(self, observation: Observation) -> None:
        """Take the param values of another engine's observation (see :func:`run`), in place
        (the oracle's optimizer holds its params)."""
        if observation.error is not None:
            return
        for name, param in self.params.items():
            self.engine.follow(param, observation.values[name])

    def adopt(self, observation: Observation) -> None:
        """Take the param values and the grads (their values, and which are None) of another
        engine's observation, whatever either run raised: after an instruction whose difference
        a local known deviation describes (see :func:`run`'s ``adopt``)."""
        raise NotImplementedError

    def optimize(self, instruction: Instruction) -> bool:
        """Run ``instruction`` if it builds or rebuilds the optimizer; whether it did."""
        if isinstance(instruction, MakeOptimizer):
            self.optimizer = self._build(instruction)
            self.built = [instruction]
        elif isinstance(instruction, AddParamGroup):
            self.engine.add_param_group(self.optimizer, self._group(instruction.group))
            self.built.append(instruction)
        elif isinstance(instruction, ReloadOptimizer):
            state = self.engine.state_dict(self.optimizer)
            make, *added = self.built
            fresh = self._build(make)
            for addition in added:
                assert isinstance(addition, AddParamGroup)
                self.engine.add_param_group(fresh, self._group(addition.group))
            self.engine.load_state_dict(fresh, state)
            self.optimizer = fresh
        else:
            return False
        return True

    def _group(self, group: Group) -> dict[str, Any]:
        return {"params": [self._named(name) for name in group.params], **group.overrides}

    def _build(self, make: MakeOptimizer | AddParamGroup) -> Any:
        assert isinstance(make, MakeOptimizer)
        groups = [self._group(group) for group in make.groups]
        return self.engine.optimizer(make.kind, groups, make.defaults)


class _Machine(_Optimizing):
    """The interpreter's state for one run: named tensors, the optimizer, the last grads."""

    def __init__(self, engine: Engine, program: Program) -> None:
        self.engine = engine
        self.params = {p.name: engine.tensor(p.value, requires_grad=True) for p in program.params}
        self.tensors: dict[str, Any] = dict(self.params)
        self.optimizer: Any = None
        self.built: list[MakeOptimizer | AddParamGroup] = []  # how the optimizer was made
        self.last_grads: dict[str, Any] = {name: None for name in self.params}

    def runnable(self, instruction: Instruction) -> bool:
        """False when an earlier instruction that this one needs failed (its error was
        recorded there): a loss whose forward raised, or an optimizer that was not built."""
        if isinstance(instruction, Backward):
            return instruction.loss in self.tensors
        if isinstance(instruction, (Step, ZeroGrad, SetHyperparameter, AddParamGroup,
                                    ReloadOptimizer)):
            return self.optimizer is not None
        return True

    def execute(self, instruction: Instruction) -> None:
        engine = self.engine
        if isinstance(instruction, Forward):
            for node in instruction.nodes:
                operands = [self._operand(operand) for operand in node.operands]
                self.tensors[node.out] = engine.apply(node.op, operands, node.params)
        elif isinstance(instruction, Backward):
            engine.backward(self.tensors[instruction.loss], **instruction.arguments)
        elif self.optimize(instruction):
            pass
        elif isinstance(instruction, Step):
            engine.step(self.optimizer)
        elif isinstance(instruction, ZeroGrad):
            engine.zero_grad(self.optimizer, **instruction.arguments)
        elif isinstance(instruction, SetGradNone):
            engine.set_grad_none(self.params[instruction.param])
        elif isinstance(instruction, SetGrad):
            engine.set_grad(self.params[instruction.param], instruction.value)
            # The program replaced the grad itself: whether the engine rebinds it (torch) or
            # copies into the old one (Paddle) is not what a given grad is there to check.
            self.last_grads[instruction.param] = None
        elif isinstance(instruction, SetHyperparameter):
            engine.set_hyperparameter(
                self.optimizer, instruction.group, instruction.key, instruction.value
            )
        elif isinstance(instruction, Update):
            # `w -= ...` rebinds the user's name to what __isub__ returned
            bound = engine.update(self.params[instruction.param], instruction.form,
                                  instruction.scalar)
            self.params[instruction.param] = self.tensors[instruction.param] = bound
        elif isinstance(instruction, EditGrad):
            engine.edit_grad(self.params[instruction.param], instruction.form, instruction.scalar)
        else:
            raise TypeError(f"not an instruction: {instruction!r}")

    def _named(self, name: str) -> Any:
        return self.tensors[name]  # a param, or a node (a non-leaf the constructor rejects)

    def _operand(self, operand: Any) -> Any:
        if isinstance(operand, Ref):
            return self.tensors[operand.name]
        if isinstance(operand, Const):
            return self.engine.tensor(operand.value, requires_grad=False)
        return operand

    def follow_grads(self, observation: Observation) -> None:
        """Take the grad values of another engine's observation (see :func:`run`), in place."""
        for name, param in self.params.items():
            grad, value = self.engine.grad(param), observation.grads[name]
            if grad is not None and value is not None:
                self.engine.follow(grad, value)

    def adopt(self, observation: Observation) -> None:
        for name, param in self.params.items():
            self.engine.follow(param, observation.values[name])
            grad, value = self.engine.grad(param), observation.grads[name]
            if value is None:
                if grad is not None:
                    self.engine.set_grad_none(param)
            elif grad is None:
                self.engine.set_grad(param, value)
            else:
                self.engine.follow(grad, value)
            # The grad held now is the one the next observation's identity is judged against.
            self.last_grads[name] = self.engine.grad(param)

    def observe(self, index: int, label: str, error: ErrorKind | None) -> Observation:
        values: dict[str, np.ndarray] = {}
        grads: dict[str, np.ndarray | None] = {}
        same: dict[str, bool | None] = {}
        requires: dict[str, bool | None] = {}
        for name, param in self.params.items():
            values[name] = self.engine.to_numpy(param)
            grad = self.engine.grad(param)
            grads[name] = None if grad is None else self.engine.to_numpy(grad)
            requires[name] = None if grad is None else self.engine.grad_requires_grad(grad)
            previous = self.last_grads[name]
            both = grad is not None and previous is not None
            same[name] = self.engine.same_object(previous, grad) if both else None
            self.last_grads[name] = grad
        live = [(name, grad) for name, grad in self.last_grads.items() if grad is not None]
        aliased = [
            (a, b)
            for i, (a, grad_a) in enumerate(live)
            for b, grad_b in live[i + 1:]
            if self.engine.shares_memory(grad_a, grad_b)
        ]
        return Observation(index, label, error, values, grads, same, requires, aliased)


class StatefulInstruction(TypeError):
    """A program given to a functional engine holds an instruction only stateful autograd
    has (a property that draws it must not be marked ``functional``): a bug in the suite."""


class _FunctionalMachine(_Optimizing):
    """The interpreter's state for a run on a :class:`FunctionalEngine`: the params' current
    arrays, each param's grad (what the last backward or ``p.grad = g`` gave it), the forwards
    built so far and the optimizer. See :class:`FunctionalEngine` for how each instruction
    becomes a call."""

    def __init__(self, engine: FunctionalEngine, program: Program) -> None:
        self.engine = engine
        self.params = {p.name: engine.array(p.value) for p in program.params}
        self.grads: dict[str, Any] = {name: None for name in self.params}
        self.tensors: dict[str, Any] = {}  # the nodes of the forwards that ran, by name
        self.forwards: dict[str, Forward] = {}
        self.optimizer: Any = None
        self.built: list[MakeOptimizer | AddParamGroup] = []

    def runnable(self, instruction: Instruction) -> bool:
        if isinstance(instruction, Backward):
            return instruction.loss in self.tensors
        if isinstance(instruction, (Step, SetHyperparameter, AddParamGroup, ReloadOptimizer)):
            return self.optimizer is not None
        return True

    def check(self, instruction: Instruction) -> None:
        """Raise :class:`StatefulInstruction` for what a functional engine cannot express."""
        if isinstance(instruction, Backward):
            if set(instruction.arguments) - {"gradient"}:
                raise StatefulInstruction(
                    f"{describe(instruction)}: retain_graph and create_graph are stateful autograd")
            if any(self.grads[name] is not None
                   for name in reached(self.forwards[instruction.loss], self.params)):
                raise StatefulInstruction(
                    f"{describe(instruction)}: accumulates into grads an earlier instruction gave")
        elif not isinstance(instruction, (Forward, MakeOptimizer, Step, SetGrad, SetGradNone,
                                          SetHyperparameter, AddParamGroup, ReloadOptimizer)):
            raise StatefulInstruction(f"{describe(instruction)}: stateful autograd only")

    def execute(self, instruction: Instruction) -> None:
        engine = self.engine
        if isinstance(instruction, Forward):
            self.forwards[instruction.loss] = instruction
            self.tensors.update(self._evaluate(instruction, self.params))
        elif isinstance(instruction, Backward):
            forward = self.forwards[instruction.loss]
            names = sorted(reached(forward, self.params))

            def function(arrays: Any) -> Any:
                values = {**self.params, **dict(zip(names, arrays, strict=True))}
                return self._evaluate(forward, values)[forward.loss]

            gradient = instruction.arguments.get("gradient")
            cotangent = None if gradient is None else engine.array(gradient)
            grads = engine.vjp(function, [self.params[name] for name in names], cotangent)
            if len(grads) != len(names):
                raise ValueError(f"{type(engine).__name__}.vjp returned {len(grads)} grads "
                                 f"for {len(names)} params")
            self.grads.update(zip(names, grads, strict=True))
        elif isinstance(instruction, SetGrad):
            self.grads[instruction.param] = engine.array(instruction.value)
        elif isinstance(instruction, SetGradNone):
            self.grads[instruction.param] = None
        elif self.optimize(instruction):
            pass
        elif isinstance(instruction, Step):
            held = [name for made in self.built
                    for group in (made.groups if isinstance(made, MakeOptimizer)
                                  else (made.group,))
                    for name in group.params]
            stepped = engine.optimizer_step(self.optimizer, [self.params[n] for n in held],
                                            [self.grads[n] for n in held])
            if len(stepped) != len(held):
                raise ValueError(f"{type(engine).__name__}.optimizer_step returned "
                                 f"{len(stepped)} arrays for {len(held)} params")
            self.params.update(zip(held, stepped, strict=True))
        elif isinstance(instruction, SetHyperparameter):
            engine.set_hyperparameter(self.optimizer, instruction.group, instruction.key,
                                      instruction.value)
        else:
            raise StatefulInstruction(f"{describe(instruction)}: stateful autograd only")

    def _evaluate(self, forward: Forward, values: dict[str, Any]) -> dict[str, Any]:
        tensors = dict(values)
        for node in forward.nodes:
            operands = [tensors[o.name] if isinstance(o, Ref)
                        else self.engine.array(o.value) if isinstance(o, Const) else o
                        for o in node.operands]
            tensors[node.out] = self.engine.apply(node.op, operands, node.params)
        return {node.out: tensors[node.out] for node in forward.nodes}

    def _named(self, name: str) -> Any:
        return self.params[name]

    def follow_grads(self, observation: Observation) -> None:
        """As :meth:`_Machine.follow_grads`: the grads take another run's values."""
        for name, grad in self.grads.items():
            value = observation.grads[name]
            if grad is not None and value is not None:
                self.grads[name] = self.engine.array(value)

    def adopt(self, observation: Observation) -> None:
        for name in self.params:
            self.params[name] = self.engine.array(observation.values[name])
            value = observation.grads[name]
            self.grads[name] = None if value is None else self.engine.array(value)

    def observe(self, index: int, label: str, error: ErrorKind | None) -> Observation:
        """Params and grads; a functional engine's grads have no identity, history or
        memory shared between params to observe (None, None, none)."""
        values = {name: self.engine.to_numpy(p) for name, p in self.params.items()}
        grads = {name: None if g is None else self.engine.to_numpy(g)
                 for name, g in self.grads.items()}
        nothing: dict[str, bool | None] = {name: None for name in self.params}
        return Observation(index, label, error, values, grads, nothing, dict(nothing), [])


def run(
    engine: AnyEngine,
    program: Program,
    *,
    follow: list[Observation] | None = None,
    adopt: frozenset[int] = frozenset(),
    on_observation: Callable[[Observation], None] | None = None,
) -> list[Observation]:
    """Run ``program`` on ``engine``; one observation before and after each instruction.

    An exception the adapter classifies becomes the observation's ``error`` and the program
    goes on; one it does not classify is an :class:`EngineCrash` carrying the trace so far, and
    so is any exception raised while the params and grads are read after an instruction (a
    lazy engine computes only then): a crash at that instruction.

    ``follow`` (for the reference only) is the trace of the engine under test: after each
    ``step()`` or hand-written update that succeeded on both, once its result has been
    observed, the reference's params take the engine's values. Every instruction is then
    checked from the same state, so a rounding difference that the step's comparison
    tolerates (torch's SGD uses fused multiply-adds, the reference does not) cannot flip a
    later kink or tie — ``max`` of values that tie in one engine and differ by an ulp in the
    other — into a false divergence. Likewise, right before each ``step()`` the reference
    takes the engine's grad values (the comparison after the last instruction accepted them):
    the step is then checked on identical grads, so an optimizer that normalizes its update
    (Adam: ``m / (sqrt(v) + eps)``) cannot turn a rounding-level grad (``1e-17`` against
    ``0`` after a cancellation) into a full-size step difference.

    ``adopt`` (with ``follow``): the observations (their indices) after which the reference
    takes the engine's params and grads, which grads are None included, whatever either run
    raised: those whose difference a local known deviation describes
    (``KnownDeviation.local``), so that the difference stays confined to that instruction and
    the next ones are checked from the engine's state.

    ``on_observation`` is called with each observation as it is made (the isolation worker
    streams them, so an engine that dies leaves the trace up to its crash).
    """
    RUNS[id(engine)] += 1
    engine.start_program()
    machine: _Machine | _FunctionalMachine = (
        _FunctionalMachine(engine, program) if isinstance(engine, FunctionalEngine)
        else _Machine(engine, program))
    trace: list[Observation] = []

    def record(observation: Observation) -> None:
        trace.append(observation)
        if on_observation is not None:
            on_observation(observation)

    record(machine.observe(0, "start", None))
    for index, instruction in enumerate(program.instructions, start=1):
        error: ErrorKind | None = None
        if not machine.runnable(instruction):
            record(machine.observe(index, "skipped: " + describe(instruction), None))
            continue
        if follow is not None and isinstance(instruction, Step):
            machine.follow_grads(follow[index - 1])
        if isinstance(machine, _FunctionalMachine):
            machine.check(instruction)  # a suite bug: outside what the engine is blamed for
        try:
            machine.execute(instruction)
        except StatefulInstruction:
            raise
        except Exception as exc:
            error = engine.classify(exc)
            if error is None:
                raise _crash(engine, program, index, trace, exc,
                             "raised an exception its adapter does not classify, at") from exc
        try:
            observation = machine.observe(index, describe(instruction), error)
        except Exception as exc:
            # A lazy engine computes when its values are read: what fails there fails here.
            raise _crash(engine, program, index, trace, exc, "raised an exception while the "
                         "suite read its params and grads after") from exc
        record(observation)
        if follow is not None and index in adopt:
            machine.adopt(follow[index])
        elif follow is not None and isinstance(instruction, (Step, Update)) and error is None:
            machine.follow(follow[index])
    return trace


def _crash(engine: AnyEngine, program: Program, index: int, trace: list[Observation],
           exc: Exception, what: str) -> EngineCrash:
    """The crash of ``engine`` at instruction ``index``: what it raised and the script."""
    return EngineCrash(
        f"engine {engine.name!r} {what} instruction [{index}] "
        f"{describe(program.instructions[index - 1])}:\n"
        + "".join(traceback.format_exception_only(type(exc), exc))
        + "\nProgram as a torch script:\n"
        + program.to_script(guarded=[index]),
        trace=trace,
    )


def crashed_at(program: Program, trace: list[Observation]) -> Instruction | None:
    """The instruction a run crashed at (:class:`EngineCrash` carries the partial trace), or
    None for a run that finished: a finished run has one observation per instruction, plus
    the start."""
    if len(trace) > len(program.instructions):
        return None
    return program.instructions[len(trace) - 1]

