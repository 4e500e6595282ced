"""Broadcasting, property-based: random broadcast-compatible shapes (size-1 axes, different ndim,
0-d) for the binary elementwise ops and where. The forward has NumPy's broadcast shape and values,
and the gradient of sum(f(a, b) * w) with respect to each input has that input's shape and equals
the analytic elementwise derivative times w, summed back over the broadcast axes in NumPy."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minigrad as mg

SETTINGS = settings(max_examples=25, deadline=None, database=None)


def np_sum_to(x, shape):
    """Reduce a broadcast array back to `shape` (written independently of the engine)."""
    x = np.asarray(x)
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


# name: (minigrad fn, numpy fn, d/da, d/db) -- the derivatives elementwise, before any reduction
BINARY = {
    "add": (lambda a, b: a + b, np.add, lambda a, b: np.ones_like(a * b), lambda a, b: np.ones_like(a * b)),
    "sub": (lambda a, b: a - b, np.subtract, lambda a, b: np.ones_like(a * b),
            lambda a, b: -np.ones_like(a * b)),
    "mul": (lambda a, b: a * b, np.multiply, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
    "div": (lambda a, b: a / b, np.divide, lambda a, b: 1 / b + 0 * a, lambda a, b: -a / b ** 2),
    "maximum": (mg.maximum, np.maximum, lambda a, b: (a > b) * 1.0, lambda a, b: (b > a) * 1.0),
    "minimum": (mg.minimum, np.minimum, lambda a, b: (a < b) * 1.0, lambda a, b: (b < a) * 1.0),
    "pow": (lambda a, b: a ** b, np.power, lambda a, b: b * a ** (b - 1), lambda a, b: a ** b * np.log(a)),
}

shape_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=3)
shape_triples = mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=1, max_side=3)


def _distinct(rng, shapes, lo=-2.0, hi=2.0):
    """Arrays of the given shapes whose values are all distinct (no ties for maximum/minimum)."""
    sizes = [int(np.prod(s, dtype=int)) for s in shapes]
    grid = np.linspace(lo, hi, 4 * max(sum(sizes), 1) + 1)
    values = rng.permutation(grid)[:sum(sizes)]
    out, start = [], 0
    for s, n in zip(shapes, sizes):
        out.append(values[start:start + n].reshape(s))
        start += n
    return out


def _inputs(name, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = _distinct(rng, shapes)
    if name == "div":  # keep b away from the pole
        b = np.where(b >= 0, b + 0.5, b - 0.5)
    if name == "pow":  # a positive base
        a = np.abs(a) + 0.5
    return a, b


def _check_grads(out, inputs, arrays, derivs, w):
    loss = (out * mg.tensor(w)).sum()
    grads = mg.grad(loss, inputs)
    for t, a, g, d in zip(inputs, arrays, grads, derivs):
        assert g.shape == a.shape == t.shape
        assert g.dtype == np.float64
        expected = np_sum_to(np.broadcast_to(d, w.shape) * w, a.shape)
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2 ** 32 - 1))
def test_binary_broadcast(name, shapes, seed):
    fn, ref, da, db = BINARY[name]
    a, b = _inputs(name, shapes.input_shapes, seed)
    ta, tb = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    out = fn(ta, tb)
    expected_shape = np.broadcast_shapes(a.shape, b.shape)
    assert out.shape == expected_shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-12, atol=1e-12)
    w = np.random.default_rng(seed + 1).standard_normal(expected_shape)
    _check_grads(out, [ta, tb], [a, b], [da(a, b), db(a, b)], w)


@SETTINGS
@given(shapes=shape_triples, seed=st.integers(0, 2 ** 32 - 1))
def test_where_broadcast(shapes, seed):
    sc, sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    cond = rng.random(sc) < 0.5
    a, b = _distinct(rng, [sa, sb])
    ta, tb = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    out = mg.where(mg.tensor(cond), ta, tb)
    assert out.shape == np.broadcast_shapes(sc, sa, sb) == shapes.result_shape
    np.testing.assert_array_equal(out.numpy(), np.where(cond, a, b))
    w = rng.standard_normal(out.shape)
    full = np.ones(out.shape)
    _check_grads(out, [ta, tb], [a, b], [full * cond, full * ~cond], w)


@pytest.mark.parametrize("name", ["add", "mul", "maximum"])
@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2 ** 32 - 1))
def test_binary_broadcast_float32(name, shapes, seed):
    """The same with float32: the output and both gradients stay float32."""
    fn, ref, da, db = BINARY[name]
    a, b = (x.astype(np.float32) for x in _inputs(name, shapes.input_shapes, seed))
    ta, tb = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    out = fn(ta, tb)
    assert out.dtype == np.float32 and out.shape == shapes.result_shape
    ga, gb = mg.grad(out.sum(), [ta, tb])
    assert (ga.shape, gb.shape) == (a.shape, b.shape)
    assert ga.dtype == gb.dtype == np.float32
    ones = np.ones(shapes.result_shape)
    eps = np.finfo(np.float32).eps
    for g, x, d in ((ga, a, da), (gb, b, db)):
        terms = ones * d(a, b)
        # a float32 sum of terms of both signs may cancel: its error is relative to sum |terms|
        np.testing.assert_allclose(g.numpy(), np_sum_to(terms, x.shape), rtol=1e-5,
                                   atol=8 * eps * np_sum_to(np.abs(terms), x.shape).max())


@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2 ** 32 - 1))
def test_broadcast_gradient_second_order(shapes, seed):
    """Through a broadcast the Hessian-vector product also comes back in each input's shape:
    for f = sum(w * a * b * b), d/db of <grad_a f, v> = sum_to(2 w v b, b.shape)."""
    a, b = _inputs("mul", shapes.input_shapes, seed)
    rng = np.random.default_rng(seed + 2)
    w = rng.standard_normal(shapes.result_shape)
    v = rng.standard_normal(a.shape)
    ta, tb = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    f = (mg.tensor(w) * ta * tb * tb).sum()
    (ga,) = mg.grad(f, ta, create_graph=True)
    assert ga.shape == a.shape
    (hb,) = mg.grad((ga * mg.tensor(v)).sum(), tb)
    assert hb.shape == b.shape
    expected = np_sum_to(2 * w * np.broadcast_to(v, w.shape) * np.broadcast_to(b, w.shape), b.shape)
    np.testing.assert_allclose(hb.numpy(), expected, rtol=1e-10, atol=1e-12)
