"""minigrad.optim.KFAC against dense float64 computations built without the optimizer's code:
layer inputs and output gradients from minigrad.grad on a hand-run forward, Fisher blocks with
np.kron in the row-major convention kron(G, A), inverses with np.linalg.solve."""
import math

import numpy as np
import pytest
from minigrad.optim.kfac import KFAC
from minigrad.optim.kfac_factors import symmetric_eigh

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from support import dense_kfac_solve

f64 = np.float64


def t(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=f64), requires_grad=requires_grad)


def mlp(seed=0, hidden=5, d_in=3, classes=4, bn=False):
    rng = np.random.default_rng(seed)
    mods = [nn.Linear(d_in, hidden, rng=rng, dtype=f64)]
    if bn:
        mods.append(nn.BatchNorm1d(hidden, dtype=f64))
    mods += [nn.Tanh(), nn.Linear(hidden, classes, rng=rng, dtype=f64)]
    return nn.Sequential(*mods)


def batch(seed, n=6, d_in=3, classes=4):
    rng = np.random.default_rng(seed)
    return t(rng.standard_normal((n, d_in))), rng.integers(0, classes, n)


def params_copy(model):
    return [p.data.copy() for p in model.parameters()]


def train_step(opt, model, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def reference_factors(model, x, y):
    """(A, G, V) per Linear layer of the tanh MLP from an explicit forward + minigrad.grad."""
    l0, l1 = model[0], model[-1]
    s0 = l0(x)
    a1 = mg.tanh(s0)
    s1 = l1(a1)
    loss = F.cross_entropy(s1, y)
    g0, g1 = mg.grad(loss, [s0, s1])
    n = x.shape[0]
    out = []
    for a, g in ((x.data, g0.data), (a1.data, g1.data)):
        at = np.concatenate([a, np.ones((n, 1))], axis=1)
        A = at.T @ at / n
        d = n * g
        G = d.T @ d / n
        V = g.T @ at                      # dL/d[W, b]
        out.append((A, G, V))
    return out


dense_kfac_update = dense_kfac_solve


def layer_update(before, after, layer_index):
    """[dW, db] (O, D+1) of Linear number `layer_index` (0 or 1) from parameter snapshots."""
    w, b = 2 * layer_index, 2 * layer_index + 1
    return np.concatenate([(before[w] - after[w]), (before[b] - after[b])[:, None]], axis=1)


# -- the natural gradient, exactly -----------------------------------------------------------
def test_one_example_equals_dense_damped_natural_gradient():
    rng = np.random.default_rng(3)
    layer = nn.Linear(3, 4, bias=False, rng=rng, dtype=f64)
    model = nn.Sequential(layer)
    x, y = t(rng.standard_normal((1, 3))), np.array([2])
    lr, damping = 0.7, 0.05
    opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=0, damping_form="eigen",
               fisher="empirical", kl_clip=None)
    w0 = layer.weight.data.copy()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = layer.weight.grad.data.reshape(-1).copy()
    opt.step()
    Fisher = np.outer(g, g)                   # one example: the empirical Fisher is g g^T
    expected = w0.reshape(-1) - lr * np.linalg.solve(Fisher + damping * np.eye(g.size), g)
    np.testing.assert_allclose(layer.weight.data.reshape(-1), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("form", ["eigen", "factored"])
def test_mlp_step_matches_dense_kron_damping(form):
    model = mlp(1)
    x, y = batch(2)
    lr, damping = 0.3, 0.02
    opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=0, damping_form=form,
               fisher="empirical", kl_clip=None)
    refs = reference_factors(model, x, y)
    before = params_copy(model)
    train_step(opt, model, x, y)
    after = params_copy(model)
    for k, (A, G, V) in enumerate(refs):
        got_A, got_G = opt.factors(model[0] if k == 0 else model[-1])
        np.testing.assert_allclose(got_A, A, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got_G, G, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer_update(before, after, k),
                                   lr * dense_kfac_update(A, G, V, damping, form), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("form", ["eigen", "factored"])
def test_identity_start_averages_the_batch_factors_into_the_identity(form):
    """factor_init="identity": A_1 = d I + (1 - d) A_batch (G likewise), and the step is the
    dense damped solve with those factors."""
    model = mlp(5)
    x, y = batch(6)
    lr, damping, decay = 0.3, 0.02, 0.8
    opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=decay, damping_form=form,
               fisher="empirical", kl_clip=None, factor_init="identity")
    refs = reference_factors(model, x, y)
    before = params_copy(model)
    train_step(opt, model, x, y)
    after = params_copy(model)
    for k, (A_batch, G_batch, V) in enumerate(refs):
        A = decay * np.eye(len(A_batch)) + (1 - decay) * A_batch
        G = decay * np.eye(len(G_batch)) + (1 - decay) * G_batch
        got_A, got_G = opt.factors(model[0] if k == 0 else model[-1])
        np.testing.assert_allclose(got_A, A, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got_G, G, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer_update(before, after, k),
                                   lr * dense_kfac_update(A, G, V, damping, form), rtol=1e-9,
                                   atol=1e-12)


