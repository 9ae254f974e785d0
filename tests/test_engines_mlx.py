"""The mlx adapter translates as docs/engines/mlx.md says: each test computes torch's numbers
for a small case and checks that the adapter's calls give MLX's own answer to the same call
(skipped where mlx is not installed: ``pip install 'mlx[cpu]'``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

from conformance.engines.mlx_engine import MLXEngine, UnsafeIndex  # noqa: E402
from conformance.errors import ErrorKind  # noqa: E402


@pytest.fixture(scope="module")
def engine() -> MLXEngine:
    return MLXEngine()


def _values(engine: MLXEngine, arrays: list) -> list[np.ndarray]:
    return [engine.to_numpy(a) for a in arrays]


def test_array_keeps_dtype_and_negative_zero(engine):
    """``mx.array`` of a float64 ndarray is float32 unless the dtype is passed."""
    value = np.array([-0.0, 1.5, 0.1], dtype=np.float64)
    back = engine.to_numpy(engine.array(value))
    assert back.dtype == np.float64
    assert back.tobytes() == value.tobytes()


def test_vjp_without_cotangent_is_backward(engine):
    """``mx.grad`` of a loss made of ``apply`` calls gives torch's ``backward()`` grads."""
    x = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    w = np.array([[0.2, 0.05], [-0.1, 0.4], [0.15, -0.3]], dtype=np.float32)  # tanh unsaturated

    def forward(arrays):
        h = engine.apply("matmul", [arrays[0], arrays[1]], {})
        t = engine.apply("tanh", [h], {})
        return engine.apply("sum", [engine.apply("mul", [t, 3.0], {})], {})

    grads = engine.vjp(forward, [engine.array(x), engine.array(w)], None)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (torch.tanh(tx @ tw) * 3.0).sum().backward()
    np.testing.assert_allclose(_values(engine, grads)[0], tx.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(_values(engine, grads)[1], tw.grad.numpy(), rtol=1e-6)


def test_vjp_with_cotangent_is_backward_with_gradient(engine):
    x = np.array([1.0, -2.0, 0.5], dtype=np.float64)
    g = np.array([0.5, 1.0, -3.0], dtype=np.float64)
    (grad,) = engine.vjp(lambda arrays: engine.apply("mul", [arrays[0], arrays[0]], {}),
                         [engine.array(x)], engine.array(g))
    tx = torch.tensor(x, requires_grad=True)
    (tx * tx).backward(torch.tensor(g))
    np.testing.assert_array_equal(engine.to_numpy(grad), tx.grad.numpy())


def test_vjp_errors_are_classified(engine):
    """A (1,)-shaped loss without cotangent is refused by mx.grad (the declared gap
    backward_one_element: torch's backward accepts it); a cotangent of the wrong shape is
    torch's shape error."""
    x = engine.array(np.array([1.0, 2.0], dtype=np.float32))

    def one_element(arrays):
        return engine.apply("reshape", [engine.apply("sum", [arrays[0]], {})], {"shape": (1,)})

    with pytest.raises(ValueError, match="does not match cotangent shape") as non_scalar:
        engine.vjp(one_element, [x], None)
    assert engine.classify(non_scalar.value) is ErrorKind.NON_SCALAR_BACKWARD
    with pytest.raises(ValueError, match="does not match cotangent shape") as wrong_shape:
        engine.vjp(lambda arrays: engine.apply("mul", [arrays[0], 2.0], {}), [x],
                   engine.array(np.ones(3, dtype=np.float32)))
    assert engine.classify(wrong_shape.value) is ErrorKind.GRADIENT_SHAPE


def _torch_steps(kind, groups, defaults, grads_per_step):
    """torch's params after ``opt.step()`` on each list of grads (None: no grad)."""
    tensors = [[torch.tensor(v, requires_grad=True) for v in group["params"]]
               for group in groups]
    constructor = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[kind]
    opt = constructor([{**g, "params": t} for g, t in zip(groups, tensors, strict=True)],
                      **defaults)
    flat = [t for ts in tensors for t in ts]
    for grads in grads_per_step:
        for t, g in zip(flat, grads, strict=True):
            t.grad = None if g is None else torch.tensor(g)
        opt.step()
    return [t.detach().numpy() for t in flat]


def _mlx_steps(engine, kind, groups, defaults, grads_per_step):
    arrays = [[engine.array(v) for v in group["params"]] for group in groups]
    opt = engine.optimizer(kind, [{**g, "params": a} for g, a in zip(groups, arrays, strict=True)],
                           defaults)
    flat = [a for group in arrays for a in group]
    for grads in grads_per_step:
        flat = engine.optimizer_step(
            opt, flat, [None if g is None else engine.array(g) for g in grads])
    return _values(engine, flat), opt


def _f32(*values):
    return np.array(values, dtype=np.float32)


def test_sgd_momentum_nesterov_weight_decay_match_torch(engine):
    groups = [{"params": [_f32(1.0, -2.0)]}]
    defaults = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True}
    steps = [[_f32(0.5, 1.0)], [_f32(-1.0, 0.25)], [_f32(2.0, 0.0)]]
    got, _ = _mlx_steps(engine, "sgd", groups, defaults, steps)
    np.testing.assert_allclose(got[0], _torch_steps("sgd", groups, defaults, steps)[0],
                               rtol=1e-6)


