"""The generators' draws, from strategies built once.

Drawing from a strategy built on the spot (``draw(st.sampled_from(candidates))``) makes
Hypothesis validate it, label it and work out its properties every time; a program of ~80
draws spent more time on that than on the draws. The helpers here make the same choices as
``sampled_from``, ``integers``, ``booleans`` and ``permutations`` (an integer index, shrinking
towards the first option) from strategies cached by their bounds, and build arrays from a
fixed tuple of element draws rather than ``hypothesis.extra.numpy.arrays`` (whose fill and
uniqueness machinery costs more than the six elements of a small array).
``bench/bench_generation.py`` measures the difference, and the coverage it keeps.
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

Draw = Callable[[st.SearchStrategy[Any]], Any]
T = TypeVar("T")

EDGE_VALUES = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0)
"""Exact values where ops have kinks (0 for relu/abs/clamp, ±1 for clamp(-1, 1)) and that
repeat often enough to make ties for max/min/maximum/minimum."""

BOOLEANS = st.booleans()


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def integer(draw: Draw, low: int, high: int) -> int:
    """``draw(st.integers(low, high))``."""
    return int(draw(_integers(low, high)))


def boolean(draw: Draw) -> bool:
    """``draw(st.booleans())``."""
    return bool(draw(BOOLEANS))


def choose(draw: Draw, options: Sequence[T]) -> T:
    """``draw(st.sampled_from(options))``: one option, shrinking towards the first."""
    if not options:
        raise InvalidArgument("nothing to choose from")
    if len(options) == 1:
        return options[0]
    return options[integer(draw, 0, len(options) - 1)]


@functools.cache
def _float_range(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high)


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
        return float(draw(_float_range(self.low, self.high)))


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
    """``draw(st.permutations(options))``."""
    return [options[i] for i in draw(_permutations(len(options)))]


POSITIVE_EDGE_VALUES = (0.5, 1.0, 2.0)


@functools.cache
def _floats(width: Literal[32, 64], positive: bool) -> st.SearchStrategy[float]:
    return st.floats(0.5, 4.0, width=width) if positive else st.floats(-4.0, 4.0, width=width)


def element(draw: Draw, dtype: np.dtype, *, positive: bool = False) -> float:
    """An edge value (half the time) or a float in [-4, 4] exactly representable in ``dtype``
    (``positive``: in [0.5, 4]). One choice picks among the edges and "a float", so an edge
    costs one draw and shrinks to 0.0 (positive: 0.5), the first edge."""
    edges = POSITIVE_EDGE_VALUES if positive else EDGE_VALUES
    choice = integer(draw, 0, 2 * len(edges) - 1)
    if choice < len(edges):
        return edges[choice]
    return float(draw(_floats(32 if dtype == np.dtype("float32") else 64, positive)))


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
