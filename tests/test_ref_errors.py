"""Every validation error (and warning) a user can meet: its exact type and its exact message.

The messages below are torch 2.13's, measured; the torch run of each test proves them. The only
freedom the reference gets is the module prefix of names a message prints (`torch.FloatTensor`,
`torch.Size`, `torch.autograd.set_detect_anomaly`): see `ref_cases.normalise_message`. The
reference is another module and may name its own types; every other character must match.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from ref_cases import assert_grad, engine_fixture, engine_name, leaf, normalise_message

tl_fixture = engine_fixture


@dataclass(frozen=True)
class ErrorCase:
    id: str
    trigger: Callable[[Any], object]
    error: type[Exception]
    message: str


def raised_by(trigger: Callable[[Any], object], tl: Any) -> Exception | None:
    try:
        trigger(tl)
    except Exception as error:  # any type: the test reports a wrong one instead of crashing
        return error
    return None


def x3(tl: Any) -> Any:
    """A float32 leaf of shape (3,) that requires grad."""
    return leaf(tl, [1.0, 2.0, 3.0], dtype="float32")


def m34(tl: Any) -> Any:
    """A float64 leaf of shape (3, 4) that requires grad."""
    return leaf(tl, np.arange(12.0).reshape(3, 4))


def sgd(**kwargs: Any) -> Callable[[Any], object]:
    return lambda tl: tl.optim.SGD([x3(tl)], **kwargs)


def second_backward(tl: Any) -> None:
    x = x3(tl)
    loss = (x * x).sum()
    loss.backward()
    loss.backward()


def backward_after_inplace(tl: Any, *, changed: str, times: int = 1) -> None:
    x = leaf(tl, [1.0, 2.0])
    hidden = {"leaf": x, "product": x * 2, "exp": x.exp()}[changed]
    loss = (hidden * hidden).sum()
    with tl.no_grad():
        for _ in range(times):
            hidden.add_(1.0)
    loss.backward()


def mse_quietly(tl: Any, input: Any, target: Any) -> Any:
    """mse_loss of operands of different sizes, without its size warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tl.nn.functional.mse_loss(input, target)


def assign_requires_grad(tl: Any) -> None:
    t = tl.tensor([1, 2])
    t.requires_grad = True


def iadd(t: Any) -> Any:
    t += 1.0
    return t


def isub(t: Any) -> Any:
    t -= 1.0
    return t


def imul(t: Any) -> Any:
    t *= 2.0
    return t


INVALID_LR = "Invalid learning rate: {}"
NESTEROV = "Nesterov momentum requires a momentum and zero dampening"
LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."
MISMATCH = "Mismatch in shape: grad_output[0] has a shape of {} and output[0] has a shape of {}."
HINT = (
    " Hint: enable anomaly detection to find the operation that failed to compute its gradient,"
    " with torch.autograd.set_detect_anomaly(True, check_nan=False)."
)
INPLACE = "one of the variables needed for gradient computation has been modified by an inplace "
INPLACE += (
    "operation: [torch.DoubleTensor [2]]{} is at version {}; expected version 0 instead." + HINT
)

