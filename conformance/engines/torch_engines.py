"""PyTorch, with its three SGD implementations: single-tensor, foreach and fused."""

from __future__ import annotations

import torch

from conformance.torchlike import TorchLikeEngine


class TorchEngine(TorchLikeEngine):
    """torch on the CPU, SGD's single-tensor loop (``foreach=False``)."""

    name = "torch"
    module = torch
    sgd_options = {"foreach": False}


class TorchForeachEngine(TorchEngine):
    """torch's multi-tensor SGD (``torch._foreach_*`` kernels)."""

    name = "torch-foreach"
    sgd_options = {"foreach": True}


class TorchFusedEngine(TorchEngine):
    """torch's fused SGD kernel."""

    name = "torch-fused"
    sgd_options = {"fused": True}