def test_factor_init_is_checked_and_saved():
    with pytest.raises(ValueError, match="factor_init must be 'batch' or 'identity', got 'ones'"):
        KFAC(mlp(0), lr=0.1, damping=0.1, factor_init="ones")
    opt = KFAC(mlp(0), lr=0.1, damping=0.1, factor_init="identity")
    assert opt.state_dict()["hyperparameters"]["factor_init"] == "identity"


# -- schedules ---------------------------------------------------------------------------------
def test_factor_ema_and_inverse_refresh_follow_the_schedule():
    model = mlp(4)
    decay = 0.6
    opt = KFAC(model, lr=0.1, damping=0.01, factor_decay=decay, cov_update_every=2,
               inv_update_every=4, fisher="empirical")
    expected = None
    refreshed = []
    for step in range(7):
        x, y = batch(10 + step)
        refs = reference_factors(model, x, y)
        if step % 2 == 0:
            batch_AG = [(A, G) for A, G, _ in refs]
            expected = batch_AG if expected is None else \
                [(decay * A0 + (1 - decay) * A1, decay * G0 + (1 - decay) * G1)
                 for (A0, G0), (A1, G1) in zip(expected, batch_AG)]
        train_step(opt, model, x, y)
        assert opt.info["factors_updated"] == (step % 2 == 0)
        refreshed.append(opt.info["inverses_refreshed"])
        for layer, (A, G) in zip((model[0], model[-1]), expected):
            got_A, got_G = opt.factors(layer)
            np.testing.assert_allclose(got_A, A, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got_G, G, rtol=1e-12, atol=1e-14)
    assert refreshed == [True, False, False, False, True, False, False]


def test_inverses_not_recomputed_when_factors_unchanged():
    model = mlp(5)
    opt = KFAC(model, lr=0.1, damping=0.01, cov_update_every=4, inv_update_every=2,
               fisher="empirical")
    seen = []
    for step in range(6):
        train_step(opt, model, *batch(step))
        seen.append(opt.info["inverses_refreshed"])
    # step 2: refresh due but the factors are those of step 0; step 4: updated, refreshed
    assert seen == [True, False, False, False, True, False]


def test_damping_schedule_and_info():
    model = mlp(6)
    opt = KFAC(model, lr=lambda s: 0.1 / (s + 1), damping=lambda s: 0.1 * 0.5 ** s,
               fisher="empirical")
    for step in range(3):
        train_step(opt, model, *batch(step))
        assert opt.info["damping"] == pytest.approx(0.1 * 0.5 ** step)
        assert opt.info["lr"] == pytest.approx(0.1 / (step + 1))
        assert 0 < opt.info["nu"] <= 1


# -- KL clipping, SGD for uncovered layers ------------------------------------------------------
def test_kl_clipping_scales_the_update_to_the_bound():
    x, y = batch(7)
    lr, kl_clip = 1.0, 1e-6
    changes = []
    for clip in (None, kl_clip):
        model = mlp(8)
        opt = KFAC(model, lr=lr, damping=0.01, momentum=0, kl_clip=clip, fisher="empirical")
        before = params_copy(model)
        train_step(opt, model, x, y)
        changes.append([b - a for b, a in zip(before, params_copy(model))])
        info = opt.info
    nu = info["nu"]
    assert nu < 1
    # documented: nu = sqrt(kl_clip / (lr^2 sum <V, V'>)), so lr^2 nu^2 sum <V, V'> = kl_clip
    assert nu == pytest.approx(math.sqrt(kl_clip / info["kl"]), rel=1e-12)
    assert nu ** 2 * info["kl"] == pytest.approx(kl_clip, rel=1e-10)
    for free, clipped in zip(*changes):
        np.testing.assert_allclose(clipped, nu * free, rtol=1e-10, atol=1e-15)
    # the unclipped quadratic form, recomputed from the unclipped update: lr^2 <V, V'> = lr <V, dtheta>
    model = mlp(8)
    refs = reference_factors(model, x, y)
    quad = sum(lr * float((V * layer_update_from(changes[0], k)).sum()) for k, (_, _, V) in enumerate(refs))
    assert quad == pytest.approx(info["kl"], rel=1e-9)


