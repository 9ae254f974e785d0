"""``reference.nn.functional``: torch's functional forms of the reference's ops."""

from reference._functions import relu, sigmoid, softmax, tanh
from reference._linalg import linear

__all__ = ["linear", "relu", "sigmoid", "softmax", "tanh"]
