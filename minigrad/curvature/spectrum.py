"""The spectrum of a curvature operator from matrix-vector products only.

- `eigenvalues`: extreme eigenvalues. On the CPU, implicitly restarted Lanczos (ARPACK, through
  scipy.sparse.linalg.eigsh on `op.to_scipy()`); on the GPU, power iteration with deflation on
  device arrays (no host round trip per product).
- `trace`: Hutchinson's estimator tr(A) = E[z^T A z] for Rademacher z (Hutchinson 1989).
- `density`: the eigenvalue density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao
  2019; Lin, Saad & Yang 2016): for a unit probe v, m Lanczos steps give the tridiagonal
  T = Q^T A Q with Q[0] = v; with T = U diag(theta) U^T and tau_i = U[0, i]^2,
  v^T f(A) v ~= sum_i tau_i f(theta_i), exactly for polynomials f of degree <= 2m - 1. Averaging
  over probes, sum_i tau_i delta(lambda - theta_i) estimates the spectral density
  (1/n) sum_j delta(lambda - lambda_j), smoothed here by a Gaussian of width sigma.

`op` is a `CurvatureOperator` (or anything with `shape`, `dtype`, `device`, `matvec_flat` and,
for the CPU eigensolver, `to_scipy`). Probes are drawn on the host from
`numpy.random.default_rng(seed)` (`seed` an int or a Generator), so a seed gives the same
probes on either device, and the same numbers bit for bit on the CPU.
"""
import warnings
from dataclasses import dataclass

import numpy as np

from ..backend import to_device, xp_of
from ..tensor import Tensor

WHICH = ("LA", "SA", "LM")