def layer_update_from(change, k):
    return np.concatenate([change[2 * k], change[2 * k + 1][:, None]], axis=1)


def test_batchnorm_parameters_get_exactly_the_sgd_update():
    model = mlp(9, bn=True)
    bn = model[1]
    lr, momentum, wd = 0.2, 0.9, 0.01
    opt = KFAC(model, lr=lr, damping=0.01, momentum=momentum, weight_decay=wd, fisher="empirical")
    bufs = {}
    for step in range(3):
        x, y = batch(20 + step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        expected = {}
        for name in ("weight", "bias"):
            p = getattr(bn, name)
            g = p.grad.data + wd * p.data
            bufs[name] = g.copy() if name not in bufs else momentum * bufs[name] + g
            expected[name] = p.data - lr * bufs[name]
        opt.step()
        for name in ("weight", "bias"):
            np.testing.assert_array_equal(getattr(bn, name).data, expected[name])


# -- the true Fisher -----------------------------------------------------------------------------
def closure_for(model, x, y):
    def closure(indices=None):
        logits = model(x)
        return F.cross_entropy(logits, y), logits
    return closure


def test_true_fisher_is_reproducible_and_both_call_forms_agree():
    x, y = batch(30)
    runs = []
    for form in ("closure", "closure", "outputs"):
        model = mlp(11)
        opt = KFAC(model, lr=0.1, damping=0.01, fisher="true", rng=123)
        for _ in range(3):
            if form == "closure":
                opt.step(closure_for(model, x, y))
            else:
                opt.zero_grad()
                logits = model(x)
                F.cross_entropy(logits, y).backward(retain_graph=True)
                opt.step(outputs=logits)
        runs.append(params_copy(model))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)
    model = mlp(11)
    opt = KFAC(model, lr=0.1, damping=0.01, fisher="true", rng=124)
    for _ in range(3):
        opt.step(closure_for(model, x, y))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], params_copy(model)))


def test_true_fisher_G_is_unbiased():
    rng = np.random.default_rng(5)
    layer = nn.Linear(3, 4, bias=False, rng=rng, dtype=f64)
    model = nn.Sequential(layer)
    x, y = t(rng.standard_normal((5, 3))), rng.integers(0, 4, 5)
    opt = KFAC(model, lr=0.0, damping=0.01, momentum=0, factor_decay=0, inv_update_every=10 ** 6,
               fisher="true", rng=0)
    p = F.softmax(model(x), axis=-1).data
    exact = np.mean([np.diag(q) - np.outer(q, q) for q in p], axis=0)
    total, steps = 0.0, 400
    for _ in range(steps):
        opt.step(closure_for(model, x, y))
        total = total + opt.factors(layer)[1]
    np.testing.assert_allclose(total / steps, exact, atol=0.02)
    # the empirical G (true labels) is a different matrix: the test can tell them apart
    d = p - np.eye(4)[y]
    assert np.abs(d.T @ d / 5 - exact).max() > 0.05


def test_true_fisher_step_without_outputs_is_an_error():
    model = mlp(12)
    opt = KFAC(model, lr=0.1, damping=0.01, fisher="true")
    with pytest.raises(ValueError, match="outputs"):
        train_step(opt, model, *batch(0))
    with pytest.raises(ValueError, match="outputs"):
        x, y = batch(0)
        opt.step(lambda indices=None, model=model: F.cross_entropy(model(x), y))


