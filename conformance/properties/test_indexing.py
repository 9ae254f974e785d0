"""Gradients of partial indexing are dense, zero where unused, summed over duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from conformance.graphs import indices
from conformance.program import Backward, Forward, Node, Program, Ref
from conformance.properties import functional_properties
from conformance.runner import check_against_reference

INDEXED_SHAPES = ((3,), (4,), (2, 3), (3, 1), (3, 4), (2, 2, 2))


@pytest.mark.requires("op:getitem")
@given(data=st.data())
def test_index_gradient(engine, data):
    """``x[index].sum().backward()`` for ints, slices (empty too), ``None``, ``...``, integer
    lists with duplicates and negatives, and bool masks: a dense grad of x's shape."""
    params = data.draw(cs.params(engine.capabilities, max_size=1, shapes=INDEXED_SHAPES),
                       label="params")
    index = data.draw(indices(params[0].value.shape, masks=engine.capabilities.bool_masks),
                      label="index")
    reduce = data.draw(cs.reductions(engine.capabilities), label="reduction")
    forward = Forward("loss0", (
        Node("loss0_0", "getitem", (Ref("p0"),), {"index": index}),
        Node("loss0", reduce, (Ref("loss0_0"),)),
    ))
    program = Program(params, (forward, Backward("loss0")))
    check_against_reference(engine, program)


@given(data=st.data())
def test_indexing_inside_graphs(engine, data):
    """Indexing mixed with arithmetic, shared subexpressions and broadcasting."""
    params = data.draw(cs.params(engine.capabilities, shapes=INDEXED_SHAPES), label="params")
    ops = {"getitem", "mul", "add", "sub", "exp", "sum", "mean", "reshape", "unsqueeze", "cat"}
    info = data.draw(cs.graphs(engine.capabilities, loss="loss0", params=params, ops=ops,
                                min_ops=2, max_ops=6),
                     label="forward")
    program = Program(params, (info.forward, Backward("loss0", True), Backward("loss0")))
    check_against_reference(engine, program)


@pytest.mark.requires("op:getitem", "op:sum")
@given(data=st.data())
def test_out_of_range_index_raises(engine, data):
    """An integer index past the end (bare, in a tuple, in a list or an index tensor) raises
    an index error."""
    params = data.draw(cs.params(engine.capabilities, max_size=1, shapes=INDEXED_SHAPES),
                       label="params")
    size = params[0].value.shape[0]
    bad = data.draw(st.sampled_from([size, size + 1, -size - 1]), label="bad index")
    index = data.draw(st.sampled_from([bad, (bad,), [0, bad], np.array([0, bad])]),
                      label="index")
    forward = Forward("loss0", (
        Node("loss0_0", "getitem", (Ref("p0"),), {"index": index}),
        Node("loss0", "sum", (Ref("loss0_0"),)),
    ))
    program = Program(params, (forward, Backward("loss0")))
    check_against_reference(engine, program)


@pytest.mark.requires("index:bool_mask")
@given(data=st.data())
def test_wrong_mask_shape_raises(engine, data):
    """A bool mask whose shape does not match the indexed dims raises an index error."""
    params = data.draw(cs.params(engine.capabilities, max_size=1, shapes=INDEXED_SHAPES),
                       label="params")
    size = params[0].value.shape[0]
    length = data.draw(st.sampled_from([size - 1, size + 1]).filter(lambda n: n > 0),
                       label="mask length")
    mask = np.ones(length, dtype=bool)
    forward = Forward("loss0", (
        Node("loss0_0", "getitem", (Ref("p0"),), {"index": (mask,)}),
        Node("loss0", "sum", (Ref("loss0_0"),)),
    ))
    check_against_reference(engine, Program(params, (forward, Backward("loss0"))))


functional_properties(test_index_gradient, test_out_of_range_index_raises,
                      test_wrong_mask_shape_raises)
