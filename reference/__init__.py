"""A NumPy autograd engine that is the executable specification of torch's training-loop semantics.

It reproduces what torch 2.13 does for ``loss.backward()``, ``optimizer.step()`` and
``optimizer.zero_grad()``: which tensors each op saves (and so when a second backward
raises), the order and in-placeness of gradient accumulation, indexing gradients, the
conventions at kinks and ties, and SGD's update rule.

>>> import reference
>>> x = reference.tensor([1.0, 2.0], requires_grad=True)
>>> loss = (100 * x).sum()
>>> loss.backward()
>>> x.grad
tensor([100., 100.])
>>> opt = reference.optim.SGD([x], lr=0.001)
>>> opt.step()
>>> x
tensor([0.9000, 1.9000], requires_grad=True)
"""

from reference import autograd, nn, optim, return_types
from reference._autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from reference._creation import ones, ones_like, tensor, zeros, zeros_like
from reference._dtypes import bool_ as bool
from reference._dtypes import float32, float64, int64
from reference._functions import (
    abs,
    add,
    amax,
    amin,
    ceil,
    clamp,
    cos,
    div,
    exp,
    floor,
    log,
    logsumexp,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    pow,
    reciprocal,
    relu,
    round,
    sigmoid,
    sign,
    sin,
    softmax,
    sqrt,
    square,
    sub,
    sum,
    tanh,
    where,
)
from reference._linalg import matmul
from reference._shape import (
    cat,
    clone,
    detach,
    gather,
    index_select,
    permute,
    reshape,
    squeeze,
    stack,
    t,
    transpose,
    unsqueeze,
)
from reference._tensor import Tensor

# torch's aliases
float = float32
double = float64
long = int64

__all__ = [
    "Tensor",
    "abs",
    "add",
    "amax",
    "amin",
    "autograd",
    "bool",
    "cat",
    "ceil",
    "clamp",
    "clone",
    "cos",
    "detach",
    "div",
    "double",
    "enable_grad",
    "exp",
    "float",
    "float32",
    "float64",
    "floor",
    "gather",
    "index_select",
    "int64",
    "is_grad_enabled",
    "log",
    "logsumexp",
    "long",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mul",
    "neg",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "permute",
    "pow",
    "reciprocal",
    "relu",
    "reshape",
    "return_types",
    "round",
    "set_grad_enabled",
    "sigmoid",
    "sign",
    "sin",
    "softmax",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "sub",
    "sum",
    "t",
    "tanh",
    "tensor",
    "transpose",
    "unsqueeze",
    "where",
    "zeros",
    "zeros_like",
]