# -- training ----------------------------------------------------------------------------------
def blobs(seed=0, n=240, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    angles = 2 * np.pi * y / classes
    centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centers + 0.7 * rng.standard_normal((n, 2))
    return t(x), y


@pytest.mark.parametrize("fisher", ["true", "empirical"])
def test_kfac_trains_a_small_mlp(fisher):
    x, y = blobs()
    model = mlp(13, hidden=16, d_in=2, classes=3)
    opt = KFAC(model, lr=0.2, damping=0.03, momentum=0.5, kl_clip=1e-2, inv_update_every=5,
               fisher=fisher, rng=0)
    with mg.no_grad():
        first = float(F.cross_entropy(model(x), y).item())
    for _ in range(25):
        opt.step(closure_for(model, x, y))
    with mg.no_grad():
        logits = model(x)
        last = float(F.cross_entropy(logits, y).item())
        accuracy = float((logits.data.argmax(axis=1) == y).mean())
    assert last < 0.5 * first
    assert accuracy >= 0.9          # stated: >= 90% training accuracy within 25 full-batch steps


# -- errors ------------------------------------------------------------------------------------
def test_nan_loss_raises_and_leaves_parameters_unchanged():
    model = mlp(14)
    opt = KFAC(model, lr=0.1, damping=0.01, fisher="true", rng=0)
    x, y = batch(0)
    opt.step(closure_for(model, x, y))
    before = params_copy(model)
    state_A = opt.factors(model[0])[0].copy()
    bad = t(np.where(np.arange(18).reshape(6, 3) == 4, np.nan, x.data))
    with pytest.raises(FloatingPointError, match="loss"):
        opt.step(closure_for(model, bad, y))
    opt_e = KFAC(model, lr=0.1, damping=0.01, fisher="empirical")
    with pytest.raises(FloatingPointError):
        train_step(opt_e, model, bad, y)
    for a, b in zip(before, params_copy(model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt.factors(model[0])[0], state_A)
    assert opt.steps == 1 and opt_e.steps == 0


def test_non_finite_eigendecomposition_names_the_layer():
    model = mlp(15)
    opt = KFAC(model, lr=0.1, damping=0.01, factor_decay=0.5, inv_update_every=1,
               fisher="empirical")
    train_step(opt, model, *batch(0))
    opt.state[2]["A"][0, 1] = np.nan          # the factor A of the layer named "2"
    before = params_copy(model)
    with pytest.raises(FloatingPointError, match="A of layer '2'"):
        train_step(opt, model, *batch(1))
    for a, b in zip(before, params_copy(model)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FloatingPointError, match="my layer"):
        symmetric_eigh(np.full((3, 3), np.nan), "my layer")


def test_eigh_symmetrizes_and_clips():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((4, 2))
    A = B @ B.T                                # rank 2: eigenvalues 0 up to round-off
    A[0, 1] += 1e-13                           # slightly unsymmetric
    values, vectors = symmetric_eigh(A, "x")
    assert (values >= 0).all()
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, (A + A.T) / 2, atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1}, "lr"), ({"damping": 0}, "damping"), ({"damping": float("nan")}, "damping"),
    ({"momentum": 1.0}, "momentum"), ({"factor_decay": 1.0}, "factor_decay"),
    ({"factor_decay": -0.1}, "factor_decay"), ({"cov_update_every": 0}, "cov_update_every"),
    ({"inv_update_every": 2.5}, "inv_update_every"), ({"kl_clip": 0}, "kl_clip"),
    ({"fisher": "exact"}, "fisher"), ({"damping_form": "diag"}, "damping_form"),
    ({"weight_decay": -1e-4}, "weight_decay"), ({"layers": ["1"]}, "layers"),
    ({"adapt_every": 0}, "adapt_every"), ({"min_damping": 0}, "min_damping"),
    ({"max_damping": 1e-9}, "max_damping"),
])
def test_hyperparameter_validation(kwargs, match):
    args = {"lr": 0.1, "damping": 0.01}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        KFAC(mlp(0), **args)


def test_model_without_linear_layers_is_an_error():
    with pytest.raises(ValueError, match="no trainable Linear or Conv2d"):
        KFAC(nn.Sequential(nn.BatchNorm1d(3, dtype=f64)), lr=0.1, damping=0.01)


def test_damping_schedule_value_checked():
    model = mlp(0)
    opt = KFAC(model, lr=0.1, damping=lambda s: 0.0, fisher="empirical")
    with pytest.raises(ValueError, match="damping"):
        train_step(opt, model, *batch(0))


# -- checkpoints ---------------------------------------------------------------------------------
def test_state_dict_resumes_bit_exactly():
    batches = [batch(40 + k) for k in range(7)]
    kwargs = {"lr": 0.2, "damping": 0.02, "momentum": 0.9, "factor_decay": 0.9, "inv_update_every": 2,
                  "kl_clip": 1e-2, "fisher": "true", "rng": 7, "weight_decay": 1e-3}

    model = mlp(16)
    opt = KFAC(model, **kwargs)
    for x, y in batches:
        opt.step(closure_for(model, x, y))
    straight = params_copy(model)

    model = mlp(16)
    opt = KFAC(model, **kwargs)
    for x, y in batches[:3]:                  # stops with the factors newer than the eigenbases
        opt.step(closure_for(model, x, y))
    saved_opt, saved_model = opt.state_dict(), model.state_dict()
    opt.close()
    model = mlp(99)
    model.load_state_dict(saved_model)
    opt = KFAC(model, **dict(kwargs, rng=1))
    opt.load_state_dict(saved_opt)
    for x, y in batches[3:]:
        opt.step(closure_for(model, x, y))
    for a, b in zip(straight, params_copy(model)):
        np.testing.assert_array_equal(a, b)


