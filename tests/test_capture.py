"""minigrad.nn.capture: K-FAC factors, per-example gradient norms, the noise scale, hooks.

References are built without the capture code: every example run alone through the model, its
own loss differentiated with minigrad.grad, patches cut out by explicit loops, and Gauss-Newton
blocks assembled from explicit Jacobians (rows from minigrad.grad) in float64.
"""
import math

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.nn import (CaptureStats, NoiseScale, capture, gradient_noise_scale,
                         gradient_noise_scale_two_batches)

f64 = np.float64


def t(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=f64), requires_grad=requires_grad)


def params_of(layer):
    return [layer.weight] + ([layer.bias] if layer.bias is not None else [])


def flat_param_grad(layer, grads):
    """[W.reshape(O, -1), b] row-major from the gradients of W (and b)."""
    gw = grads[0].numpy().reshape(layer.weight.shape[0], -1)
    if layer.bias is not None:
        gw = np.concatenate([gw, grads[1].numpy()[:, None]], axis=1)
    return gw.reshape(-1)


# -------------------------------------------------------------------- independent references
def loop_patches(x1, layer):
    """(T, C*kh*kw) patches of one (C, H, W) image by explicit loops; t = oh * OW + ow."""
    kh, kw = layer.kernel_size
    sh, sw = (layer.stride, layer.stride) if isinstance(layer.stride, int) else layer.stride
    ph, pw = (layer.padding, layer.padding) if isinstance(layer.padding, int) else layer.padding
    xp = np.pad(x1, ((0, 0), (ph, ph), (pw, pw)))
    oh_n, ow_n = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    return np.stack([xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(-1)
                     for i in range(oh_n) for j in range(ow_n)])


def out_locations(layer, s):
    """One example's output (or output gradient) as (T, O)."""
    if isinstance(layer, nn.Conv2d):
        return s[0].reshape(s.shape[1], -1).T
    return s.reshape(-1, s.shape[-1])


def in_locations(layer, a, s):
    """One example's layer input as (T, D) (loop patches for conv), checked against its output s."""
    if isinstance(layer, nn.Conv2d):
        patches = loop_patches(a[0], layer)
        w = layer.weight.numpy().reshape(layer.weight.shape[0], -1)
    else:
        patches, w = a.reshape(-1, a.shape[-1]), layer.weight.numpy()
    b = layer.bias.numpy() if layer.bias is not None else 0.0
    np.testing.assert_allclose(patches @ w.T + b, out_locations(layer, s), atol=1e-12)
    return patches


def per_example_reference(model, layers, x, own_loss):
    """Run each example alone; return per layer the K-FAC factors (A, G) of the module docstring
    and the (N, P) per-example gradients of [W, b], from each example's own loss."""
    n_ex = x.shape[0]
    acc = {id(l): [0.0, 0.0, 0, []] for l in layers}      # A sum, G sum, locations, grads
    for n in range(n_ex):
        seen = {id(l): [] for l in layers}
        handles = [l.register_forward_hook(lambda m, i, o, seen=seen: seen[id(m)].append((i[0].numpy(), o)))
                   for l in layers]
        try:
            out = model(t(x[n:n + 1]))
        finally:
            for h in handles:
                h.remove()
        loss = own_loss(out, n)
        outputs = [o for l in layers for _, o in seen[id(l)]]
        params = [p for l in layers for p in params_of(l)]
        grads = mg.grad(loss, outputs + params)
        d_out, d_par = list(grads[:len(outputs)]), list(grads[len(outputs):])
        for l in layers:
            entry = acc[id(l)]
            for a, o in seen[id(l)]:
                patches = in_locations(l, a, o.numpy())
                d = out_locations(l, d_out.pop(0).numpy())
                if l.bias is not None:
                    patches = np.concatenate([patches, np.ones((len(patches), 1))], axis=1)
                entry[0] = entry[0] + patches.T @ patches
                entry[1] = entry[1] + d.T @ d
                if n == 0:
                    entry[2] += len(patches)
            k = len(params_of(l))
            entry[3].append(flat_param_grad(l, d_par[:k]))
            del d_par[:k]
    result = {}
    for l in layers:
        a_sum, g_sum, locations, grads = acc[id(l)]
        result[id(l)] = (a_sum / (n_ex * locations), g_sum / n_ex, np.stack(grads))
    return result