E = ErrorCase
ERROR_CASES = [
    # SGD's constructor validates in this order: lr, momentum, weight_decay, nesterov, params.
    E("SGD lr=-0.1", sgd(lr=-0.1), ValueError, INVALID_LR.format(-0.1)),
    E("SGD lr=-1 (int)", sgd(lr=-1), ValueError, INVALID_LR.format(-1)),
    E("SGD lr=-inf", sgd(lr=-math.inf), ValueError, INVALID_LR.format(-math.inf)),
    E("SGD momentum=-0.1", sgd(momentum=-0.1), ValueError, "Invalid momentum value: -0.1"),
    E("SGD weight_decay=-0.1", sgd(weight_decay=-0.1), ValueError,
      "Invalid weight_decay value: -0.1"),
    E("SGD nesterov, momentum=0", sgd(nesterov=True), ValueError, NESTEROV),
    E("SGD nesterov, dampening", sgd(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
      NESTEROV),
    E("SGD nesterov, momentum<0", sgd(nesterov=True, momentum=-1.0), ValueError,
      "Invalid momentum value: -1.0"),
    E("SGD all invalid: lr first", sgd(lr=-1.0, momentum=-2.0, weight_decay=-3.0, nesterov=True),
      ValueError, INVALID_LR.format(-1.0)),
    E("SGD momentum before weight_decay", sgd(momentum=-2.0, weight_decay=-3.0, nesterov=True),
      ValueError, "Invalid momentum value: -2.0"),
    E("SGD weight_decay before nesterov", sgd(weight_decay=-3.0, nesterov=True),
      ValueError, "Invalid weight_decay value: -3.0"),
    E("SGD lr checked before params", lambda tl: tl.optim.SGD([], lr=-1.0),
      ValueError, INVALID_LR.format(-1.0)),
    E("SGD empty list", lambda tl: tl.optim.SGD([]), ValueError,
      "optimizer got an empty parameter list"),
    E("SGD a tensor, not an iterable", lambda tl: tl.optim.SGD(x3(tl)), TypeError,
      "params argument given to the optimizer should be an iterable of Tensors or dicts, "
      "but got torch.FloatTensor"),
    E("SGD a non-tensor param", lambda tl: tl.optim.SGD([1]), TypeError,
      "optimizer can only optimize Tensors, but one of the params is int"),
    E("SGD same tensor in two groups",
      lambda tl: (lambda p: tl.optim.SGD([{"params": [p]}, {"params": [p], "lr": 0.1}]))(x3(tl)),
      ValueError, "some parameters appear in more than one parameter group"),
    E("SGD non-leaf", lambda tl: tl.optim.SGD([x3(tl) * 2]), ValueError,
      "can't optimize a non-leaf Tensor"),
    # backward()
    E("backward of a non-scalar (3,)", lambda tl: (x3(tl) * 2).backward(), RuntimeError,
      "grad can be implicitly created only for scalar outputs"),
    E("backward of a non-scalar (1, 2)",
      lambda tl: (leaf(tl, [[1.0, 2.0]]) * 2).backward(), RuntimeError,
      "grad can be implicitly created only for scalar outputs"),
    E("backward of a tensor without grad", lambda tl: tl.tensor([1.0, 2.0]).sum().backward(),
      RuntimeError, "element 0 of tensors does not require grad and does not have a grad_fn"),
    E("backward of a leaf without grad", lambda tl: tl.tensor(1.0).backward(), RuntimeError,
      "element 0 of tensors does not require grad and does not have a grad_fn"),
    E("gradient (4, 3) for output (3, 4)",
      lambda tl: (m34(tl) * 2).backward(tl.ones(4, 3, dtype=tl.float64)), RuntimeError,
      MISMATCH.format("torch.Size([4, 3])", "torch.Size([3, 4])")),
    E("gradient (1,) for a scalar", lambda tl: x3(tl).sum().backward(tl.ones(1)), RuntimeError,
      MISMATCH.format("torch.Size([1])", "torch.Size([])")),
    E("gradient () for output (3,): no broadcasting",
      lambda tl: (x3(tl) * 2).backward(tl.tensor(1.0)), RuntimeError,
      MISMATCH.format("torch.Size([])", "torch.Size([3])")),
    E("second backward", second_backward, RuntimeError,
      "Trying to backward through the graph a second time (or directly access saved tensors "
      "after they have already been freed). Saved intermediate values of the graph are freed "
      "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
      "backward through the graph a second time or if you need to access saved tensors after "
      "calling backward."),
    E("saved leaf changed in place", lambda tl: backward_after_inplace(tl, changed="leaf"),
      RuntimeError, INPLACE.format("", 1)),
    E("saved leaf changed in place twice",
      lambda tl: backward_after_inplace(tl, changed="leaf", times=2),
      RuntimeError, INPLACE.format("", 2)),
    E("saved product changed in place", lambda tl: backward_after_inplace(tl, changed="product"),
      RuntimeError, INPLACE.format(", which is output 0 of Mul,", 1)),
    E("saved exp result changed in place", lambda tl: backward_after_inplace(tl, changed="exp"),
      RuntimeError, INPLACE.format(", which is output 0 of Exp,", 1)),
    # Indexing
    E("x[3]", lambda tl: m34(tl)[3], IndexError,
      "index 3 is out of bounds for dimension 0 with size 3"),
    E("x[-4]", lambda tl: m34(tl)[-4], IndexError,
      "index -4 is out of bounds for dimension 0 with size 3"),
    E("x[0, 4]", lambda tl: m34(tl)[0, 4], IndexError,
      "index 4 is out of bounds for dimension 1 with size 4"),
    E("x[[0, 3]]", lambda tl: m34(tl)[[0, 3]], IndexError,
      "index 3 is out of bounds for dimension 0 with size 3"),
    E("x[[-4]]", lambda tl: m34(tl)[[-4]], IndexError,
      "index -4 is out of bounds for dimension 0 with size 3"),
    E("x[:, [4]]", lambda tl: m34(tl)[:, [4]], IndexError,
      "index 4 is out of bounds for dimension 0 with size 4"),
    E("x[0, 0, 0]", lambda tl: m34(tl)[0, 0, 0], IndexError,
      "too many indices for tensor of dimension 2"),
    E("mask of shape [2]", lambda tl: m34(tl)[tl.tensor([True, False])], IndexError,
      "The shape of the mask [2] at index 0 does not match the shape of the indexed tensor "
      "[3, 4] at index 0"),
    E("mask of shape [3, 5]", lambda tl: m34(tl)[tl.ones(3, 5, dtype=tl.bool)], IndexError,
      "The shape of the mask [3, 5] at index 1 does not match the shape of the indexed tensor "
      "[3, 4] at index 1"),
    # requires_grad on integer data
    E("tensor(int, requires_grad=True)", lambda tl: tl.tensor([1, 2], requires_grad=True),
      RuntimeError, "Only Tensors of floating point and complex dtype can require gradients"),
    E("zeros(int64, requires_grad=True)",
      lambda tl: tl.zeros(2, dtype=tl.int64, requires_grad=True),
      RuntimeError, "Only Tensors of floating point and complex dtype can require gradients"),
    E("int.requires_grad_()", lambda tl: tl.tensor([1, 2]).requires_grad_(), RuntimeError,
      "only Tensors of floating point dtype can require gradients"),
    E("int.requires_grad = True", assign_requires_grad, RuntimeError,
      "only Tensors of floating point and complex dtype can require gradients"),
    E("non-leaf.requires_grad_(False)", lambda tl: (x3(tl) * 2).requires_grad_(False),
      RuntimeError, "you can only change requires_grad flags of leaf variables. If you want to "
      "use a computed variable in a subgraph that doesn't require differentiation use "
      "var_no_grad = var.detach()."),
    E("retain_grad without requires_grad", lambda tl: tl.ones(2).retain_grad(), RuntimeError,
      "can't retain_grad on Tensor that has requires_grad=False"),
    # numpy()
    E("numpy() of a leaf requiring grad", lambda tl: x3(tl).numpy(), RuntimeError,
      "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."),
    E("numpy() of a non-leaf", lambda tl: (x3(tl) * 2).numpy(), RuntimeError,
      "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."),
    # In-place ops on a leaf that requires grad, outside no_grad
    E("leaf.add_()", lambda tl: x3(tl).add_(1.0), RuntimeError, LEAF_INPLACE),
    E("leaf.mul_()", lambda tl: x3(tl).mul_(2.0), RuntimeError, LEAF_INPLACE),
    E("leaf.zero_()", lambda tl: x3(tl).zero_(), RuntimeError, LEAF_INPLACE),
    E("leaf += 1", lambda tl: iadd(x3(tl)), RuntimeError, LEAF_INPLACE),
    E("leaf -= 1", lambda tl: isub(x3(tl)), RuntimeError, LEAF_INPLACE),
    E("leaf *= 2", lambda tl: imul(x3(tl)), RuntimeError, LEAF_INPLACE),
    # Shapes that do not fit an op
    E("broadcast (2,3) + (4,)", lambda tl: tl.ones(2, 3) + tl.ones(4), RuntimeError,
      "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1"),
    E("matmul (2,3) @ (2,3)", lambda tl: tl.ones(2, 3) @ tl.ones(2, 3), RuntimeError,
      "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)"),
    E("matmul (2,3) @ (2,)", lambda tl: tl.ones(2, 3) @ tl.ones(2), RuntimeError,
      "size mismatch, got input (2), mat (2x3), vec (2)"),
    E("matmul (3,) @ (2,)", lambda tl: tl.ones(3) @ tl.ones(2), RuntimeError,
      "inconsistent tensor size, expected tensor [3] and src [2] to have the same number of "
      "elements, but got 3 and 2 elements respectively"),
    E("matmul () @ (2,)", lambda tl: tl.ones(()) @ tl.ones(2), RuntimeError,
      "both arguments to matmul need to be at least 1D, but they are 0D and 1D"),
    E("linear (2,3) with weight (4,2)", lambda tl: tl.nn.functional.linear(
        tl.ones(2, 3), tl.ones(4, 2)), RuntimeError,
      "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x4)"),
    E("linear (3,) with weight (4,2) and a bias", lambda tl: tl.nn.functional.linear(
        tl.ones(3), tl.ones(4, 2), tl.ones(4)), RuntimeError,
      "mat1 and mat2 shapes cannot be multiplied (1x3 and 2x4)"),
    # Losses: the reduction is read before anything else but mse_loss's broadcasting.
    E("mse_loss reduction='avg'", lambda tl: tl.nn.functional.mse_loss(
        m34(tl), tl.ones(3, 4, dtype=tl.float64), reduction="avg"), ValueError,
      "avg is not a valid value for reduction"),
    E("mse_loss (3,4) against (5,)", lambda tl: mse_quietly(tl, m34(tl), tl.ones(5)), RuntimeError,
      "The size of tensor a (4) must match the size of tensor b (5) at non-singleton dimension 1"),
    E("cross_entropy reduction='avg'", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([0, 1, 2]), reduction="avg"), ValueError,
      "avg is not a valid value for reduction"),
    E("cross_entropy target 4 of 4 classes", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([0, 4, 1])), IndexError, "Target 4 is out of bounds."),
    E("cross_entropy target -1 (first bad one)", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([0, -1, 9]), reduction="sum"), IndexError,
      "Target -1 is out of bounds."),
    E("cross_entropy (4,) target 4", lambda tl: tl.nn.functional.cross_entropy(
        x3(tl), tl.tensor(3)), IndexError, "Target 3 is out of bounds."),
    E("cross_entropy batch 3, target (2,)", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([0, 1])), ValueError,
      "Expected input batch_size (3) to match target batch_size (2)."),
    E("cross_entropy target (3, 1)", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([[0], [1], [2]])), RuntimeError,
      "0D or 1D target tensor expected, multi-target not supported"),
    E("cross_entropy (3,) target (2,)", lambda tl: tl.nn.functional.cross_entropy(
        x3(tl), tl.tensor([0, 1])), ValueError,
      "For 1D input, 1D target must have size 1, but got target size: 2"),
    E("cross_entropy float target (3,)", lambda tl: tl.nn.functional.cross_entropy(
        m34(tl), tl.tensor([0.0, 1.0, 2.0])), RuntimeError,
      "expected target dtype to be Long or Byte, but got Float"),
    E("cross_entropy int64 target of the input's shape", lambda tl: tl.nn.functional.cross_entropy(
        x3(tl), tl.tensor([0, 1, 2])), RuntimeError,
      "Expected floating point type for target with class probabilities, got Long"),
    E("view(5) of 3 elements", lambda tl: x3(tl).view(5), RuntimeError,
      "shape '[5]' is invalid for input of size 3"),
    E("reshape(5) of 3 elements", lambda tl: x3(tl).reshape(5), RuntimeError,
      "shape '[5]' is invalid for input of size 3"),
    E("cat (2,3) with (2,4)", lambda tl: tl.cat([tl.ones(2, 3), tl.ones(2, 4)]), RuntimeError,
      "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for "
      "tensor number 1 in the list."),
    E("stack (2,3) with (2,4)", lambda tl: tl.stack([tl.ones(2, 3), tl.ones(2, 4)]), RuntimeError,
      "stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at "
      "entry 1"),
]  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
def test_error_type_and_message(tl, case):
    error = raised_by(case.trigger, tl)
    what = f"{engine_name(tl)}: {case.id}"
    assert error is not None, f"{what} raised nothing; expected {case.error.__name__}"
    assert type(error) is case.error, (
        f"{what} raised {type(error).__name__}({error}); expected {case.error.__name__}"
    )
    assert normalise_message(str(error)) == normalise_message(case.message), (
        f"{what}: message\n  got      {str(error)!r}\n  expected {case.message!r}"
    )


