"""minigrad.curvature products and operators against dense float64 references built independently:
the Hessian by central differences of the gradient, the GGN as J^T H_L J with J row by row and
H_L in closed form, the empirical Fisher by a loop over examples (curvlinops / BackPACK style)."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.curvature import (FisherOperator, GGNOperator, HessianOperator, fisher_vp, ggn_vp,
                                hvp)


class Model:
    """A small float64 classifier: `forward(params) -> logits (N, C)`, labels, MSE targets."""

    def __init__(self, kind, seed):
        rng = np.random.default_rng(seed)
        if kind == "mlp":  # 3-4-3 tanh, 31 params
            self.X = mg.tensor(rng.standard_normal((10, 3)))
            shapes = [(4, 3), (4,), (3, 4), (3,)]
        else:  # conv 2->2, 3x3, stride 2, padding 1 on 5x5 -> 3x3; tanh; linear head; 95 params
            self.X = mg.tensor(rng.standard_normal((4, 2, 5, 5)))
            shapes = [(2, 2, 3, 3), (2,), (3, 18), (3,)]
        self.kind = kind
        self.params = [mg.tensor(rng.standard_normal(s) * 0.7, requires_grad=True) for s in shapes]
        n = self.X.shape[0]
        self.labels = rng.integers(0, 3, n)
        self.targets = rng.standard_normal((n, 3))

    def forward(self, params):
        W1, b1, W2, b2 = params
        if self.kind == "mlp":
            h = F.linear(self.X, W1, b1).tanh()
        else:
            h = F.conv2d(self.X, W1, b1, stride=2, padding=1).tanh().flatten(1)
        return F.linear(h, W2, b2)

    def loss(self, outputs, loss="cross_entropy"):
        if loss == "mse":
            return F.mse_loss(outputs, mg.tensor(self.targets))
        return F.cross_entropy(outputs, self.labels)

    def graph(self, loss="cross_entropy"):
        outputs = self.forward(self.params)
        return self.loss(outputs, loss), outputs

    @property
    def n(self):
        return sum(p.size for p in self.params)

    def unflatten(self, flat, requires_grad=False):
        out, start = [], 0
        for p in self.params:
            out.append(mg.tensor(flat[start:start + p.size].reshape(p.shape), requires_grad=requires_grad))
            start += p.size
        return out

    def flat_grad(self, w, loss="cross_entropy"):
        ps = self.unflatten(w, requires_grad=True)
        return flat(mg.grad(self.loss(self.forward(ps), loss), ps))


def flat(tensors):
    return np.concatenate([t.numpy().ravel() for t in tensors])


def fd_hessian(model, eps=1e-5):
    w = flat(model.params)
    eye = np.eye(w.size)
    return np.stack([(model.flat_grad(w + eps * e) - model.flat_grad(w - eps * e)) / (2 * eps)
                     for e in eye], axis=1)


def jacobian(model):
    """J (N*C, n), one row per output element, each by its own backward."""
    outputs = model.forward(model.params)
    n, c = outputs.shape
    return np.stack([flat(mg.grad(outputs[i, k], model.params, retain_graph=True))
                     for i in range(n) for k in range(c)])


def ce_output_hessian(model):
    """H_L of mean cross-entropy: block diagonal, (diag(p_i) - p_i p_i^T) / N per example."""
    z = model.forward(model.params).numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    blocks = [np.diag(pi) - np.outer(pi, pi) for pi in p]
    n, c = z.shape
    H = np.zeros((n * c, n * c))
    for i, b in enumerate(blocks):
        H[i * c:(i + 1) * c, i * c:(i + 1) * c] = b / n
    return H


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def model(request):
    return Model(request.param, seed=0 if request.param == "mlp" else 1)


@pytest.fixture(scope="module")
def mlp():
    return Model("mlp", seed=2)


def random_vectors(model, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(model.n)
    return v, model.unflatten(v)


# ------------------------------------------------------------------------------ Hessian
def test_hessian_matches_finite_differences(model):
    H_fd = fd_hessian(model)
    loss, _ = model.graph()
    op = HessianOperator(loss, model.params)
    H = op.dense()
    assert op.shape == (model.n, model.n) and op.calls == model.n
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-8)
    v, vs = random_vectors(model, 3)
    np.testing.assert_allclose(flat(op.matvec(vs)), H_fd @ v, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(flat(hvp(loss, model.params, vs)), H @ v, rtol=1e-10, atol=1e-12)


def test_hessian_operator_retains_the_graph_and_counts(mlp):
    loss, _ = mlp.graph()
    op = HessianOperator(loss, mlp.params)
    _, vs = random_vectors(mlp, 4)
    first, second = flat(op.matvec(vs)), flat(op.matvec(vs))
    np.testing.assert_array_equal(first, second)
    assert op.calls == 2
    # hvp keeps the loss graph too: again on the same loss, and a plain gradient afterwards.
    np.testing.assert_array_equal(flat(hvp(loss, mlp.params, vs)), first)
    np.testing.assert_array_equal(flat(hvp(loss, mlp.params, vs)), first)
    mg.grad(loss, mlp.params)


def test_to_scipy_and_flat_products_agree(mlp):
    loss, _ = mlp.graph()
    op = HessianOperator(loss, mlp.params)
    v, vs = random_vectors(mlp, 5)
    expected = flat(op.matvec(vs))
    np.testing.assert_allclose(op.matvec_flat(v), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(op @ v, expected, rtol=1e-14, atol=1e-15)
    lin = op.to_scipy()
    assert lin.shape == op.shape and lin.dtype == np.float64
    np.testing.assert_allclose(lin.matvec(v), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(lin.matvec(v.reshape(-1, 1)).ravel(), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(op.flatten(op.unflatten(v)), v)
    assert op.calls == 5


def test_float32_operator_keeps_its_dtype_and_scipy_sees_float64(mlp):
    ps = [mg.tensor(p.numpy().astype(np.float32), requires_grad=True) for p in mlp.params]
    X = mg.tensor(mlp.X.numpy().astype(np.float32))
    outputs = F.linear(F.linear(X, ps[0], ps[1]).tanh(), ps[2], ps[3])
    op = HessianOperator(F.cross_entropy(outputs, mlp.labels), ps)
    v = np.random.default_rng(6).standard_normal(op.shape[0])
    assert op.dtype == np.float32 and op.matvec_flat(v.astype(np.float32)).dtype == np.float32
    assert all(t.dtype == np.float32 for t in op.matvec(op.unflatten(v)))
    y = op.to_scipy().matvec(v)
    assert y.dtype == np.float64
    loss64, _ = mlp.graph()
    np.testing.assert_allclose(y, HessianOperator(loss64, mlp.params).matvec_flat(v), rtol=1e-4, atol=1e-5)


def test_a_loss_linear_in_a_parameter_has_zero_curvature_there():
    rng = np.random.default_rng(7)
    w, x = (mg.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    c = mg.tensor(rng.standard_normal(3))
    loss = (w * c).sum() + (x ** 3).sum()  # dL/dw = c is a constant: no graph to differentiate
    vw, vx = rng.standard_normal(3), rng.standard_normal(3)
    hw, hx = hvp(loss, [w, x], [vw, vx])
    np.testing.assert_array_equal(hw.data, 0)
    np.testing.assert_allclose(hx.data, 6 * x.data * vx, rtol=1e-14)


# ------------------------------------------------------------------------------ GGN and Fisher
def test_ggn_matches_jacobian_construction(model):
    J = jacobian(model)
    G_ref = J.T @ ce_output_hessian(model) @ J
    loss, outputs = model.graph()
    G = GGNOperator(loss, outputs, model.params).dense()
    np.testing.assert_allclose(G, G_ref, rtol=1e-9, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-12  # PSD: cross-entropy is convex in the logits
    v, vs = random_vectors(model, 8)
    np.testing.assert_allclose(flat(ggn_vp(loss, outputs, model.params, vs)), G_ref @ v,
                               rtol=1e-9, atol=1e-12)


def test_ggn_equals_hessian_for_a_linear_model_with_mse():
    rng = np.random.default_rng(9)
    X, T = mg.tensor(rng.standard_normal((8, 4))), mg.tensor(rng.standard_normal((8, 3)))
    W, b = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True), mg.tensor(rng.standard_normal(3), requires_grad=True)
    outputs = F.linear(X, W, b)
    loss = F.mse_loss(outputs, T)
    vs = [rng.standard_normal((3, 4)), rng.standard_normal(3)]
    np.testing.assert_allclose(flat(ggn_vp(loss, outputs, [W, b], vs)), flat(hvp(loss, [W, b], vs)),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(GGNOperator(loss, outputs, [W, b]).dense(),
                               HessianOperator(loss, [W, b]).dense(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_true_fisher_equals_the_ggn(mlp, loss_name):
    loss, outputs = mlp.graph(loss_name)
    _, vs = random_vectors(mlp, 10)
    np.testing.assert_allclose(flat(fisher_vp(outputs, mlp.params, vs, loss=loss_name)),
                               flat(ggn_vp(loss, outputs, mlp.params, vs)), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(FisherOperator(outputs, mlp.params, loss=loss_name).dense(),
                               GGNOperator(loss, outputs, mlp.params).dense(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_empirical_fisher_matches_a_loop_over_examples(mlp, loss_name):
    labels = mlp.labels if loss_name == "cross_entropy" else mlp.targets
    gs = []
    for i in range(mlp.X.shape[0]):  # g_i: gradient of example i's own loss
        out_i = mlp.forward(mlp.params)[i:i + 1]
        loss_i = F.cross_entropy(out_i, labels[i:i + 1]) if loss_name == "cross_entropy" \
            else F.mse_loss(out_i, mg.tensor(labels[i:i + 1]))
        gs.append(flat(mg.grad(loss_i, mlp.params)))
    gs = np.stack(gs)
    loss, outputs = mlp.graph(loss_name)
    np.testing.assert_allclose(gs.mean(0), flat(mg.grad(loss, mlp.params, retain_graph=True)),
                               rtol=1e-10, atol=1e-14)  # the mean of the l_i is the loss
    F_ref = gs.T @ gs / len(gs)
    v, vs = random_vectors(mlp, 11)
    got = fisher_vp(outputs, mlp.params, vs, labels=labels, loss=loss_name, kind="empirical")
    np.testing.assert_allclose(flat(got), F_ref @ v, rtol=1e-10, atol=1e-13)
    op = FisherOperator(outputs, mlp.params, labels=labels, loss=loss_name, kind="empirical")
    np.testing.assert_allclose(op.dense(), F_ref, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------ errors
def test_mismatched_vectors_are_value_errors_naming_the_operator(mlp):
    loss, outputs = mlp.graph()
    op = HessianOperator(loss, mlp.params)
    _, vs = random_vectors(mlp, 12)
    with pytest.raises(ValueError, match=r"HessianOperator.matvec: got 3 vectors for 4 params"):
        op.matvec(vs[:3])
    bad = vs[:1] + [np.zeros(5)] + vs[2:]
    with pytest.raises(ValueError, match=r"HessianOperator.matvec: vectors\[1\] has shape \(5,\), "
                                         r"expected \(4,\)"):
        op.matvec(bad)
    with pytest.raises(ValueError, match=r"GGNOperator.matvec: vectors\[1\]"):
        GGNOperator(loss, outputs, mlp.params).matvec(bad)
    with pytest.raises(ValueError, match=r"ggn_vp: vectors\[1\]"):
        ggn_vp(loss, outputs, mlp.params, bad)
    with pytest.raises(ValueError, match=r"hvp: got 3 vectors"):
        hvp(loss, mlp.params, vs[:3])
    with pytest.raises(ValueError, match=r"HessianOperator: a flat vector must have shape \(31,\)"):
        op.matvec_flat(np.zeros(30))
    assert op.calls == 0


def test_bad_arguments_are_value_errors(mlp):
    loss, outputs = mlp.graph()
    with pytest.raises(ValueError, match="HessianOperator: loss must be a scalar"):
        HessianOperator(outputs, mlp.params)
    with pytest.raises(ValueError, match=r"HessianOperator: params\[0\] must be a Tensor that requires grad"):
        HessianOperator(loss, [mlp.X])
    with pytest.raises(ValueError, match="FisherOperator: kind must be one of"):
        FisherOperator(outputs, mlp.params, kind="observed")
    with pytest.raises(ValueError, match="fisher_vp: loss must be one of"):
        fisher_vp(outputs, mlp.params, mlp.params, loss="hinge")
    with pytest.raises(ValueError, match="FisherOperator: kind='empirical' needs the labels"):
        FisherOperator(outputs, mlp.params, kind="empirical")
    with pytest.raises(ValueError, match=r"FisherOperator: targets have shape \(10, 2\)"):
        FisherOperator(outputs, mlp.params, labels=np.zeros((10, 2)), loss="mse", kind="empirical")
