"""06. One trust-region step by Steihaug-Toint CG (Nocedal & Wright, Algorithm 7.2).

The subproblem of a trust-region Newton method:   min_s m(s) = g^T s + s^T H s / 2,  |s| <= radius.
CG from s_0 = 0 only ever needs products H p. Its iterates grow in norm (N&W Theorem 7.3) and
lower m, and it stops in one of three ways:
  - the next iterate would leave the region: stop ON the boundary along the current direction;
  - a direction with p^T H p <= 0 (H indefinite): follow it to the boundary (m keeps falling);
  - |g + H s| <= tol |g|: s is the Newton step -H^-1 g (H positive definite, inside the region).
Its first iterate is the Cauchy point (steepest descent, exactly minimized), so the step lowers
m at least as much as the Cauchy point does, and never more than the exact minimizer on the ball.

We check minigrad.optim.steihaug_cg on small dense problems, then one TRCG step on a quadratic.
"""
import numpy as np

import minigrad as mg
from minigrad.optim import TRCG, steihaug_cg

rng = np.random.default_rng(3)


def model(H, g, s):
    return float(g @ s + s @ H @ s / 2)


def cauchy_point(H, g, radius):
    """N&W (4.12): the minimizer of m along -g inside the region."""
    gHg, gn = g @ H @ g, np.linalg.norm(g)
    tau = 1.0 if gHg <= 0 else min(gn ** 3 / (radius * gHg), 1.0)
    return -tau * radius * g / gn


def exact_minimizer(H, g, radius):
    """N&W Theorem 4.1: s = -(H + lam I)^-1 g with lam >= max(0, -lambda_min) and |s| = radius,
    unless the Newton step fits (the "hard case" does not occur for these g). Bisection on lam."""
    w, Q = np.linalg.eigh(H)
    c = Q.T @ g

    def step(lam):
        return -Q @ (c / (w + lam))

    if w[0] > 0 and np.linalg.norm(step(0.0)) <= radius:
        return step(0.0)
    lo = max(0.0, -w[0])
    hi = lo + np.linalg.norm(g) / radius + 1.0       # there |s| <= |g| / (|g| / radius) = radius
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.linalg.norm(step(mid)) > radius else (lo, mid)
    return step(hi)


M = rng.standard_normal((6, 6))
positive = M @ M.T + 0.1 * np.eye(6)                 # positive definite
indefinite = positive - 3.0 * np.eye(6)              # a few negative eigenvalues
g = rng.standard_normal(6)
newton = -np.linalg.solve(positive, g)

cases = [("positive definite, large radius", positive, 2.0 * np.linalg.norm(newton), "converged"),
         ("positive definite, small radius", positive, 0.3 * np.linalg.norm(newton), "boundary"),
         ("indefinite", indefinite, 1.0, "negative_curvature")]
for title, H, radius, reason in cases:
    r = steihaug_cg(H, g, radius, tol=1e-12)         # a matrix, or any function x -> H x
    m_cg, m_c = model(H, g, r.step), model(H, g, cauchy_point(H, g, radius))
    m_star = model(H, g, exact_minimizer(H, g, radius))
    print(f"{title}: stop '{r.reason}' after {r.iterations} products, |s| = "
          f"{np.linalg.norm(r.step):.4f} (radius {radius:.4f})")
    print(f"    m(exact) = {m_star:.5f} <= m(CG step) = {m_cg:.5f} <= m(Cauchy) = {m_c:.5f}")
    assert r.reason == reason and abs(r.model_value - m_cg) < 1e-12
    assert m_star - 1e-10 <= m_cg <= m_c + 1e-12
    if reason == "converged":
        np.testing.assert_allclose(r.step, newton, rtol=1e-9)   # inside the region: Newton's step
    else:
        assert abs(np.linalg.norm(r.step) - radius) < 1e-12     # stopped on the boundary

# -- Theorem 7.3: the iterates s_1, s_2, ... grow in norm and lower the model ------------------
steps = [steihaug_cg(positive, g, 1e3, tol=0.0, max_iters=j).step for j in range(1, 6)]
norms, values = [np.linalg.norm(s) for s in steps], [model(positive, g, s) for s in steps]
print("CG iterates: |s_j| =", np.round(norms, 4), " m(s_j) =", np.round(values, 4))
assert all(a < b for a, b in zip(norms, norms[1:])) and all(a > b for a, b in zip(values, values[1:]))
np.testing.assert_allclose(steps[0], cauchy_point(positive, g, 1e3), rtol=1e-12)   # s_1 = Cauchy

# -- one TRCG step on f(theta) = g^T theta + theta^T H theta / 2: the model is f itself --------
theta = mg.tensor(np.zeros(6), requires_grad=True)
Ht, gt = mg.tensor(positive), mg.tensor(g)
opt = TRCG([theta], radius=0.3 * np.linalg.norm(newton), max_radius=100.0)
opt.step(lambda indices=None: (gt * theta).sum() + (theta * (Ht @ theta)).sum() / 2)
info = opt.info
print(f"TRCG step: stop '{info['cg_stop']}', rho = {info['rho']:.12f}, radius "
      f"{info['step_radius']:.4f} -> {info['radius']:.4f}")
assert abs(info["rho"] - 1) < 1e-10                  # actual reduction == predicted reduction
assert info["radius"] == 2 * info["step_radius"]     # rho >= expand_above: the radius doubles
np.testing.assert_allclose(theta.numpy(), steihaug_cg(positive, g, info["step_radius"]).step,
                           rtol=1e-10, atol=1e-14)
print("ok: Steihaug-CG stops where Algorithm 7.2 says, between the Cauchy point and the exact step")
