"""Sub-sampled trust-region Newton-CG: TRCG and its stochastic variant STRCG.

Xu, Roosta & Mahoney, "Newton-type methods for non-convex optimization under inexact Hessian
information" (arXiv:1708.07164, Math. Programming 2020), Algorithm 1 (TR with inexact Hessian),
and "Second-order optimization for non-convex machine learning: an empirical study"
(arXiv:1708.07827, SDM 2020), with the subproblem solved by Steihaug-Toint CG (Nocedal &
Wright, Algorithm 7.2; see optim/steihaug.py). TRCG.step states the algorithm; only the
curvature is sub-sampled in TRCG (the papers' setting: exact g and f, inexact H). Which rows
the curvature uses, on one process or over the ranks, is in optim/trust_region_rows.py.

The closure protocol (see optim/optimizer.py):

    def closure(indices=None):
        x, y = (X, Y) if indices is None else (X[indices], Y[indices])
        out = model(x)
        loss = F.cross_entropy(out, y)       # the MEAN over the rows used
        return loss, out                      # or just `loss` when curvature="hessian"

`closure()` is the whole current batch; `closure(indices)` the rows `indices` (a sorted
int64 NumPy array drawn without replacement from the optimizer's seeded Generator).
curvature="ggn" needs the `(loss, outputs)` form (G = J^T H_L J with J = d outputs/d theta; the
part of the loss that does not go through `outputs`, such as weight decay written into the
loss, is NOT in G). The ratio test calls closure() again at the trial point under no_grad().

Retries: a rejected step is solved again with the halved radius, re-using g and H, at most
`max_retries` times per call of step (default 10, so the radius can shrink by 2^11 inside one
step). If every try is rejected the parameters stay where they were and the radius is half
the last one tried. A non-finite loss at a trial point counts as a rejection (rho = -inf); a
non-finite loss or gradient at the current point raises FloatingPointError, parameters
unchanged. Near a minimum both reductions fall to the rounding level of f, where rho is
noise: when the predicted reduction is below 100 eps max(1, |f|) and the actual one is not
below minus that, the step is taken and the radius kept (info rho still reports the ratio).

The defaults (optim/hyperparameters.py, TRCG.hyperparameters) are those of the authors' released
MATLAB code (subsampled_tr_cg.m): radius 5, max_radius 20, hessian_fraction 0.05,
cg_max_iters 250, cg_tol 1e-9, reject_below (eta2) 1e-4, expand_above (eta1) 0.8, and the radius
factors 1/2, 1.2 and 2 of the update rule below. After a rejection the papers' Algorithm 1 starts
a new iteration at the same point with a smaller radius (drawing a new Hessian sample); here,
as in their code, the re-solve stays inside the same step and re-uses g and the same sample,
which saves a gradient evaluation (their code retries without a limit, here max_retries). Their
code starts CG from a random point of norm 0.99 radius; here CG starts from 0 (Steihaug's
choice). CG's relative-residual tolerance is floored at 10 eps of the dtype (no effect in
float64).
"""
import copy
import math

import numpy as np

from minigrad import grad, no_grad
from minigrad.backend import xp_of
from minigrad.curvature import GGNOperator, HessianOperator
from minigrad.function import enable_grad

from .hyperparameters import STRCG_HYPERPARAMETERS, TRCG_HYPERPARAMETERS, check_int
from .optimizer import Optimizer, agreed, loss_and_outputs
from .steihaug import steihaug_cg
from .trust_region_rows import CurvatureProduct, curvature_rows

SHRINK, ENLARGE, ENLARGE_MORE = 0.5, 1.2, 2.0   # the authors' code: 1/gamma1, gamma2, gamma1
ROUNDING = 100   # reductions below ROUNDING * eps * max(1, |f|) are rounding noise


def _value(loss):
    """A loss (a 0-d Tensor or a number) as a float."""
    return float(loss.item() if hasattr(loss, "item") else loss)


def flatten(arrays, dtype):
    """Arrays shaped like the parameters as one flat vector of `dtype`: CG's vectors."""
    xp = xp_of(arrays[0])
    return xp.concatenate([xp.asarray(a, dtype=dtype).reshape(-1) for a in arrays])


