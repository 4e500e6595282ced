"""Hessian-vector products by double backward are exact: against closed-form Hessians,
finite differences of gradients, and a dense Hessian built column by column (float64)."""
import numpy as np
import pytest

import minigrad as mg


def hvp(loss_fn, params, vectors):
    """H v = d/dp (grad(loss) . v), by double backward."""
    loss = loss_fn(*params)
    grads = mg.grad(loss, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return mg.grad(dot, params)


def param(rng, *shape):
    return mg.tensor(rng.standard_normal(shape), requires_grad=True)


def test_quadratic_form():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    x = param(rng, 5)
    v = rng.standard_normal(5)
    (hv,) = hvp(lambda x: x @ mg.tensor(A) @ x, [x], [mg.tensor(v)])
    np.testing.assert_allclose(hv.data, (A + A.T) @ v, rtol=1e-12, atol=1e-12)


def test_logistic_regression():
    rng = np.random.default_rng(1)
    n, d = 40, 6
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 0.5).astype(np.float64)
    w = param(rng, d)

    def loss(w):
        z = mg.tensor(X) @ w
        # mean binary cross-entropy: softplus(z) - y z
        return (mg.softplus(z) - z * mg.tensor(y)).mean()

    p = 1 / (1 + np.exp(-(X @ w.data)))
    H = X.T @ np.diag(p * (1 - p)) @ X / n
    v = rng.standard_normal(d)
    (hv,) = hvp(loss, [w], [mg.tensor(v)])
    np.testing.assert_allclose(hv.data, H @ v, rtol=1e-10, atol=1e-12)


def softmax_ce(logits, labels):
    n = logits.shape[0]
    picked = logits[np.arange(n), labels]
    return (logits.logsumexp(axis=1) - picked).mean()


def test_softmax_cross_entropy_of_a_linear_model():
    rng = np.random.default_rng(2)
    n, d, c = 20, 4, 3
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, c, n)
    W = param(rng, c, d)
    z = X @ W.data.T
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    # H = 1/n sum_i (diag(p_i) - p_i p_i^T) (x) x_i x_i^T, with W flattened row-major (class, feature).
    H = sum(np.kron(np.diag(P[i]) - np.outer(P[i], P[i]), np.outer(X[i], X[i])) for i in range(n)) / n
    V = rng.standard_normal((c, d))
    (hv,) = hvp(lambda W: softmax_ce(mg.tensor(X) @ W.T, labels), [W], [mg.tensor(V)])
    np.testing.assert_allclose(hv.data.ravel(), H @ V.ravel(), rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_with_huge_logits_stays_finite():
    logits = mg.tensor(np.array([[1e4, -1e4, 0.0], [5e3, 5e3, -1e4]]), requires_grad=True)
    loss = softmax_ce(logits, np.array([1, 0]))
    (g,) = mg.grad(loss, logits, create_graph=True)
    (h,) = mg.grad((g * g).sum(), logits)
    assert np.isfinite(loss.item()) and np.isfinite(g.data).all() and np.isfinite(h.data).all()
    np.testing.assert_allclose(loss.item(), (2e4 + np.log(2)) / 2, rtol=1e-12)


class TanhMLP:
    """A 2-layer tanh MLP with softmax cross-entropy, float64."""

    def __init__(self, seed=3, n=12, d=3, h=4, c=3):
        rng = np.random.default_rng(seed)
        self.X = mg.tensor(rng.standard_normal((n, d)))
        self.labels = rng.integers(0, c, n)
        self.params = [param(rng, h, d), param(rng, h), param(rng, c, h), param(rng, c)]

    def loss(self, W1, b1, W2, b2):
        hidden = (self.X @ W1.T + b1).tanh()
        return softmax_ce(hidden @ W2.T + b2, self.labels)

    def flat_grad(self, flat):
        ps = self.unflatten(flat)
        return np.concatenate([g.data.ravel() for g in mg.grad(self.loss(*ps), ps)])

    def unflatten(self, flat):
        out, start = [], 0
        for p in self.params:
            out.append(mg.tensor(flat[start:start + p.size].reshape(p.shape), requires_grad=True))
            start += p.size
        return out

    def flat_params(self):
        return np.concatenate([p.data.ravel() for p in self.params])

    def hvp_flat(self, v):
        vs = [mg.tensor(piece) for piece in self.unflatten(v)]
        return np.concatenate([h.data.ravel() for h in hvp(self.loss, self.params, vs)])


@pytest.fixture(scope="module")
def mlp():
    return TanhMLP()


def test_mlp_hvp_matches_finite_difference_of_gradients(mlp):
    rng = np.random.default_rng(4)
    w = mlp.flat_params()
    for _ in range(3):
        v = rng.standard_normal(w.size)
        eps = 1e-5
        fd = (mlp.flat_grad(w + eps * v) - mlp.flat_grad(w - eps * v)) / (2 * eps)
        np.testing.assert_allclose(mlp.hvp_flat(v), fd, rtol=1e-6, atol=1e-8)


def test_mlp_dense_hessian_column_by_column(mlp):
    w = mlp.flat_params()
    n = w.size
    eye = np.eye(n)
    H = np.stack([mlp.hvp_flat(eye[j]) for j in range(n)], axis=1)
    eps = 1e-5
    H_fd = np.stack([(mlp.flat_grad(w + eps * eye[j]) - mlp.flat_grad(w - eps * eye[j])) / (2 * eps)
                     for j in range(n)], axis=1)
    np.testing.assert_allclose(H, H.T, atol=1e-12)  # exact Hessians are symmetric
    np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-8)
    v = np.random.default_rng(5).standard_normal(n)
    np.testing.assert_allclose(mlp.hvp_flat(v), H @ v, rtol=1e-10, atol=1e-12)
