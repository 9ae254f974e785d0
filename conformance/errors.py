"""Semantic error categories: what an engine's exception *means*, independent of its type or text.

Engines raise different exception types with different messages for the same mistake; the suite
compares categories. Each adapter maps its engine's exceptions onto these in ``Engine.classify``.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorKind(enum.Enum):
    """What went wrong, as torch's semantics define it."""

    FREED_GRAPH = "backward through a graph whose saved tensors were freed"
    NON_SCALAR_BACKWARD = "backward of a non-scalar output without a gradient"
    NO_GRAD_FN = "backward of a tensor that does not require grad"
    GRADIENT_SHAPE = "backward with a gradient of the wrong shape"
    INPLACE_MODIFIED = "a tensor saved for backward was modified in place"
    INDEX_OUT_OF_RANGE = "index out of range or mask of the wrong shape"
    INVALID_HYPERPARAMETER = "invalid optimizer hyperparameter"
    EMPTY_PARAMETER_LIST = "optimizer got an empty parameter list"
    DUPLICATE_PARAMETER = "a parameter appears in more than one parameter group"
    NON_LEAF_PARAMETER = "optimizer given a non-leaf tensor"
    NONE_GRAD = "a param's .grad was None where a user's code needed a tensor"
    REFUSED = "the engine refused, by design, a call torch runs"
    """Not one of torch's errors: an adapter classifies as REFUSED only an error its engine
    documents as a limitation of its own, raised before the call changed anything, so that the
    program goes on. torch never raises it, so a run that shows it diverges from the
    reference: only a known deviation of the engine accounts for it."""

    def __str__(self) -> str:
        return self.name


class EngineCrash(AssertionError):
    """The engine raised an exception its adapter does not map to any ErrorKind.

    ``trace`` holds the observations made before the crash: the crashing instruction is
    ``program.instructions[len(trace) - 1]``. A scoped known deviation's ``applies`` sees that
    partial trace, so a crash it describes is set aside like any other run it describes.
    """

    def __init__(self, message: str, trace: list[Any] | None = None) -> None:
        super().__init__(message)
        self.trace: list[Any] = trace if trace is not None else []
        self.program: Any = None
        """The program that crashed (set by the runner, which knows it)."""