def unflatten(vector, params):
    """A flat vector cut back into arrays shaped like `params`, each of its parameter's dtype."""
    arrays, start = [], 0
    for p in params:
        arrays.append(vector[start:start + p.size].reshape(p.shape).astype(p.dtype, copy=False))
        start += p.size
    return arrays


class TRCG(Optimizer):
    """Trust-region Newton-CG with a sub-sampled exact curvature (Xu, Roosta & Mahoney 2017).

    step(closure, batch_size=None) returns the loss at the point the step started from and
    fills `info`: loss, rho, radius (after the update), step_radius (the radius of the last
    solve), accepted, rejections (in this step), cg_iterations (summed over tries),
    cg_stop (the last solve's reason), curvature_products, step_norm, predicted_reduction,
    actual_reduction, curvature_samples (rows in the curvature sub-sample, None = no batch).
    """

    name = "TRCG"
    hyperparameters = TRCG_HYPERPARAMETERS

    def __init__(self, params, radius=5.0, max_radius=20.0, hessian_fraction=0.05,
                 cg_max_iters=250, cg_tol=1e-9, curvature="hessian", reject_below=1e-4,
                 expand_above=0.8, max_retries=10, seed=0):
        super().__init__(params)
        self.radius = radius
        self.max_radius = max_radius
        self.hessian_fraction = hessian_fraction
        self.cg_max_iters = cg_max_iters
        self.cg_tol = cg_tol
        self.curvature = curvature
        self.reject_below = reject_below
        self.expand_above = expand_above
        self.max_retries = max_retries
        if isinstance(seed, np.random.Generator):
            self.rng = seed
        else:
            self.rng = np.random.default_rng(check_int(self.name, "seed", seed, low=0))

    # -- one step ----------------------------------------------------------------------------
    def step(self, closure, batch_size=None, rows=None):
        """One trust-region step from theta with radius Delta:

            f, g  = loss and gradient of closure() at theta (the whole batch)
            H     = the curvature (Hessian, or Gauss-Newton matrix) of the mean loss over a
                    uniform sub-sample S of the batch, |S| = ceil(hessian_fraction * N)
            s     = argmin_{|s| <= Delta} m(s),  m(s) = g^T s + s^T H s / 2  (Steihaug-Toint CG)
            rho   = (f(theta) - f(theta + s)) / (m(0) - m(s))   actual / predicted reduction
            rho <  reject_below:                 reject, Delta <- Delta / 2, solve again (same g, H)
            reject_below <= rho < expand_above:  accept, Delta <- min(max_radius, 1.2 Delta)
            rho >= expand_above:                 accept, Delta <- min(max_radius, 2 Delta)

        closure(indices=None) -> loss or (loss, outputs), the MEAN loss of the current batch or
        of its rows `indices`. batch_size: the number of rows closure() covers (None: no batch,
        the curvature is that of closure()'s loss). Returns the loss at the starting point.
        The parameters' .grad are not touched.

        Distributed (opt.distribute(comm)): batch_size is the GLOBAL batch's size N, rows =
        (lo, hi) the global rows this rank's closure() covers, and shard(hi - lo, N, lo) has been
        called; see optim/trust_region_rows.py. It returns this rank's own loss (info["loss"]
        is the global one).
        """
        batch_size = self._check_step(closure, batch_size, rows)
        rows = rows if self.distributed else None
        holds_batch = rows is None or rows[1] > rows[0]
        loss, outputs, f, g = self._loss_and_gradient(closure, holds_batch)
        sample = curvature_rows(self.rng, self.hessian_fraction, batch_size, rows,
                                self.shard_weight)
        hessian = CurvatureProduct(self._curvature(closure, sample, loss, outputs), sample.weight,
                                   self.comm if self.distributed else None)
        info = {"loss": f, "accepted": False, "rejections": 0, "cg_iterations": 0,
                "rho": float("nan"), "step_norm": 0.0, "predicted_reduction": 0.0,
                "actual_reduction": 0.0, "curvature_samples": sample.samples}
        self._solve_and_test(closure, f, g, hessian, holds_batch, info)
        info.update(radius=self.radius, curvature_products=hessian.products)
        self.steps += 1
        self.info = info
        return loss

    def _check_step(self, closure, batch_size, rows):
        """batch_size as an int (or None); a ValueError for what step cannot do without."""
        if closure is None:
            raise ValueError(f"{self.name}.step needs a closure (it evaluates the loss again at "
                             "trial points)")
        if batch_size is not None:
            batch_size = check_int(f"{self.name}.step", "batch_size", batch_size, low=1)
        if self.distributed and (batch_size is None or rows is None):
            raise ValueError(f"{self.name}.step: distributed, the step needs batch_size (the "
                             "global batch size) and rows (this rank's rows of it)")
        return batch_size

    def _loss_and_gradient(self, closure, holds_batch):
        """(loss, outputs) of closure() on this rank (None, None on a rank without rows), and f
        and the flat g reduced over the ranks, checked to be finite."""
        zeros = [xp_of(p.data).zeros_like(p.data) for p in self.params]
        loss, outputs, local_f, grads = None, None, 0.0, zeros
        if holds_batch:
            with enable_grad():
                loss, outputs = self._evaluate(closure)
            local_f = _value(loss)
            with enable_grad():
                grads = grad(loss, self.params, retain_graph=True, allow_unused=True)
            grads = [z if g is None else g.data for g, z in zip(grads, zeros)]
        f = self.check_finite_loss(self.reduce_value(local_f))
        grads = self.reduce(grads)
        self.check_finite("gradient", grads)
        return loss, outputs, f, flatten(grads, self._dtype())

    def _curvature(self, closure, sample, loss, outputs):
        """The curvature operator of this rank's rows of S (CurvatureRows `sample`), None when
        it holds none; the whole batch re-uses the graph of closure()'s loss."""
        if not sample.holds_rows:
            return None
        with enable_grad():
            if sample.local is None:
                return self._curvature_operator(loss, outputs)
            sub_loss, sub_outputs = self._evaluate(closure, sample.local)
            if not self.distributed:   # distributed, a NaN shows in the reduced products
                self.check_finite_loss(sub_loss)
            return self._curvature_operator(sub_loss, sub_outputs)

    def _solve_and_test(self, closure, f, g, hessian, holds_batch, info):
        """Solve for s, test it, update the radius; after a rejection solve again with the halved
        radius and the same g and H, at most max_retries times. Fills `info`."""
        start = [p.data for p in self.params]
        eps = float(np.finfo(self._dtype()).eps)
        noise = ROUNDING * eps * max(1.0, abs(f))
        for _ in range(self.max_retries + 1):
            radius = self.radius
            result = self._solve(hessian, g, radius, eps)
            info.update(step_radius=radius, cg_iterations=info["cg_iterations"] + result.iterations,
                        cg_stop=result.reason)
            predicted = result.predicted_reduction
            if predicted <= 0:
                # s = 0 (a stationary point of the model, e.g. g = 0): nothing to test or take.
                break
            actual = f - self._trial_loss(closure, start, result.step, holds_batch)
            rho = actual / predicted if math.isfinite(actual) else -math.inf
            info.update(rho=rho, predicted_reduction=predicted, actual_reduction=actual,
                        step_norm=float(math.sqrt(float((result.step * result.step).sum()))))
            accepted, self.radius = self._radius_update(radius, rho, predicted, actual, noise)
            if accepted:
                info["accepted"] = True
                break
            self._set(start)
            info["rejections"] += 1

    def _solve(self, hessian, g, radius, eps):
        """Steihaug-Toint CG for argmin_{|s| <= radius} g^T s + s^T H s / 2."""
        # A relative residual below ~eps is out of reach; chasing it lets rounding walk CG into
        # the null space of a singular H (float32 softmax models), so the tolerance is floored.
        tol = max(self.cg_tol, 10 * eps)
        try:
            return steihaug_cg(hessian, g, radius, tol=tol, max_iters=self.cg_max_iters)
        except FloatingPointError as exc:
            # the products are reduced over the ranks: every rank meets the same value
            raise agreed(FloatingPointError(f"{self.name} step {self.steps + 1}: {exc}; the "
                                            "parameters were left unchanged")) from None

    def _radius_update(self, radius, rho, predicted, actual, noise):
        """(accepted, the next radius): the rule of step's docstring, except that when both
        reductions are below the rounding level `noise` of f the step is accepted as it is."""
        if predicted <= noise and math.isfinite(actual) and actual >= -noise:
            # rho is noise, not a verdict on the model: a converged run stays put instead of
            # shrinking the radius on every step.
            return True, radius
        if rho < self.reject_below:
            return False, radius * SHRINK
        factor = ENLARGE_MORE if rho >= self.expand_above else ENLARGE
        return True, min(self.max_radius, factor * radius)

    def _trial_loss(self, closure, start, step, holds_batch):
        """f(theta + s), s the flat `step` (the weighted sum over ranks when distributed; +inf
        if not finite), the parameters left at theta + s (restored if it raises)."""
        self._set([a + s for a, s in zip(start, unflatten(step, self.params))])
        try:
            value = 0.0
            if holds_batch:
                with no_grad():
                    loss, _ = self._evaluate(closure)
                value = _value(loss)
            value = self.reduce_value(value)
        except BaseException:
            self._set(start)
            raise
        return value if math.isfinite(value) else math.inf

    # -- the closure protocol and the parameters -----------------------------------------------
    def _evaluate(self, closure, indices=None):
        """(loss, outputs) from closure(indices); outputs is None for a bare loss."""
        return loss_and_outputs(closure() if indices is None else closure(indices))

    def _curvature_operator(self, loss, outputs):
        if self.curvature == "ggn":
            if outputs is None:
                raise ValueError(f"{self.name}: curvature='ggn' needs the closure to return "
                                 "(loss, outputs), it returned only the loss")
            return GGNOperator(loss, outputs, self.params)
        return HessianOperator(loss, self.params)

    def _dtype(self):
        """The dtype of CG's flat vectors: the parameters' common one."""
        return np.result_type(*[p.dtype for p in self.params])

    def _set(self, arrays):
        for p, a in zip(self.params, arrays):
            p.data = a

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self):
        """Step count, hyperparameters (the current radius among them) and the Generator's state."""
        saved = super().state_dict()
        saved["rng"] = copy.deepcopy(self.rng.bit_generator.state)
        return saved

    def load_state_dict(self, saved):
        if saved.get("name") != self.name:
            raise ValueError(f"{self.name}.load_state_dict: the state is of a {saved.get('name')!r}")
        if "rng" not in saved:
            raise ValueError(f"{self.name}.load_state_dict: the state has no 'rng' entry")
        super().load_state_dict(saved)
        state = copy.deepcopy(saved["rng"])
        if state.get("bit_generator") != type(self.rng.bit_generator).__name__:
            self.rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        self.rng.bit_generator.state = state


