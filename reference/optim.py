"""``Optimizer``, ``SGD``, ``Adam`` and ``AdamW``, transcribed from torch/optim (optimizer.py,
sgd.py, adam.py, adamw.py).

SGD and Adam are torch's ``_single_tensor_sgd`` and ``_single_tensor_adam`` loops, written
with the same tensor operations in the same order so that float results round the same way
as torch's CPU kernels as users run them (AVX2/AVX512, also for a single element): the
multiply-adds of ``add(alpha=)``, ``lerp_`` and ``addcmul_`` are fused (one rounding),
``addcdiv_`` is not. Fused or not is more than an ulp at the edges drawn gradients reach: with
``eps = 0`` and a gradient of 1e-45, ``lerp(0, 1e-45, 0.5)`` is 0 fused and 1e-45 unfused, and
the step is then 0 / 0 = NaN or 1e-45 / 0 = inf. (torch's fallback kernels,
``ATEN_CPU_CAPABILITY=default``, fuse none of them.) torch's foreach and fused kernels are
variants of these loops; the reference has only the loops.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from copy import deepcopy
from itertools import chain
from typing import Any

import numpy as np

from reference._autograd import enable_grad, no_grad
from reference._creation import tensor, zeros_like
from reference._dtypes import float32, legacy_type_name
from reference._functions import maximum
from reference._numerics import fused_multiply_add
from reference._tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]


def _type_name(value: Any) -> str:
    # torch.typename: a tensor's legacy type string, else the qualified class name.
    if isinstance(value, Tensor):
        return legacy_type_name(value.dtype, module="reference")
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _call_closure(closure: Callable[[], Any] | None) -> Any:
    """``step(closure)``'s first act, as torch's: the closure's loss, computed with grad on."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


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

    def state_dict(self) -> dict[str, Any]:
        """``{"state": ..., "param_groups": ...}`` with params replaced by integer ids.

        Ids count the params in order across groups. Nothing is copied: the per-param state
        dicts and their tensors are the optimizer's own, and each group is a new dict holding
        the group's values (torch's ``Optimizer.state_dict``).

        >>> import reference
        >>> w = reference.tensor([1.0], requires_grad=True)
        >>> opt = reference.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> w.grad = reference.tensor([2.0])
        >>> opt.step()
        >>> opt.state_dict()["state"]
        {0: {'momentum_buffer': tensor([2.])}}
        """
        ids: dict[int, int] = {}
        start = 0

        def pack_group(group: dict[str, Any]) -> dict[str, Any]:
            nonlocal start
            packed = {key: value for key, value in group.items() if key != "params"}
            for index, p in enumerate(group["params"], start):
                ids.setdefault(id(p), index)
            packed["params"] = [ids[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(group) for group in self.param_groups]
        state = {
            (ids[id(key)] if isinstance(key, Tensor) else key): value for key, value in self.state.items()
        }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take hyperparameters and per-param state from ``state_dict`` (see ``state_dict``).

        Groups are matched by position and must hold as many params as this optimizer's.
        State tensors are cast to their param's dtype except ``step``; like torch's ``.to``,
        a cast to the dtype a tensor already has returns that same tensor, so the loaded
        state shares its tensors with the state dict (and with the optimizer it came from).
        """
        state_dict = state_dict.copy()
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups, strict=True)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups),
                chain.from_iterable(g["params"] for g in groups),
                strict=True,
            )
        )
        state: defaultdict[Any, Any] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = _cast_state(param, value, key, state_dict["param_groups"], None)
            else:
                state[key] = value
        for group, saved in zip(groups, saved_groups, strict=True):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.__setstate__({"state": state, "param_groups": saved_groups})

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

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
        _check_single_tensor("SGD", foreach=foreach, fused=fused, differentiable=differentiable)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a grad; returns ``closure()``'s loss, or None."""
        loss = _call_closure(closure)
        with no_grad():
            for group in self.param_groups:
                _check_single_tensor(
                    "SGD",
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


class Adam(Optimizer):
    """Adam, with torch's L2 or decoupled weight decay, AMSGrad and ``maximize``.

    For each parameter whose ``.grad`` is not None, in order: create its state on first use
    (``step``, a 0-dim float32 tensor, and zero ``exp_avg``/``exp_avg_sq``, plus
    ``max_exp_avg_sq`` with amsgrad); ``step += 1``; negate the grad if ``maximize``; apply
    weight decay (``p *= 1 - lr * wd`` if decoupled, else ``g = g + wd * p``);
    ``exp_avg.lerp_(g, 1 - beta1)``; ``exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g``;
    then ``p -= lr / (1 - beta1**step) * exp_avg / (sqrt(v) / sqrt(1 - beta2**step) + eps)``
    where ``v`` is ``exp_avg_sq``, or its running maximum with amsgrad. A param whose grad is
    None is skipped: no state is created and its step is not counted.

    >>> import reference
    >>> w = reference.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = reference.optim.Adam([w], lr=0.1)
    >>> w.grad = reference.tensor([0.5, 3.0])
    >>> opt.step()
    >>> w
    tensor([ 0.9000, -2.1000], requires_grad=True)
    >>> opt.state[w]["step"]
    tensor(1.)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        # The checks and their order are torch's: lr, eps, betas[0], betas[1], weight_decay,
        # then the betas' types. `not x >= 0.0` also rejects nan (SGD's `lr < 0.0` does not).
        if isinstance(lr, Tensor):
            if foreach and not capturable:
                raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        # An int beta such as `betas=(0, 0.999)` is rejected here: measured on torch 2.13.
        both_floats = isinstance(betas[0], float) and isinstance(betas[1], float)
        both_tensors = isinstance(betas[0], Tensor) and isinstance(betas[1], Tensor)
        if not (both_floats or both_tensors):
            raise ValueError("betas must be either both floats or both Tensors")
        for index in (0, 1):
            beta = betas[index]
            if isinstance(beta, Tensor):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{index}] as a Tensor is not supported for capturable=False and foreach=True"
                    )
                if beta.numel() != 1:
                    raise ValueError(f"Tensor betas[{index}] must be 1-element")
        betas = tuple(_to_scalar(beta) for beta in betas)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        name = type(self).__name__
        _check_single_tensor(name, foreach=foreach, fused=fused, differentiable=differentiable)
        if isinstance(lr, Tensor) or both_tensors:
            raise NotImplementedError(
                f"reference.optim.{name} takes a float lr and float betas; a Tensor lr or beta "
                "rounds through tensor arithmetic the reference does not transcribe"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            group.setdefault("decoupled_weight_decay", False)
            group.setdefault("fused", None)
            for p in group["params"]:
                p_state = self.state.get(p, [])
                if len(p_state) != 0 and not isinstance(p_state["step"], Tensor):
                    p_state["step"] = tensor(float(p_state["step"]), dtype=float32)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        max_exp_avg_sqs: list[Tensor],
        state_steps: list[Tensor],
    ) -> None:
        for p in group["params"]:
            if p._grad is None:
                continue
            params.append(p)
            grads.append(p._grad)
            state = self.state[p]
            if len(state) == 0:
                # step lives in float32 whatever the param's dtype (torch's _get_scalar_dtype).
                state["step"] = tensor(0.0, dtype=float32)
                state["exp_avg"] = zeros_like(p)
                state["exp_avg_sq"] = zeros_like(p)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = zeros_like(p)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                # A group switched to amsgrad after its params got state has no buffer: KeyError,
                # as in torch.
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            state_steps.append(state["step"])

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a grad; returns ``closure()``'s loss, or None."""
        loss = _call_closure(closure)
        with no_grad():
            for group in self.param_groups:
                _check_single_tensor(
                    type(self).__name__,
                    foreach=group["foreach"],
                    fused=group["fused"],
                    differentiable=group["differentiable"],
                )
                params: list[Tensor] = []
                grads: list[Tensor] = []
                exp_avgs: list[Tensor] = []
                exp_avg_sqs: list[Tensor] = []
                max_exp_avg_sqs: list[Tensor] = []
                state_steps: list[Tensor] = []
                beta1, beta2 = group["betas"]
                self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps)
                _single_tensor_adam(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    max_exp_avg_sqs,
                    state_steps,
                    amsgrad=group["amsgrad"],
                    beta1=beta1,
                    beta2=beta2,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=group["maximize"],
                    capturable=group["capturable"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                )
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``), default 0.01.

    >>> import reference
    >>> w = reference.tensor([1.0], requires_grad=True)
    >>> opt = reference.optim.AdamW([w], lr=0.1)
    >>> opt.param_groups[0]["weight_decay"], opt.param_groups[0]["decoupled_weight_decay"]
    (0.01, True)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Whatever the loaded groups say, AdamW decays decoupled (torch's AdamW.__setstate__).
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def _cast_state(
    param: Tensor, value: Any, param_id: Any, param_groups: list[dict[str, Any]], key: Any
) -> Any:
    """torch's ``load_state_dict._cast``: tensors to the param's dtype (``step`` kept), recursing
    into dicts and other containers."""
    if isinstance(value, Tensor):
        fused = capturable = False
        for group in param_groups:
            if param_id in group["params"]:
                fused = group.get("fused", False)
                capturable = group.get("capturable", False)
                break
        if key == "step":
            return value.to(dtype=float32) if capturable or fused else value
        return value.to(dtype=param.dtype) if param.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _cast_state(param, v, param_id, param_groups, k) for k, v in value.items()}
    # torch also rebuilds a str this way, into the text of a generator object; kept as is here.
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return type(value)(_cast_state(param, v, param_id, param_groups, None) for v in value)  # type: ignore[call-arg]
    return value


def _check_single_tensor(optimizer: str, *, foreach: Any, fused: Any, differentiable: Any) -> None:
    for name, value in (("foreach", foreach), ("fused", fused), ("differentiable", differentiable)):
        if value:
            raise NotImplementedError(
                f"reference.optim.{optimizer} implements torch's single-tensor loop only; {name}=True "
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
            grad = _add(grad, param, alpha=weight_decay)
        if momentum != 0:
            buffer = momentum_buffers[i]
            if buffer is None:
                buffer = grad.detach().clone()
                momentum_buffers[i] = buffer
            else:
                buffer.copy_(_add(buffer.mul_(momentum), grad, alpha=1 - dampening))
            grad = _add(grad, buffer, alpha=momentum) if nesterov else buffer
        param.copy_(_add(param, grad, alpha=-step_size))


def _to_scalar(value: Any) -> Any:
    # torch's optimizer._to_scalar: a 1-element tensor of any shape becomes 0-dim.
    if isinstance(value, Tensor) and value.dim() != 0:
        return value.squeeze()
    return value


# torch's message for capturable=True on a CPU param; the list is torch 2.13's
# _get_capturable_supported_devices() on a build without a private-use backend.
_CAPTURABLE_DEVICES = ["cuda", "xpu", "hpu", "privateuseone", "xla"]


def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    capturable: bool,
    decoupled_weight_decay: bool,
) -> None:
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        step_t = state_steps[i]
        if capturable:
            raise AssertionError(
                "If capturable=True, params and state_steps must be on supported devices: "
                f"{_CAPTURABLE_DEVICES}."
            )
        step_t += 1
        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = _add(grad, param, alpha=weight_decay)
        _lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq.mul_(beta2)
        _addcmul_(exp_avg_sq, grad, grad, value=1 - beta2)

        # The bias corrections are Python floats, from the float32 step read back as a float.
        step = step_t.item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        if amsgrad:
            max_exp_avg_sqs[i].copy_(maximum(max_exp_avg_sqs[i], exp_avg_sq))
            denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(eps)
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        _addcdiv_(param, exp_avg, denom, value=-step_size)


# torch's vectorized CPU kernels for add(alpha=), lerp_, addcmul_ and addcdiv_ with a
# Python-number alpha, weight or value: the number is cast to the tensor's dtype; add's,
# lerp's and addcmul's multiply-adds are fused (one rounding), addcdiv's operations each round
# (aten/src/ATen/native/cpu/BinaryOpsKernel.cpp, Lerp.h, PointwiseOpsKernel.cpp). Measured on
# torch 2.13 (AVX2), bit for bit on every size from 0-d up: tests/test_ref_adam.py.


def _add(self: Tensor, other: Tensor, *, alpha: float) -> Tensor:
    """``self.add(other, alpha=alpha)``: ``fma(alpha, other, self)``, a new tensor."""
    a, b = self.detach().numpy(), other.detach().numpy()
    scale = np.full_like(b, self.dtype.type(alpha))
    return Tensor._wrap(fused_multiply_add(scale, b, a).astype(self.dtype))


def _lerp_(self: Tensor, end: Tensor, weight: float) -> Tensor:
    """``self.lerp_(end, weight)``: ``fma(w, end - self, self)`` for ``|w| < 0.5``, else
    ``fma(-(end - self), 1 - w, end)``, the branch chosen on ``w`` cast to the dtype. Fused
    as torch's: with ``w = 0.5``, ``lerp(0, 1e-45, 0.5)`` is 0 (the exact 0.7e-45 rounds to
    even), where the unfused ``1e-45 - 1e-45 * 0.5`` is 1e-45 (the product rounds to 0).

    This is torch's scalar loop (its compiler fuses ``end - diff * (1 - w)``), which takes
    every element of the small tensors programs hold; its vector loop (whole vectors of 8 or
    16 floats) computes ``fma(w - 1, diff, end)``, the same value but for the sign of a zero
    result (at ``w = 1``)."""
    dtype = self.dtype
    w = dtype.type(weight)
    diff = end.detach().numpy() - self.detach().numpy()
    if abs(w) < 0.5:
        result = fused_multiply_add(np.full_like(diff, w), diff, self.detach().numpy())
    else:
        result = fused_multiply_add(-diff, np.full_like(diff, dtype.type(1) - w),
                                    end.detach().numpy())
    return self.copy_(Tensor._wrap(result.astype(dtype)))


def _addcmul_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: float) -> Tensor:
    """``self.addcmul_(tensor1, tensor2, value=value)``: ``fma(value * tensor1, tensor2,
    self)``, the product with ``value`` rounded first."""
    scaled = tensor1.mul(value).detach().numpy()
    result = fused_multiply_add(scaled, tensor2.detach().numpy(), self.detach().numpy())
    return self.copy_(Tensor._wrap(result.astype(self.dtype)))


def _addcdiv_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: float) -> Tensor:
    """``self.addcdiv_(tensor1, tensor2, value=value)``: ``self + (value * tensor1) / tensor2``."""
    return self.add_(tensor1.mul(value).div(tensor2))


__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]
