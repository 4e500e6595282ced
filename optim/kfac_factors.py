"""The linear algebra and sampling behind K-FAC (optim/kfac.py): robust eigendecompositions of
the Kronecker factors (Eigenbasis), the damped preconditioner in the Kronecker eigenbasis, the
factored-damping pi, labels sampled from the model's predictive distribution for the true
Fisher, and the pieces of adaptive damping.

Why G^-1 V A^-1 (row-major convention). theta = vec_r([W, b]) (row-major, as W.reshape(-1)).
Example n's gradient is the matrix sum_t d_t a~_t^T, so its vec_r is sum_t d_t (x) a~_t and
E[vec_r vec_r^T] ~= E[d d^T] (x) E[a~ a~^T] = G (x) A = np.kron(G, A) (Martens & Grosse stack
columns, vec([W b]), and write it A (x) G). For any P, Q: (P (x) Q) vec_r(V) = vec_r(P V Q^T),
hence (G (x) A)^-1 vec_r(V) = (G^-1 (x) A^-1) vec_r(V) = vec_r(G^-1 V A^-T) = vec_r(G^-1 V A^-1)
(A symmetric). In the eigenbases, G (x) A = (Q_G (x) Q_A) diag(vec_r(g a^T)) (Q_G (x) Q_A)^T, and
(Q_G (x) Q_A)^T vec_r(V) = vec_r(Q_G^T V Q_A), which gives the preconditioner
V' = Q_G ((Q_G^T V Q_A) / M) Q_A^T for any diagonal M (precondition).

Robust linear algebra. Factors are symmetrized before eigh; a decomposition that fails or
is not finite is retried in float64, and failing that a FloatingPointError names the layer.
Eigenvalues below 0 (round-off of a PSD factor) are set to 0.

Cost. On the CPU the eigendecompositions are SciPy's LAPACK syevd (divide and conquer):
numpy.linalg.eigh calls the same routine, through numpy's own OpenBLAS build, and was 2 to 2.7
times slower on 1024 x 1024 float32 factors (benchmarks/optim.py). The damped inverses
Q diag(1/s) Q^T are formed as B B^T with B = Q diag(1/sqrt(s)): a product of a matrix with its
own transpose, which NumPy computes with BLAS syrk, half the work of a general product.
"""
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import scipy.linalg

from minigrad.backend import to_device, xp_of
from minigrad.functional import softmax


@dataclass
class Eigenbasis:
    """One layer's factors in their eigenbases, A = Q_A diag(a) Q_A^T and G = Q_G diag(g) Q_G^T
    (a, g >= 0), with the factored damping's pi = sqrt((tr A / dim A) / (tr G / dim G)) (1 where
    a trace is 0 or not finite).

    For damping_form="factored" it also keeps the damped inverses last formed from it,
    P_G = Q_G diag(1/(g + sqrt(lambda)/pi)) Q_G^T and P_A = Q_A diag(1/(a + pi sqrt(lambda))) Q_A^T,
    with the `damping` lambda they are for (None: not formed yet)."""

    a: Any
    QA: Any
    g: Any
    QG: Any
    pi: float
    damping: Optional[float] = None
    PG: Any = None
    PA: Any = None

    def damped_inverses(self, damping):
        """(P_G, P_A) for `damping`: formed once per eigenbasis and damping value."""
        if self.damping != damping:
            root = math.sqrt(damping)
            self.PG = _inverse_from_eigen(self.QG, self.g + root / self.pi)
            self.PA = _inverse_from_eigen(self.QA, self.a + self.pi * root)
            self.damping = damping
        return self.PG, self.PA


def _inverse_from_eigen(Q, values):
    """Q diag(1/values) Q^T = B B^T with B = Q diag(1/sqrt(values)) (values > 0): exactly
    symmetric, and a syrk instead of a general product on the CPU."""
    B = Q / xp_of(Q).sqrt(values)
    return B @ B.T


def _eigh(sym, overwrite=False):
    """(values, vectors) of the symmetric matrix `sym` (only its lower triangle is read):
    SciPy's syevd for a NumPy array, the array library's eigh otherwise (CuPy). `overwrite`:
    `sym` may be destroyed (saves a copy). No finiteness check here: the callers check."""
    if isinstance(sym, np.ndarray):
        # sym.T is the same symmetric matrix in column-major order, LAPACK's own: no copy
        return scipy.linalg.eigh(sym.T, driver="evd", check_finite=False, overwrite_a=overwrite)
    return xp_of(sym).linalg.eigh(sym)


def symmetric_eigh(matrix, label):
    """(eigenvalues >= 0, eigenvectors) of the symmetrized PSD `matrix`, in its dtype.

    Retried in float64 when the decomposition fails or is not finite; failing that, a
    FloatingPointError naming `label` (the layer and factor)."""
    xp = xp_of(matrix)
    sym = (matrix + matrix.T) / 2
    for dtype in (sym.dtype, np.float64):
        try:
            values, vectors = _eigh(sym.astype(dtype, copy=False))
        except (np.linalg.LinAlgError, ValueError):
            continue
        if bool(xp.isfinite(values).all()) and bool(xp.isfinite(vectors).all()):
            values = xp.maximum(values, 0)
            return values.astype(matrix.dtype, copy=False), vectors.astype(matrix.dtype, copy=False)
    raise FloatingPointError(f"KFAC: the eigendecomposition of factor {label} failed or is not "
                             f"finite (also in float64); shape {tuple(matrix.shape)}, "
                             f"finite entries: {bool(xp.isfinite(matrix).all())}")