def ce_own_loss(labels):
    return lambda out, n: F.cross_entropy(out, labels[n:n + 1])


# ------------------------------------------------------------------------------- models
def mlp():
    return nn.Sequential(nn.Linear(4, 6, rng=0, dtype=f64), nn.Tanh(),
                         nn.Linear(6, 5, bias=False, rng=1, dtype=f64), nn.ReLU(),
                         nn.Linear(5, 3, rng=2, dtype=f64))


def convnet():
    # conv1: (7, 8) -> stride 2, padding 1 -> (4, 4); conv2: stride (1, 2), padding (1, 0) -> (5, 2)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=0, dtype=f64), nn.Tanh(),
                         nn.Conv2d(3, 4, 2, stride=(1, 2), padding=(1, 0), bias=False, rng=1, dtype=f64),
                         nn.Flatten(), nn.Linear(40, 3, rng=2, dtype=f64))


class SharedSeq(nn.Module):
    """A Linear on sequences (N, L, 3) called twice (weight sharing), then one more on sequences."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 3, rng=0, dtype=f64)
        self.seq = nn.Linear(3, 4, rng=1, dtype=f64)
        self.head = nn.Linear(4, 2, bias=False, rng=2, dtype=f64)

    def forward(self, x):
        h = self.shared(self.shared(x).tanh()).tanh()
        return self.head(self.seq(h).tanh().mean(axis=1))


CASES = {
    "mlp": (mlp, (7, 4)),
    "conv": (convnet, (4, 2, 7, 8)),
    "shared_seq": (SharedSeq, (5, 4, 3)),
}


def run_case(name, seed=0):
    make, shape = CASES[name]
    model = make()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    labels = rng.integers(0, 3 if name != "shared_seq" else 2, shape[0])
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with capture(model) as stats:
        loss = F.cross_entropy(model(t(x)), labels)
        loss.backward()
    ref = per_example_reference(model, layers, x, ce_own_loss(labels))
    return model, layers, stats, ref


# ---------------------------------------------------------------------- factors vs brute force
@pytest.mark.parametrize("case", list(CASES))
def test_kfac_factors_match_per_example_loop(case):
    _, layers, stats, ref = run_case(case)
    assert any(l.bias is None for l in layers) and any(l.bias is not None for l in layers)
    for layer in layers:
        A, G = stats.kfac_factors(layer)
        A_ref, G_ref, _ = ref[id(layer)]
        assert A.shape == A_ref.shape and G.shape == G_ref.shape
        np.testing.assert_allclose(A, A_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(G, G_ref, rtol=1e-10, atol=1e-14)
        # the last row/column of A is the homogeneous coordinate: mean of a~ and a 1 in the corner
        if layer.bias is not None:
            assert A[-1, -1] == pytest.approx(1.0)


@pytest.mark.parametrize("case", list(CASES))
def test_grad_matrix_is_the_parameter_gradient(case):
    _, layers, stats, _ = run_case(case)
    for layer in layers:
        expected = flat_param_grad(layer, [p.grad for p in params_of(layer)])
        np.testing.assert_allclose(stats.grad_matrix(layer).reshape(-1), expected, atol=1e-13)


# ---------------------------------------------------------------- exactness against dense GGN
def jacobian_rows(output, layer):
    """d output.flat[k] / d theta, theta = [W.reshape(O, -1), b] row-major, one row per k."""
    rows = []
    for k in range(output.data.size):
        seed = np.zeros(output.shape)
        seed.flat[k] = 1.0
        grads = mg.grad(output, params_of(layer), grad_outputs=t(seed), retain_graph=True)
        rows.append(flat_param_grad(layer, grads))
    return np.stack(rows)


def test_single_linear_softmax_kfac_equals_exact_ggn():
    """One example, softmax cross-entropy: kron(G, A) with G from E_y[d d^T] = diag(p) - p p^T
    (backward of each class's loss weighted by sqrt(p_c), summed) is the exact GGN block."""
    rng = np.random.default_rng(1)
    layer = nn.Linear(4, 3, rng=0, dtype=f64)
    x = t(rng.standard_normal((1, 4)))
    with capture(layer) as stats:
        z = layer(x)
        p = F.softmax(z, axis=1).numpy()[0]
        for c in range(3):
            loss_c = F.cross_entropy(z, np.array([c])) * math.sqrt(p[c])
            mg.grad(loss_c, params_of(layer), retain_graph=True)
    A, G = stats.kfac_factors(layer, backward="sum")
    np.testing.assert_allclose(G, np.diag(p) - np.outer(p, p), atol=1e-14)
    J = jacobian_rows(layer(x), layer)
    ggn = J.T @ (np.diag(p) - np.outer(p, p)) @ J
    np.testing.assert_allclose(np.kron(G, A), ggn, atol=1e-13)
    assert not np.allclose(np.kron(A, G), ggn)          # the documented order is the one that holds


def exact_output_hessian(model, x, target):
    """d^2 loss / d out^2 of the MSE loss by double backward (flattened), outside any capture."""
    out = model(x).detach().requires_grad_()
    (g,) = mg.grad(F.mse_loss(out, target), out, create_graph=True)
    rows = [mg.grad(g, out, grad_outputs=t(np.eye(out.data.size)[k].reshape(out.shape)),
                    retain_graph=True)[0].numpy().reshape(-1) for k in range(out.data.size)]
    return np.stack(rows)


def backprop_hessian_sqrt(out, hessian, params, scale=1.0):
    """Backward passes with the columns of a square root of `hessian` as output gradients."""
    vals, vecs = np.linalg.eigh(hessian)
    root = vecs * np.sqrt(np.clip(vals, 0, None))
    for k in range(root.shape[1]):
        mg.grad(out, params, grad_outputs=t(scale * root[:, k].reshape(out.shape)), retain_graph=True)


def test_deep_linear_network_kfac_equals_exact_block_diagonal_ggn():
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(3, 4, rng=0, dtype=f64), nn.Linear(4, 5, bias=False, rng=1, dtype=f64),
                        nn.Linear(5, 2, rng=2, dtype=f64))
    x, target = t(rng.standard_normal((1, 3))), t(rng.standard_normal((1, 2)))
    H = exact_output_hessian(net, x, target)
    np.testing.assert_allclose(H, np.eye(2), atol=1e-14)         # mse_loss mean over 2 outputs
    params = net.parameters()
    with capture(net) as stats:
        backprop_hessian_sqrt(net(x), H, params)
    out = net(x)
    for layer in net:
        A, G = stats.kfac_factors(layer, backward="sum")
        J = jacobian_rows(out, layer)
        np.testing.assert_allclose(np.kron(G, A), J.T @ H @ J, atol=1e-12)