# --- Values SGD's constructor accepts -----------------------------------------------------------

ACCEPTED_SGD_ARGS = [
    pytest.param({"lr": 0.0}, id="lr=0"),
    pytest.param({"lr": -0.0}, id="lr=-0.0"),
    pytest.param({"lr": math.nan}, id="lr=nan"),
    pytest.param({"lr": math.inf}, id="lr=inf"),
    pytest.param({"momentum": 1.5}, id="momentum>1"),
    pytest.param({"dampening": -3.0}, id="dampening<0"),
    pytest.param({"momentum": 0.9, "dampening": 5.0}, id="dampening>1 with momentum"),
    pytest.param({"momentum": 0.9, "nesterov": True}, id="nesterov with momentum"),
    pytest.param({"weight_decay": 0.0, "momentum": 0.0}, id="zeros"),
]


def same_value(a: Any, b: Any) -> bool:
    return (a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


@pytest.mark.parametrize("kwargs", ACCEPTED_SGD_ARGS)
def test_sgd_accepts_and_keeps_hyperparameters(tl, kwargs):
    opt = tl.optim.SGD([x3(tl)], **kwargs)
    group = opt.param_groups[0]
    for key, value in kwargs.items():
        assert same_value(group[key], value), (
            f"param_groups[0][{key!r}] = {group[key]!r}, expected {value!r}"
        )


def test_sgd_accepts_an_empty_parameter_group(tl):
    opt = tl.optim.SGD([{"params": []}])
    assert opt.param_groups[0]["params"] == [], "an empty group's params must be kept as []"


def test_sgd_does_not_check_per_group_values(tl):
    x = leaf(tl, [1.0, 2.0])
    opt = tl.optim.SGD([{"params": [x], "lr": -1.0, "momentum": -0.5}], lr=0.1)
    assert opt.param_groups[0]["lr"] == -1.0, "the group's own lr must be kept"
    x.grad = tl.tensor([0.5, 0.25], dtype=tl.float64)
    opt.step()
    # First momentum step: buffer = grad, x -= lr * buffer with lr = -1.
    assert_grad(x, np.array([0.5, 0.25]), what="x.grad is left alone by step()")
    np.testing.assert_array_equal(x.detach().numpy(), [1.5, 2.25], err_msg="x after step, lr=-1")


# --- Warnings ---------------------------------------------------------------------------------

# torch appends where in its C++ source a warning was raised; that part names torch's build.
# Not listed: backward(create_graph=True)'s "reference cycle" UserWarning, which torch raises
# once per process (TORCH_WARN_ONCE), so no test can expect it without depending on test order.
TRIGGERED_INTERNALLY = " (Triggered internally at "

NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information."
)
DUPLICATE_PARAMS = (
    "optimizer contains a parameter group with duplicate parameters; in future, this will cause "
    "an error; see github.com/pytorch/pytorch/issues/40967 for more information"
)


