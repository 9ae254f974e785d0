"""The Tensor: a NumPy array plus torch's autograd state (grad, grad_fn, version counter)."""

from __future__ import annotations

import builtins
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from reference import _autograd
from reference._autograd import GradHistory, VersionCounter, _GradMode, mark_history
from reference._dtypes import (
    DEFAULT_FLOAT,
    can_cast,
    float32,
    float64,
    is_floating,
    result_type,
    scalar_type_name,
    type_meta_name,
)

if TYPE_CHECKING:
    from reference.return_types import max as MaxResult
    from reference.return_types import min as MinResult

_NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information."
)
_IN_PLACE_ON_GRAPH = (
    "in-place operations on tensors that are part of an autograd graph are not supported by the "
    "reference (torch would rebase the graph); do them under reference.no_grad() or on a detach()"
)

ShapeArg = Any  # ints, or one tuple/list of ints, as torch accepts them


def _not_none(method: str, other: Any) -> None:
    """torch's argument check for an in-place op given None (a user's ``w.add_(w.grad)``
    while the grad is None)."""
    if other is None:
        raise TypeError(f"{method}(): argument 'other' (position 1) must be Tensor, not NoneType")


class Tensor:
    """An n-dimensional array that records the operations applied to it for ``backward()``.

    Create one with :func:`reference.tensor`:

    >>> import reference
    >>> x = reference.tensor([1.0, 2.0], requires_grad=True)
    >>> (100 * x).sum().backward()
    >>> x.grad
    tensor([100., 100.])
    """

    __slots__ = (
        "__weakref__",
        "_accumulator",
        "_base",
        "_data",
        "_grad",
        "_requires_grad",
        "_retains_grad",
        "_version_counter",
        "_wrapped",
        "grad_fn",
    )

    # NumPy must hand binary operators over to the Tensor's reflected methods.
    __array_ufunc__ = None
    __array_priority__ = 1000

    _data: np.ndarray
    _requires_grad: bool
    grad_fn: _autograd.FunctionNode | _autograd.GradHistory | None
    _grad: Tensor | None
    _version_counter: VersionCounter
    _retains_grad: bool
    _accumulator: weakref.ref[_autograd.AccumulateGrad] | None
    _wrapped: bool  # a Python scalar turned into a 0-dim tensor (lowest promotion rank)
    _base: Tensor | None  # the tensor this one is a view of

    def __init__(self, data: Any, *, requires_grad: bool = False) -> None:
        self._init_from(_creation.tensor(data, requires_grad=requires_grad)._data, requires_grad)

    def _init_from(self, data: np.ndarray, requires_grad: bool) -> None:
        self._data = data
        self._requires_grad = requires_grad
        self.grad_fn = None
        self._grad = None
        self._version_counter = VersionCounter()
        self._retains_grad = False
        self._accumulator = None
        self._wrapped = False
        self._base = None

    @classmethod
    def _wrap(cls, data: np.ndarray) -> Tensor:
        """A new tensor around ``data`` (no copy), with no autograd history."""
        tensor = cls.__new__(cls)
        tensor._init_from(data, False)
        return tensor

    # ------------------------------------------------------------------ metadata

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self._data.shape
        return self._data.shape[_arguments.wrap_dim(dim, self.ndim)]

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    def is_floating_point(self) -> bool:
        return is_floating(self._data.dtype)

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def _version(self) -> int:
        """How many in-place writes this tensor's storage has seen (torch's ``_version``)."""
        return self._version_counter.value

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __hash__(self) -> int:
        # By identity, as torch: tensors are dict keys in optimizer state.
        return id(self)

    def __repr__(self) -> str:
        from reference._format import tensor_repr

        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return format(self._data.item(), spec)
        return object.__format__(self, spec)

    # ------------------------------------------------------------------ autograd state

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            if value:
                raise RuntimeError("you can only change requires_grad flags of leaf variables.")
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if value and not is_floating(self._data.dtype):
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not is_floating(self._data.dtype):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    @property
    def grad(self) -> Tensor | None:
        if self.grad_fn is not None and not self._retains_grad:
            warnings.warn(_NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is None:
            self._grad = None
            return
        if not isinstance(value, Tensor):
            raise TypeError(
                "assigned grad expected to be a Tensor or None but got grad of type "
                f"{python_type_name(value)}"
            )
        if value.dtype != self.dtype:
            raise RuntimeError(
                f"attempting to assign a gradient with dtype '{type_meta_name(value.dtype)}' to a "
                f"tensor with grad_dtype '{scalar_type_name(self.dtype)}'. The gradient must match "
                "the tensor's grad_dtype (defaults to the tensor's dtype). You can set the "
                "tensor's grad_dtype attribute with a specific dtype, or None to allow any dtype. "
                "Set grad_dtype with caution. Diverging the dtypes of a tensor and its gradient "
                "may break downstream systems that assume they match."
            )
        if value.shape != self.shape:
            raise RuntimeError(
                f"attempting to assign a gradient of size '{list(value.shape)}' to a tensor of "
                f"size '{list(self.shape)}'. Please ensure that the gradient and the tensor are "
                "the same size"
            )
        self._grad = value

    def retain_grad(self) -> None:
        """Keep this non-leaf's gradient in ``.grad`` after backward (out of place each time)."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if not isinstance(self.grad_fn, _autograd.FunctionNode) or self._retains_grad:
            return  # a leaf, or a create_graph grad (whose history the reference does not keep)
        self._retains_grad = True
        self.grad_fn.retained = weakref.ref(self)

    def backward(
        self,
        gradient: Tensor | None = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf the graph reaches.

        >>> import reference
        >>> w = reference.tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> d = w.mean()
        >>> d.backward(); d.backward()  # mean saves no tensor: a second call works
        >>> w.grad
        tensor([0.6667, 0.6667, 0.6667])
        """
        autograd.backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self) -> Tensor:
        """A tensor sharing this one's storage and version counter, outside the graph."""
        detached = Tensor._wrap(self._data)
        detached._version_counter = self._version_counter
        return detached

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self._requires_grad = False
        self._retains_grad = False
        return self

    @property
    def data(self) -> Tensor:
        # Shares storage but not the version counter: writes through .data go unnoticed.
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data

    # ------------------------------------------------------------------ conversion

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), like torch's ``Tensor.numpy()``."""
        if self._requires_grad:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."
            )
        return self._data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def item(self) -> Any:
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def __bool__(self) -> bool:
        if self._data.size == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        if self._data.size > 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.item())

    def __float__(self) -> builtins.float:
        return float(self._single_value())

    def __int__(self) -> int:
        return int(self._single_value())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.item())

    def _single_value(self) -> Any:
        if self._data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self._data.item()

    def clone(self) -> Tensor:
        return _shape.clone(self)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)`` or ``to(other_tensor)``; devices other than ``"cpu"`` do not exist here."""
        dtype = kwargs.get("dtype")
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif arg is None or arg == "cpu":
                continue
            else:
                dtype = np.dtype(arg)
        if dtype is None or np.dtype(dtype) == self._data.dtype:
            return self
        return _shape.to_dtype(self, np.dtype(dtype))

    def double(self) -> Tensor:
        return self.to(float64)

    def float(self) -> Tensor:
        return self.to(float32)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        if self.grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment.  If you were attempting to deepcopy a module, this may "
                "be because of a torch.nn.utils.weight_norm usage, see "
                "https://github.com/pytorch/pytorch/pull/103001"
            )
        copied = Tensor._wrap(self._data.copy())
        copied._requires_grad = self._requires_grad
        memo[id(self)] = copied
        if self._grad is not None:
            copied._grad = self._grad.__deepcopy__(memo)
        return copied

    # ------------------------------------------------------------------ in place

    def _check_in_place(self, others: tuple[Tensor, ...]) -> None:
        if not _GradMode.enabled:
            return
        if self._requires_grad:
            if self.grad_fn is None:
                raise RuntimeError(
                    "a leaf Variable that requires grad is being used in an in-place operation."
                )
            base = self._base
            if base is not None and base.grad_fn is None and base._requires_grad:
                raise RuntimeError(
                    "a view of a leaf Variable that requires grad is being used in an in-place operation."
                )
            if isinstance(self.grad_fn, GradHistory):
                return  # a create_graph grad (w.grad.zero_()): still requires grad, as in torch
            raise NotImplementedError(_IN_PLACE_ON_GRAPH)
        if any(other._requires_grad for other in others):
            # In torch the written tensor joins the graph (w.data.sub_(lr * w.grad) after a
            # create_graph backward): it requires grad from now on; backward through it is
            # out of the reference's scope, and says so if reached.
            mark_history(self, "InPlaceBackward")

    def _write(self, value: np.ndarray) -> Tensor:
        """Store ``value`` into this tensor's storage and bump its version counter."""
        if value.shape != self._data.shape:
            raise RuntimeError(
                f"output with shape {list(self._data.shape)} doesn't match the broadcast shape "
                f"{list(value.shape)}"
            )
        if not self._data.flags.writeable:
            raise RuntimeError(
                "unsupported operation: more than one element of the written-to tensor refers to "
                "a single memory location. Please clone() the tensor before performing the "
                "operation."
            )
        np.copyto(self._data, value, casting="unsafe")
        self._version_counter.value += 1
        return self

    def _in_place(
        self,
        compute: Callable[[np.ndarray, np.ndarray], np.ndarray],
        other: Any,
        *,
        true_divide: bool = False,
    ) -> Tensor:
        operand = _arguments.as_operand(other)
        self._check_in_place((operand,))
        dtype = result_type((self, operand))
        if true_divide and not is_floating(dtype):
            dtype = DEFAULT_FLOAT
        if not can_cast(dtype, self._data.dtype):
            raise RuntimeError(
                f"result type {scalar_type_name(dtype)} can't be cast to the desired output type "
                f"{scalar_type_name(self._data.dtype)}"
            )
        with np.errstate(all="ignore"):
            try:
                value = compute(self._data.astype(dtype, copy=False), operand._data.astype(dtype, copy=False))
            except ValueError:
                raise _arguments.broadcast_error(self.shape, operand.shape) from None
        return self._write(np.broadcast_to(value, np.broadcast_shapes(value.shape, self.shape)))

    def add_(self, other: Any, *, alpha: builtins.float = 1) -> Tensor:
        _not_none("add_", other)
        return self._in_place(lambda a, b: _functions.axpy(a, b, alpha, +1), other)

    def sub_(self, other: Any, *, alpha: builtins.float = 1) -> Tensor:
        _not_none("sub_", other)
        return self._in_place(lambda a, b: _functions.axpy(a, b, alpha, -1), other)

    def mul_(self, other: Any) -> Tensor:
        _not_none("mul_", other)
        return self._in_place(np.multiply, other)

    def div_(self, other: Any) -> Tensor:
        _not_none("div_", other)
        return self._in_place(np.true_divide, other, true_divide=True)

    def zero_(self) -> Tensor:
        self._check_in_place(())
        return self._write(np.zeros_like(self._data))

    def fill_(self, value: Any) -> Tensor:
        return self._in_place(lambda a, b: np.broadcast_to(b, a.shape), value)

    def copy_(self, src: Any) -> Tensor:
        source = _arguments.as_operand(src)
        self._check_in_place((source,))
        try:
            value = np.broadcast_to(source._data, self._data.shape)
        except ValueError:
            raise _arguments.broadcast_error(self.shape, source.shape) from None
        return self._write(value)

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __setitem__(self, key: Any, value: Any) -> None:
        _shape.index_put_(self, key, value)

    # ------------------------------------------------------------------ operators

    def __add__(self, other: Any) -> Tensor:
        return _functions.binary_operator("add", self, other, alpha=1)

    def __radd__(self, other: Any) -> Tensor:
        return _functions.binary_operator("add", self, other, alpha=1)

    def __sub__(self, other: Any) -> Tensor:
        return _functions.binary_operator("sub", self, other, alpha=1)

    def __rsub__(self, other: Any) -> Tensor:
        return _functions.binary_operator("rsub", self, other, alpha=1)

    def __mul__(self, other: Any) -> Tensor:
        return _functions.binary_operator("mul", self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _functions.binary_operator("mul", self, other)

    def __truediv__(self, other: Any) -> Tensor:
        return _functions.binary_operator("div", self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        # torch: ``self.reciprocal() * other``, which rounds differently from a division.
        return _functions.binary_operator("mul", self.reciprocal(), other)

    def __pow__(self, exponent: Any) -> Tensor:
        return _functions.pow(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return _functions.pow(base, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _linalg.matmul(_arguments.as_operand(other), self)

    def __neg__(self) -> Tensor:
        return _functions.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _functions.abs(self)

    def __invert__(self) -> Tensor:
        return _functions.logical_not(self)

    def __and__(self, other: Any) -> Tensor:
        return _functions.bitwise("and", self, other)

    def __or__(self, other: Any) -> Tensor:
        return _functions.bitwise("or", self, other)

    def __xor__(self, other: Any) -> Tensor:
        return _functions.bitwise("xor", self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _functions.compare("lt", self, other)

    def __le__(self, other: Any) -> Tensor:
        return _functions.compare("le", self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _functions.compare("gt", self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _functions.compare("ge", self, other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _functions.compare("eq", self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _functions.compare("ne", self, other)

    def __getitem__(self, key: Any) -> Tensor:
        return _shape.index(self, key)

    # ------------------------------------------------------------------ ops as methods

    def add(self, other: Any, *, alpha: builtins.float = 1) -> Tensor:
        return _functions.add(self, other, alpha=alpha)

    def sub(self, other: Any, *, alpha: builtins.float = 1) -> Tensor:
        return _functions.sub(self, other, alpha=alpha)

    def mul(self, other: Any) -> Tensor:
        return _functions.mul(self, other)

    def div(self, other: Any) -> Tensor:
        return _functions.div(self, other)

    def neg(self) -> Tensor:
        return _functions.neg(self)

    def pow(self, exponent: Any) -> Tensor:
        return _functions.pow(self, exponent)

    def square(self) -> Tensor:
        return _functions.pow(self, 2)

    def reciprocal(self) -> Tensor:
        return _functions.reciprocal(self)

    def exp(self) -> Tensor:
        return _functions.exp(self)

    def log(self) -> Tensor:
        return _functions.log(self)

    def sqrt(self) -> Tensor:
        return _functions.sqrt(self)

    def tanh(self) -> Tensor:
        return _functions.tanh(self)

    def sigmoid(self) -> Tensor:
        return _functions.sigmoid(self)

    def relu(self) -> Tensor:
        return _functions.relu(self)

    def abs(self) -> Tensor:
        return _functions.abs(self)

    def sin(self) -> Tensor:
        return _functions.sin(self)

    def cos(self) -> Tensor:
        return _functions.cos(self)

    def sign(self) -> Tensor:
        return _functions.sign(self)

    def round(self) -> Tensor:
        return _functions.round(self)

    def floor(self) -> Tensor:
        return _functions.floor(self)

    def ceil(self) -> Tensor:
        return _functions.ceil(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return _functions.clamp(self, min, max)

    def clamp_min(self, min: Any) -> Tensor:
        return _functions.clamp(self, min, None)

    def clamp_max(self, max: Any) -> Tensor:
        return _functions.clamp(self, None, max)

    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
        return _functions.sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _functions.mean(self, dim, keepdim)

    def max(self, dim: Any = None, keepdim: bool = False) -> Tensor | MaxResult:
        return _functions.max(self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Tensor | MinResult:
        return _functions.min(self, dim, keepdim)

    def amax(self, dim: Any = (), keepdim: bool = False) -> Tensor:
        return _functions.amax(self, dim, keepdim)

    def amin(self, dim: Any = (), keepdim: bool = False) -> Tensor:
        return _functions.amin(self, dim, keepdim)

    def softmax(self, dim: int) -> Tensor:
        return _functions.softmax(self, dim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        return _functions.logsumexp(self, dim, keepdim)

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        return _shape.index_select(self, dim, index)

    def gather(self, dim: int, index: Tensor) -> Tensor:
        return _shape.gather(self, dim, index)

    def maximum(self, other: Tensor) -> Tensor:
        return _functions.maximum(self, other)

    def minimum(self, other: Tensor) -> Tensor:
        return _functions.minimum(self, other)

    def matmul(self, other: Tensor) -> Tensor:
        return _linalg.matmul(self, other)

    def reshape(self, *shape: ShapeArg) -> Tensor:
        return _shape.reshape(self, shape)

    def view(self, *shape: ShapeArg) -> Tensor:
        return _shape.view(self, shape)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return _shape.transpose(self, dim0, dim1)

    def t(self) -> Tensor:
        return _shape.t(self)

    @property
    def T(self) -> Tensor:
        return _shape.reverse_dims(self)

    @property
    def mT(self) -> Tensor:
        return _shape.transpose(self, -2, -1)

    def permute(self, *dims: ShapeArg) -> Tensor:
        return _shape.permute(self, dims)

    def unsqueeze(self, dim: int) -> Tensor:
        return _shape.unsqueeze(self, dim)

    def squeeze(self, dim: Any = None) -> Tensor:
        return _shape.squeeze(self, dim)

    def expand(self, *sizes: ShapeArg) -> Tensor:
        return _shape.expand(self, sizes)

    def expand_as(self, other: Tensor) -> Tensor:
        return _shape.expand(self, (other.shape,))

    def flatten(self) -> Tensor:
        return _shape.reshape(self, (-1,))

    def where(self, condition: Tensor, other: Any) -> Tensor:
        return _functions.where(condition, self, other)

    def eq(self, other: Any) -> Tensor:
        return _functions.compare("eq", self, other)

    def ne(self, other: Any) -> Tensor:
        return _functions.compare("ne", self, other)

    def lt(self, other: Any) -> Tensor:
        return _functions.compare("lt", self, other)

    def le(self, other: Any) -> Tensor:
        return _functions.compare("le", self, other)

    def gt(self, other: Any) -> Tensor:
        return _functions.compare("gt", self, other)

    def ge(self, other: Any) -> Tensor:
        return _functions.compare("ge", self, other)


def python_type_name(value: Any) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


# These modules need Tensor defined; Tensor's methods need them only at call time.
from reference import _arguments, _creation, _functions, _linalg, _shape, autograd  # noqa: E402
