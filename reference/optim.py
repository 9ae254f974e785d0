"""``Optimizer`` and ``SGD``, transcribed from torch/optim (optimizer.py, sgd.py).

SGD is torch's ``_single_tensor_sgd`` loop, written with the same tensor operations in the
same order so that float results round the same way. torch's foreach and fused kernels are
variants of this loop; the reference has only the loop.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from reference._autograd import enable_grad, no_grad
from reference._dtypes import legacy_type_name
from reference._tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]


def _type_name(value: Any) -> str:
    # torch.typename: a tensor's legacy type string, else the qualified class name.
    if isinstance(value, Tensor):
        return legacy_type_name(value.dtype, module="reference")
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class Optimizer:
    """Holds parameter groups and per-parameter state; subclasses implement ``step``.

    >>> import reference
    >>> w = reference.tensor([1.0], requires_grad=True)
    >>> opt = reference.optim.SGD([w], lr=0.1)
    >>> opt.param_groups[0]["lr"]
    0.1
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {_type_name(params)}"
            )
        self.state: defaultdict[Tensor, Any] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups: list[Any] = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; missing hyperparameters are filled in from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            param_group["params"] = list(params)

        tensors: list[Any] = []
        names: list[Any] = []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                names.append(param[0])
                tensors.append(param[1])
            else:
                tensors.append(param)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are missing"
                )
            param_group["param_names"] = names

        for param in param_group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is {_type_name(param)}"
                )
            if not self.defaults.get("differentiable", None) and not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")

        for name, default in self.defaults.items():
            param_group.setdefault(name, default)

        params = param_group["params"]
        if len(params) != len(dict.fromkeys(params)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, this "
                "will cause an error; see github.com/pytorch/pytorch/issues/40967 for more "
                "information",
                UserWarning,
                stacklevel=3,
            )
        existing: dict[Tensor, None] = {}
        for group in self.param_groups:
            existing.update(dict.fromkeys(group["params"]))
            if ("param_names" in param_group) != ("param_names" in group):
                current = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. cannot add param "
                    f"group {current} to the optimizer"
                )
        if any(param in existing for param in param_group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the grads of this optimizer's parameters (only theirs).

        ``set_to_none=True`` (the default since torch 2.0) sets them to None; ``False`` zeros
        each grad tensor in place, detaching it first if it has a ``grad_fn``.
        """
        for group in self.param_groups:
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if grad.grad_fn is not None:
                    grad.detach_()
                else:
                    grad.requires_grad_(False)
                grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent, with torch's momentum, dampening, Nesterov, weight decay.

    For each parameter whose ``.grad`` is not None, in order: negate the grad if
    ``maximize``; add ``weight_decay * p``; update the momentum buffer (a clone of the grad
    the first time, then ``momentum * buf + (1 - dampening) * g``) and use it (or
    ``g + momentum * buf`` with Nesterov); finally ``p -= lr * g`` in place.

    >>> import reference
    >>> x = reference.tensor([1.0, 2.0], requires_grad=True)
    >>> (100 * x).sum().backward()
    >>> reference.optim.SGD([x], lr=0.001).step()
    >>> x
    tensor([0.9000, 1.9000], requires_grad=True)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)
        _check_single_tensor(foreach=foreach, fused=fused, differentiable=differentiable)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a grad; returns ``closure()``'s loss, or None."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                _check_single_tensor(
                    foreach=group["foreach"],
                    fused=group["fused"],
                    differentiable=group["differentiable"],
                )
                params: list[Tensor] = []
                grads: list[Tensor] = []
                momentum_buffers: list[Tensor | None] = []
                for p in group["params"]:
                    if p._grad is None:
                        continue
                    params.append(p)
                    grads.append(p._grad)
                    if group["momentum"] != 0:
                        momentum_buffers.append(self.state[p].get("momentum_buffer"))
                _single_tensor_sgd(
                    params,
                    grads,
                    momentum_buffers,
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    lr=group["lr"],
                    dampening=group["dampening"],
                    nesterov=group["nesterov"],
                    maximize=group["maximize"],
                )
                if group["momentum"] != 0:
                    for p, buffer in zip(params, momentum_buffers, strict=True):
                        self.state[p]["momentum_buffer"] = buffer
        return loss


def _check_single_tensor(*, foreach: Any, fused: Any, differentiable: Any) -> None:
    for name, value in (("foreach", foreach), ("fused", fused), ("differentiable", differentiable)):
        if value:
            raise NotImplementedError(
                f"reference.optim.SGD implements torch's single-tensor loop only; {name}=True "
                "selects a torch variant of that loop, which the reference does not have "
                f"(use {name}=None or False)"
            )


def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    weight_decay: float,
    momentum: float,
    lr: float | Tensor,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    step_size = lr.item() if isinstance(lr, Tensor) else lr
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buffer = momentum_buffers[i]
            if buffer is None:
                buffer = grad.detach().clone()
                momentum_buffers[i] = buffer
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buffer, alpha=momentum) if nesterov else buffer
        param.add_(grad, alpha=-step_size)


__all__ = ["SGD", "Optimizer"]
