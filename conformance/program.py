"""Programs as data: a generated training loop is a small value any engine can run.

A :class:`Program` is a list of parameters (initial values) and a list of instructions over
named tensors. ``conformance.interpret`` runs it on an engine; :meth:`Program.to_script`
prints it as a standalone torch script, which is what a failure report shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.ops import OPS


@dataclass(frozen=True, eq=False)
class Param:
    """A leaf tensor with ``requires_grad=True``."""

    name: str
    value: np.ndarray


@dataclass(frozen=True)
class Ref:
    """An operand naming a param or an earlier node of the same forward."""

    name: str


@dataclass(frozen=True, eq=False)
class Const:
    """An operand that is a constant tensor (``requires_grad=False``)."""

    value: np.ndarray


Operand = Ref | Const | float


@dataclass(frozen=True, eq=False)
class Node:
    """``out = op(*operands, **params)``."""

    out: str
    op: str
    operands: tuple[Operand, ...]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Forward:
    """Build the tensor ``loss`` from ``nodes``; the last node's ``out`` is ``loss``."""

    loss: str
    nodes: tuple[Node, ...]


class _Omitted:
    """The value of an optional argument the program does not pass (so the engine's own
    default applies), as distinct from passing ``None``."""

    _instance: _Omitted | None = None

    def __new__(cls) -> _Omitted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "OMITTED"

    def __reduce__(self) -> str:
        return "OMITTED"  # unpickles as this module's singleton


OMITTED: Any = _Omitted()
"""An optional argument the call leaves out, e.g. ``Backward("loss0")`` is ``loss0.backward()``."""


def given(**arguments: Any) -> dict[str, Any]:
    """The arguments a call passes: those not ``OMITTED``, in order."""
    return {key: value for key, value in arguments.items() if value is not OMITTED}


@dataclass(frozen=True, eq=False)
class Backward:
    """``loss.backward(gradient, retain_graph=..., create_graph=...)`` with exactly the
    arguments that are not ``OMITTED``."""

    loss: str
    retain_graph: bool | None = OMITTED
    gradient: np.ndarray | None = OMITTED
    create_graph: bool = OMITTED

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments passed, by name (``gradient`` as an array)."""
        return given(gradient=self.gradient, retain_graph=self.retain_graph,
                     create_graph=self.create_graph)


@dataclass(frozen=True, eq=False)
class Group:
    """One param group: the names of its tensors and its hyperparameter overrides."""

    params: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)


OPTIMIZERS: Mapping[str, str] = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
"""The optimizer kinds a program may build, with their ``torch.optim`` class names."""


@dataclass(frozen=True, eq=False)
class MakeOptimizer:
    """``opt = torch.optim.<Kind>(groups, **defaults)``; later instructions act on ``opt``.
    ``defaults`` holds only the hyperparameters the call passes, and each group only the keys
    it overrides."""

    groups: tuple[Group, ...]
    defaults: Mapping[str, Any]
    kind: str = "sgd"

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.kind!r}; known: {', '.join(OPTIMIZERS)}")


MakeSGD = MakeOptimizer
"""The name the instruction had while SGD was the only optimizer: ``MakeSGD(groups, defaults)``."""


@dataclass(frozen=True, eq=False)
class AddParamGroup:
    """``opt.add_param_group({"params": [...], **overrides})``."""

    group: Group


@dataclass(frozen=True)
class ReloadOptimizer:
    """A ``state_dict()`` round trip into a fresh optimizer, as a checkpoint resume does:
    ``state = opt.state_dict()``, then ``opt`` built again as it was (its constructor call
    and every ``add_param_group`` since), then ``opt.load_state_dict(state)``."""


@dataclass(frozen=True)
class Step:
    pass


@dataclass(frozen=True)
class ZeroGrad:
    """``opt.zero_grad()``, or ``opt.zero_grad(set_to_none=...)`` when that is passed."""

    set_to_none: bool = OMITTED

    @property
    def arguments(self) -> dict[str, Any]:
        return given(set_to_none=self.set_to_none)


@dataclass(frozen=True)
class SetGradNone:
    param: str


@dataclass(frozen=True, eq=False)
class SetGrad:
    """``param.grad = torch.tensor(value)``: a gradient the program gives instead of one a
    backward computes, as users do with gradients they all-reduce, clip or load. The
    optimizer-rule properties step on such drawn gradients, so that a difference in a
    gradient cannot hide (or stand in for) a difference in the optimizer's rule."""

    param: str
    value: np.ndarray