def test_adam_is_bias_corrected(engine):
    """torch's Adam corrects the moments' bias; the adapter asks MLX's for it
    (bias_correction=True). Uncorrected, the first step would be lr * 0.1 / sqrt(0.001), 3.2
    times torch's."""
    groups = [{"params": [_f32(0.0, 1.0)]}]
    steps = [[_f32(1.0, -0.5)], [_f32(0.5, 0.5)]]
    got, _ = _mlx_steps(engine, "adam", groups, {"lr": 0.1}, steps)
    # float32 bias corrections (steps_at_param_precision): ~1e-6 off after two steps
    np.testing.assert_allclose(got[0], _torch_steps("adam", groups, {"lr": 0.1}, steps)[0],
                               atol=3e-6)


def test_none_grad_leaves_param_and_state_alone(engine):
    """A param whose grad is None is left out of apply_gradients' dict: MLX neither moves it
    nor touches its momentum buffer, and it resumes from that buffer, as in torch."""
    groups = [{"params": [_f32(1.0), _f32(2.0)]}]
    defaults = {"lr": 0.5, "momentum": 0.5}
    steps = [[_f32(1.0), _f32(1.0)], [_f32(1.0), None], [_f32(1.0), _f32(1.0)]]
    got, opt = _mlx_steps(engine, "sgd", groups, defaults, steps[:2])
    assert got[1].tolist() == [1.5]  # moved by the first step only
    assert engine.to_numpy(opt.optimizer.state["param1"]["v"]).tolist() == [1.0]
    got, _ = _mlx_steps(engine, "sgd", groups, defaults, steps)
    want = _torch_steps("sgd", groups, defaults, steps)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_param_groups_are_a_multioptimizer_with_each_groups_settings(engine):
    groups = [{"params": [_f32(1.0)], "lr": 0.5}, {"params": [_f32(1.0)], "momentum": 0.5}]
    defaults = {"lr": 0.1}
    steps = [[_f32(1.0), _f32(1.0)], [_f32(1.0), _f32(1.0)]]
    got, opt = _mlx_steps(engine, "sgd", groups, defaults, steps)
    assert type(opt.optimizer).__name__ == "MultiOptimizer"
    want = _torch_steps("sgd", groups, defaults, steps)
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=1e-6)


def test_set_hyperparameter_takes_effect_at_the_next_step(engine):
    params = [engine.array(_f32(0.0))]
    opt = engine.optimizer("sgd", [{"params": params}], {"lr": 0.1})
    params = engine.optimizer_step(opt, params, [engine.array(_f32(1.0))])
    engine.set_hyperparameter(opt, 0, "lr", 0.5)
    params = engine.optimizer_step(opt, params, [engine.array(_f32(1.0))])
    np.testing.assert_allclose(engine.to_numpy(params[0]), _f32(-0.6), rtol=1e-6)