def test_conv_kfc_scaling_is_exact_for_a_conv_output_with_squared_error():
    """A single Conv2d (stride 2, padding 1, bias) whose output is scored by MSE: the per-example
    output Hessian is c I, derivatives are spatially uncorrelated, and KFC is exact for any N and
    T = OH*OW. A factor T in the wrong place (or missing) breaks the equality."""
    rng = np.random.default_rng(3)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=0, dtype=f64)
    n_ex = 2
    x = t(rng.standard_normal((n_ex, 2, 5, 5)))
    target = t(rng.standard_normal((n_ex, 3, 3, 3)))
    per_example = 27                                           # O * OH * OW outputs per example
    h_n = 2.0 / per_example                                    # l_n = mean over its outputs
    with capture(conv) as stats:
        y = conv(x)
        for k in range(per_example):
            seed = np.zeros((n_ex, per_example))
            seed[:, k] = math.sqrt(h_n) / n_ex                 # (1/N) * column k of sqrt(H_n)
            mg.grad(y, params_of(conv), grad_outputs=t(seed.reshape(y.shape)), retain_graph=True)
    A, G = stats.kfac_factors(conv, backward="sum")
    # the same GGN from the loss itself: H of the mean loss over the batch, by double backward
    H = exact_output_hessian(conv, x, target)
    np.testing.assert_allclose(H, np.eye(n_ex * per_example) * h_n / n_ex, atol=1e-14)
    J = jacobian_rows(conv(x), conv)
    np.testing.assert_allclose(np.kron(G, A), J.T @ H @ J, atol=1e-13)
    mean_over_passes = stats.kfac_factors(conv, backward="mean")[1]
    np.testing.assert_allclose(mean_over_passes * per_example, G, atol=1e-14)