def _int_at_least(fn, name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{fn}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _probe(op, rng):
    """A Rademacher vector (entries +-1) on the op's device, in its dtype."""
    z = rng.integers(0, 2, op.shape[0]).astype(op.dtype) * 2 - 1
    return to_device(z, op.device)


def _dot(a, b):
    return float(xp_of(a).vdot(a, b))


# ------------------------------------------------------------------------------ eigenvalues
def eigenvalues(op, k=1, which="LA", tol=0, maxiter=None, seed=0, method="auto"):
    """The k extreme eigenvalues of the symmetric operator, as a NumPy array.

    which: "LA" largest algebraic (returned in decreasing order), "SA" smallest algebraic
    (increasing), "LM" largest magnitude (decreasing |lambda|). method: "lanczos" (scipy's
    eigsh, ARPACK, seeded start vector; needs k < n), "power" (power iteration with deflation,
    on device arrays), or "auto": lanczos on the CPU, power on the GPU. tol=0 means machine
    precision for lanczos and sqrt(eps) of the op's dtype, relative, on the residual
    |A v - lambda v| for power iteration (eigenvalue errors are then of order eps). maxiter:
    eigsh's, or the power iterations per eigenvalue (default 1000; a RuntimeWarning if not
    converged). Power iteration converges like (lambda_2 / lambda_1)^t: fine for an isolated
    top eigenvalue, slow for clustered ones; it costs up to k + 1 runs (LA/SA shift the
    operator by |lambda|_max to make it PSD, which needs that eigenvalue first).
    """
    n = op.shape[0]
    if which not in WHICH:
        raise ValueError(f"eigenvalues: which must be one of {WHICH}, got {which!r}")
    if method not in ("auto", "lanczos", "power"):
        raise ValueError(f"eigenvalues: method must be 'auto', 'lanczos' or 'power', got {method!r}")
    if method == "auto":
        method = "power" if op.device == "cuda" else "lanczos"
    k = _int_at_least("eigenvalues", "k", k, 1)
    if method == "lanczos" and k >= n:
        raise ValueError(f"eigenvalues: k must be < n = {n} for Lanczos (eigsh), got k={k}; "
                         "use op.dense() for the whole spectrum")
    if k > n:
        raise ValueError(f"eigenvalues: k must be <= n = {n}, got k={k}")
    if tol < 0:
        raise ValueError(f"eigenvalues: tol must be >= 0, got {tol!r}")
    if method == "lanczos":
        import inspect

        from scipy.sparse.linalg import eigsh
        rng = np.random.default_rng(seed)
        options = {}
        if "rng" in inspect.signature(eigsh).parameters:
            # scipy >= 1.15 draws ARPACK's restart vectors from a fresh generator unless given one
            options["rng"] = rng
        vals = eigsh(op.to_scipy(), k=k, which=which, tol=tol, maxiter=maxiter,
                     v0=rng.standard_normal(n), return_eigenvectors=False, **options)
    else:
        vals = _power_eigenvalues(op, k, which, tol, maxiter, seed)
    key = {"LA": lambda v: -v, "SA": lambda v: v, "LM": lambda v: -abs(v)}[which]
    return np.array(sorted(np.asarray(vals, dtype=np.float64), key=key))


def _power(matvec, op, k, found, tol, maxiter, rng):
    """Extend `found` [(mu, q)] to k eigenpairs of largest |mu| of the symmetric `matvec`,
    iterating on P A P with P = I - Q Q^T (projection deflation: found directions map to 0)."""
    while len(found) < k:
        v = to_device(rng.standard_normal(op.shape[0]).astype(op.dtype), op.device)
        xp = xp_of(v)
        basis = xp.stack([q for _, q in found]) if found else None

        def deflate(x):
            return x if basis is None else x - basis.T @ (basis @ x)

        v = deflate(v)
        v /= xp.linalg.norm(v)
        mu = 0.0
        for _ in range(maxiter):
            w = deflate(matvec(v))
            mu = _dot(v, w)
            residual = float(xp.linalg.norm(w - mu * v))
            size = float(xp.linalg.norm(w))
            if size == 0:  # v is in the null space: the rest of the spectrum is 0
                break
            v = w / size
            if residual <= tol * abs(mu):
                break
        else:
            warnings.warn(f"eigenvalues: power iteration did not reach tol={tol} in {maxiter} "
                          f"iterations (residual {residual:.3g}, eigenvalue {mu:.6g})", RuntimeWarning, stacklevel=3)
        found.append((mu, v))
    return found


def _power_eigenvalues(op, k, which, tol, maxiter, seed):
    """LM: power iteration on A. LA: on B = A + rho I with rho = |lambda|_max, which is PSD, so its
    largest-magnitude eigenvalues are the largest algebraic ones of A, shifted (deflated
    directions go to 0, below all others). SA: the same for -A."""
    rng = np.random.default_rng(seed)
    tol = tol or float(np.sqrt(np.finfo(op.dtype).eps))
    maxiter = 1000 if maxiter is None else _int_at_least("eigenvalues", "maxiter", maxiter, 1)
    top = _power(op.matvec_flat, op, 1, [], tol, maxiter, rng)
    if which == "LM":
        return [mu for mu, _ in _power(op.matvec_flat, op, k, top, tol, maxiter, rng)]
    sign = 1.0 if which == "LA" else -1.0
    rho = abs(top[0][0])
    # When the top eigenvalue already has the wanted sign it is the first answer.
    found = [(sign * top[0][0] + rho, top[0][1])] if sign * top[0][0] >= 0 else []
    found = _power(lambda x: sign * op.matvec_flat(x) + rho * x, op, k, found, tol, maxiter, rng)
    # The Rayleigh quotient of A itself: mu - rho would lose the digits that rho has and A lacks.
    return [_dot(q, op.matvec_flat(q)) for _, q in found]


# ------------------------------------------------------------------------------ trace
def trace(op, samples=100, seed=0, return_std=False):
    """Hutchinson's estimate of tr(A): the mean of z^T A z over `samples` Rademacher probes z.

    Unbiased, with variance 2 (||A||_F^2 - sum_i A_ii^2) per probe. return_std=True also
    returns the standard error of the mean (sample std / sqrt(samples); nan for one sample).
    """
    samples = _int_at_least("trace", "samples", samples, 1)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for s in range(samples):
        z = _probe(op, rng)
        values[s] = _dot(z, op.matvec_flat(z))
    estimate = float(values.mean())
    if not return_std:
        return estimate
    std = float(values.std(ddof=1) / np.sqrt(samples)) if samples > 1 else float("nan")
    return estimate, std


# ------------------------------------------------------------------------------ SLQ
@dataclass
class Lanczos:
    """m Lanczos steps from a unit v: A Q^T = Q^T T + beta_m q_{m+1} e_m^T, T tridiagonal with
    diagonal `alphas` (m,) and off-diagonal `betas` (m - 1,); `basis` Q (m, n), orthonormal rows,
    Q[0] = v (a backend array on the op's device)."""
    alphas: np.ndarray
    betas: np.ndarray
    basis: object

    def tridiagonal(self):
        return np.diag(self.alphas) + np.diag(self.betas, 1) + np.diag(self.betas, -1)


def lanczos(op, v, steps):
    """`steps` Lanczos iterations from v (normalized here), with full reorthogonalization
    (Gram-Schmidt against all previous vectors, twice), so Q stays orthonormal to working
    precision. Stops early, with fewer steps, if the Krylov space becomes invariant."""
    n = op.shape[0]
    steps = _int_at_least("lanczos", "steps", steps, 1)
    if steps > n:
        raise ValueError(f"lanczos: steps must be <= n = {n}, got {steps}")
    v = v.data if isinstance(v, Tensor) else v   # (an array's .data is a memoryview/MemoryPointer)
    v = to_device(v, op.device).astype(op.dtype).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"lanczos: v must have {n} elements, got {v.shape[0]}")
    xp = xp_of(v)
    norm = float(xp.linalg.norm(v))
    if norm == 0:
        raise ValueError("lanczos: v is zero")
    basis = xp.zeros((steps, n), dtype=op.dtype)
    basis[0] = v / norm
    alphas, betas = [], []
    scale = 0.0
    for j in range(steps):
        w = op.matvec_flat(basis[j])
        alphas.append(_dot(basis[j], w))
        for _ in range(2):  # "twice is enough" (Kahan, Parlett)
            w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)
        if j + 1 == steps:
            break
        beta = float(xp.linalg.norm(w))
        scale = max(scale, abs(alphas[-1]), beta)
        if beta <= 10 * np.finfo(op.dtype).eps * scale:  # invariant subspace: T is exact
            basis = basis[:j + 1]
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return Lanczos(np.array(alphas), np.array(betas), basis)