class STRCG(TRCG):
    """Stochastic TRCG: every step on a fresh mini-batch, one step costing O(batch).

    The same solver as TRCG; what changes is what the closure means. Each call of
    step(closure, batch_size=B) gets a closure over a NEW mini-batch of B rows, and the
    gradient, the curvature (on ceil(hessian_fraction * B) of those rows) and both losses
    of the ratio test all come from that mini-batch. rho then measures how well the model
    predicts the mini-batch loss, an unbiased but noisy estimate of the full objective's
    ratio: a good step can be rejected and a poor one accepted, so the radius is a noisy
    quantity too. Because the mini-batch changes anyway, a rejection does not retry on the
    same batch by default (max_retries=0): the radius halves and the next mini-batch tries.
    TRCG, by contrast, expects closure() to be the whole training set (or one fixed batch)
    at every step, so its ratio test is exact and only the curvature is sampled.
    """

    name = "STRCG"
    hyperparameters = STRCG_HYPERPARAMETERS

    def __init__(self, params, radius=5.0, max_radius=20.0, hessian_fraction=0.05,
                 cg_max_iters=250, cg_tol=1e-9, curvature="hessian", reject_below=1e-4,
                 expand_above=0.8, max_retries=0, seed=0):
        super().__init__(params, radius=radius, max_radius=max_radius,
                         hessian_fraction=hessian_fraction, cg_max_iters=cg_max_iters,
                         cg_tol=cg_tol, curvature=curvature, reject_below=reject_below,
                         expand_above=expand_above, max_retries=max_retries, seed=seed)
