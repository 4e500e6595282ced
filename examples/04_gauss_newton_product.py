"""04. The generalized Gauss-Newton product G v = J^T H_L J v (Schraudolph 2002, Martens 2010).

z = f(theta) are the logits (N, C), L(z) the mean cross-entropy, J = dz/dtheta (N C x n) and
H_L = d^2 L / dz^2. The chain rule splits the Hessian in two:

    H = J^T H_L J  +  sum_k (dL/dz_k) d^2 z_k / dtheta^2   =   G  +  (the curvature of the model)

G drops the second term. H_L is PSD (the loss is convex in z), so G = J^T H_L J is PSD too,
while H is not in general. A reverse-mode engine gets J v without forming J by the double-vjp
trick: J^T u = grad(z, theta, u, create_graph=True) is linear in a dummy u, so its gradient in u
along v is J v. minigrad.curvature.ggn_vp and GGNOperator do exactly that.

We build J (row by row, one vector-Jacobian product per logit) and H_L (double backward in z,
checked against the closed form (diag p - p p^T) / N per example) densely, and check
  - GGNOperator.dense() and ggn_vp against J^T H_L J;
  - G is PSD while H has negative eigenvalues;
  - on the last layer's block (z is linear in W2, b2) G equals H.
"""
import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.curvature import GGNOperator, HessianOperator, ggn_vp

rng = np.random.default_rng(1)
N, D, K, C = 6, 3, 5, 4                              # examples, inputs, hidden units, classes
X = mg.tensor(rng.standard_normal((N, D)))
labels = rng.integers(0, C, N)
n = K * D + K + C * K + C                            # W1, b1, W2, b2
last = slice(K * D + K, n)                           # the last layer's entries of theta


def logits_of(theta):
    W1, b1 = theta[:K * D].reshape(K, D), theta[K * D:K * D + K]
    W2, b2 = theta[last][:C * K].reshape(C, K), theta[last][C * K:]
    return F.linear(F.linear(X, W1, b1).tanh(), W2, b2)


theta = mg.tensor(rng.standard_normal(n), requires_grad=True)
z = logits_of(theta)
loss = F.cross_entropy(z, labels)

# -- J, densely: row i is e_i^T J, the vjp of the i-th logit --------------------------------
J = np.stack([mg.grad(z, theta, grad_outputs=mg.tensor(e.reshape(N, C)), retain_graph=True)[0].numpy()
              for e in np.eye(N * C)])
print(f"J = dz/dtheta: {J.shape}")

# -- H_L, densely: the Hessian of the loss in the logits, by double backward on z as a leaf ---
zl = mg.tensor(z.numpy(), requires_grad=True)
(dz,) = mg.grad(F.cross_entropy(zl, labels), zl, create_graph=True)
H_L = np.stack([mg.grad(dz, zl, grad_outputs=mg.tensor(e.reshape(N, C)), retain_graph=True)[0]
                .numpy().reshape(-1) for e in np.eye(N * C)], axis=1)
p = F.softmax(zl, axis=1).numpy()
closed = np.zeros((N * C, N * C))
for i in range(N):                                   # block-diagonal: examples do not interact
    closed[i * C:(i + 1) * C, i * C:(i + 1) * C] = (np.diag(p[i]) - np.outer(p[i], p[i])) / N
np.testing.assert_allclose(H_L, closed, rtol=1e-12, atol=1e-15)
print("H_L = blockdiag(diag p - p p^T) / N, checked")

# -- G three ways -------------------------------------------------------------------------------
G_dense = J.T @ H_L @ J
G_op = GGNOperator(loss, z, [theta]).dense()         # 3 backward walks per column, J never formed
np.testing.assert_allclose(G_op, G_dense, rtol=1e-10, atol=1e-13)
v = rng.standard_normal(n)
(Gv,) = ggn_vp(loss, z, [theta], [mg.tensor(v)])
np.testing.assert_allclose(Gv.numpy(), G_dense @ v, rtol=1e-10, atol=1e-13)
print("GGNOperator.dense() and ggn_vp == J^T H_L J")

# -- PSD or not ------------------------------------------------------------------------------
H = HessianOperator(loss, [theta]).dense()
g_eigs, h_eigs = np.linalg.eigvalsh(G_dense), np.linalg.eigvalsh((H + H.T) / 2)
scale = h_eigs[-1]
print(f"eigenvalues of G: min {g_eigs[0]:+.2e}  max {g_eigs[-1]:+.4f}   rank {np.sum(g_eigs > 1e-10)}"
      f" <= N (C - 1) = {N * (C - 1)}")
print(f"eigenvalues of H: min {h_eigs[0]:+.4f}  max {h_eigs[-1]:+.4f}")
assert g_eigs[0] > -1e-12 * scale                    # PSD, to rounding
assert h_eigs[0] < -1e-3 * scale                     # the model's curvature makes H indefinite
assert np.sum(g_eigs > 1e-10) <= N * (C - 1)         # each p row sums to 1: H_L has rank C - 1

# -- where the dropped term vanishes: z is linear in the last layer's parameters -----------
np.testing.assert_allclose(G_dense[last, last], H[last, last], rtol=1e-10, atol=1e-13)
print(f"last-layer block ({n - last.start} x {n - last.start}): G == H")
print("ok: G v == J^T H_L J v, G is PSD, H is indefinite, and they agree where z is linear")
