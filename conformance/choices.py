"""The generators' draws, from strategies built once.

Drawing from a strategy built on the spot (``draw(st.sampled_from(candidates))``) makes
Hypothesis validate it, label it and work out its properties every time; a program of ~80
draws spent more time on that than on the draws. The helpers here make the same choices as
``sampled_from``, ``integers``, ``booleans`` and ``permutations`` (an integer index, shrinking
towards the first option) from strategies cached by their bounds, and build arrays from a
fixed tuple of element draws rather than ``hypothesis.extra.numpy.arrays`` (whose fill and
uniqueness machinery costs more than the six elements of a small array).
``bench/bench_generation.py`` measures the difference, and the coverage it keeps.

Inside a composite strategy, ``draw`` is a bound method of Hypothesis's ``ConjectureData``, and
the helpers make their choice with its own ``draw_integer``, ``draw_boolean`` and
``draw_float``: the primitive choice ``st.integers``, ``st.booleans`` and ``st.floats`` make
themselves, without the span (label, depth, validation) ``draw`` records around every value,
which was half the cost of a choice. That is Hypothesis's internal API, pinned with Hypothesis
itself in constraints.txt (a derandomized run draws the same programs only on one Hypothesis
release anyway); any other ``draw`` (``st.data()``'s) goes through the cached strategies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis.internal.conjecture.data import ConjectureData
from hypothesis.internal.floats import SMALLEST_SUBNORMAL, float_of, width_smallest_normals

Draw = Callable[[st.SearchStrategy[Any]], Any]
T = TypeVar("T")

EDGE_VALUES = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0)
"""Exact values where ops have kinks (0 for relu/abs/clamp, ±1 for clamp(-1, 1)) and that
repeat often enough to make ties for max/min/maximum/minimum."""

BOOLEANS = st.booleans()


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


_UNWEIGHTED = 127
"""The widest ``high - low`` that ``st.integers`` draws uniformly; wider, it weights its bounds
(and the helpers leave such a draw to it)."""


def _conjecture(draw: Draw) -> ConjectureData | None:
    """The ``ConjectureData`` a composite's ``draw`` is bound to, or None."""
    owner = getattr(draw, "__self__", None)
    return owner if type(owner) is ConjectureData else None


def integer(draw: Draw, low: int, high: int) -> int:
    """``draw(st.integers(low, high))``."""
    data = _conjecture(draw)
    if data is not None and high - low <= _UNWEIGHTED:
        return data.draw_integer(low, high)
    return int(draw(_integers(low, high)))


def boolean(draw: Draw) -> bool:
    """``draw(st.booleans())``."""
    data = _conjecture(draw)
    if data is not None:
        return data.draw_boolean()
    return bool(draw(BOOLEANS))


def real(draw: Draw, low: float, high: float, *, width: Literal[32, 64] = 64) -> float:
    """``draw(st.floats(low, high, width=width))`` for finite bounds representable in
    ``width`` bits: subnormals where the range reaches them, as ``st.floats`` allows them."""
    data = _conjecture(draw)
    if data is None:
        return float(draw(_float_range(low, high, width)))
    value = data.draw_float(low, high, allow_nan=False,
                            smallest_nonzero_magnitude=_smallest_nonzero(low, high, width))
    return value if width == 64 else float_of(value, width)


@functools.cache
def _smallest_nonzero(low: float, high: float, width: Literal[32, 64]) -> float:
    """The smallest magnitude ``st.floats(low, high, width=width)`` draws: a subnormal where the
    range reaches the subnormals, else the smallest normal."""
    smallest_normal = width_smallest_normals(width)
    return SMALLEST_SUBNORMAL if low < smallest_normal and high > -smallest_normal else smallest_normal


def choose(draw: Draw, options: Sequence[T]) -> T:
    """``draw(st.sampled_from(options))``: one option, shrinking towards the first."""
    if not options:
        raise InvalidArgument("nothing to choose from")
    if len(options) == 1:
        return options[0]
    return options[integer(draw, 0, len(options) - 1)]


@functools.cache
def _integer_lists(low: int, high: int, min_size: int, max_size: int
                   ) -> st.SearchStrategy[list[int]]:
    return st.lists(_integers(low, high), min_size=min_size, max_size=max_size)


def integers(draw: Draw, low: int, high: int, *, min_size: int, max_size: int) -> list[int]:
    """``draw(st.lists(st.integers(low, high), min_size=min_size, max_size=max_size))``: as
    long, on average, as Hypothesis's lists (which run long and shrink by deleting anywhere)."""
    data = _conjecture(draw)
    if data is None or high - low > _UNWEIGHTED:
        return list(draw(_integer_lists(low, high, min_size, max_size)))
    average = min(max(min_size * 2, min_size + 5), 0.5 * (min_size + max_size))
    with conjecture_utils.many(data, min_size, max_size, average) as elements:
        return [data.draw_integer(low, high) for _ in elements]


