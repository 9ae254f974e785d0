"""The properties: one module per semantic (see the README's table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def optimizer_properties(*properties: Callable[..., Any]) -> None:
    """Mark ``properties`` as constructing an optimizer (``-m optimizer``), in modules where
    not every property does (the others set ``pytestmark = pytest.mark.optimizer``).

    Marked after their definition, not by a decorator: Hypothesis seeds a derandomized run from
    the property's source, decorators included, so a decorator would change the programs
    drawn."""
    for prop in properties:
        pytest.mark.optimizer(prop)


def functional_properties(*properties: Callable[..., Any]) -> None:
    """Mark ``properties`` as needing no stateful autograd (``functional``): their programs
    hold only forwards, single backwards from no grads, grads given by ``p.grad = ...`` and
    optimizer calls, so functional engines run them too (see
    :class:`conformance.adapter.FunctionalEngine`). Marked after their definition, as
    :func:`optimizer_properties`, so that the programs drawn stay the same."""
    for prop in properties:
        pytest.mark.functional(prop)
