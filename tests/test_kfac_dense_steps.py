"""Whole K-FAC steps (minigrad.optim.KFAC) against dense float64 references built without the
optimizer's or the capture's code: a hand-run forward with minigrad.functional on copies of the
parameters, minigrad.grad for the output gradients, explicit loops for conv patches, the Fisher
block as np.kron(G, A) (row-major vec of [W, b], bias column last) and np.linalg.solve.

Per layer, with V the (O, D+1) gradient matrix [dL/dW.reshape(O, -1), dL/db]:
    V  <- V + weight_decay [W, b]
    P   = mat(solve(M, vec_r(V))),  M = kron(G, A) + lambda I                     ("eigen")
                                    M = kron(G + sqrt(lambda)/pi I, A + pi sqrt(lambda) I)
                                        pi = sqrt((tr A / dim A) / (tr G / dim G))  ("factored")
    nu  = min(1, sqrt(kl_clip / (lr^2 sum_layers <V, P>))),  U = nu P
    buf = U (first step) | momentum buf + U;   [W, b] <- [W, b] - lr buf
"""
import math

import numpy as np
import pytest
from minigrad.optim.kfac import KFAC

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from support import dense_kfac_solve

f64 = np.float64


def leaf(a):
    return mg.tensor(np.array(a, dtype=f64), requires_grad=True)


dense_solve = dense_kfac_solve   # (support.py: the damped kron(G, A) of the module docstring)


def with_ones(a):
    return np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)


def as_matrix(w, b):
    return np.concatenate([w.reshape(w.shape[0], -1), b[:, None]], axis=1)


# -- (a) weight decay on the preconditioned layers -----------------------------------------------
def mlp_reference(params, x, y):
    """[(A, G, V)] of the two Linear layers of Linear-tanh-Linear at `params` [W0, b0, W1, b1]:
    A = (1/N) sum a~ a~^T, G = (1/N) sum d d^T with d = N dL/ds (example n's own gradient),
    V = dL/d[W, b] (no weight decay), from a forward that never touches the model or the
    optimizer (so the capture hooks record nothing)."""
    W0, b0, W1, b1 = (leaf(p) for p in params)
    s0 = F.linear(x, W0, b0)
    h = mg.tanh(s0)
    s1 = F.linear(h, W1, b1)
    g0, g1, *dp = mg.grad(F.cross_entropy(s1, y), [s0, s1, W0, b0, W1, b1])
    n = x.shape[0]
    out = []
    for a, g, dw, db in ((x.data, g0.data, dp[0], dp[1]), (h.data, g1.data, dp[2], dp[3])):
        at, d = with_ones(a), n * g
        out.append((at.T @ at / n, d.T @ d / n, as_matrix(dw.data, db.data)))
    return out


