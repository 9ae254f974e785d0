"""The NumPy reference engine, through the same adapter base as any torch-like engine."""

from __future__ import annotations

import reference
from conformance.torchlike import TorchLikeEngine


class ReferenceEngine(TorchLikeEngine):
    name = "reference"
    module = reference

    def version(self) -> str:
        return "autograd-conformance reference (NumPy)"
