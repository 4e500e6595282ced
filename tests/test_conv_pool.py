"""conv2d, im2col/col2im and pooling: forward values against direct NumPy loops, first and
second derivatives against finite differences, and the error messages."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import gradcheck, gradgradcheck


def t64(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ------------------------------------------------------------------ NumPy references (loops)
def conv2d_ref(x, w, b=None, stride=1, padding=0):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for ni in range(n):
        for oi in range(o):
            for i in range(oh):
                for j in range(ow):
                    patch = x[ni, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    y[ni, oi, i, j] = (patch * w[oi]).sum() + (0 if b is None else b[oi])
    return y


def pool_ref(x, kernel, stride, reduce):
    (kh, kw) = _pair(kernel)
    (sh, sw) = _pair(kernel if stride is None else stride)
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = reduce(x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
    return y


# ------------------------------------------------------------------------------- forward
CONV_CASES = [  # x shape, w shape, stride, padding
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0),
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1),
    ((1, 2, 8, 9), (3, 2, 3, 3), 2, 1),
    ((2, 2, 7, 6), (3, 2, 2, 3), (2, 1), (0, 2)),
    ((1, 1, 5, 5), (2, 1, 5, 5), 1, 0),
    ((1, 3, 9, 8), (2, 3, 1, 4), (3, 2), (1, 0)),
    ((2, 8, 5, 5), (3, 8, 3, 3), 1, 1),     # kw C >= 16: patches as rows of a channels-last copy
    ((2, 2, 24, 23), (3, 2, 3, 3), 2, 1),   # strided, output rows > 10: the input gradient's fold
]


@pytest.mark.parametrize("xs, ws, stride, padding", CONV_CASES)
def test_conv2d_matches_direct_loops(xs, ws, stride, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    got = F.conv2d(t64(x), t64(w), t64(b), stride=stride, padding=padding)
    np.testing.assert_allclose(got.numpy(), conv2d_ref(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)
    got = F.conv2d(t64(x), t64(w), stride=stride, padding=padding)
    np.testing.assert_allclose(got.numpy(), conv2d_ref(x, w, None, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, stride, padding", CONV_CASES[-3:])
def test_conv2d_over_many_batch_chunks_is_the_one_chunk_result(monkeypatch, xs, ws, stride,
                                                                padding):
    """conv2d works through the batch in chunks of patches that fit a cache: with chunks of a
    few hundred bytes (one example or less each) the output and both gradients are the same
    as the one-chunk result, to rounding."""
    from minigrad.functional import conv_op

    def run():
        rng = np.random.default_rng(8)
        x = t64(rng.standard_normal((5,) + xs[1:]), True)
        w, b = t64(rng.standard_normal(ws), True), t64(rng.standard_normal(ws[0]), True)
        y = F.conv2d(x, w, b, stride=stride, padding=padding)
        gx, gw, gb = mg.grad((y * y).sum(), [x, w, b])
        return [a.numpy() for a in (y, gx, gw, gb)]

    whole = run()
    monkeypatch.setattr(conv_op, "_CACHE_BYTES", 256)
    for chunked, one in zip(run(), whole):
        np.testing.assert_allclose(chunked, one, rtol=1e-12, atol=1e-12)


def test_conv2d_and_pools_on_non_contiguous_inputs():
    # im2col reads the input through its own strides, so views (a transpose here) work unpadded too
    rng = np.random.default_rng(9)
    base, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 2, 3))
    x = t64(base).permute(0, 1, 3, 2)
    xt = base.transpose(0, 1, 3, 2)
    assert not x.data.flags.c_contiguous
    np.testing.assert_allclose(F.conv2d(x, t64(w), stride=(2, 1)).numpy(), conv2d_ref(xt, w, None, (2, 1)),
                               rtol=1e-12)
    np.testing.assert_array_equal(F.max_pool2d(x, 2).numpy(), pool_ref(xt, 2, None, np.max))


def test_conv2d_float32_stays_float32():
    x = mg.tensor(np.ones((1, 2, 4, 4), np.float32))
    w = mg.tensor(np.ones((3, 2, 3, 3), np.float32))
    y = F.conv2d(x, w, padding=1)
    assert y.dtype == np.float32 and y.shape == (1, 3, 4, 4)
    assert y.numpy()[0, 0, 1, 1] == 18 and y.numpy()[0, 0, 0, 0] == 8


POOL_CASES = [((2, 3, 6, 6), 2, None), ((1, 2, 7, 5), 3, 2), ((2, 1, 6, 7), (2, 3), (1, 2)),
              ((1, 2, 5, 5), 2, 1)]


@pytest.mark.parametrize("xs, kernel, stride", POOL_CASES)
def test_pools_match_loops(xs, kernel, stride):
    x = np.random.default_rng(1).standard_normal(xs)
    np.testing.assert_array_equal(F.max_pool2d(t64(x), kernel, stride).numpy(),
                                  pool_ref(x, kernel, stride, np.max))
    np.testing.assert_allclose(F.avg_pool2d(t64(x), kernel, stride).numpy(),
                               pool_ref(x, kernel, stride, np.mean), rtol=1e-13)


def test_max_pool_gradient_goes_to_the_max():
    x = t64([[[[1, 5, 2, 0], [3, 4, 8, 1], [0, 0, 1, 1], [9, 2, 3, 7]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    expected = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]], float)
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), ((1, 2), (2, 0))])
def test_col2im_is_the_adjoint_of_im2col(stride, padding):
    # <im2col(x), c> = <x, col2im(c)> for all x, c
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 5))
    cols = F.im2col(t64(x), (3, 2), stride, padding)
    c = rng.standard_normal(cols.shape)
    back = F.col2im(t64(c), (6, 5), (3, 2), stride, padding)
    assert back.shape == x.shape
    np.testing.assert_allclose((cols.numpy() * c).sum(), (x * back.numpy()).sum(), rtol=1e-12)


# ------------------------------------------------------------- derivatives, from one table
def _conv_case(xs, ws, stride, padding, bias, grad_x=True, grad_w=True):
    rng = np.random.default_rng(3)
    inputs = [t64(rng.standard_normal(xs), grad_x), t64(rng.standard_normal(ws), grad_w)]
    if bias:
        inputs.append(t64(rng.standard_normal(ws[0]), True))
    return (lambda *a: F.conv2d(*a, stride=stride, padding=padding)), inputs


def _distinct(shape, seed=4):
    """Values spaced 0.1 apart in random order, so a max is never near a tie."""
    n = int(np.prod(shape))
    return t64(np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1, True)


GRAD_CASES = {
    "conv2d x,w,b stride2 pad1": lambda: _conv_case((1, 2, 5, 4), (2, 2, 3, 2), 2, 1, True),
    "conv2d x,w no bias": lambda: _conv_case((2, 1, 4, 4), (2, 1, 2, 2), 1, 0, False),
    "conv2d x only, pair stride/pad": lambda: _conv_case((1, 2, 4, 5), (2, 2, 2, 3), (1, 2), (1, 0),
                                                         False, grad_w=False),
    "conv2d w,b only": lambda: _conv_case((1, 2, 4, 4), (2, 2, 3, 3), 1, 1, True, grad_x=False),
    "im2col": lambda: ((lambda x: F.im2col(x, 2, 2, 1)), [t64(np.random.default_rng(5)
                                                               .standard_normal((1, 2, 3, 3)), True)]),
    "col2im": lambda: ((lambda c: F.col2im(c, (3, 3), 2, 1, 0)),
                       [t64(np.random.default_rng(6).standard_normal((1, 2, 2, 2, 2, 2)), True)]),
    "max_pool2d": lambda: ((lambda x: F.max_pool2d(x, 2)), [_distinct((1, 2, 4, 4))]),
    "max_pool2d overlapping": lambda: ((lambda x: F.max_pool2d(x, (2, 3), 1)), [_distinct((1, 1, 4, 5))]),
    "avg_pool2d": lambda: ((lambda x: F.avg_pool2d(x, 2)), [_distinct((1, 2, 4, 4))]),
    "avg_pool2d strided": lambda: ((lambda x: F.avg_pool2d(x, 3, (1, 2))), [_distinct((1, 1, 5, 6))]),
    "conv2d rows layout": lambda: _conv_case((2, 8, 5, 5), (3, 8, 3, 3), 1, 1, True),
    "conv2d strided wide rows": lambda: _conv_case((1, 2, 12, 23), (2, 2, 3, 3), 2, 1, False),
    # a conv followed by a nonlinearity and a pool, so second derivatives are not all zero
    "conv2d tanh pool": lambda: ((lambda x, w: F.avg_pool2d(F.tanh(F.conv2d(x, w, padding=1)), 2)),
                                 _conv_case((1, 1, 4, 4), (2, 1, 3, 3), 1, 1, False)[1]),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradcheck(name):
    fn, inputs = GRAD_CASES[name]()
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradgradcheck(name):
    fn, inputs = GRAD_CASES[name]()
    assert gradgradcheck(fn, inputs)


def test_conv2d_third_derivative():
    # Unfold's backward is Fold and Fold's is Unfold, so any order works. With y = A x (A the conv),
    # f = sum(y^3): grad f = 3 A^T y^2, d/dx sum(grad f) = 6 A^T (A1 * y), d/dx of its sum = 6 A^T (A1)^2.
    x = t64(np.random.default_rng(7).standard_normal((1, 1, 3, 3)), True)
    w = t64(np.random.default_rng(8).standard_normal((1, 1, 2, 2)))
    (g,) = mg.grad((F.conv2d(x, w, padding=1) ** 3).sum(), x, create_graph=True)
    (h,) = mg.grad(g.sum(), x, create_graph=True)
    (k,) = mg.grad(h.sum(), x)
    a1 = F.conv2d(t64(np.ones((1, 1, 3, 3))), w, padding=1).numpy()
    probe = t64(np.zeros((1, 1, 3, 3)), True)  # A^T v is the gradient of <A probe, v>
    (expected,) = mg.grad((F.conv2d(probe, w, padding=1) * t64(6 * a1 ** 2)).sum(), probe)
    np.testing.assert_allclose(k.numpy(), expected.numpy(), rtol=1e-10)


# --------------------------------------------------------------------------------- errors
def test_conv2d_errors():
    x, w = t64(np.zeros((2, 3, 5, 5))), t64(np.zeros((4, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but weight expects 4 "
                                         r"\(input shape \(2, 3, 5, 5\), weight shape \(4, 4, 3, 3\)\)"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D .* got shape \(3, 5, 5\)"):
        F.conv2d(t64(np.zeros((3, 5, 5))), w)
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D"):
        F.conv2d(x, t64(np.zeros((4, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d: kernel \(7, 7\) is larger than the padded input "
                                         r"\(6, 6\) \(input shape \(1, 3, 4, 4\), padding \(1, 1\)\)"):
        F.conv2d(t64(np.zeros((1, 3, 4, 4))), t64(np.zeros((1, 3, 7, 7))), padding=1)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(x, t64(np.zeros((4, 3, 3, 3))), t64(np.zeros(3)))
    with pytest.raises(ValueError, match=r"conv2d: stride must be >= 1, got 0"):
        F.conv2d(x, t64(np.zeros((4, 3, 3, 3))), stride=0)
    with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0, got \(1, -1\)"):
        F.conv2d(x, t64(np.zeros((4, 3, 3, 3))), padding=(1, -1))
    with pytest.raises(TypeError, match=r"conv2d: stride must be an int or a pair of ints, got 1.5"):
        F.conv2d(x, t64(np.zeros((4, 3, 3, 3))), stride=1.5)


def test_pool_errors():
    x = t64(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(4, 4\) is larger than the padded input "
                                         r"\(3, 3\) \(input shape \(1, 2, 3, 3\)"):
        F.max_pool2d(x, 4)
    with pytest.raises(ValueError, match=r"avg_pool2d: input must be 4-D"):
        F.avg_pool2d(t64(np.zeros((2, 3, 3))), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: kernel_size must be >= 1, got 0"):
        F.avg_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"col2im: columns of shape \(1, 2, 2, 2, 2, 2\) do not fit"):
        F.col2im(t64(np.zeros((1, 2, 2, 2, 2, 2))), (5, 5), 2)


def test_max_pool_ties_and_uncovered_edges_get_exact_gradients():
    """Windows with ties share the gradient evenly; rows and columns that no window covers
    (H, W not multiples of the kernel) get exactly zero, never inf or NaN."""
    x = np.zeros((1, 2, 5, 7))
    x[0, 1, :4, :6] = np.arange(24).reshape(4, 6) % 3  # ties inside windows, and in channel 0
    xt = mg.tensor(x, requires_grad=True)
    g = np.random.default_rng(0).standard_normal((1, 2, 2, 3))
    (gx,) = mg.grad(F.max_pool2d(xt, 2), xt, grad_outputs=mg.tensor(g))
    expected = np.zeros_like(x)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                win = x[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                hit = win == win.max()
                expected[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2] += hit * g[0, c, i, j] / hit.sum()
    np.testing.assert_array_equal(np.isfinite(gx.data), True)
    np.testing.assert_allclose(gx.data, expected, rtol=1e-14, atol=0)