@pytest.mark.parametrize("form", ["eigen", "factored"])
def test_weight_decay_on_preconditioned_layers_matches_dense_steps(form):
    """Two steps on a float64 MLP with weight_decay, momentum, a factor moving average and an
    active KL clip, against the dense recursion of the module docstring. The decay term
    weight_decay [W, b] is about as large as the gradient here (bias columns included), so its
    sign, or its bias column alone, moves every entry of the update (the solve mixes the
    columns, nu mixes the layers) far beyond rounding."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 5, rng=rng, dtype=f64), nn.Tanh(),
                          nn.Linear(5, 4, rng=rng, dtype=f64))
    lr, damping, wd, momentum, decay, kl_clip = 0.3, 0.02, 0.2, 0.9, 0.5, 0.2
    opt = KFAC(model, lr=lr, damping=damping, momentum=momentum, factor_decay=decay,
               inv_update_every=1, kl_clip=kl_clip, weight_decay=wd, fisher="empirical",
               damping_form=form)
    params = [p.data.copy() for p in model.parameters()]       # W0, b0, W1, b1
    factors, bufs, nus = None, None, []
    for step in range(2):
        x = mg.tensor(rng.standard_normal((6, 3)))
        y = rng.integers(0, 4, 6)
        refs = mlp_reference(params, x, y)
        if factors is None:                                     # the first update: the batch's
            factors = [(A, G) for A, G, _ in refs]
        else:
            factors = [(decay * A0 + (1 - decay) * A, decay * G0 + (1 - decay) * G)
                       for (A0, G0), (A, G, _) in zip(factors, refs)]
        Vs = [V + wd * as_matrix(params[2 * k], params[2 * k + 1])
              for k, (_, _, V) in enumerate(refs)]
        Ps = [dense_solve(A, G, V, damping, form) for (A, G), V in zip(factors, Vs)]
        nu = min(1.0, math.sqrt(kl_clip / (lr ** 2 * sum(float((V * P).sum())
                                                         for V, P in zip(Vs, Ps)))))
        nus.append(nu)
        U = [nu * P for P in Ps]
        bufs = U if bufs is None else [momentum * b + u for b, u in zip(bufs, U)]
        for k, buf in enumerate(bufs):
            params[2 * k] = params[2 * k] - lr * buf[:, :-1]
            params[2 * k + 1] = params[2 * k + 1] - lr * buf[:, -1]

        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        for name, got, want in zip(("W0", "b0", "W1", "b1"), model.parameters(), params):
            np.testing.assert_allclose(got.data, want, rtol=1e-9, atol=1e-12,
                                       err_msg=f"step {step + 1}, {name}")
        assert opt.info["nu"] == pytest.approx(nu, rel=1e-9)
    assert min(nus) < 1          # the clip is exercised, so nu's dependence on the decay is too


# -- (b) convolutions -------------------------------------------------------------------------
def conv_reference(params, x, y, stride, padding):
    """[(A, G, V)] of Conv2d(stride, padding) -> tanh -> flatten -> Linear at `params`
    [Wc, bc, Wl, bl], from explicit patch loops (no im2col, no capture).

    Conv: a_{n,t} is the patch xpad[n, :, oh s : oh s + kh, ow s : ow s + kw] flattened in the
    order (C, kh, kw) of W.reshape(O, -1), t = (oh, ow), T = OH OW; d_{n,t} = N dL/ds[n, :, t].
    KFC (Grosse & Martens 2016) approximates example n's Fisher block by
    sum_t E[d d^T] (x) E[a~ a~^T] = T (mean_t d d^T) (x) (mean_t a~ a~^T). minigrad's convention
    (capture.kfac_factors) puts the location mean in A and the location SUM in G:
        A = (1/(N T)) sum_{n,t} a~ a~^T,    G = (1/N) sum_{n,t} d d^T,
    so kron(G, A) is that block averaged over n. (The paper's Omega sums over locations and its
    Gamma averages; only the product matters to the step: both damping forms give the same
    update for (c G, A / c), pi absorbing c in the factored one.) The Linear layer: T = 1."""
    Wc, bc, Wl, bl = (leaf(p) for p in params)
    s = F.conv2d(x, Wc, bc, stride=stride, padding=padding)
    h = mg.tanh(s).flatten(1, -1)
    z = F.linear(h, Wl, bl)
    gs, gz, *dp = mg.grad(F.cross_entropy(z, y), [s, z, Wc, bc, Wl, bl])
    n, o, oh, ow = s.shape
    kh, kw = params[0].shape[2:]
    xpad = np.pad(x.data, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    W2 = params[0].reshape(o, -1)
    A = np.zeros((W2.shape[1] + 1,) * 2)
    G = np.zeros((o, o))
    V_patches = np.zeros((o, W2.shape[1] + 1))
    for i in range(n):
        for r in range(oh):
            for c in range(ow):
                patch = xpad[i, :, r * stride:r * stride + kh, c * stride:c * stride + kw].reshape(-1)
                # the patch order must be W's: the forward at this location is W2 a + b
                np.testing.assert_allclose(s.data[i, :, r, c], W2 @ patch + params[1], rtol=1e-12)
                at = np.append(patch, 1.0)
                d = n * gs.data[i, :, r, c]
                A += np.outer(at, at) / (n * oh * ow)
                G += np.outer(d, d) / n
                V_patches += np.outer(d / n, at)
    V = as_matrix(dp[0].data, dp[1].data)
    np.testing.assert_allclose(V_patches, V, rtol=1e-10, atol=1e-14)   # sum_{n,t} g a~^T = dL/d[W, b]
    hl, dz = with_ones(h.data), n * gz.data
    return [(A, G, V), (hl.T @ hl / n, dz.T @ dz / n, as_matrix(dp[2].data, dp[3].data))]


@pytest.mark.parametrize("form", ["eigen", "factored"])
def test_conv_step_matches_dense_kfc_solve(form):
    """One K-FAC step on Conv2d(2->3, 3x3, stride 2, padding 1) -> tanh -> flatten -> Linear
    (T = 9 locations): the factors and the update of both layers against the dense damped
    kron(G, A) solve of conv_reference."""
    rng = np.random.default_rng(1)
    stride, padding = 2, 1
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=stride, padding=padding, rng=rng, dtype=f64),
                          nn.Tanh(), nn.Flatten(), nn.Linear(3 * 3 * 3, 2, rng=rng, dtype=f64))
    x = mg.tensor(rng.standard_normal((4, 2, 5, 5)))
    y = rng.integers(0, 2, 4)
    lr, damping = 0.5, 0.03
    opt = KFAC(model, lr=lr, damping=damping, momentum=0, factor_decay=0, kl_clip=None,
               fisher="empirical", damping_form=form)
    before = [p.data.copy() for p in model.parameters()]
    refs = conv_reference(before, x, y, stride, padding)

    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    after = [p.data for p in model.parameters()]
    for k, (layer, (A, G, V)) in enumerate(zip((model[0], model[3]), refs)):
        got_A, got_G = opt.factors(layer)
        np.testing.assert_allclose(got_A, A, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got_G, G, rtol=1e-10, atol=1e-14)
        update = as_matrix(before[2 * k] - after[2 * k], before[2 * k + 1] - after[2 * k + 1])
        np.testing.assert_allclose(update, lr * dense_solve(A, G, V, damping, form),
                                   rtol=1e-8, atol=1e-12, err_msg=f"layer {k}")
