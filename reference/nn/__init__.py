"""``reference.nn``: only what the training loop needs: ``nn.functional``'s linear and losses."""

from reference.nn import functional

__all__ = ["functional"]
