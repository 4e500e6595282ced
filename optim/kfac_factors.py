"""The linear algebra and sampling behind K-FAC (optim/kfac.py): robust eigendecompositions of
the Kronecker factors, the damped preconditioner in the Kronecker eigenbasis, the factored-damping
pi, and labels sampled from the model's predictive distribution for the true Fisher.
"""
import math

import numpy as np

from minigrad.backend import to_device, xp_of
from minigrad.functional import softmax


def symmetric_eigh(matrix, label):
    """(eigenvalues >= 0, eigenvectors) of the symmetrized PSD `matrix`, in its dtype.

    Retried in float64 when the decomposition fails or is not finite; failing that, a
    FloatingPointError naming `label` (the layer and factor)."""
    xp = xp_of(matrix)
    sym = (matrix + matrix.T) / 2
    for dtype in (sym.dtype, np.float64):
        try:
            values, vectors = xp.linalg.eigh(sym.astype(dtype, copy=False))
        except (np.linalg.LinAlgError, ValueError):
            continue
        if bool(xp.isfinite(values).all()) and bool(xp.isfinite(vectors).all()):
            values = xp.maximum(values, 0)
            return values.astype(matrix.dtype, copy=False), vectors.astype(matrix.dtype, copy=False)
    raise FloatingPointError(f"KFAC: the eigendecomposition of factor {label} failed or is not "
                             f"finite (also in float64); shape {tuple(matrix.shape)}, "
                             f"finite entries: {bool(xp.isfinite(matrix).all())}")


def precondition(V, eig, damping, damping_form):
    """The damped (G (x) A)^-1 vec_r(V) as an (O, D+1) matrix (see the module docstring).

    "eigen": Q_G ((Q_G^T V Q_A) / M) Q_A^T, four GEMMs per step. "factored": the two damped
    inverses P_G = Q_G diag(1/(g + sqrt(lambda)/pi)) Q_G^T and P_A likewise are formed once per
    decomposition and damping value (kept in the decomposition's cache, `eig[5]`), so a step
    costs two GEMMs, P_G V P_A: half the work on wide layers, where this dominates K-FAC's step.
    """
    a, QA, g, QG, pi = eig[:5]
    if damping_form == "eigen":
        M = g[:, None] * a[None, :] + damping
        return QG @ ((QG.T @ V @ QA) / M) @ QA.T
    cache = eig[5] if len(eig) > 5 else {}
    if cache.get("damping") != damping:
        root = math.sqrt(damping)
        cache.update(damping=damping, G=(QG / (g + root / pi)) @ QG.T, A=(QA / (a + pi * root)) @ QA.T)
    return cache["G"] @ V @ cache["A"]


def trace_ratio_pi(A, G):
    """pi = sqrt((tr A / dim A) / (tr G / dim G)); 1 where a trace is 0 or not finite."""
    return _pi(float(A.trace()) / A.shape[0], float(G.trace()) / G.shape[0])


def _pi(ta, tg):
    if not (ta > 0 and tg > 0 and math.isfinite(ta) and math.isfinite(tg)):
        return 1.0
    return math.sqrt(ta / tg)


def decompose_factors(layers):
    """[(a, Q_A, g, Q_G, pi, {})] for layers [(label, A, G)]: symmetric_eigh of both factors and
    trace_ratio_pi, for all the layers with ONE host synchronization (on a GPU each check and
    trace read back alone is a synchronization: 6 per layer): every decomposition's finiteness
    flag and every trace come back in one transfer. A decomposition that failed or is not finite
    is redone by symmetric_eigh (float64 retry, or its FloatingPointError naming the layer).
    The {} is precondition's cache of damped inverses."""
    if not layers:
        return []
    xp = xp_of(layers[0][1])
    tries, flags, traces = [], [], []
    for _, A, G in layers:
        for M in (A, G):
            try:
                values, vectors = xp.linalg.eigh((M + M.T) / 2)
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
        out.append(parts[0] + parts[1] + (pi, {}))
    return out


def sample_categorical(logits, rng, uniforms=None):
    """Labels y_n ~ softmax(logits_n) (N,), int64 on the host, drawn with `rng` by inverting
    the CDF with one uniform per example (or with the given `uniforms`, one per row)."""
    p = to_device(softmax(logits.detach(), axis=-1).data, "cpu").astype(np.float64)
    u = rng.random(p.shape[0]) if uniforms is None else uniforms
    labels = (np.cumsum(p, axis=1) < u[:, None]).sum(axis=1)
    return np.minimum(labels, p.shape[1] - 1).astype(np.int64)


def layer_matrix(weight_grad, bias_grad=None):
    """[weight_grad.reshape(O, -1), bias_grad] as an (O, D+1) matrix (bias column last)."""
    V = weight_grad.reshape(weight_grad.shape[0], -1)
    if bias_grad is None:
        return V
    return xp_of(V).concatenate([V, bias_grad[:, None]], axis=1)


def split_matrix(P, weight_shape, has_bias):
    """The inverse of layer_matrix: (weight-shaped array, bias array or None)."""
    if not has_bias:
        return P.reshape(weight_shape), None
    return P[:, :-1].reshape(weight_shape), P[:, -1]


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