@pytest.mark.parametrize("channels, kernel, stride, padding, bias", [
    (8, 3, 1, 1, True),     # patches copied as rows (C kw >= 16), several cache-sized chunks
    (8, 3, 2, 0, False),
    (8, (3, 2), (1, 2), (0, 1), True),   # rows, a kernel that is not square (C kw = 16)
    (1, 5, 1, 2, True),     # as columns (LeNet-5's first convolution)
    (3, 3, 3, 0, True),     # as columns, fewer output pixels than patch values
    (3, (2, 3), (2, 1), (1, 0), True)])
def test_conv_factors_are_the_patch_sums_of_the_whole_batch(channels, kernel, stride, padding,
                                                            bias):
    """A Conv2d's factors, computed chunk by chunk from the patches, equal the dense formula on the
    whole batch's im2col array: A = mean over (n, t) of a~ a~^T, G = N sum over (n, t) of g g^T,
    summed over two calls of the layer (on images of two sizes) and two backward passes."""
    rng = np.random.default_rng(7)
    conv = nn.Conv2d(channels, 4, kernel, stride=stride, padding=padding, bias=bias, rng=0,
                     dtype=f64)
    images = [rng.standard_normal((40, channels, 12, 11)), rng.standard_normal((40, channels, 9, 9))]
    with capture(conv) as stats:
        outputs = [conv(t(x)) for x in images]
        loss = sum(((y * y).sum() for y in outputs), t(0.0))
        for scale in (1.0, 0.5):
            mg.grad(loss * scale, params_of(conv), retain_graph=True)
    patches = []
    for x in images:
        cols = F.im2col(t(x), conv.kernel_size, stride, padding).data
        n, c, kh, kw, oh, ow = cols.shape
        patches.append(cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1))
    a = np.concatenate(patches, axis=1)
    if bias:
        a = np.concatenate([a, np.ones(a.shape[:2] + (1,))], axis=2)
    a2 = a.reshape(-1, a.shape[2])
    A, G = stats.kfac_factors(conv, backward="sum")
    np.testing.assert_allclose(A, a2.T @ a2 / len(a2), rtol=1e-12, atol=1e-14)
    expected = 0
    for k in range(2):
        g = np.concatenate([gk.reshape(40, 4, -1) for gk in stats.output_grads(conv, k)], axis=2)
        expected = expected + 40 * np.einsum("not,npt->op", g, g)
    np.testing.assert_allclose(G, expected, rtol=1e-12)