def precondition(V, eig, damping, damping_form):
    """The damped (G (x) A)^-1 vec_r(V) as an (O, D+1) matrix, for the Eigenbasis `eig`.

    "eigen": Q_G ((Q_G^T V Q_A) / M) Q_A^T with M_ij = g_i a_j + lambda, four GEMMs per step.
    "factored": P_G V P_A with the damped inverses of eig.damped_inverses, formed once per
    decomposition and damping value, so a step costs two GEMMs: half the work on wide layers,
    where this dominates K-FAC's step.
    """
    if damping_form == "eigen":
        M = eig.g[:, None] * eig.a[None, :] + damping
        return eig.QG @ ((eig.QG.T @ V @ eig.QA) / M) @ eig.QA.T
    PG, PA = eig.damped_inverses(damping)
    return PG @ V @ PA


def _pi(ta, tg):
    """pi = sqrt(ta / tg), ta = tr A / dim A and tg = tr G / dim G; 1 where a trace is 0 or
    not finite."""
    if not (ta > 0 and tg > 0 and math.isfinite(ta) and math.isfinite(tg)):
        return 1.0
    return math.sqrt(ta / tg)


def decompose_factors(layers):
    """[Eigenbasis] for layers [(label, A, G)]: symmetric_eigh of both factors and the trace
    ratio pi (_pi), for all the layers with ONE host synchronization (on a GPU each check and
    trace read back alone is a synchronization: 6 per layer): every decomposition's finiteness
    flag and every trace come back in one transfer. A decomposition that failed or is not finite
    is redone by symmetric_eigh (float64 retry, or its FloatingPointError naming the layer)."""
    if not layers:
        return []
    xp = xp_of(layers[0][1])
    tries, flags, traces = [], [], []
    for _, A, G in layers:
        for M in (A, G):
            try:
                values, vectors = _eigh((M + M.T) / 2, overwrite=True)
                flags.append(xp.isfinite(values).all() & xp.isfinite(vectors).all())
            except (np.linalg.LinAlgError, ValueError):
                values = vectors = None
                flags.append(xp.zeros((), dtype=bool))
            tries.append((values, vectors))
            traces.append(M.trace())
    summary = to_device(xp.stack([v.astype(np.float64) for v in flags + traces]), "cpu")
    n, out = len(flags), []
    for k, (label, A, G) in enumerate(layers):
        parts = []
        for j, (what, M) in enumerate((("A", A), ("G", G))):
            values, vectors = tries[2 * k + j]
            if summary[2 * k + j] == 1:
                parts.append((xp.maximum(values, 0).astype(M.dtype, copy=False),
                              vectors.astype(M.dtype, copy=False)))
            else:
                parts.append(symmetric_eigh(M, f"{what} of layer {label!r}"))
        pi = _pi(float(summary[n + 2 * k]) / A.shape[0], float(summary[n + 2 * k + 1]) / G.shape[0])
        (a, QA), (g, QG) = parts
        out.append(Eigenbasis(a, QA, g, QG, pi))
    return out


def sample_categorical(logits, rng, uniforms=None):
    """Labels y_n ~ softmax(logits_n) (N,), int64 on the host, drawn with `rng` by inverting
    the CDF with one uniform per example (or with the given `uniforms`, one per row)."""
    p = to_device(softmax(logits.detach(), axis=-1).data, "cpu").astype(np.float64)
    u = rng.random(p.shape[0]) if uniforms is None else uniforms
    labels = (np.cumsum(p, axis=1) < u[:, None]).sum(axis=1)
    return np.minimum(labels, p.shape[1] - 1).astype(np.int64)


def damped_kronecker_quadratic(D, A, G, damping):
    """vec_r(D)^T (G (x) A + damping I) vec_r(D) = <D, G D A> + damping ||D||^2."""
    return float((D * (G @ D @ A)).sum() + damping * (D * D).sum())


def reduction_ratio(actual_change, model_change):
    """rho = actual / predicted reduction; -inf when the model predicts no decrease
    (model_change >= 0) or the actual change is not finite."""
    if model_change < 0 and math.isfinite(actual_change):
        return actual_change / model_change
    return -math.inf


def levenberg_marquardt(damping, rho, every):
    """Martens & Grosse 2015 Sec. 6.5: omega = (19/20)^every; rho > 3/4: damping * omega,
    rho < 1/4: damping / omega, else unchanged."""
    omega = (19 / 20) ** every
    if rho > 0.75:
        return damping * omega
    if rho < 0.25:
        return damping / omega
    return damping
