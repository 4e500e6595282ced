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
    """The damped (G (x) A)^-1 vec_r(V) as an (O, D+1) matrix (see the module docstring)."""
    a, QA, g, QG, pi = eig
    if damping_form == "eigen":
        M = g[:, None] * a[None, :] + damping
    else:
        root = math.sqrt(damping)
        M = (g + root / pi)[:, None] * (a + pi * root)[None, :]
    return QG @ ((QG.T @ V @ QA) / M) @ QA.T


def trace_ratio_pi(A, G):
    """pi = sqrt((tr A / dim A) / (tr G / dim G)); 1 where a trace is 0 or not finite."""
    ta = float(A.trace()) / A.shape[0]
    tg = float(G.trace()) / G.shape[0]
    if not (ta > 0 and tg > 0 and math.isfinite(ta) and math.isfinite(tg)):
        return 1.0
    return math.sqrt(ta / tg)


def sample_categorical(logits, rng):
    """Labels y_n ~ softmax(logits_n) (N,), int64 on the host, drawn with `rng` by inverting
    the CDF with one uniform per example."""
    p = to_device(softmax(logits.detach(), axis=-1).data, "cpu").astype(np.float64)
    u = rng.random(p.shape[0])
    labels = (np.cumsum(p, axis=1) < u[:, None]).sum(axis=1)
    return np.minimum(labels, p.shape[1] - 1).astype(np.int64)