# ----------------------------------------------------------- per-example norms and noise scale
@pytest.mark.parametrize("case", list(CASES))
def test_per_example_grad_norms_match_per_example_loop(case):
    _, layers, stats, ref = run_case(case)
    total = 0.0
    for layer in layers:
        expected = np.linalg.norm(ref[id(layer)][2], axis=1)
        for method in ("auto", "gram", "direct"):
            np.testing.assert_allclose(stats.per_example_grad_norms(layer, method=method), expected,
                                       rtol=1e-10)
        total = total + expected ** 2
    np.testing.assert_allclose(stats.per_example_grad_norms(squared=True), total, rtol=1e-10)
    # the noise scale of the batch, from the same exact per-example gradients
    X = np.concatenate([ref[id(l)][2] for l in layers], axis=1)
    B = X.shape[0]
    trace = np.trace(np.atleast_2d(np.cov(X.T, ddof=1)))
    ns = stats.noise_scale()
    assert ns.trace_cov == pytest.approx(trace, rel=1e-10)
    assert ns.grad_sq_norm == pytest.approx(X.mean(0) @ X.mean(0) - trace / B, rel=1e-9)
    assert ns.b_simple == pytest.approx(ns.trace_cov / ns.grad_sq_norm, rel=1e-12)


def test_per_example_norm_for_2d_linear_is_product_of_norms():
    rng = np.random.default_rng(4)
    layer = nn.Linear(3, 2, rng=0, dtype=f64)
    x, n_ex = rng.standard_normal((6, 3)), 6
    with capture(layer) as stats:
        out = layer(t(x))
        (out * t(rng.standard_normal((6, 2)))).mean(axis=0).sum().backward()
    g = stats.output_grads(layer)[0]
    expected = n_ex * np.linalg.norm(g, axis=1) * np.sqrt((x ** 2).sum(1) + 1)
    np.testing.assert_allclose(stats.per_example_grad_norms(layer), expected, rtol=1e-12)


def test_noise_scale_estimator_is_unbiased_on_gaussian_gradients():
    """Per-example gradients x ~ N(G, Sigma): the averages of the estimates over many batches give
    tr(Sigma) and |G|^2, both for the per-example and the two-batch estimator."""
    rng = np.random.default_rng(5)
    dim, B, batches = 6, 8, 4000
    G = rng.standard_normal(dim)
    L = rng.standard_normal((dim, dim)) * 0.5
    Sigma = L @ L.T
    X = G + rng.standard_normal((batches, B, dim)) @ L.T
    per_example = [gradient_noise_scale((xb ** 2).sum(1), xb.mean(0) @ xb.mean(0)) for xb in X]
    trace = np.mean([e.trace_cov for e in per_example])
    grad_sq = np.mean([e.grad_sq_norm for e in per_example])
    assert trace == pytest.approx(np.trace(Sigma), rel=0.03)
    assert grad_sq == pytest.approx(G @ G, rel=0.03)
    assert trace / grad_sq == pytest.approx(np.trace(Sigma) / (G @ G), rel=0.05)
    two = [gradient_noise_scale_two_batches(xb[:2].mean(0) @ xb[:2].mean(0), xb.mean(0) @ xb.mean(0), 2, B)
           for xb in X]
    assert np.mean([e.trace_cov for e in two]) == pytest.approx(np.trace(Sigma), rel=0.05)
    assert np.mean([e.grad_sq_norm for e in two]) == pytest.approx(G @ G, rel=0.05)


def test_noise_scale_formula_on_exact_gradients():
    # two examples G +- e: x_bar = G exactly, tr(Sigma) estimate = sum |x_n - x_bar|^2 / (B-1) = 2|e|^2
    G, e = np.array([3.0, 4.0]), np.array([1.0, -2.0])
    X = np.stack([G + e, G - e])
    ns = gradient_noise_scale((X ** 2).sum(1), G @ G)
    assert isinstance(ns, NoiseScale)
    assert ns.trace_cov == pytest.approx(2 * (e @ e))
    assert ns.grad_sq_norm == pytest.approx(G @ G - ns.trace_cov / 2)
    assert ns.b_simple == pytest.approx(ns.trace_cov / ns.grad_sq_norm)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_noise_scale([1.0], 1.0)
    with pytest.raises(ValueError, match="small_batch < big_batch"):
        gradient_noise_scale_two_batches(1.0, 1.0, 8, 8)


