"""The functional tier of a stateful engine, derived from its stateful calls.

:class:`Functionalized` is how a torch-like engine (and the reference, which is one) runs as
a :class:`~conformance.adapter.FunctionalEngine`: the oracle of a functional engine's runs is
the reference through this, so that both traces come from one interpreter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.adapter import Engine, FunctionalEngine
from conformance.errors import ErrorKind


class Functionalized(FunctionalEngine):
    """``engine``'s functional tier: an array is a leaf tensor that requires grad, a vjp is
    a backward through fresh leaves of the params' values (so no ``.grad`` carries over), and
    an optimizer step assigns each held param its grad (``p.grad = g`` or ``None``) and calls
    ``step()``, which updates the params in place."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        if type(self).name == FunctionalEngine.name:  # a subclass that names itself keeps it
            self.name = engine.name  # type: ignore[misc]
        self.capabilities = engine.capabilities  # type: ignore[misc]

    def version(self) -> str:
        return self.engine.version()

    def start_program(self) -> None:
        self.engine.start_program()

    def array(self, value: np.ndarray) -> Any:
        return self.engine.tensor(value, requires_grad=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        return self.engine.to_numpy(array)

    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return self.engine.apply(op, operands, params)

    def vjp(self, forward: Callable[[Sequence[Any]], Any], params: Sequence[Any],
            cotangent: Any | None) -> Sequence[Any]:
        engine = self.engine
        leaves = [engine.tensor(engine.to_numpy(p), requires_grad=True) for p in params]
        loss = forward(leaves)
        if cotangent is None:
            engine.backward(loss)
        else:
            engine.backward(loss, gradient=engine.to_numpy(cotangent))
        return [engine.grad(leaf) for leaf in leaves]

    def optimizer(self, kind: str, groups: Sequence[Mapping[str, Any]],
                  defaults: Mapping[str, Any]) -> Any:
        return self.engine.optimizer(kind, groups, defaults)

    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        for param, grad in zip(params, grads, strict=True):
            if grad is None:
                self.engine.set_grad_none(param)
            else:
                self.engine.set_grad(param, self.engine.to_numpy(grad))
        self.engine.step(optimizer)
        return list(params)

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        self.engine.set_hyperparameter(optimizer, group, key, value)

    def add_param_group(self, optimizer: Any, group: Mapping[str, Any]) -> None:
        self.engine.add_param_group(optimizer, group)

    def state_dict(self, optimizer: Any) -> Any:
        return self.engine.state_dict(optimizer)

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        self.engine.load_state_dict(optimizer, state)

    def classify(self, error: Exception) -> ErrorKind | None:
        return self.engine.classify(error)

    def follow(self, param: Any, value: np.ndarray) -> None:
        """The reference's ``follow`` (see ``conformance.interpret.run``), in place: its
        optimizer holds the param."""
        self.engine.follow(param, value)  # type: ignore[attr-defined]