def test_conv_model_step_runs_and_lowers_loss():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, rng=rng, dtype=f64), nn.Tanh(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 2, rng=rng, dtype=f64))
    x, y = t(rng.standard_normal((8, 1, 6, 6))), rng.integers(0, 2, 8)
    opt = KFAC(model, lr=0.1, damping=0.01, fisher="empirical")
    losses = [float(train_step(opt, model, x, y).item()) for _ in range(5)]
    assert losses[-1] < losses[0]
    A, G = opt.factors(model[0])
    assert A.shape == (10, 10) and G.shape == (3, 3)


# -- adaptive damping ------------------------------------------------------------------------
def test_adaptive_damping_follows_the_levenberg_marquardt_rule():
    x, y = batch(50)
    for lr, direction in ((0.05, "down"), (1.0, "same"), (60.0, "up")):
        model = mlp(17)
        damping = 0.05
        refs = reference_factors(model, x, y)
        with mg.no_grad():
            old = float(F.cross_entropy(model(x), y).item())
        opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=0, kl_clip=None,
                   fisher="empirical", adaptive_damping=True, adapt_every=1)
        before = params_copy(model)
        opt.step(lambda indices=None, model=model: F.cross_entropy(model(x), y))
        after = params_copy(model)
        with mg.no_grad():
            new = float(F.cross_entropy(model(x), y).item())
        m = 0.0
        for k, (A, G, V) in enumerate(refs):
            D = -layer_update(before, after, k)
            m += float((V * D).sum()) + 0.5 * float((D * (G @ D @ A)).sum() + damping * (D * D).sum())
        # documented: a step the model itself predicts to increase h (M >= 0) counts as rho = -inf
        rho = (new - old) / m if m < 0 else -math.inf
        assert opt.info["rho"] == pytest.approx(rho, rel=1e-9)
        omega = 19 / 20
        if direction == "down":
            assert rho > 0.75 and opt.damping == pytest.approx(damping * omega)
        elif direction == "same":
            assert 0.25 <= rho <= 0.75 and opt.damping == damping
        else:
            assert rho < 0.25 and opt.damping == pytest.approx(damping / omega)


def test_adaptive_damping_needs_a_closure_and_a_number():
    model = mlp(18)
    with pytest.raises(ValueError, match="schedule"):
        KFAC(model, lr=0.1, damping=lambda s: 0.1, adaptive_damping=True)
    opt = KFAC(model, lr=0.1, damping=0.1, adaptive_damping=True, adapt_every=2, fisher="empirical")
    train_step(opt, model, *batch(0))          # step 1: no adaptation due
    with pytest.raises(ValueError, match="closure"):
        train_step(opt, model, *batch(1))


# -- GPU ---------------------------------------------------------------------------------------
def test_same_steps_on_the_gpu():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except Exception:  # noqa: BLE001 - any CUDA driver error means no usable GPU
        pytest.skip("no CUDA device")
    x, y = batch(60)
    results = []
    for device in ("cpu", "cuda"):
        model = mlp(19, bn=True).to(device)
        opt = KFAC(model, lr=0.1, damping=0.01, fisher="true", rng=3, inv_update_every=2)
        xd = mg.tensor(x.data, device=device)
        for _ in range(3):
            opt.step(closure_for(model, xd, y))
        results.append([p.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_adaptive_damping_without_a_closure_changes_nothing():
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(4, 3, rng=0, dtype=np.float64))
    x, y = mg.tensor(rng.standard_normal((8, 4))), rng.integers(0, 3, 8)
    opt = KFAC(model, lr=0.1, damping=1e-2, fisher="empirical", adaptive_damping=True, adapt_every=1)
    before = [p.numpy().copy() for p in model.parameters()]
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="adaptive_damping needs a closure"):
        opt.step()
    assert opt.steps == 0 and opt.factors(model[0]) is None
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)


def test_a_checkpoint_with_invalid_hyperparameters_is_refused():
    model = nn.Sequential(nn.Linear(4, 3, rng=0, dtype=np.float64))
    opt = KFAC(model, lr=0.1, damping=1e-2, fisher="empirical")
    saved = opt.state_dict()
    saved["hyperparameters"]["cov_update_every"] = 0
    with pytest.raises(ValueError, match="cov_update_every must be in"):
        opt.load_state_dict(saved)
    assert opt.cov_update_every == 1
