"""minigrad.functional beyond conv/pool: activations, losses, linear, batch norm, dropout.

Forward values against NumPy formulas, first and second derivatives against finite
differences (one table), the exact cross-entropy Hessian, and the error messages."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import gradcheck, gradgradcheck


def t64(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def randn(*shape, seed=0, requires_grad=True):
    return t64(np.random.default_rng(seed).standard_normal(shape), requires_grad)


def log_softmax_ref(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ------------------------------------------------------------------------------- forward
def test_reexported_activations_are_the_engine_ops():
    assert F.relu is mg.relu and F.tanh is mg.tanh and F.sigmoid is mg.sigmoid
    assert F.softplus is mg.softplus and F.leaky_relu is mg.leaky_relu


def test_log_softmax_and_softmax():
    z = np.random.default_rng(0).standard_normal((3, 5)) * 10
    np.testing.assert_allclose(F.log_softmax(t64(z)).numpy(), log_softmax_ref(z), rtol=1e-12)
    p = F.softmax(t64(z), axis=0).numpy()
    np.testing.assert_allclose(p, np.exp(log_softmax_ref(z.T)).T, rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_and_nll_match_numpy(reduction):
    z = np.random.default_rng(1).standard_normal((6, 4)) * 3
    y = np.array([0, 3, 1, 1, 2, 0])
    per = -log_softmax_ref(z)[np.arange(6), y]
    ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    for labels in (y, y.tolist(), mg.tensor(y)):
        np.testing.assert_allclose(F.cross_entropy(t64(z), labels, reduction).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(F.nll_loss(t64(log_softmax_ref(z)), y, reduction).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype)
    loss = F.cross_entropy(mg.tensor(z, requires_grad=True), [0, 2, 1], reduction="none")
    np.testing.assert_array_equal(loss.numpy(), np.array([0.0, 1e4 + np.log(2), np.log(3)], dtype))
    z_t = mg.tensor(z, requires_grad=True)
    F.cross_entropy(z_t, [0, 2, 1]).backward()
    assert np.isfinite(z_t.grad.numpy()).all()


def test_fused_cross_entropy_agrees_with_log_softmax_plus_nll():
    z0 = np.random.default_rng(5).standard_normal((5, 7)).astype(np.float32)
    y = [6, 0, 3, 3, 1]
    za, zb = mg.tensor(z0, requires_grad=True), mg.tensor(z0, requires_grad=True)
    la, lb = F.cross_entropy(za, y), F.nll_loss(F.log_softmax(za * 1.0), y)
    np.testing.assert_allclose(la.numpy(), lb.numpy(), rtol=1e-6)
    F.cross_entropy(za, y).backward()
    F.nll_loss(F.log_softmax(zb), y).backward()
    assert za.grad.dtype == np.float32
    np.testing.assert_allclose(za.grad.numpy(), zb.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_mse_loss():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    np.testing.assert_allclose(F.mse_loss(t64(a), t64(b)).numpy(), ((a - b) ** 2).mean())
    np.testing.assert_allclose(F.mse_loss(t64(a), b, "sum").numpy(), ((a - b) ** 2).sum())
    np.testing.assert_allclose(F.mse_loss(t64(a), b, "none").numpy(), (a - b) ** 2)


def test_linear():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    np.testing.assert_allclose(F.linear(t64(x), t64(w), t64(b)).numpy(), x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(F.linear(t64(x[0, 0]), t64(w)).numpy(), x[0, 0] @ w.T, rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 5)])
def test_batch_norm_training_and_running_stats(shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, 3) + (1,) * (len(shape) - 2)

    def ref(mu, var):
        c = [a.reshape(bshape) for a in (mu, var, w, b)]
        return (x - c[0]) / np.sqrt(c[1] + 1e-5) * c[2] + c[3]

    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    y = F.batch_norm(t64(x), rm, rv, t64(w), t64(b), training=True, momentum=0.2)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    np.testing.assert_allclose(y.numpy(), ref(mu, var), rtol=1e-10)
    n = x.size // 3
    np.testing.assert_allclose(rm, 0.8 * 0.5 + 0.2 * mu, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.8 * 2.0 + 0.2 * var * n / (n - 1), rtol=1e-12)
    # evaluation uses (and does not change) the running stats
    before = rm.copy(), rv.copy()
    y = F.batch_norm(t64(x), rm, rv, t64(w), t64(b), training=False)
    np.testing.assert_allclose(y.numpy(), ref(rm, rv), rtol=1e-10)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])


def test_batch_norm_float32_running_stats_and_none():
    x = mg.tensor(np.random.default_rng(4).standard_normal((5, 2)).astype(np.float32))
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    y = F.batch_norm(x, rm, rv, training=True)
    assert y.dtype == np.float32 and rm.dtype == np.float32 and rm.any()
    y = F.batch_norm(x, None, None, training=True)  # no running stats kept
    np.testing.assert_allclose(y.numpy().mean(axis=0), 0, atol=1e-6)


def test_dropout_mask_statistics_seed_and_scaling():
    x = mg.ones(200, 500)
    y = F.dropout(x, 0.3, rng=np.random.default_rng(0)).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 100000 draws: std of the fraction is 0.0014
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert y.dtype == np.float32
    again = F.dropout(x, 0.3, rng=np.random.default_rng(0)).numpy()
    np.testing.assert_array_equal(y, again)
    assert not np.array_equal(y, F.dropout(x, 0.3, rng=np.random.default_rng(1)).numpy())
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0, rng=np.random.default_rng(0)) is x
    assert F.dropout(x, 0.5).shape == x.shape  # rng=None: a fresh unseeded generator


# ------------------------------------------------------------- derivatives, from one table
LABELS = np.array([0, 3, 1])

GRAD_CASES = {
    "log_softmax": (lambda z: F.log_softmax(z), [randn(3, 4)]),
    "softmax": (lambda z: F.softmax(z), [randn(3, 4)]),
    "softmax axis0": (lambda z: F.softmax(z, axis=0), [randn(3, 4)]),
    "linear x,w,b": (F.linear, [randn(3, 4, seed=1), randn(2, 4, seed=2), randn(2, seed=3)]),
    "linear 3-D, no bias": (F.linear, [randn(2, 2, 3, seed=1), randn(2, 3, seed=2)]),
    "mse_loss, both": (F.mse_loss, [randn(2, 3, seed=1), randn(2, 3, seed=2)]),
    "batch_norm 2-D": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                       [randn(4, 3, seed=5), randn(3, seed=6), randn(3, seed=7)]),
    "batch_norm 4-D": (lambda x, w, b: F.batch_norm(x, np.zeros(2), np.ones(2), w, b, training=True),
                       [randn(2, 2, 2, 3, seed=5), randn(2, seed=6), randn(2, seed=7)]),
    "batch_norm eval": (lambda x, w, b: F.batch_norm(x, np.full(3, 0.2), np.full(3, 1.5), w, b),
                        [randn(4, 3, seed=5), randn(3, seed=6), randn(3, seed=7)]),
    "dropout fixed mask": (lambda x: F.dropout(x, 0.4, rng=np.random.default_rng(0)), [randn(3, 4)]),
}
for _r in ("mean", "sum", "none"):
    GRAD_CASES[f"cross_entropy {_r}"] = (lambda z, r=_r: F.cross_entropy(z, LABELS, r), [randn(3, 4)])
    GRAD_CASES[f"nll_loss {_r}"] = (lambda z, r=_r: F.nll_loss(z, LABELS, r), [randn(3, 4)])
    GRAD_CASES[f"mse_loss {_r}"] = (lambda x, r=_r: F.mse_loss(x, np.ones((2, 3)), r), [randn(2, 3)])


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradcheck(name):
    fn, inputs = GRAD_CASES[name]
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradgradcheck(name):
    fn, inputs = GRAD_CASES[name]
    assert gradgradcheck(fn, inputs)


def test_cross_entropy_hessian_is_diag_p_minus_ppT_over_n():
    n, c = 3, 4
    z = randn(n, c, seed=9)
    loss = F.cross_entropy(z, LABELS)
    (g,) = mg.grad(loss, z, create_graph=True)
    rows = []
    for k in range(n * c):  # row k of the Hessian: d g_k / d z
        e = np.zeros(n * c)
        e[k] = 1.0
        (h,) = mg.grad(g, z, grad_outputs=t64(e.reshape(n, c)), retain_graph=True)
        rows.append(h.numpy().ravel())
    hess = np.array(rows)
    p = np.exp(log_softmax_ref(z.numpy()))
    expected = np.zeros((n * c, n * c))
    for i in range(n):
        expected[i * c:(i + 1) * c, i * c:(i + 1) * c] = (np.diag(p[i]) - np.outer(p[i], p[i])) / n
    np.testing.assert_allclose(hess, expected, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------- errors
def test_loss_errors():
    z = t64(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be in \[0, 4\) for input shape "
                                         r"\(3, 4\), got 4 at index 1"):
        F.cross_entropy(z, [0, 4, 1])
    with pytest.raises(ValueError, match=r"nll_loss: labels must be in \[0, 4\).*got -1 at index 2"):
        F.nll_loss(z, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must have shape \(3,\) to match input "
                                         r"shape \(3, 4\), got \(2,\)"):
        F.cross_entropy(z, [0, 1])
    with pytest.raises(TypeError, match=r"cross_entropy: labels must be integers, got dtype float64"):
        F.cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: input must be 2-D \(N, C\), got shape \(4,\)"):
        F.cross_entropy(t64(np.zeros(4)), [1])
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                                         r"got 'avg'"):
        F.cross_entropy(z, [0, 1, 2], reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3, 4\) and target shape \(4,\) differ"):
        F.mse_loss(z, np.zeros(4))


def test_linear_errors():
    with pytest.raises(ValueError, match=r"linear: input has 3 features but weight expects 4 "
                                         r"\(input shape \(2, 3\), weight shape \(5, 4\)\)"):
        F.linear(t64(np.zeros((2, 3))), t64(np.zeros((5, 4))))
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(5,\), got \(4,\)"):
        F.linear(t64(np.zeros((2, 4))), t64(np.zeros((5, 4))), t64(np.zeros(4)))


def test_dropout_errors():
    x = mg.ones(3)
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"dropout: p must be in \[0, 1\), got p={p}"):
            F.dropout(x, p)
    with pytest.raises(TypeError, match=r"dropout: p must be a number"):
        F.dropout(x, "0.5")
    with pytest.raises(TypeError, match=r"dropout: rng must be a numpy.random.Generator or None, got int"):
        F.dropout(x, 0.5, rng=0)


def test_batch_norm_errors():
    x = t64(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\) for input "
                                         r"shape \(4, 3\), got \(2,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(3), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\)"):
        F.batch_norm(x, np.zeros(3), np.ones(3), weight=t64(np.ones(4)))
    with pytest.raises(ValueError, match=r"batch_norm: input must be \(N, C\) or \(N, C, H, W\), "
                                         r"got shape \(4, 3, 2\)"):
        F.batch_norm(t64(np.zeros((4, 3, 2))), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: evaluation \(training=False\) needs running_mean"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value per channel, "
                                         r"got input shape \(1, 3\)"):
        F.batch_norm(t64(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(TypeError, match=r"batch_norm: running_var must be an array .* got list"):
        F.batch_norm(x, np.zeros(3), [1.0, 1.0, 1.0])
