"""07. One K-FAC step (and two more) written out in NumPy, matching minigrad.optim.KFAC.

For each Linear layer l (inputs a, pre-activations s = W a + b, a~ = [a; 1], d = N dL/ds the
gradient of each example's own loss, V = [dL/dW, dL/db] an (O, D+1) matrix), one step is:

 1. factors     A = (1/N) sum a~ a~^T,  G = (1/N) sum d d^T  (fisher="empirical": true labels);
                the first step takes them as they are, later ones keep a running average
                A <- decay A + (1 - decay) A_batch (and G alike);
 2. eigenbases  A = Q_A diag(a) Q_A^T, G = Q_G diag(g) Q_G^T, recomputed only every
                inv_update_every steps (in between, the old eigenbasis is used);
 3. decay       V <- V + weight_decay [W, b];
 4. precondition P = Q_G ((Q_G^T V Q_A) / M) Q_A^T, i.e. (G (x) A + damping)^-1 V, with
                M_ij = g_i a_j + lambda                           (damping_form="eigen")
                M_ij = (g_i + sqrt(lambda)/pi)(a_j + pi sqrt(lambda)),
                pi = sqrt((tr A / dim A) / (tr G / dim G))      (damping_form="factored");
 5. KL clip     nu = min(1, sqrt(kl_clip / (lr^2 sum_l <V_l, P_l>))), U = nu P;
 6. momentum    buf = U on the first step, then buf <- momentum buf + U;  [W, b] <- [W, b] - lr buf.

The docstring of optim/kfac.py derives step 4 from (P (x) Q) vec_r(X) = vec_r(P X Q^T).
We run three steps by hand (no minigrad at all below the line "by hand") and with KFAC, for both
damping forms, and compare the parameters after every step and the factors at the end.
"""
import math

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.optim import KFAC

N, D, K, C = 16, 4, 6, 3                             # batch, inputs, hidden units, classes
settings = dict(lr=0.1, damping=0.03, momentum=0.9, factor_decay=0.9, kl_clip=1e-3,
                weight_decay=1e-2, inv_update_every=2)
rng = np.random.default_rng(4)
batches = [(rng.standard_normal((N, D)), rng.integers(0, C, N)) for _ in range(3)]


# -- by hand -----------------------------------------------------------------------------------
def forward_backward(params, x, y):
    """[(a~, dL/ds)] for the two layers of Linear-tanh-Linear with mean cross-entropy."""
    W1, b1, W2, b2 = params
    h = np.tanh(x @ W1.T + b1)
    z = h @ W2.T + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g2 = (p - np.eye(C)[y]) / N                      # dL/dz
    g1 = (g2 @ W2) * (1 - h ** 2)                    # dL/ds1, back through W2 and tanh
    ones = np.ones((N, 1))                           # a~ = [a; 1]: the bias is a weight on 1
    return [(np.concatenate([x, ones], axis=1), g1), (np.concatenate([h, ones], axis=1), g2)]


def decompose(A, G):
    a, QA = np.linalg.eigh((A + A.T) / 2)
    g, QG = np.linalg.eigh((G + G.T) / 2)
    pi = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
    return np.maximum(a, 0), QA, np.maximum(g, 0), QG, pi


def precondition(V, eigen, lam, form):
    a, QA, g, QG, pi = eigen
    if form == "eigen":
        M = np.outer(g, a) + lam
    else:
        M = np.outer(g + math.sqrt(lam) / pi, a + pi * math.sqrt(lam))
    return QG @ ((QG.T @ V @ QA) / M) @ QA.T


def kfac_by_hand(params, form, lr, damping, momentum, factor_decay, kl_clip, weight_decay,
                 inv_update_every):
    """The parameters after each step, and the final factors."""
    factors, eigens, bufs, history = None, None, None, []
    for step, (x, y) in enumerate(batches):
        layers = forward_backward(params, x, y)
        batch = [(a.T @ a / N, (N * g).T @ (N * g) / N) for a, g in layers]           # 1.
        factors = batch if factors is None else [
            (factor_decay * A0 + (1 - factor_decay) * A, factor_decay * G0 + (1 - factor_decay) * G)
            for (A0, G0), (A, G) in zip(factors, batch)]
        if step % inv_update_every == 0:                                                # 2.
            eigens = [decompose(A, G) for A, G in factors]
        Vs = [g.T @ a + weight_decay * np.concatenate([W, b[:, None]], axis=1)          # 3.
              for (a, g), W, b in zip(layers, params[0::2], params[1::2])]
        Ps = [precondition(V, e, damping, form) for V, e in zip(Vs, eigens)]           # 4.
        quad = lr ** 2 * sum(float((V * P).sum()) for V, P in zip(Vs, Ps))
        nu = min(1.0, math.sqrt(kl_clip / quad))                                        # 5.
        U = [nu * P for P in Ps]
        bufs = U if bufs is None else [momentum * b + u for b, u in zip(bufs, U)]      # 6.
        new = []
        for k, B in enumerate(bufs):                 # B = [W, b]'s buffer: bias column last
            new += [params[2 * k] - lr * B[:, :-1], params[2 * k + 1] - lr * B[:, -1]]
        params = new
        history.append((params, nu))
    return history, factors


# -- the library ---------------------------------------------------------------------------------
for form in ("eigen", "factored"):
    model = nn.Sequential(nn.Linear(D, K, rng=0, dtype=mg.float64), nn.Tanh(),
                          nn.Linear(K, C, rng=1, dtype=mg.float64))
    start = [p.numpy().copy() for p in model.parameters()]          # W1, b1, W2, b2
    history, factors = kfac_by_hand(start, form, **settings)
    opt = KFAC(model, fisher="empirical", damping_form=form, **settings)
    for step, ((x, y), (want, nu)) in enumerate(zip(batches, history)):
        opt.zero_grad()
        F.cross_entropy(model(mg.tensor(x)), y).backward()
        opt.step()
        worst = max(np.abs(p.numpy() - q).max() / np.abs(q).max()
                    for p, q in zip(model.parameters(), want))
        print(f"{form:8s} step {step + 1}: nu = {opt.info['nu']:.4f} (by hand {nu:.4f}), "
              f"eigenbases refreshed: {opt.info['inverses_refreshed']}, "
              f"parameters differ by {worst:.1e} (relative)")
        assert worst < 1e-12 and math.isclose(opt.info["nu"], nu, rel_tol=1e-12)
    for layer, (A, G) in zip((model[0], model[2]), factors):
        got_A, got_G = opt.factors(layer)
        np.testing.assert_allclose(got_A, A, rtol=1e-12)
        np.testing.assert_allclose(got_G, G, rtol=1e-12, atol=1e-15)
    opt.close()
print("ok: the NumPy K-FAC steps match minigrad.optim.KFAC for both damping forms")