def test_state_dict_round_trip_continues_the_momentum(engine):
    grads = [_f32(1.0), _f32(-0.5)]
    straight, _ = _mlx_steps(engine, "sgd", [{"params": [_f32(0.0)]}], {"lr": 0.1, "momentum": 0.9},
                             [[g] for g in grads])
    params = [engine.array(_f32(0.0))]
    make = ("sgd", [{"params": params}], {"lr": 0.1, "momentum": 0.9})
    opt = engine.optimizer(*make)
    params = engine.optimizer_step(opt, params, [engine.array(grads[0])])
    fresh = engine.optimizer(*make)
    engine.load_state_dict(fresh, engine.state_dict(opt))
    params = engine.optimizer_step(fresh, params, [engine.array(grads[1])])
    assert engine.to_numpy(params[0]).tobytes() == straight[0].tobytes()


def test_invalid_hyperparameters_mlx_checks_are_classified(engine):
    params = [engine.array(_f32(0.0))]
    for kind, defaults in (("sgd", {"nesterov": True}), ("adam", {"betas": (1.0, 0.9)}),
                           ("adamw", {"eps": -1.0})):
        with pytest.raises(ValueError, match=r"Nesterov|beta|epsilon") as error:
            engine.optimizer(kind, [{"params": params}], defaults)
        assert engine.classify(error.value) is ErrorKind.INVALID_HYPERPARAMETER, kind


def test_out_of_range_index_is_refused_not_run(engine):
    """OUT_OF_RANGE_INDEX_UNCHECKED: refused with an exception no ErrorKind takes (a crash);
    in-range indices of every form run."""
    x = engine.array(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    for index in (2, (-3,), [0, 2], np.array([0, -3]), (slice(None), 3), (None, Ellipsis, 3)):
        with pytest.raises(UnsafeIndex) as refused:
            engine.apply("getitem", [x], {"index": index})
        assert engine.classify(refused.value) is None
    got = engine.apply("getitem", [x], {"index": (None, Ellipsis, [2, -1, 0])})
    np.testing.assert_array_equal(engine.to_numpy(got), np.arange(6.0).reshape(2, 3)[None, ..., [2, -1, 0]])


def _first_stated_output(evidence: str) -> str:
    """What the script's first print is said to print: its inline comment, or the comment
    line under it, up to the first ';' or a two-space gap (where the torch value follows)."""
    lines = evidence.splitlines()
    for position, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        inline = line.split("# ", 1)[1] if "# " in line else None
        comment = inline or lines[position + 1].strip().removeprefix("# ")
        return comment.split(";")[0].split("  ")[0].strip()
    raise ValueError("the evidence prints nothing")


@pytest.mark.parametrize("name", [
    "FLOAT64_EXP", "CLIP_BOUNDS_EXCLUSIVE", "DIM_REDUCTION_TIES",
    "MAXIMUM_TIES", "POW_AT_ZERO_BASE", "HYPERPARAMETERS_UNCHECKED", "DAMPENED_FIRST_STEP",
    "ADAM_ONE_STEP_COUNT", "CHECKPOINT_DROPS_HYPERPARAMETERS", "CROSS_ENTROPY_NO_REDUCTION",
])
def test_evidence_prints_what_its_comments_say(name):
    """Each deviation's script still shows it: what its comments say the first print prints
    is in its output (the out-of-range one is left out: it can end in a segmentation fault)."""
    from conformance.engines import mlx_engine

    deviation = getattr(mlx_engine, name)
    run = subprocess.run([sys.executable, "-c", deviation.evidence], capture_output=True,
                         text=True, timeout=120, check=True)
    stated = _first_stated_output(deviation.evidence)
    assert stated in run.stdout, f"{name}: {stated!r} not in the output:\n{run.stdout}"
