"""Named results of ``max(dim)`` and ``min(dim)``, printed like ``torch.return_types``."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from reference._tensor import Tensor


class _ValuesIndices(NamedTuple):
    values: Tensor
    indices: Tensor


class max(_ValuesIndices):
    """``(values, indices)`` from ``max(x, dim)``.

    >>> import reference
    >>> values, indices = reference.tensor([[1.0, 5.0], [3.0, 2.0]]).max(dim=1)
    >>> indices
    tensor([1, 0])
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"torch.return_types.max(\nvalues={self.values!r},\nindices={self.indices!r})"


class min(_ValuesIndices):
    """``(values, indices)`` from ``min(x, dim)``.

    >>> import reference
    >>> reference.tensor([[1.0, 5.0], [3.0, 2.0]]).min(dim=1).values
    tensor([1., 2.])
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"torch.return_types.min(\nvalues={self.values!r},\nindices={self.indices!r})"