# ----------------------------------------------------------------------------- monitoring
def test_summary_statistics():
    layer = nn.Linear(3, 2, rng=0, dtype=f64)
    a = np.array([[0.0, 0.995, -0.5], [0.0, -1.0, 0.2]])
    with capture(layer) as stats:
        layer(t(a)).sum().backward()
    info = stats.summary()[type(layer).__name__]
    assert info["calls"] == 1 and info["batch_size"] == 2
    assert info["input_mean"] == pytest.approx(a.mean())
    assert info["input_std"] == pytest.approx(a.std())
    assert info["input_zero_fraction"] == pytest.approx(2 / 6)
    assert info["input_saturated_fraction"] == pytest.approx(2 / 6)
    assert stats.summary(saturation=0.999)[type(layer).__name__]["input_saturated_fraction"] == \
        pytest.approx(1 / 6)
    assert info["output_grad_norm"] == pytest.approx(2.0)        # d sum / d s = ones (2, 2)
    expected = math.sqrt((layer.weight.grad.numpy() ** 2).sum() + (layer.bias.grad.numpy() ** 2).sum())
    assert info["grad_norm"] == pytest.approx(expected)


def test_summary_without_backward_and_float32_factors():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))   # float32
    x = mg.tensor(np.random.default_rng(6).standard_normal((5, 3)).astype(np.float32))
    with capture(model) as stats:
        out = model(x)
        assert stats.summary()["0"]["grad_norm"] is None
        F.cross_entropy(out, np.array([0, 1, 0, 1, 1])).backward()
    A, G = stats.kfac_factors("2")
    assert A.dtype == np.float32 and G.dtype == np.float32 and A.shape == (5, 5)
    assert set(stats.summary()) == {"0", "2"} and stats.names == ["0", "2"]


# ------------------------------------------------------------------------- hooks and errors
def all_forward_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_are_removed_after_the_block_even_on_error():
    model = mlp()
    x = t(np.ones((2, 4)))
    with capture(model) as stats:
        out = model(x)
        assert all_forward_hooks(model) == 3 and stats.active
    assert all_forward_hooks(model) == 0 and not stats.active
    assert not out._node.hooks          # the tensor hook on the last layer's output is gone too
    with pytest.raises(KeyError), capture(model):
        model(x)
        raise KeyError("boom")
    assert all_forward_hooks(model) == 0
    # nothing is recorded outside: a forward after the block leaves the stats unchanged
    model(x)
    assert len(stats.inputs(model[0])) == 1


def test_backward_outside_the_block_records_nothing():
    model = mlp()
    with capture(model) as stats:
        out = model(t(np.ones((2, 4))))
    F.cross_entropy(out, np.array([0, 1])).backward()
    assert model[0].weight.grad is not None
    with pytest.raises(RuntimeError, match=r"no backward pass through layer '0'.*inside the `with capture`"):
        stats.kfac_factors(model[0])
    assert stats.summary()["0"]["output_grad_norm"] is None


def test_errors_name_the_layer():
    model = mlp()
    with capture(model, layers=[model[0], "2"]) as stats:
        pass
    with pytest.raises(RuntimeError, match=r"no forward pass of layer '0'"):
        stats.kfac_factors(model[0])
    with capture(model, layers=[model[0], "2"]) as stats:
        F.cross_entropy(model(t(np.ones((2, 4)))), np.array([0, 1])).backward()
    captured = r"Linear\(in_features=5, out_features=3.*not captured.*\['0', '2'\]"
    with pytest.raises(ValueError, match=captured):
        stats.kfac_factors(model[4])
    with pytest.raises(ValueError, match="'4' was not captured"):
        stats.per_example_grad_norms("4")
    with pytest.raises(ValueError, match="out of range"):
        stats.kfac_factors(model[0], backward=1)
    with pytest.raises(TypeError, match="one backward pass"):
        stats.per_example_grad_norms(model[0], backward="sum")
    with pytest.raises(TypeError, match="Linear and Conv2d layers only, got Tanh"):
        capture(model, layers=[model[1]]).__enter__()
    with pytest.raises(ValueError, match="no submodule named 'nope'"):
        CaptureStats(model, ["nope"])
    assert all_forward_hooks(model) == 0


