"""K-FAC behaviours the mutation run found unpinned (docs/testing.md, the BEFORE survivors of the
K-FAC update): a refresh uses the factors as they are now, an inactive KL clip leaves the step
whole, adaptive damping runs on its own schedule, the step's loss is reported, and a non-finite
factor is refused with the step and layer named. References: the dense damped solve of
tests/support.py with the factors the optimizer reports, and exact counts."""
import numpy as np
import pytest
from minigrad.optim.kfac import KFAC
from support import dense_kfac_solve

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

f64 = np.float64


def mlp(seed, d_in=3, hidden=5, classes=4, dtype=f64):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(d_in, hidden, rng=rng, dtype=dtype), nn.Tanh(),
                         nn.Linear(hidden, classes, rng=rng, dtype=dtype))


def batch(seed, n=8, d_in=3, classes=4):
    rng = np.random.default_rng(seed)
    return mg.tensor(rng.standard_normal((n, d_in))), rng.integers(0, classes, n)


def grads_of(model, x, y):
    """[dL/d[W, b]] (O, D+1) per Linear, from minigrad.grad on a plain forward."""
    loss = F.cross_entropy(model(x), y)
    layers = (model[0], model[-1])
    g = mg.grad(loss, [p for m in layers for p in (m.weight, m.bias)])
    return [np.concatenate([g[2 * k].data, g[2 * k + 1].data[:, None]], axis=1) for k in range(2)]


def layer_params(model):
    return [np.concatenate([m.weight.data, m.bias.data[:, None]], axis=1)
            for m in (model[0], model[-1])]


def step(opt, model, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("form", ["eigen", "factored"])
def test_a_refresh_decomposes_the_factors_of_now(form):
    """Factors updated at steps 0, 3, ... (every 3), eigenbases due at 0, 2, 4, ...: the refresh
    at step 4 has no new factors of its own but must decompose those of step 3 (they changed
    since the last decomposition), so its update is the dense solve with the current factors."""
    model = mlp(1)
    lr, damping = 0.2, 0.05
    opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=0.5, cov_update_every=3,
               inv_update_every=2, kl_clip=None, fisher="empirical", damping_form=form)
    refreshed = []
    for k in range(4):
        step(opt, model, *batch(k))
        refreshed.append(opt.info["inverses_refreshed"])
    assert refreshed == [True, False, False, False]   # step 2: due, but nothing new
    x, y = batch(4)
    V = grads_of(model, x, y)
    before = layer_params(model)
    step(opt, model, x, y)
    assert opt.info["inverses_refreshed"]
    for k, layer in enumerate((model[0], model[-1])):
        A, G = opt.factors(layer)
        np.testing.assert_allclose(before[k] - layer_params(model)[k],
                                   lr * dense_kfac_solve(A, G, V[k], damping, form), rtol=1e-9)


def test_an_inactive_kl_clip_leaves_the_step_whole():
    """nu = min(1, sqrt(C / (lr^2 g^T v))) is exactly 1 when the bound is far: the same
    parameters as without a clip."""
    x, y = batch(3)
    runs = []
    for kl_clip in (None, 1e6):
        model = mlp(2)
        opt = KFAC(model, lr=0.1, damping=0.05, momentum=0, kl_clip=kl_clip, fisher="empirical")
        step(opt, model, x, y)
        runs.append((layer_params(model), opt.info["nu"]))
    assert runs[1][1] == 1.0
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)


def test_adaptive_damping_runs_every_adapt_every_steps():
    """With adapt_every = 3, the Levenberg-Marquardt rule runs after steps 3 and 6 (info["rho"]
    present) and nowhere else; the damping changes only there."""
    model = mlp(3)
    opt = KFAC(model, lr=0.05, damping=0.05, kl_clip=None, fisher="empirical",
               adaptive_damping=True, adapt_every=3)
    adapted, damping = [], []
    for k in range(7):
        x, y = batch(10 + k)
        opt.step(lambda indices=None, x=x, y=y: F.cross_entropy(model(x), y))
        adapted.append("rho" in opt.info)
        damping.append(opt.damping)
    assert adapted == [False, False, True, False, False, True, False]
    assert damping[0] == damping[1] == 0.05 and damping[3] == damping[4] == damping[2]


