"""Steihaug-Toint conjugate gradients for the trust-region subproblem.

    min_s  m(s) = g^T s + s^T H s / 2     subject to  |s| <= radius

(Steihaug 1983, Toint 1981; Nocedal & Wright, Numerical Optimization, 2nd ed., Algorithm 7.2.)
CG from s_0 = 0 builds the iterates s_j whose norms grow monotonically, so the first time an
iterate would leave the region the solver stops on the boundary along the current direction
p_j; when it meets a direction of non-positive curvature p_j^T H p_j <= 0 it follows p_j to
the boundary, where the model keeps decreasing. Otherwise it stops when the relative residual
|r_j| = |g + H s_j| <= tol |g|, or after max_iters products.

Plain arrays in, plain arrays out (NumPy or CuPy, flat vectors): `matvec` is a function
x -> H x or a matrix. H is never formed. The residual r_j = g + H s_j is carried by the
recurrence, which also gives m(s) = (g^T s + r^T s) / 2 without another product.
"""
import math
from dataclasses import dataclass

from minigrad.backend import xp_of

REASONS = ("converged", "max_iters", "boundary", "negative_curvature")


@dataclass
class SteihaugResult:
    """The step s, the model value m(s) (<= 0: it never increases the model), the number of
    CG iterations (= curvature products), and why CG stopped (one of REASONS)."""

    step: object
    model_value: float
    iterations: int
    reason: str

    @property
    def predicted_reduction(self):
        """m(0) - m(s) = -m(s) >= 0."""
        return -self.model_value


def _dot(a, b):
    return float((a * b).sum())


def _to_boundary(s, p, radius):
    """tau >= 0 with |s + tau p| = radius, for |s| <= radius (the positive root)."""
    a, b, c = _dot(p, p), 2.0 * _dot(s, p), _dot(s, s) - radius * radius
    c = min(c, 0.0)  # |s| <= radius up to rounding; keeps the root real and >= 0
    root = math.sqrt(b * b - 4.0 * a * c)
    # The two algebraically equal forms, picked so that no cancellation occurs.
    return (-b + root) / (2.0 * a) if b <= 0 else (-2.0 * c) / (b + root)


def steihaug_cg(matvec, gradient, radius, tol=1e-9, max_iters=250):
    """Approximately minimize g^T s + s^T H s / 2 over |s| <= radius (N&W Algorithm 7.2).

    matvec: a function flat x -> H x (H symmetric), or a matrix (then H @ x).
    gradient: flat array g. radius > 0. tol: stop when |g + H s| <= tol |g|.
    Returns a SteihaugResult. A zero gradient gives s = 0, reason "converged", no products.
    If, through rounding, the final step does not decrease the model, the step is zero.
    A non-finite curvature p^T H p raises FloatingPointError (CG would go on with NaNs).
    """
    if radius <= 0 or not math.isfinite(radius):
        raise ValueError(f"steihaug_cg: radius must be a finite number > 0, got {radius!r}")
    if max_iters < 1:
        raise ValueError(f"steihaug_cg: max_iters must be >= 1, got {max_iters!r}")
    apply = matvec if callable(matvec) else (lambda x: matvec @ x)
    g = gradient
    xp = xp_of(g)
    s = xp.zeros_like(g)
    r = g.copy()                 # r_j = g + H s_j
    p = -r
    rr = _dot(r, r)
    g_norm = math.sqrt(rr)
    if g_norm == 0.0:
        return SteihaugResult(s, 0.0, 0, "converged")
    stop_at = tol * g_norm

    def finish(step, residual, iterations, reason):
        value = 0.5 * (_dot(g, step) + _dot(residual, step))   # g^T s + s^T (r - g) / 2
        if not value < 0:        # no decrease (rounding, or a breakdown): take no step
            return SteihaugResult(xp.zeros_like(g), 0.0, iterations, reason)
        return SteihaugResult(step, value, iterations, reason)

    for j in range(1, max_iters + 1):
        hp = apply(p)
        curvature = _dot(p, hp)
        if not math.isfinite(curvature):
            raise FloatingPointError(f"steihaug_cg: non-finite curvature p^T H p = {curvature} at CG "
                                     f"iteration {j} (the curvature products overflow or are NaN)")
        if curvature <= 0:
            tau = _to_boundary(s, p, radius)
            return finish(s + tau * p, r + tau * hp, j, "negative_curvature")
        alpha = rr / curvature
        s_next = s + alpha * p
        if math.sqrt(_dot(s_next, s_next)) >= radius:
            tau = _to_boundary(s, p, radius)
            return finish(s + tau * p, r + tau * hp, j, "boundary")
        r = r + alpha * hp
        s = s_next
        rr_next = _dot(r, r)
        if math.sqrt(rr_next) <= stop_at:
            return finish(s, r, j, "converged")
        p = -r + (rr_next / rr) * p
        rr = rr_next
    return finish(s, r, max_iters, "max_iters")