@functools.cache
def _float_range(low: float, high: float, width: Literal[32, 64] = 64
                 ) -> st.SearchStrategy[float]:
    return st.floats(low, high, width=width)


@dataclass(frozen=True)
class Scalars:
    """A scalar that is one of ``edges`` or a float in ``[low, high]``, in one choice (an edge)
    or two (a float): ``draw(st.one_of(st.sampled_from(edges), st.floats(low, high)))`` without
    the one_of. A float is drawn ``floats`` times in ``len(edges) + floats``; an edge listed
    twice is drawn twice as often. Shrinks to the first edge."""

    edges: tuple[float, ...]
    low: float
    high: float
    floats: int

    def __call__(self, draw: Draw) -> float:
        choice = integer(draw, 0, len(self.edges) + self.floats - 1)
        if choice < len(self.edges):
            return self.edges[choice]
        return real(draw, self.low, self.high)


@functools.cache
def _masks(count: int, min_size: int) -> tuple[int, ...]:
    """Bit masks over ``count`` options with at least ``min_size`` bits set, fewest first."""
    masks = [mask for mask in range(1 << count) if mask.bit_count() >= min_size]
    return tuple(sorted(masks, key=lambda mask: (mask.bit_count(), mask)))


def subset(draw: Draw, options: Sequence[T], *, min_size: int = 1) -> list[T]:
    """Distinct options (at least ``min_size``, in their order), in one choice: a bit mask,
    shrinking towards the fewest and first options. For a handful of options only."""
    mask = choose(draw, _masks(len(options), min(min_size, len(options))))
    return [option for i, option in enumerate(options) if mask >> i & 1]


@functools.cache
def _permutations(count: int) -> st.SearchStrategy[list[int]]:
    return st.permutations(range(count))


def permutation(draw: Draw, options: Sequence[T]) -> list[T]:
    """``draw(st.permutations(options))``: each position swapped with itself or a later one,
    shrinking towards the original order."""
    data = _conjecture(draw)
    if data is None:
        return [options[i] for i in draw(_permutations(len(options)))]
    shuffled = list(options)
    for i in range(len(shuffled) - 1):
        j = data.draw_integer(i, len(shuffled) - 1)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    return shuffled


POSITIVE_EDGE_VALUES = (0.5, 1.0, 2.0)


def element(draw: Draw, dtype: np.dtype, *, positive: bool = False) -> float:
    """An edge value (half the time) or a float in [-4, 4] exactly representable in ``dtype``
    (``positive``: in [0.5, 4]). One choice picks among the edges and "a float", so an edge
    costs one draw and shrinks to 0.0 (positive: 0.5), the first edge."""
    edges = POSITIVE_EDGE_VALUES if positive else EDGE_VALUES
    choice = integer(draw, 0, 2 * len(edges) - 1)
    if choice < len(edges):
        return edges[choice]
    return real(draw, 0.5 if positive else -4.0, 4.0,
                width=32 if dtype == np.dtype("float32") else 64)


def array(draw: Draw, shape: Sequence[int], dtype: np.dtype, *, positive: bool = False
          ) -> np.ndarray:
    """An array of :func:`element` values: drawn one by one, or (as often, for three elements
    or more) all one value but one position, the ties that max/min/maximum/minimum break by a
    rule."""
    size = math.prod(shape)
    if size >= 3 and boolean(draw):
        drawn = np.full(size, element(draw, dtype, positive=positive), dtype=dtype)
        drawn[integer(draw, 0, size - 1)] = element(draw, dtype, positive=positive)
    else:
        drawn = np.array([element(draw, dtype, positive=positive) for _ in range(size)],
                         dtype=dtype)
    return drawn.reshape(tuple(shape))


@functools.cache
def _values(shape: tuple[int, ...], dtype: np.dtype, positive: bool) -> st.SearchStrategy[Any]:
    @st.composite
    def arrays(draw: Draw) -> np.ndarray:
        return array(draw, shape, dtype, positive=positive)
    return arrays()


def values(shape: Sequence[int], dtype: np.dtype, *, positive: bool = False
           ) -> st.SearchStrategy[np.ndarray]:
    """:func:`array` as a strategy."""
    return _values(tuple(shape), np.dtype(dtype), positive)


def _arrays(elements: st.SearchStrategy[Any], shape: tuple[int, ...], dtype: np.dtype
            ) -> st.SearchStrategy[np.ndarray]:
    def build(drawn: tuple[Any, ...]) -> np.ndarray:
        return np.array(drawn, dtype=dtype).reshape(shape)
    return st.tuples(*[elements] * math.prod(shape)).map(build)


@functools.cache
def bool_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Boolean arrays of ``shape`` (all-False and all-True too)."""
    return _arrays(BOOLEANS, shape, np.dtype(bool))


@functools.cache
def class_indices(shape: tuple[int, ...], classes: int) -> st.SearchStrategy[np.ndarray]:
    """int64 arrays of ``shape`` with elements in ``[0, classes)``."""
    return _arrays(_integers(0, classes - 1), shape, np.dtype(np.int64))