@dataclass
class Density:
    """An SLQ spectral density: `density` on `grid` (NumPy arrays), and per probe the Gauss
    quadrature `nodes` theta_i and `weights` tau_i (lists of arrays; each weights sum to 1)."""
    grid: np.ndarray
    density: np.ndarray
    nodes: list
    weights: list
    sigma: float

    def moment(self, p):
        """The estimate of tr(A^p) / n: mean over probes of sum_i tau_i theta_i^p
        (each term exact for p <= 2 steps - 1; p = 1 is Hutchinson's estimate / n)."""
        return float(np.mean([np.sum(w * t ** p) for t, w in zip(self.nodes, self.weights)]))


def density(op, probes=10, steps=30, grid=None, sigma=None, seed=0, points=1000):
    """The eigenvalue density of A by stochastic Lanczos quadrature (Ghorbani et al. 2019):

        phi(lambda) = mean over probes of sum_i tau_i N(lambda; theta_i, sigma^2),

    with (theta_i, tau_i) from `steps` Lanczos steps on each normalized Rademacher probe.
    grid: where to evaluate phi (default: `points` points spanning all nodes +- 5 sigma);
    sigma: the Gaussian width (default: 1% of the nodes' range, or 1e-3 max(|theta|, 1) when
    they coincide). phi integrates to 1 over a grid that covers the nodes.
    """
    probes = _int_at_least("density", "probes", probes, 1)
    steps = _int_at_least("density", "steps", steps, 1)
    if steps > op.shape[0]:
        raise ValueError(f"density: steps must be <= n = {op.shape[0]}, got {steps}")
    from scipy.linalg import eigh_tridiagonal
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(probes):
        result = lanczos(op, _probe(op, rng), steps)
        theta, vectors = eigh_tridiagonal(result.alphas, result.betas)
        nodes.append(theta)
        weights.append(vectors[0] ** 2)
    everything = np.concatenate(nodes)
    low, high = float(everything.min()), float(everything.max())
    if sigma is None:
        sigma = 0.01 * (high - low) or 1e-3 * max(abs(high), 1.0)
    if not sigma > 0:
        raise ValueError(f"density: sigma must be > 0, got {sigma!r}")
    grid = np.linspace(low - 5 * sigma, high + 5 * sigma, points) if grid is None \
        else np.asarray(grid, dtype=np.float64)
    phi = np.zeros_like(grid)
    for theta, tau in zip(nodes, weights):
        gauss = np.exp(-0.5 * ((grid[:, None] - theta[None, :]) / sigma) ** 2)
        phi += gauss @ tau / (sigma * np.sqrt(2 * np.pi))
    return Density(grid, phi / probes, nodes, weights, float(sigma))
