"""Curvature matrices of one batch as linear operators, for many products (CG, Lanczos).

Each operator does the work that does not depend on the vector once, at construction:
the gradient recorded with create_graph=True (Hessian), or J^T u for a dummy u and dL/dz
(GGN, Fisher). A `matvec` is then one more backward walk (Hessian) or three (GGN: the
double-vjp for J v, H_L J v, J^T(...); Fisher: two, its output-space matrix being closed-form).
See minigrad/curvature/products.py for the math.

    op = HessianOperator(loss, params)
    hv = op.matvec(vectors)                      # list of Tensors shaped like params
    y = op.matvec_flat(x)                        # flat backend arrays of length n
    scipy.sparse.linalg.eigsh(op.to_scipy(), k=1)
"""
import numpy as np

from ..backend import to_device, xp_of
from ..elementwise import const
from ..tensor import Tensor
from .products import (check_params, check_scalar, check_vectors, jvp, output_matrix,
                       transpose_jacobian, vjp)


class CurvatureOperator:
    """A symmetric n x n matrix over the parameters, n = total number of parameter elements.

    `shape` (n, n); `dtype` (the params' common dtype) and `device` of flat vectors;
    `calls`, the number of matrix-vector products taken so far (a dense() costs n).
    `op @ x` is `op.matvec_flat(x)`.
    Subclasses define `_matvec(list of Tensors) -> list of Tensors`.
    """

    name = "CurvatureOperator"

    def __init__(self, params):
        self.params = check_params(self.name, params)
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            raise ValueError(f"{self.name}: params are on different devices {sorted(devices)}")
        self.device = devices.pop()
        self.dtype = np.result_type(*[p.dtype for p in self.params])
        self.sizes = [p.size for p in self.params]
        n = sum(self.sizes)
        self.shape = (n, n)
        self.calls = 0

    def __repr__(self):
        return f"{self.name}(n={self.shape[0]}, dtype={self.dtype}, device='{self.device}')"

    # -- products -----------------------------------------------------------------------
    def matvec(self, vectors):
        """The product with `vectors` (Tensors or arrays shaped like the params)."""
        vectors = check_vectors(f"{self.name}.matvec", self.params, vectors)
        self.calls += 1
        out = self._matvec(vectors)
        given = {id(v.data) for v in vectors}
        # A result may be the very array that was passed in (an identity edge); never hand it back.
        return [const(o.data.copy()) if id(o.data) in given else o for o in out]

    def matvec_flat(self, x):
        """y = A x on flat backend arrays of length n."""
        return self.flatten(self.matvec(self.unflatten(x)))

    def __matmul__(self, x):
        return self.matvec_flat(x)

    def flatten(self, tensors):
        """One flat array (n,) of the op's dtype from Tensors or arrays shaped like the params."""
        # not getattr(t, "data", t): a NumPy array's .data is a memoryview, a CuPy array's a
        # MemoryPointer
        arrays = [t.data if isinstance(t, Tensor) else t for t in tensors]
        xp = xp_of(arrays[0])
        return xp.concatenate([xp.asarray(a, dtype=self.dtype).reshape(-1) for a in arrays])

    def unflatten(self, x):
        """A flat array of length n as constant Tensors shaped like the params (on their device)."""
        x = to_device(x.data if isinstance(x, Tensor) else x, self.device)
        if x.ndim != 1 or x.shape[0] != self.shape[0]:
            raise ValueError(f"{self.name}: a flat vector must have shape ({self.shape[0]},), "
                             f"got {tuple(x.shape)}")
        out, start = [], 0
        for p, size in zip(self.params, self.sizes):
            out.append(const(x[start:start + size].reshape(p.shape).astype(p.dtype, copy=False)))
            start += size
        return out

    # -- views ----------------------------------------------------------------------------
    def to_scipy(self):
        """A scipy.sparse.linalg.LinearOperator on flat float64 host vectors (symmetric)."""
        from scipy.sparse.linalg import LinearOperator

        def apply(x):
            x = np.asarray(x, dtype=np.float64).reshape(-1).astype(self.dtype, copy=False)
            return np.asarray(to_device(self.matvec_flat(x), "cpu"), dtype=np.float64)

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, dtype=np.float64)

    def dense(self):
        """The n x n matrix, built column by column (n products): for tests and small models."""
        n = self.shape[0]
        xp = xp_of(self.params[0].data)
        columns = []
        for j in range(n):
            e = xp.zeros(n, dtype=self.dtype)
            e[j] = 1
            columns.append(self.matvec_flat(e))
        return xp.stack(columns, axis=1)


class HessianOperator(CurvatureOperator):
    """H = d^2 loss / dtheta^2. g = dL/dtheta is recorded once (create_graph=True);
    H v = grad(g, theta, grad_outputs=v, retain_graph=True), one backward walk per product."""

    name = "HessianOperator"

    def __init__(self, loss, params):
        check_scalar(self.name, loss)
        super().__init__(params)
        self._grads = vjp([loss], self.params, [None], create_graph=True)

    def _matvec(self, vectors):
        return vjp(self._grads, self.params, vectors)


class GGNOperator(CurvatureOperator):
    """G = J^T H_L J (Schraudolph 2002, Martens 2010) with J = d outputs / d theta and H_L the
    Hessian of the loss in the outputs. J^T u (dummy u) and dL/dz are recorded once."""

    name = "GGNOperator"

    def __init__(self, loss, outputs, params):
        check_scalar(self.name, loss)
        super().__init__(params)
        self.outputs = outputs
        self._u, self._jtu = transpose_jacobian(outputs, self.params)
        self._dloss = vjp([loss], [outputs], [None], create_graph=True)

    def _matvec(self, vectors):
        jv = jvp(self._u, self._jtu, vectors)
        hjv = vjp(self._dloss, [self.outputs], [jv])[0]
        return vjp([self.outputs], self.params, [hjv])


class FisherOperator(CurvatureOperator):
    """The Fisher of the mean loss over the N rows of `outputs`: F = J^T M J, with M in closed
    form (see `fisher_vp`): kind="true" (equal to the GGN for cross-entropy and MSE) or
    kind="empirical" (the second moment of per-example gradients at the true labels)."""

    name = "FisherOperator"

    def __init__(self, outputs, params, labels=None, loss="cross_entropy", kind="true"):
        super().__init__(params)
        self.outputs, self.loss, self.kind = outputs, loss, kind
        self._matrix = output_matrix(outputs, labels, loss, kind, self.name)
        self._u, self._jtu = transpose_jacobian(outputs, self.params)

    def _matvec(self, vectors):
        mjv = const(self._matrix(jvp(self._u, self._jtu, vectors).data))
        return vjp([self.outputs], self.params, [mjv])
