"""The NumPy reference engine, through the same adapter base as any torch-like engine."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

import reference
from conformance.torchlike import TorchLikeEngine


class ReferenceEngine(TorchLikeEngine):
    name = "reference"
    module: ClassVar[Any] = reference

    def version(self) -> str:
        return "autograd-conformance reference (NumPy)"

    def shares_memory(self, first: Any, second: Any) -> bool:
        return bool(np.shares_memory(first._data, second._data))

    def follow(self, param: Any, value: np.ndarray) -> None:
        """Overwrite a param's values with ``value`` without bumping its version counter: the
        oracle continues from the state of the engine under test (see ``interpret.run``)."""
        if value.shape == param._data.shape and value.dtype == param._data.dtype:
            np.copyto(param._data, value)
