"""Sub-sampled trust-region Newton-CG: TRCG and its stochastic variant STRCG.

Xu, Roosta & Mahoney, "Newton-type methods for non-convex optimization under inexact Hessian
information" (arXiv:1708.07164, Math. Programming 2020), Algorithm 1 (TR with inexact Hessian),
and "Second-order optimization for non-convex machine learning: an empirical study"
(arXiv:1708.07827, SDM 2020), with the subproblem solved by Steihaug-Toint CG (Nocedal &
Wright, Algorithm 7.2; see optim/steihaug.py). One step at theta_t, radius Delta_t:

    f, g   = loss and gradient on the whole batch             closure()
    H      = Hessian (or Gauss-Newton matrix) on a uniform
             sub-sample S of the batch, |S| = ceil(hessian_fraction * N)   closure(S)
    s      = argmin_{|s| <= Delta} m(s) = g^T s + s^T H s / 2    (Steihaug-Toint CG)
    rho    = (f(theta) - f(theta + s)) / (m(0) - m(s))          closure() at theta + s
    rho <  reject_below:                  reject, Delta <- Delta / 2, solve again (same g, H)
    reject_below <= rho < expand_above:   accept, Delta <- min(max_radius, 1.2 Delta)
    rho >= expand_above:                  accept, Delta <- min(max_radius, 2 Delta)

Only the curvature is sub-sampled in TRCG (the papers' setting: exact g and f, inexact H).

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

The optimizer learns the batch size from `step(closure, batch_size=N)`; `batch_size=None`
(the default) means there is no batch to sub-sample (e.g. a test function): the curvature is
then that of closure()'s loss. `hessian_fraction=1.0` also uses the whole batch, without
drawing indices (and without touching the Generator), re-using the graph of closure()'s loss.

Retries: a rejected step is solved again with the halved radius, re-using g and H, at most
`max_retries` times per call of step (default 10, so the radius can shrink by 2^11 inside one
step). If every try is rejected the parameters stay where they were and the radius is half
the last one tried. A non-finite loss at a trial point counts as a rejection (rho = -inf); a
non-finite loss or gradient at the current point raises FloatingPointError, parameters
unchanged. Near a minimum both reductions fall to the rounding level of f, where rho is
noise: when the predicted reduction is below 100 eps max(1, |f|) and the actual one is not
below minus that, the step is taken and the radius kept (info rho still reports the ratio).

Defaults (radius 5, max_radius 20, hessian_fraction 0.05, cg_max_iters 250, cg_tol 1e-9,
reject_below 1e-4, expand_above 0.8) follow Xu, Roosta & Mahoney's experiments. The update has the
shape of the papers' Algorithm 1 (accept when rho >= eta, shrink by a constant factor on
rejection, enlarge on very successful steps); the exact constants of the authors' experiments
were not checked against their code. After a rejection the papers start a new iteration at
the same point with a smaller radius (drawing a new Hessian sample); here the re-solve stays
inside the same step and re-uses g and the same sample, which saves a gradient evaluation.
CG's relative-residual tolerance is floored at 10 eps of the dtype (no effect in float64).
"""
import copy
import math
import numbers

import numpy as np

from minigrad import grad, no_grad
from minigrad.backend import xp_of
from minigrad.curvature import GGNOperator, HessianOperator
from minigrad.curvature.operators import CurvatureOperator
from minigrad.function import enable_grad

from .optimizer import Optimizer, agreed, check_number, loss_and_outputs
from .steihaug import steihaug_cg

CURVATURES = ("hessian", "ggn")
SHRINK, ENLARGE, ENLARGE_MORE = 0.5, 1.2, 2.0
ROUNDING = 100   # reductions below ROUNDING * eps * max(1, |f|) are rounding noise