@dataclass(frozen=True)
class SetHyperparameter:
    group: int
    key: str
    value: Any


UPDATE_FORMS: Mapping[str, str] = {
    "isub": "with torch.no_grad():\n    {p} -= {s} * {p}.grad",
    "sub_": "with torch.no_grad():\n    {p}.sub_({s} * {p}.grad)",
    "add_": "with torch.no_grad():\n    {p}.add_({p}.grad, alpha=-{s})",
    "mul_": "with torch.no_grad():\n    {p}.mul_({s})",
    "data": "{p}.data.sub_({s} * {p}.grad)",
}
"""A user's own update of a param, as hand-written loops spell it (seed example D): in place
under ``no_grad`` (bumps the version counter, so a retained graph that saved the param raises
on its next backward), or through ``.data`` (does not: that backward silently uses the new
value). ``{p}`` is the param, ``{s}`` the scalar (a learning rate, or a factor for ``mul_``)."""

GRAD_EDIT_FORMS: Mapping[str, str] = {
    "zero_": "{p}.grad.zero_()",
    "mul_": "{p}.grad.mul_({s})",
    "div_": "{p}.grad.div_({s})",
}
"""A user's in-place edit of a grad: the grad stays the same object, and the next backward
accumulates into it (``zero_`` is seed D's; ``mul_``/``div_`` average accumulated grads)."""


@dataclass(frozen=True)
class Update:
    """A hand-written, in-place update of ``param`` (one of :data:`UPDATE_FORMS`)."""

    param: str
    form: str
    scalar: float

    def __post_init__(self) -> None:
        if self.form not in UPDATE_FORMS:
            raise ValueError(f"unknown update form {self.form!r}; known: {', '.join(UPDATE_FORMS)}")


@dataclass(frozen=True)
class EditGrad:
    """A user's in-place edit of ``param.grad`` (one of :data:`GRAD_EDIT_FORMS`)."""

    param: str
    form: str
    scalar: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in GRAD_EDIT_FORMS:
            raise ValueError(f"unknown grad edit {self.form!r}; known: {', '.join(GRAD_EDIT_FORMS)}")


Instruction = (
    Forward | Backward | MakeOptimizer | Step | ZeroGrad | SetGradNone | SetGrad
    | SetHyperparameter | Update | EditGrad | AddParamGroup | ReloadOptimizer
)


@dataclass(frozen=True, eq=False)
class Program:
    params: tuple[Param, ...]
    instructions: tuple[Instruction, ...]

    def __repr__(self) -> str:
        return "Program(\n" + self.to_script() + "\n)"

    def to_script(self, *, guarded: Sequence[int] = ()) -> str:
        """A standalone torch script that runs this program and prints the state after each
        instruction. Instructions whose index is in ``guarded`` are wrapped in try/except."""
        lines = [
            "import torch",
            "",
            "",
            "def show(label):",
            "    print(label)",
            "    for name, p in params.items():",
            "        grad = None if p.grad is None else p.grad.tolist()",
            '        history = "  (requires grad)" if p.grad is not None and p.grad.requires_grad else ""',
            '        print(f"    {name} = {p.tolist()}   grad = {grad}{history}")',
            "",
            "",
        ]
        for param in self.params:
            lines.append(f"{param.name} = {tensor_literal(param.value, requires_grad=True)}")
        names = ", ".join(f'"{p.name}": {p.name}' for p in self.params)
        lines += [f"params = {{{names}}}", 'show("[0] start")', ""]
        built: list[Instruction] = []  # what a ReloadOptimizer rebuilds
        for index, instruction in enumerate(self.instructions, start=1):
            code = render(instruction, built=built)
            if isinstance(instruction, MakeOptimizer):
                built = [instruction]
            elif isinstance(instruction, AddParamGroup):
                built.append(instruction)
            label = f'show("[{index}] {describe(instruction)}")'
            if index in guarded:
                lines.append("try:")
                lines += ["    " + line for line in code]
                lines.append("except Exception as error:")
                lines.append(f'    print("[{index}] raised", type(error).__name__, error)')
            else:
                lines += code
            lines += [label, ""]
        return "\n".join(lines).rstrip() + "\n"


