"""03. A Hessian-vector product by double backward (Pearlmutter 1994).

    g(theta) = dL/dtheta                      grad(L, theta, create_graph=True)
    H v      = d/dtheta (g(theta) . v)        grad(g, theta, grad_outputs=v)

With create_graph=True the backward pass is itself recorded on the tape (every op's backward is
written with differentiable ops), so g is an ordinary function of theta that can be
differentiated again. H v then costs about two gradients, and H itself is never formed.

We check it on a tiny tanh network (26 parameters) against
  - the dense Hessian, built column by column: column j = H e_j, then H @ v;
  - central differences of the gradient: (g(theta + eps v) - g(theta - eps v)) / (2 eps);
  - minigrad.curvature.hvp and HessianOperator, the library's packaged versions.
"""
import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.curvature import HessianOperator, hvp

rng = np.random.default_rng(0)
X = mg.tensor(rng.standard_normal((8, 3)))           # 8 examples, 3 features (float64)
Y = mg.tensor(rng.standard_normal((8, 2)))           # regression targets
n = 4 * 3 + 4 + 2 * 4 + 2                            # W1 (4, 3), b1, W2 (2, 4), b2


def loss_of(theta):
    """The mean squared error of a 3-4-2 tanh network whose parameters are the flat theta."""
    W1, b1 = theta[0:12].reshape(4, 3), theta[12:16]
    W2, b2 = theta[16:24].reshape(2, 4), theta[24:26]
    return F.mse_loss(F.linear(F.linear(X, W1, b1).tanh(), W2, b2), Y)


def gradient_at(theta_array):
    theta = mg.tensor(theta_array, requires_grad=True)
    return mg.grad(loss_of(theta), theta)[0].numpy()


theta0 = rng.standard_normal(n)
v = rng.standard_normal(n)

# -- double backward ---------------------------------------------------------------------
theta = mg.tensor(theta0, requires_grad=True)
loss = loss_of(theta)
(g,) = mg.grad(loss, theta, create_graph=True)       # g is on the tape: a function of theta
(Hv,) = mg.grad(g, theta, grad_outputs=mg.tensor(v), retain_graph=True)
print(f"loss {loss.item():.6f}; |g| = {np.linalg.norm(g.numpy()):.6f}; |H v| = "
      f"{np.linalg.norm(Hv.numpy()):.6f}")

# -- the dense Hessian, one column per unit vector (n double-backward products) ----------
H = np.stack([mg.grad(g, theta, grad_outputs=mg.tensor(e), retain_graph=True)[0].numpy()
              for e in np.eye(n)], axis=1)
eigs = np.linalg.eigvalsh((H + H.T) / 2)
print(f"dense Hessian {H.shape}: asymmetry {np.abs(H - H.T).max():.1e}, "
      f"eigenvalues from {eigs[0]:+.4f} to {eigs[-1]:+.4f}")
assert np.allclose(H, H.T, rtol=0, atol=1e-14)        # mixed partials commute, to rounding
np.testing.assert_allclose(Hv.numpy(), H @ v, rtol=1e-12, atol=1e-14)

# -- central differences of the gradient along v --------------------------------------------
eps = 1e-5
fd = (gradient_at(theta0 + eps * v) - gradient_at(theta0 - eps * v)) / (2 * eps)
err = np.abs(fd - Hv.numpy()).max() / np.abs(Hv.numpy()).max()
print(f"finite differences of g along v: relative error {err:.1e} (O(eps^2), eps = {eps})")
assert err < 1e-8

# -- the library's packaged versions give the same numbers -----------------------------------
(lib_hv,) = hvp(loss, [theta], [mg.tensor(v)])
np.testing.assert_allclose(lib_hv.numpy(), Hv.numpy(), rtol=1e-13, atol=1e-15)
op = HessianOperator(loss, [theta])                  # records g once, then one walk per product
np.testing.assert_allclose(op.dense(), H, rtol=1e-13, atol=1e-15)
print(f"minigrad.curvature.hvp and HessianOperator.dense() agree ({op.calls} products)")
print("ok: H v by double backward == dense Hessian @ v == finite differences of the gradient")
