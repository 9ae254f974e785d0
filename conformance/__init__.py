"""autograd-conformance: does your autograd engine behave like PyTorch in a training loop?

Write an adapter (:class:`Engine`, or :class:`TorchLikeEngine` for torch-like APIs, or
:class:`FunctionalEngine` for engines whose gradients come from ``vjp``), then
``pytest --pyargs conformance --engine yourpkg.adapter:YourEngine``.
"""

from conformance.adapter import Capabilities, Diverges, Engine, FunctionalEngine, KnownDeviation
from conformance.errors import ErrorKind
from conformance.torchlike import TorchLikeEngine

__all__ = ["Capabilities", "Diverges", "Engine", "ErrorKind", "FunctionalEngine", "KnownDeviation",
           "TorchLikeEngine"]