def test_output_without_grad_is_a_clear_error():
    model = mlp()
    with capture(model) as stats, mg.no_grad():
        model(t(np.ones((2, 4))))
    assert stats.summary()["0"]["input_mean"] == 1.0
    with pytest.raises(RuntimeError, match=r"output of layer '0'.*did not require grad"):
        stats.kfac_factors(model[0])


def test_clear_and_repeated_backward_passes():
    model = mlp()
    x, y = t(np.random.default_rng(7).standard_normal((3, 4))), np.array([0, 2, 1])
    with capture(model) as stats:
        model(x)
        stats.clear()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward(retain_graph=True)
        (loss * 2.0).backward()
    assert len(stats.inputs(model[0])) == 1 and stats.num_backward(model[0]) == 2
    G0 = stats.kfac_factors(model[0], backward=0)[1]
    np.testing.assert_allclose(stats.kfac_factors(model[0])[1], 4 * G0)
    np.testing.assert_allclose(stats.kfac_factors(model[0], backward="sum")[1], 5 * G0)


def test_curvature_products_inside_capture_are_not_recorded_as_passes():
    from minigrad.curvature import GGNOperator, HessianOperator

    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Linear(5, 4, rng=0, dtype=np.float64), nn.Tanh(),
                          nn.Linear(4, 3, rng=1, dtype=np.float64))
    x, y = mg.tensor(rng.standard_normal((6, 5))), rng.integers(0, 3, 6)
    with capture(model) as stats:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward(retain_graph=True)
        A, G = stats.kfac_factors(model[2])
        vs = [mg.tensor(rng.standard_normal(p.shape)) for p in model.parameters()]
        HessianOperator(loss, model.parameters()).matvec(vs)
        GGNOperator(loss, logits, model.parameters()).matvec(vs)
        counts = [stats.num_backward(m) for m in (model[0], model[2])]
        A2, G2 = stats.kfac_factors(model[2])
    assert counts == [1, 1]  # the operators' walks are curvature products, not passes
    np.testing.assert_allclose(G2, G, rtol=1e-12)
    np.testing.assert_allclose(A2, A, rtol=1e-12)


def test_per_example_statistics_refuse_batchnorm_in_training_mode():
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.Linear(3, 4, rng=0, dtype=np.float64), nn.BatchNorm1d(4, dtype=np.float64),
                          nn.Tanh(), nn.Linear(4, 2, rng=1, dtype=np.float64))
    x, y = mg.tensor(rng.standard_normal((6, 3))), rng.integers(0, 2, 6)
    with capture(model) as stats:
        F.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="BatchNorm layers \\['1'\\] are in training mode"):
        stats.per_example_grad_norms()
    model.eval()
    with capture(model) as stats:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    norms = stats.per_example_grad_norms(model[0])
    for i in range(6):  # brute force: each example's own loss, BN now a fixed affine map
        own = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        gw, gb = mg.grad(own, [model[0].weight, model[0].bias])
        np.testing.assert_allclose(norms[i], np.sqrt((gw.data ** 2).sum() + (gb.data ** 2).sum()),
                                   rtol=1e-10)


def test_a_second_forward_after_a_backward_warns():
    model = nn.Sequential(nn.Linear(3, 2, rng=0, dtype=np.float64))
    x = mg.tensor(np.ones((2, 3)))
    with capture(model):
        model(x).sum().backward()
        with pytest.warns(UserWarning, match="called again after a backward pass"):
            model(x)
