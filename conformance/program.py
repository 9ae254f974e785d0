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


@dataclass(frozen=True, eq=False)
class Backward:
    loss: str
    retain_graph: bool | None = None
    gradient: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Group:
    """One param group: the names of its tensors and its hyperparameter overrides."""

    params: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class MakeSGD:
    """``opt = SGD(groups, **defaults)``; later Step/ZeroGrad act on it."""

    groups: tuple[Group, ...]
    defaults: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    pass


@dataclass(frozen=True)
class ZeroGrad:
    set_to_none: bool = True


@dataclass(frozen=True)
class SetGradNone:
    param: str


@dataclass(frozen=True)
class SetHyperparameter:
    group: int
    key: str
    value: Any


Instruction = Forward | Backward | MakeSGD | Step | ZeroGrad | SetGradNone | SetHyperparameter


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
            '        print(f"    {name} = {p.tolist()}   grad = {grad}")',
            "",
            "",
        ]
        for param in self.params:
            lines.append(f"{param.name} = {tensor_literal(param.value, requires_grad=True)}")
        names = ", ".join(f'"{p.name}": {p.name}' for p in self.params)
        lines += [f"params = {{{names}}}", 'show("[0] start")', ""]
        for index, instruction in enumerate(self.instructions, start=1):
            code = render(instruction)
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
    return render(instruction)[-1].replace('"', "'")


def render(instruction: Instruction) -> list[str]:
    """The torch code for one instruction."""
    if isinstance(instruction, Forward):
        return [f"{node.out} = {render_node(node)}" for node in instruction.nodes]
    if isinstance(instruction, Backward):
        args = []
        if instruction.gradient is not None:
            args.append(tensor_literal(instruction.gradient))
        if instruction.retain_graph is not None:
            args.append(f"retain_graph={instruction.retain_graph}")
        return [f"{instruction.loss}.backward({', '.join(args)})"]
    if isinstance(instruction, MakeSGD):
        groups = ", ".join(_render_group(group) for group in instruction.groups)
        defaults = "".join(f", {key}={_scalar(value)}" for key, value in instruction.defaults.items())
        return [f"opt = torch.optim.SGD([{groups}]{defaults})"]
    if isinstance(instruction, Step):
        return ["opt.step()"]
    if isinstance(instruction, ZeroGrad):
        return [f"opt.zero_grad(set_to_none={instruction.set_to_none})"]
    if isinstance(instruction, SetGradNone):
        return [f"{instruction.param}.grad = None"]
    if isinstance(instruction, SetHyperparameter):
        value = _scalar(instruction.value)
        return [f'opt.param_groups[{instruction.group}]["{instruction.key}"] = {value}']
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
    """``torch.tensor([...], dtype=torch.float32)``, exact: Python's float repr round-trips."""
    extra = ", requires_grad=True" if requires_grad else ""
    dtype = f", dtype=torch.{value.dtype}" if value.dtype.kind == "f" else ""
    return f"torch.tensor({_nested(value.tolist())}{dtype}{extra})"
