"""``reference.nn``: only what the training loop needs, ``nn.functional.linear``."""

from reference.nn import functional

__all__ = ["functional"]