def _check_int(owner, name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


class TRCG(Optimizer):
    """Trust-region Newton-CG with a sub-sampled exact curvature (Xu, Roosta & Mahoney 2017).

    TRCG(params, radius=5.0, max_radius=20.0, hessian_fraction=0.05, cg_max_iters=250,
         cg_tol=1e-9, curvature="hessian", reject_below=1e-4, expand_above=0.8,
         max_retries=10, seed=0)

    step(closure, batch_size=None) returns the loss at the point the step started from and
    fills `info`: loss, rho, radius (after the update), step_radius (the radius of the last
    solve), accepted, rejections (in this step), cg_iterations (summed over tries),
    cg_stop (the last solve's reason), curvature_products, step_norm, predicted_reduction,
    actual_reduction, curvature_samples (rows in the curvature sub-sample, None = no batch).
    """

    name = "TRCG"
    hyperparameters = ("radius", "max_radius", "hessian_fraction", "cg_max_iters", "cg_tol",
                       "curvature", "reject_below", "expand_above", "max_retries")
    bounds = {"radius": dict(low=0, low_open=True), "max_radius": dict(low=0, low_open=True),
              "hessian_fraction": dict(low=0, low_open=True, high=1), "cg_max_iters": dict(low=1),
              "cg_tol": dict(low=0), "reject_below": dict(low=0, high=1, high_open=True),
              "expand_above": dict(low=0, low_open=True), "max_retries": dict(low=0)}

    def __init__(self, params, radius=5.0, max_radius=20.0, hessian_fraction=0.05,
                 cg_max_iters=250, cg_tol=1e-9, curvature="hessian", reject_below=1e-4,
                 expand_above=0.8, max_retries=10, seed=0):
        super().__init__(params)
        owner = self.name
        self.radius = check_number(owner, "radius", radius, low=0, low_open=True)
        self.max_radius = check_number(owner, "max_radius", max_radius, low=self.radius)
        self.hessian_fraction = check_number(owner, "hessian_fraction", hessian_fraction,
                                             low=0, low_open=True, high=1)
        self.cg_max_iters = _check_int(owner, "cg_max_iters", cg_max_iters, 1)
        self.cg_tol = check_number(owner, "cg_tol", cg_tol, low=0)
        if curvature not in CURVATURES:
            raise ValueError(f"{owner}: curvature must be one of {CURVATURES}, got {curvature!r}")
        self.curvature = curvature
        self.reject_below = check_number(owner, "reject_below", reject_below, low=0, high=1,
                                         high_open=True)
        self.expand_above = check_number(owner, "expand_above", expand_above,
                                         low=self.reject_below, low_open=True)
        self.max_retries = _check_int(owner, "max_retries", max_retries, 0)
        if isinstance(seed, np.random.Generator):
            self.rng = seed
        else:
            self.rng = np.random.default_rng(_check_int(owner, "seed", seed, 0))

    # -- the closure protocol --------------------------------------------------------------
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

    def _sample(self, batch_size):
        """Sorted rows of the curvature sub-sample, or None for the whole batch."""
        if batch_size is None or self.hessian_fraction == 1.0:
            return None
        size = max(1, math.ceil(self.hessian_fraction * batch_size))
        if size >= batch_size:
            return None
        return np.sort(self.rng.choice(batch_size, size=size, replace=False)).astype(np.int64)

    def _local_sample(self, indices, rows):
        """(this rank's rows of the global sub-sample `indices`, relative to its first row, and
        their share of the sample). rows = (lo, hi): the rank's rows of the global batch."""
        lo, hi = rows
        mine = indices[(indices >= lo) & (indices < hi)] - lo
        return mine, len(mine) / len(indices)

    def _global_matvec(self, operator, weight):
        """v -> sum_r w_r H_r v over ranks (one allreduce per product); H_r v = 0 on a rank with
        no rows in the sample. One process: the operator's own product."""
        if not self.distributed:
            return operator.matvec_flat

        def matvec(v):
            local = operator.matvec_flat(v) * weight if operator is not None else v * 0
            self._products += 1
            return self.comm.allreduce_sum([local])[0]
        return matvec

    # -- one step ----------------------------------------------------------------------------
    def step(self, closure, batch_size=None, rows=None):
        """One trust-region step (with up to max_retries re-solves after rejections).

        closure(indices=None) -> loss or (loss, outputs), the MEAN loss of the current batch or
        of its rows `indices`. batch_size: the number of rows closure() covers (None: no batch,
        the curvature is that of closure()'s loss). Returns the loss at the starting point.
        The parameters' .grad are not touched.

        Distributed (opt.distribute(comm)): batch_size is the GLOBAL batch's size N, rows =
        (lo, hi) the global rows this rank's closure() covers (closure(indices) takes indices
        relative to lo), and shard(hi - lo, N) has been called. The loss, the gradient and the
        trial losses are weighted sums over ranks; the sub-sample S is drawn from the same
        seeded Generator on every rank, over all N rows, exactly as one process would, and each
        rank evaluates its part of it; every curvature product is one allreduce. CG then runs
        the same on every rank. The return value is this rank's own loss (info["loss"] is the
        global one).
        """
        if closure is None:
            raise ValueError(f"{self.name}.step needs a closure (it evaluates the loss again at "
                             "trial points)")
        if batch_size is not None:
            batch_size = _check_int(f"{self.name}.step", "batch_size", batch_size, 1)
        if self.distributed and (batch_size is None or rows is None):
            raise ValueError(f"{self.name}.step: distributed, the step needs batch_size (the "
                             "global batch size) and rows (this rank's rows of it)")
        mine = True   # this rank holds rows of the batch (distributed, a short batch may not)
        if self.distributed:
            mine = rows[1] > rows[0]
        if mine:
            with enable_grad():
                loss, outputs = self._evaluate(closure)
            local_f = float(loss.item() if hasattr(loss, "item") else loss)
            with enable_grad():
                grads = grad(loss, self.params, retain_graph=True, allow_unused=True)
            grads = [xp_of(p.data).zeros_like(p.data) if g is None else g.data
                     for g, p in zip(grads, self.params)]
        else:
            loss, outputs, local_f = None, None, 0.0
            grads = [xp_of(p.data).zeros_like(p.data) for p in self.params]
        f0 = self.check_finite_loss(self.reduce_value(local_f))
        grads = self.reduce(grads)
        self.check_finite("gradient", grads)

        indices = self._sample(batch_size)
        weight = self.shard_weight
        if self.distributed and indices is not None:
            global_indices = indices
            indices, weight = self._local_sample(indices, rows)
            mine = len(indices) > 0
        self._products = 0
        with enable_grad():
            if not mine:
                operator = None
            elif indices is not None:
                sub_loss, sub_outputs = self._evaluate(closure, indices)
                if not self.distributed:   # distributed, a NaN shows in the reduced products
                    self.check_finite_loss(sub_loss)
                operator = self._curvature_operator(sub_loss, sub_outputs)
            else:
                operator = self._curvature_operator(loss, outputs)
        flat = operator if operator is not None else CurvatureOperator(self.params)
        matvec = self._global_matvec(operator, weight)
        if self.distributed and indices is not None:
            indices = global_indices
        g = flat.flatten(grads)

        start = [p.data for p in self.params]
        eps = float(np.finfo(flat.dtype).eps)
        noise = ROUNDING * eps * max(1.0, abs(f0))
        # A relative residual below ~eps is out of reach; chasing it lets rounding walk CG into
        # the null space of a singular H (float32 softmax models), so the tolerance is floored.
        tol = max(self.cg_tol, 10 * eps)
        info = {"loss": f0, "accepted": False, "rejections": 0, "cg_iterations": 0,
                "rho": float("nan"), "step_norm": 0.0, "predicted_reduction": 0.0,
                "actual_reduction": 0.0,
                "curvature_samples": None if batch_size is None else
                (batch_size if indices is None else len(indices))}
        for _ in range(self.max_retries + 1):
            radius = self.radius
            try:
                result = steihaug_cg(matvec, g, radius, tol=tol, max_iters=self.cg_max_iters)
            except FloatingPointError as exc:
                # the products are reduced over the ranks: every rank meets the same value
                raise agreed(FloatingPointError(f"{self.name} step {self.steps + 1}: {exc}; the "
                                                "parameters were left unchanged")) from None
            info.update(step_radius=radius, cg_iterations=info["cg_iterations"] + result.iterations,
                        cg_stop=result.reason)
            predicted = result.predicted_reduction
            if predicted <= 0:
                # s = 0 (a stationary point of the model, e.g. g = 0): nothing to test or take.
                break
            trial = self._trial_loss(closure, start, flat.unflatten(result.step), mine_rows=(
                not self.distributed or rows[1] > rows[0]))
            actual = f0 - trial
            rho = actual / predicted if math.isfinite(actual) else -math.inf
            info.update(rho=rho, predicted_reduction=predicted, actual_reduction=actual,
                        step_norm=float(math.sqrt(float((result.step * result.step).sum()))))
            if predicted <= noise and math.isfinite(actual) and actual >= -noise:
                # Both reductions are at the level of rounding in f: rho is noise, not a verdict
                # on the model. Take the step and keep the radius (a converged run stays put
                # instead of shrinking the radius on every step).
                info["accepted"] = True
                break
            if rho < self.reject_below:
                self._set(start)
                self.radius = radius * SHRINK
                info["rejections"] += 1
                continue
            factor = ENLARGE_MORE if rho >= self.expand_above else ENLARGE
            self.radius = min(self.max_radius, factor * radius)
            info["accepted"] = True
            break
        info.update(radius=self.radius, curvature_products=(
            self._products if self.distributed else operator.calls))
        self.steps += 1
        self.info = info
        return loss

    def _set(self, arrays):
        for p, a in zip(self.params, arrays):
            p.data = a

    def _trial_loss(self, closure, start, step, mine_rows=True):
        """The loss at theta + s (the weighted sum over ranks when distributed), the parameters
        left at theta + s (restored if it raises)."""
        self._set([a + s.data for a, s in zip(start, step)])
        try:
            value = 0.0
            if mine_rows:
                with no_grad():
                    loss, _ = self._evaluate(closure)
                value = float(loss.item() if hasattr(loss, "item") else loss)
            value = self.reduce_value(value)
        except BaseException:
            self._set(start)
            raise
        return value if math.isfinite(value) else math.inf

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self):
        """Step count, hyperparameters (the current radius among them) and the Generator's state."""
        return {"name": self.name, "steps": self.steps,
                "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
                "state": [{} for _ in self.params],
                "rng": copy.deepcopy(self.rng.bit_generator.state)}

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

    def __init__(self, params, radius=5.0, max_radius=20.0, hessian_fraction=0.05,
                 cg_max_iters=250, cg_tol=1e-9, curvature="hessian", reject_below=1e-4,
                 expand_above=0.8, max_retries=0, seed=0):
        super().__init__(params, radius=radius, max_radius=max_radius,
                         hessian_fraction=hessian_fraction, cg_max_iters=cg_max_iters,
                         cg_tol=cg_tol, curvature=curvature, reject_below=reject_below,
                         expand_above=expand_above, max_retries=max_retries, seed=seed)