def describe(instruction: Instruction) -> str:
    """A one-line summary, e.g. ``loss0.backward(retain_graph=True)``."""
    if isinstance(instruction, Forward):
        return f"forward {instruction.loss} ({len(instruction.nodes)} ops)"
    if isinstance(instruction, ReloadOptimizer):
        return "opt rebuilt from opt.state_dict()"
    if isinstance(instruction, SetGrad):  # the values are in the script's line above
        return f"{instruction.param}.grad = torch.tensor(...)"
    return " ".join(line.strip() for line in render(instruction)).replace('"', "'")


def render(instruction: Instruction, *, built: Sequence[Instruction] = ()) -> list[str]:
    """The torch code for one instruction; ``built`` is how the current ``opt`` was made (its
    MakeOptimizer and AddParamGroups), which a ReloadOptimizer repeats."""
    if isinstance(instruction, Forward):
        return [f"{node.out} = {render_node(node)}" for node in instruction.nodes]
    if isinstance(instruction, Backward):
        args = []
        for key, value in instruction.arguments.items():
            if key == "gradient":
                args.append(tensor_literal(value))  # positional, as users write it
            else:
                args.append(f"{key}={value}")
        return [f"{instruction.loss}.backward({', '.join(args)})"]
    if isinstance(instruction, MakeOptimizer):
        groups = ", ".join(_render_group(group) for group in instruction.groups)
        defaults = "".join(f", {key}={_scalar(value)}" for key, value in instruction.defaults.items())
        return [f"opt = torch.optim.{OPTIMIZERS[instruction.kind]}([{groups}]{defaults})"]
    if isinstance(instruction, AddParamGroup):
        return [f"opt.add_param_group({_render_group(instruction.group)})"]
    if isinstance(instruction, ReloadOptimizer):
        rebuilt = [line for step in built for line in render(step)]
        return ["state = opt.state_dict()", *rebuilt, "opt.load_state_dict(state)"]
    if isinstance(instruction, Step):
        return ["opt.step()"]
    if isinstance(instruction, ZeroGrad):
        passed = ", ".join(f"{key}={value}" for key, value in instruction.arguments.items())
        return [f"opt.zero_grad({passed})"]
    if isinstance(instruction, SetGradNone):
        return [f"{instruction.param}.grad = None"]
    if isinstance(instruction, SetGrad):
        return [f"{instruction.param}.grad = {tensor_literal(instruction.value)}"]
    if isinstance(instruction, SetHyperparameter):
        value = _scalar(instruction.value)
        return [f'opt.param_groups[{instruction.group}]["{instruction.key}"] = {value}']
    if isinstance(instruction, Update):
        code = UPDATE_FORMS[instruction.form]
        return code.format(p=instruction.param, s=_scalar(instruction.scalar)).splitlines()
    if isinstance(instruction, EditGrad):
        code = GRAD_EDIT_FORMS[instruction.form]
        return [code.format(p=instruction.param, s=_scalar(instruction.scalar))]
    raise TypeError(f"not an instruction: {instruction!r}")


def render_node(node: Node) -> str:
    operands = [_render_operand(operand) for operand in node.operands]
    return OPS[node.op].render(operands, node.params)


def _render_operand(operand: Operand) -> str:
    if isinstance(operand, Ref):
        return operand.name
    if isinstance(operand, Const):
        return tensor_literal(operand.value)
    return _scalar(operand)


def _render_group(group: Group) -> str:
    items = [f'"params": [{", ".join(group.params)}]']
    items += [f'"{key}": {_scalar(value)}' for key, value in group.overrides.items()]
    return "{" + ", ".join(items) + "}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, tuple):  # Adam's betas
        return "(" + ", ".join(_scalar(item) for item in value) + ")"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
    return repr(value)


def _nested(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_nested(item) for item in value) + "]"
    return _scalar(value)


def tensor_literal(value: np.ndarray, *, requires_grad: bool = False) -> str:
    """``torch.tensor([...], dtype=torch.float32)``, exact: Python's float repr round-trips.
    An empty array is ``torch.empty(shape, ...)``: its nested list loses every dimension after
    the first zero (``[[]]`` for shape (1, 0, 3) is a tensor of shape (1, 0))."""
    extra = ", requires_grad=True" if requires_grad else ""
    dtype = f", dtype=torch.{value.dtype}" if value.dtype.kind == "f" else ""
    if value.size == 0:
        return f"torch.empty({value.shape}{dtype}{extra})"
    return f"torch.tensor({_nested(value.tolist())}{dtype}{extra})"