def test_a_closure_step_reports_the_loss_at_its_start():
    model = mlp(4)
    x, y = batch(4)
    with mg.no_grad():
        expected = float(F.cross_entropy(model(x), y).item())
    opt = KFAC(model, lr=0.1, damping=0.05, fisher="empirical")
    returned = opt.step(lambda indices=None: F.cross_entropy(model(x), y))
    assert opt.info["loss"] == expected == float(returned.item())


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_non_finite_factor_is_refused_naming_the_step_and_layer():
    """Inputs of 1e20 in float32: A of the first layer overflows (1e40) while the loss and the
    gradients stay finite (tanh saturates, the gradient through it is 0). The second step must
    raise before changing anything."""
    model = mlp(5, dtype=np.float32)
    opt = KFAC(model, lr=0.1, damping=0.05, fisher="empirical")
    x, y = batch(5)
    step(opt, model, mg.tensor(x.data.astype(np.float32)), y)
    before = [p.data.copy() for p in model.parameters()]
    huge = mg.tensor(np.full((8, 3), 1e20, np.float32))
    with pytest.raises(FloatingPointError, match=r"KFAC step 2: non-finite factor A of layer '0'"):
        step(opt, model, huge, y)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))


def test_adaptive_damping_without_a_closure_fails_only_on_its_steps():
    """adapt_every = 3: steps 1 and 2 run without a closure; step 3 needs one."""
    model = mlp(6)
    opt = KFAC(model, lr=0.05, damping=0.05, fisher="empirical", adaptive_damping=True,
               adapt_every=3)
    for k in range(2):
        step(opt, model, *batch(20 + k))
    with pytest.raises(ValueError, match="adaptive_damping needs a closure"):
        step(opt, model, *batch(22))


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_non_finite_factor_of_a_later_layer_is_named():
    """No activation between the layers and weights of 10: inputs of 1e18 keep the first
    layer's A finite (1e36 in float32) and overflow the second layer's (its inputs are 3e19):
    the error names A of layer '1' (the third of the factors A_0, G_0, A_1, G_1)."""
    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Linear(3, 5, rng=rng, dtype=np.float32),
                          nn.Linear(5, 4, rng=rng, dtype=np.float32))
    model[0].weight.data = np.full((5, 3), 10.0, np.float32)
    opt = KFAC(model, lr=0.1, damping=0.05, fisher="empirical")
    with pytest.raises(FloatingPointError, match=r"KFAC step 1: non-finite factor A of layer '1'"):
        step(opt, model, mg.tensor(np.full((8, 3), 1e18, np.float32)), batch(7)[1])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_non_finite_G_factor_is_named():
    """Second-layer weights of 1e20 make the first layer's output gradients 1e20 (G_0 = 1e40
    overflows in float32) while the loss, the gradients and A stay finite: G of layer '0' (the
    second of the factors A_0, G_0, ...) is named."""
    model = mlp(8, dtype=np.float32)
    signs = np.random.default_rng(8).choice([-1.0, 1.0], (4, 5))   # rows not all equal: the
    model[-1].weight.data = (1e20 * signs).astype(np.float32)      # sum over classes is not 0
    opt = KFAC(model, lr=0.1, damping=0.05, fisher="empirical")
    x, y = batch(8)
    with pytest.raises(FloatingPointError, match=r"KFAC step 1: non-finite factor G of layer '0'"):
        step(opt, model, mg.tensor(x.data.astype(np.float32)), y)


def test_a_non_finite_kl_quadratic_form_is_refused_and_changes_nothing():
    """lr^2 <V, V'> overflows float64 with lr = 1e160: the step raises, naming the step, and the
    parameters are left as they were."""
    model = mlp(9)
    opt = KFAC(model, lr=1e160, damping=0.05, fisher="empirical")
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"KFAC step 1: non-finite preconditioned"):
        step(opt, model, *batch(9))
    assert all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))


def test_adaptive_damping_with_weight_decay_models_the_parameter_change():
    """The reduction ratio's model M(delta) = g^T delta + 1/2 sum_l [<D_l, G D_l A> + lambda
    |D_l|^2] takes D_l = the layer's parameter change itself: weight decay enters the step, not
    the model's D. Checked against the dense formula with weight_decay = 0.3."""
    model = mlp(10)
    x, y = batch(10)
    damping, decay = 0.05, 0.3
    loss = F.cross_entropy(model(x), y)
    layers = (model[0], model[-1])
    grads = mg.grad(loss, [p for m in layers for p in (m.weight, m.bias)])
    old = float(loss.item())
    opt = KFAC(model, lr=0.05, damping=damping, momentum=0, factor_decay=0, kl_clip=None,
               fisher="empirical", adaptive_damping=True, adapt_every=1, weight_decay=decay)
    before = layer_params(model)
    opt.step(lambda indices=None: F.cross_entropy(model(x), y))
    after = layer_params(model)
    with mg.no_grad():
        new = float(F.cross_entropy(model(x), y).item())
    m = 0.0
    for k, layer in enumerate(layers):
        A, G = opt.factors(layer)
        D = after[k] - before[k]
        g = np.concatenate([grads[2 * k].data, grads[2 * k + 1].data[:, None]], axis=1)
        m += float((g * D).sum()) + 0.5 * float((D * (G @ D @ A)).sum() + damping * (D * D).sum())
    assert m < 0 and opt.info["rho"] == pytest.approx((new - old) / m, rel=1e-9)
