"""05. K-FAC's Kronecker factors against the exact Fisher block of one layer (Martens & Grosse 2015).

A Linear layer computes s = W a + b. Write a~ = [a; 1] and theta = [W, b] flattened row-major
(bias column last). Example n's gradient is d_n a~_n^T with d_n = dl_n/ds_n, so the layer's block
of the Fisher, averaged over the N examples, is

    F = (1/N) sum_n E_y[d_n d_n^T] (x) a~_n a~_n^T        (exact; y ~ the model's p(y | x_n))

K-FAC replaces the mean of Kronecker products by the Kronecker product of the means:

    F ~= G (x) A,   G = (1/N) sum_n E_y[d_n d_n^T],   A = (1/N) sum_n a~_n a~_n^T

For ONE example the two are the same matrix; for a batch they differ (and across layers K-FAC
keeps only the diagonal blocks). nn.capture records a and the output gradients of every backward
pass; stats.kfac_factors turns them into A and G. For E_y we backpropagate, for every class c,
the gradient at label c weighted by sqrt(p_c): summing the passes gives the expectation exactly
(optim.KFAC's fisher="true" draws one label per example instead: an unbiased estimate).
The exact block comes from minigrad.curvature.FisherOperator, built column by column.
"""
import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.curvature import FisherOperator

rng = np.random.default_rng(2)
D, O, C = 3, 5, 3                                    # the layer maps R^3 -> R^5; 3 classes
model = nn.Sequential(nn.Linear(D, O, rng=rng, dtype=mg.float64), nn.Tanh(),
                      nn.Linear(O, C, rng=rng, dtype=mg.float64))
layer = model[0]                                     # the first layer: G is not trivial there

# theta = [W, b] row-major is W[o, :] then b[o] per row o; the operator's order is all of W, then b
row_major = np.array([o * D + j if j < D else O * D + o for o in range(O) for j in range(D + 1)])


def factors_and_fisher(x):
    """(A, G) of `layer` on the batch x (G over all labels, exactly) and its exact Fisher block."""
    n = x.shape[0]
    with nn.capture(model, [layer]) as stats:
        logits = model(mg.tensor(x))
        p = F.softmax(logits, axis=1).numpy()
        for c in range(C):   # dl/dz at label c is p - e_c; the mean loss brings 1/N
            u = np.sqrt(p[:, c:c + 1]) * (p - np.eye(C)[c]) / n
            # one backward pass; what we want is the dL/ds the capture records on the way
            mg.grad(logits, [layer.weight], grad_outputs=mg.tensor(u), retain_graph=True)
        A, G = stats.kfac_factors(layer, backward="sum")
    fisher = FisherOperator(logits, [layer.weight, layer.bias], kind="true").dense()
    return A, G, fisher[np.ix_(row_major, row_major)]


def relative_error(approx, exact):
    return np.linalg.norm(approx - exact) / np.linalg.norm(exact)


X = rng.standard_normal((8, D))

# -- A is the second moment of the layer's (homogeneous) inputs ------------------------------
A, G, fisher = factors_and_fisher(X)
X1 = np.concatenate([X, np.ones((8, 1))], axis=1)
np.testing.assert_allclose(A, X1.T @ X1 / 8, rtol=1e-13, atol=1e-15)
print(f"A: {A.shape} = (1/N) sum a~ a~^T;  G: {G.shape};  Fisher block: {fisher.shape}")

# -- one example: K-FAC is exact ---------------------------------------------------------------
A1, G1, fisher1 = factors_and_fisher(X[:1])
err1 = relative_error(np.kron(G1, A1), fisher1)
print(f"N = 1: |kron(G, A) - F| / |F| = {err1:.1e}")
assert err1 < 1e-12

# -- a batch: the mean of products is not the product of means ----------------------------
err8 = relative_error(np.kron(G, A), fisher)
print(f"N = 8: |kron(G, A) - F| / |F| = {err8:.3f}   (the K-FAC approximation)")
assert err8 > 1e-2
per_example = [factors_and_fisher(X[i:i + 1]) for i in range(8)]
mean_of_krons = sum(np.kron(Gi, Ai) for Ai, Gi, _ in per_example) / 8
err_mean = relative_error(mean_of_krons, fisher)
print(f"       |mean_n kron(G_n, A_n) - F| / |F| = {err_mean:.1e}   (exact again)")
assert err_mean < 1e-12
np.testing.assert_allclose(sum(Ai for Ai, _, _ in per_example) / 8, A, rtol=1e-13, atol=1e-15)
np.testing.assert_allclose(sum(Gi for _, Gi, _ in per_example) / 8, G, rtol=1e-12, atol=1e-15)

# -- what K-FAC buys: (G (x) A)^-1 v from two small inverses (Kronecker identity) -----------
lam = 1e-2
V = rng.standard_normal((O, D + 1))                  # a gradient shaped like [W, b]
Ad, Gd = A + lam * np.eye(D + 1), G + lam * np.eye(O)
small = np.linalg.solve(Gd, V) @ np.linalg.inv(Ad)   # G^-1 V A^-1: two small solves
big = np.linalg.solve(np.kron(Gd, Ad), V.reshape(-1)).reshape(O, D + 1)   # one big solve
np.testing.assert_allclose(small, big, rtol=1e-10)
print(f"(G (x) A)^-1 vec(V) == vec(G^-1 V A^-1): two {O}x{O} and {D + 1}x{D + 1} solves, not one "
      f"{O * (D + 1)}x{O * (D + 1)}")
print("ok: kron(G, A) is the exact Fisher block for one example and an approximation for a batch")