def non_leaf_grad(tl: Any) -> object:
    return (x3(tl) * 2).grad


def duplicate_params(tl: Any) -> object:
    x = x3(tl)
    return tl.optim.SGD([x, x])


MSE_SIZES = (
    "Using a target size (torch.Size([4])) that is different to the input size "
    "(torch.Size([3, 4])). This will likely lead to incorrect results due to broadcasting. "
    "Please ensure they have the same size."
)


def mse_of_different_sizes(tl: Any) -> object:
    return tl.nn.functional.mse_loss(m34(tl), tl.ones(4, dtype=tl.float64))


WARNING_CASES = [
    pytest.param(mse_of_different_sizes, MSE_SIZES, id="mse_loss target of another size"),
    pytest.param(non_leaf_grad, NON_LEAF_GRAD, id="non-leaf .grad"),
    pytest.param(duplicate_params, DUPLICATE_PARAMS, id="duplicate params in a group"),
]


@pytest.mark.parametrize(("trigger", "message"), WARNING_CASES)
def test_warning_category_and_message(tl, trigger, message):
    with pytest.warns(UserWarning, match=re.escape(message[:40])) as record:
        trigger(tl)
    messages = [str(w.message).split(TRIGGERED_INTERNALLY)[0] for w in record]
    assert [type(w.message) for w in record] == [UserWarning], (
        f"{engine_name(tl)}: expected exactly one UserWarning, got {messages!r}"
    )
    assert messages == [message], (
        f"{engine_name(tl)}: warning\n  got      {messages!r}\n  expected {[message]!r}"
    )
