"""minigrad.curvature: exact curvature products, curvature operators, and their spectra.

    from minigrad.curvature import HessianOperator, eigenvalues, trace, density
    op = HessianOperator(loss, params)        # records dL/dtheta once, create_graph=True
    hv = op.matvec(vectors)                   # exact H v, vectors shaped like params
    top = eigenvalues(op, k=3)                # Lanczos (CPU) / power iteration (GPU)
    tr = trace(op, samples=100)               # Hutchinson
    slq = density(op, probes=10, steps=30)    # stochastic Lanczos quadrature

products: `hvp`, `ggn_vp`, `fisher_vp` (one-shot); operators: `HessianOperator`, `GGNOperator`,
`FisherOperator` (repeated products on one batch, `to_scipy()`, `dense()`); spectrum:
`eigenvalues`, `trace`, `density`, `lanczos`.
"""
from .operators import CurvatureOperator, FisherOperator, GGNOperator, HessianOperator
from .products import fisher_vp, ggn_vp, hvp
from .spectrum import Density, Lanczos, density, eigenvalues, lanczos, trace

__all__ = ["hvp", "ggn_vp", "fisher_vp", "CurvatureOperator", "HessianOperator", "GGNOperator",
           "FisherOperator", "eigenvalues", "trace", "density", "lanczos", "Density", "Lanczos"]
