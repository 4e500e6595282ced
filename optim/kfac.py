"""K-FAC: Kronecker-factored approximate natural gradient (Martens & Grosse 2015).

    opt = KFAC(model, lr=0.1, damping=1e-2, fisher="empirical")
    for x, y in batches:                              # fisher="empirical": the usual loop
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    opt = KFAC(model, lr=0.1, damping=1e-2, fisher="true", rng=0)
    for x, y in batches:                              # fisher="true": the step needs the logits
        def closure(indices=None):
            logits = model(x)
            return F.cross_entropy(logits, y), logits  # (loss, outputs)
        opt.step(closure)
    # or, without a closure: opt.zero_grad(); logits = model(x); loss = F.cross_entropy(logits, y)
    #                        loss.backward(retain_graph=True); opt.step(outputs=logits)

Statistics. The optimizer keeps a `minigrad.nn.capture` block open on the model from
construction until `close()`. `zero_grad()` and the end of every `step()` clear it, so a
step sees exactly the forward and backward pass(es) run since the last `zero_grad()`:
A = (1/(N T)) sum a~ a~^T and, for fisher="empirical", G = (1/N) sum d d^T with d the
per-example gradient of the loss at its true labels. Curvature products (Hessian-vector,
GGN matvecs) are not recorded by the capture. A forward run under no_grad() between
zero_grad() and step() has no gradient and makes the step raise; run evaluation after step()
(a step with a closure clears the record itself before calling it). The record holds one
batch's layer inputs and output gradients; `close()` removes the hooks and frees them.

True Fisher. G comes from an extra backward pass (through minigrad.grad, so the parameters'
.grad stay the true-label gradient) of the MEAN cross-entropy of `outputs` (logits (N, C))
on labels y~_n drawn from softmax(outputs_n) with the optimizer's Generator `rng` (an int
seed or a Generator; None: a Generator seeded from minigrad's global one). For the
last layer this gives d_n = p_n - e_{y~_n}, whose expectation over y~ is
E[d d^T] = diag(p_n) - p_n p_n^T, the exact Fisher of the categorical likelihood, so G is an
unbiased (one-sample) estimate of the true Fisher factor. The extra pass is only run on the
steps that update the factors.

Per covered layer (every Linear / Conv2d of the model, `layers=` to choose) with gradient
matrix V = [dL/dW.reshape(O, -1), dL/db] (O, D+1), the step is (paper symbols in brackets):

    1. factors, every cov_update_every steps [Sec. 5, eps = factor_decay]:
           A <- decay A + (1 - decay) A_batch,   G <- decay G + (1 - decay) G_batch
       factor_init="batch": the first update sets A = A_batch, G = G_batch;
       factor_init="identity": A and G start from I, so the first update gives
           A = decay I + (1 - decay) A_batch (the running average starts at the identity, and
           for its first ~1/(1 - decay) updates the step is close to SGD's; KFAC-PyTorch does this);
       factor_decay = 0 keeps only the batch either way;
    2. eigendecompositions A = Q_A diag(a) Q_A^T, G = Q_G diag(g) Q_G^T, refreshed every
       inv_update_every steps when the factors changed since the last one [Sec. 8]
       (KFAC._refresh_due); distributed, each layer's by one rank (optim/kfac_owners.py);
    3. weight decay: V <- V + weight_decay [W, b];
    4. preconditioning with damping lambda [Sec. 6.3], in the Kronecker eigenbasis
           V' = Q_G ((Q_G^T V Q_A) / M) Q_A^T      (elementwise division by M, (O, D+1))
       damping_form="eigen":    M_ij = g_i a_j + lambda, i.e. exactly (G (x) A + lambda I)^-1;
       damping_form="factored": M_ij = (g_i + sqrt(lambda)/pi)(a_j + pi sqrt(lambda)), i.e.
           ((G + sqrt(lambda)/pi I) (x) (A + pi sqrt(lambda) I))^-1,
           pi = sqrt((tr A / dim A) / (tr G / dim G))  (1 where a trace is 0);
    5. KL clipping [Ba et al. 2017, Sec. 5]: nu = min(1, sqrt(kl_clip / (lr^2 sum_l <V_l, V'_l>)))
       over the covered layers (kl_clip=None: nu = 1), and U = nu V';
    6. momentum, exactly as SGD: buf <- U (first step), buf <- momentum buf + U; theta <- theta - lr buf.
Parameters of other modules (BatchNorm, ...) get plain SGD with the same lr, momentum and
weight decay: g <- grad + weight_decay theta, then step 6 with U = g.

Why G^-1 V A^-1, in the Kronecker eigenbasis: optim/kfac_factors.py derives step 4 (row-major
vec_r, G (x) A = np.kron(G, A)) and makes the eigendecompositions robust (symmetrized, retried in
float64, a FloatingPointError naming the layer). A non-finite loss, gradient, batch factor or
preconditioned gradient raises FloatingPointError before anything changes (parameters,
factors, buffers): steps 1-5 only compute, and their results are committed together.

`info` after a step: lr, damping, nu (the KL-clip factor, 1.0 without clipping), the
quadratic form lr^2 sum <V, V'> ("kl"), factors_updated, inverses_refreshed, sampled_backward
(the true Fisher's extra backward pass ran), and loss when a closure was given.
`state_dict()` holds the factors, the factors the current eigenbases came
from (so that a resumed run is bit-for-bit the same: eigendecompositions are recomputed on
load), momentum buffers, the step count and the Generator's state.

Adaptive damping (adaptive_damping=True, needs a closure and a number for damping; Martens &
Grosse Sec. 6.5). Every `adapt_every` (T1) steps, after the update delta, the closure is re-run
(under no_grad) and the reduction ratio
    rho = (h(theta + delta) - h(theta)) / M(delta),
    M(delta) = grad^T delta + 1/2 sum_l [<Delta_l, G Delta_l A> + lambda ||Delta_l||^2]
is formed, with Delta_l the update of layer l as an (O, D+1) matrix, i.e. the quadratic model
under the K-FAC curvature blockdiag(G (x) A) (the paper uses exact Fisher products; parameters
outside the covered layers enter M only through the gradient term). Levenberg-Marquardt:
rho > 3/4: lambda <- omega lambda; rho < 1/4 (or M >= 0, or h not finite): lambda <- lambda /
omega, with omega = (19/20)^T1; lambda is kept in [min_damping, max_damping]. info: "rho".
An update after which the loss is not finite is undone (the parameters go back; the momentum
buffers keep it) and the damping rises.

References: Martens & Grosse 2015, arXiv:1503.05671; Grosse & Martens 2016 (KFC, conv),
arXiv:1602.01407; Ba, Grosse & Martens 2017 (distributed K-FAC, KL clipping); George et al.
2018 (EKFAC, the Kronecker eigenbasis); kfac-jax and KAISA (Pauloski et al. 2021) for the
eigen-decomposition-based preconditioner and the update schedule.
"""
import math

import numpy as np

from minigrad import grad as _grad
from minigrad.backend import to_device, xp_of
from minigrad.function import enable_grad, no_grad
from minigrad.functional import cross_entropy
from minigrad.nn import capture
from minigrad.random import generator

from .kfac_factors import (damped_kronecker_quadratic, levenberg_marquardt, precondition,
                           reduction_ratio, sample_categorical)
from .kfac_layers import find_layers, layer_matrix
from .kfac_owners import LayerOwners
from .hyperparameters import KFAC_HYPERPARAMETERS
from .optimizer import Optimizer, agreed, all_finite, loss_and_outputs


class KFAC(Optimizer):
    """K-FAC on the Linear and Conv2d layers of `model`, SGD on its other parameters.

    lr and damping: a number or a callable of the step. layers: None for every Linear/Conv2d
    of the model, or a list of them (or their dotted names). rng: int seed or Generator for the
    sampled labels of fisher="true". See the module docstring for the algorithm, and
    optim/hyperparameters.py (KFAC.hyperparameters) for each hyperparameter's meaning, bounds
    and the source of its default.

    A layer's state is self.state[layer.weight] (checkpointed): "A", "G" the running factors
    (step 1); "A_eig", "G_eig" the factors its eigenbasis came from (a resumed run rebuilds the
    eigenbasis from them); "stale": the factors changed since; "momentum_buffer". The
    eigenbases themselves, self._eigen {layer.weight: Eigenbasis, or None where another rank
    owns the layer}, are not checkpointed.
    """

    name = "KFAC"
    hyperparameters = KFAC_HYPERPARAMETERS

    def __init__(self, model, lr, damping, momentum=0.9, factor_decay=0.95, cov_update_every=1,
                 inv_update_every=20, kl_clip=1e-3, fisher="true", damping_form="factored",
                 factor_init="batch", weight_decay=0.0, layers=None, rng=None,
                 adaptive_damping=False, adapt_every=5, min_damping=1e-8, max_damping=1e8):
        super().__init__([p for p in model.parameters() if p.requires_grad])
        self.lr = lr
        self.damping = damping
        self.momentum = momentum
        self.factor_decay = factor_decay
        self.cov_update_every = cov_update_every
        self.inv_update_every = inv_update_every
        self.kl_clip = kl_clip
        self.fisher = fisher
        self.damping_form = damping_form
        self.factor_init = factor_init
        self.weight_decay = weight_decay
        self.adaptive_damping = adaptive_damping
        self.adapt_every = adapt_every
        self.min_damping = min_damping
        self.max_damping = max_damping
        if self.adaptive_damping and callable(self.damping):
            raise ValueError(f"{self.name}: adaptive_damping adapts a number; damping must not be "
                             f"a schedule, got {damping!r}")
        # rng=None: a Generator of our own seeded from minigrad's global one (manual_seed makes
        # it reproducible; loading a checkpoint then never touches the global Generator)
        self.rng = generator(rng) if rng is not None else \
            np.random.default_rng(int(generator(None).integers(2 ** 63)))
        self.model = model
        self.layers = find_layers(self.name, model, self.params, layers)   # [kfac_layers.Layer]
        self._owners = LayerOwners(self.layers)      # one process: all layers are its own
        self._eigen = {}
        self._capture = capture(model, [layer.module for layer in self.layers])
        self._stats = self._capture.__enter__()

    # -- the statistics' lifetime, data parallelism --------------------------------------------
    def zero_grad(self):
        """Clear the gradients and the recorded statistics (the next forward starts a batch)."""
        super().zero_grad()
        self._stats.clear()

    def close(self):
        """Remove the optimizer's hooks from the model (no more steps after this)."""
        if self._stats.active:
            self._capture.__exit__(None, None, None)

    def factors(self, layer):
        """The current (A, G) of `layer` (module or name), or None before the first update."""
        for candidate in self.layers:
            if candidate.module is layer or candidate.label == layer:
                s = self.state[candidate.weight]
                return (s["A"], s["G"]) if "A" in s else None
        raise ValueError(f"{self.name}: {layer!r} is not a preconditioned layer")

    def distribute(self, comm):
        """Optimizer.distribute; each layer's eigendecompositions and preconditioning then run
        on one rank, its owner (optim/kfac_owners.py)."""
        super().distribute(comm)
        self._owners = LayerOwners(self.layers, comm if self.distributed else None)
        return self

    def owners(self):
        """{weight index: rank}: the rank that owns each layer (kfac_owners.assign_owners)."""
        return self._owners.of

    # -- the step ----------------------------------------------------------------------------
    def step(self, closure=None, outputs=None):
        """One K-FAC update. `closure() -> loss` or `-> (loss, outputs)` recomputes the batch
        (fisher="true" needs the outputs, logits (N, C), on factor-update steps); without a
        closure the step uses .grad and the passes recorded since zero_grad(), and `outputs`
        are the logits of that forward (its graph kept by loss.backward(retain_graph=True))."""
        if not self._stats.active:
            raise RuntimeError(f"{self.name}: step() after close()")
        try:
            return self._step(closure, outputs)
        finally:
            self._stats.clear()

    def _step(self, closure, outputs):
        adapt = self.adaptive_damping and (self.steps + 1) % self.adapt_every == 0
        if adapt and closure is None:
            raise ValueError(f"{self.name}.step: adaptive_damping needs a closure to evaluate the "
                             "loss after the update")
        update_factors = self.steps % self.cov_update_every == 0
        sampled = self.fisher == "true" and update_factors
        loss, global_loss, grads = self._loss_and_gradients(closure, outputs, sampled)
        lr, damping = self.value("lr"), self.value("damping")
        if damping <= 0:
            raise ValueError(f"{self.name}: damping({self.steps}) must be > 0, got {damping}")

        # steps 1-5 only compute, so that an error there changes nothing; then one commit
        factors = self._running_factors() if update_factors else {}       # step 1
        eigen, sources = self._refresh_eigenbases(factors)                # step 2
        updates, quad = self._precondition_all(grads, eigen, damping)     # steps 3, 4
        kl = lr * lr * quad
        nu = self._kl_clip_factor(kl)                                     # step 5
        self._commit(factors, eigen, sources)
        before = [p.data for p in self.params] if adapt else None
        self._apply(lr, nu, updates, grads)                               # step 6

        self.steps += 1
        self.info = {"lr": lr, "damping": damping, "nu": nu, "kl": kl,
                     "factors_updated": bool(factors), "inverses_refreshed": bool(sources),
                     "sampled_backward": sampled}
        if loss is not None:
            self.info["loss"] = global_loss
        if adapt:
            self._adapt_damping(closure, global_loss, before, grads, damping)
        return loss

    # -- the pieces of the step, in its order ------------------------------------------------
    def _loss_and_gradients(self, closure, outputs, sampled):
        """(loss or None, its global value, the reduced gradients). With a closure, its loss
        and outputs; `sampled`: the true Fisher's backward pass on labels drawn from the
        outputs, which must be given (except on a rank without rows of the batch)."""
        loss = global_loss = None
        if closure is not None:
            if outputs is not None:
                raise ValueError(f"{self.name}.step: give a closure or outputs, not both")
            self._stats.clear()
            with enable_grad():
                loss, outputs = loss_and_outputs(closure())
            global_loss = self.check_finite_loss(self.reduce_value(float(loss.item())))
            if self._lacks_outputs(sampled, outputs):
                raise ValueError(f"{self.name}.step: fisher='true' needs the model's outputs: let "
                                 "the closure return (loss, outputs)")
            super().zero_grad()
            loss.backward(retain_graph=sampled)
        elif self._lacks_outputs(sampled, outputs):
            raise ValueError(f"{self.name}.step: fisher='true' needs the model's outputs (logits) "
                             "to sample labels from: step(closure) with closure returning (loss, "
                             "outputs), or loss.backward(retain_graph=True); step(outputs=logits)")
        grads = self.gradients()
        if sampled:
            self._sampled_backward(outputs)
        return loss, global_loss, grads

    def _lacks_outputs(self, sampled, outputs):
        idle = self.distributed and self.shard_weight == 0   # no rows of this batch here
        return sampled and outputs is None and not idle

    def _sampled_backward(self, outputs):
        """A backward pass of the cross-entropy against labels sampled from the model's own
        predictive distribution (the true Fisher's G). Distributed, the uniforms are drawn for
        the whole global batch on every rank and each rank uses its rows' (shard(..., first_row)),
        so the labels are those one process would draw."""
        uniforms = None
        if self.distributed:
            if self.shard_rows is None:
                raise ValueError(f"{self.name}: distributed fisher='true' needs shard(local_rows, "
                                 "global_rows, first_row) before each step")
            lo, hi, total = self.shard_rows
            uniforms = self.rng.random(total)[lo:hi]
            if hi == lo:
                return
        if outputs.ndim != 2:
            raise ValueError(f"{self.name}: fisher='true' samples from softmax(outputs) and needs "
                             f"logits of shape (N, C), got shape {outputs.shape}")
        labels = sample_categorical(outputs, self.rng, uniforms)
        with enable_grad():
            sampled_loss = cross_entropy(outputs, labels)
        weights = [self.params[layer.weight] for layer in self.layers]
        _grad(sampled_loss, weights, allow_unused=True)     # recorded by the capture, then dropped

    def _running_factors(self):
        """Step 1: {weight index: (A, G)}, the running averages with this batch's factors."""
        out = {}
        for layer, batch in zip(self.layers, self._batch_factors()):
            s = self.state[layer.weight]
            before = (s["A"], s["G"]) if "A" in s else None
            if before is None and self.factor_init == "identity":
                xp = xp_of(batch[0])
                before = tuple(xp.eye(F.shape[0], dtype=F.dtype) for F in batch)
            if before is not None and self.factor_decay > 0:
                for old, new in zip(before, batch):     # the batch factors are ours: in place
                    new *= 1 - self.factor_decay
                    new += self.factor_decay * old
            out[layer.weight] = batch
        return out

    def _batch_factors(self):
        """[(A_batch, G_batch)] per layer, of the global batch when distributed
        (sum_r w_r A_r, sum_r w_r G_r in one allreduce), checked to be finite."""
        expected = 2 if self.fisher == "true" else 1
        raw = []
        for layer in self.layers:
            if self.shard_weight == 0:   # this rank has no rows of the batch: it adds nothing
                raw.extend(layer.zero_factors())
                continue
            passes = self._stats.num_backward(layer.module)
            if passes != expected:
                raise RuntimeError(
                    f"{self.name}: layer {layer.label!r} recorded {passes} backward passes since "
                    f"zero_grad(), expected {expected} (fisher={self.fisher!r}): call "
                    "opt.zero_grad() before the forward and backward exactly once per step")
            raw.extend(self._stats.kfac_factors(layer.module, backward=expected - 1))
        raw = self.reduce(raw)
        finite = all_finite(raw)   # [A_0, G_0, A_1, ...]: one host synchronization for all
        if not bool(finite.all()):
            k = int(np.argmin(to_device(finite, "cpu")))
            raise agreed(FloatingPointError(
                f"{self.name} step {self.steps + 1}: non-finite factor {'AG'[k % 2]} of layer "
                f"{self.layers[k // 2].label!r}; the parameters were left unchanged"))
        return list(zip(raw[0::2], raw[1::2]))

    def _refresh_due(self, layer, factors):
        """Step 2's schedule for one layer: is its eigenbasis (re)computed from its current
        factors at this step? On every inv_update_every-th step if its factors changed since its
        last refresh (updated at this step, in `factors`, or "stale": updated at an earlier step
        that was no refresh step); and whenever it has no eigenbasis and none saved to rebuild
        (the first step)."""
        s = self.state[layer.weight]
        if layer.weight not in self._eigen and "A_eig" not in s:
            return True
        changed = layer.weight in factors or s.get("stale", False)
        return self.steps % self.inv_update_every == 0 and changed

    def _refresh_eigenbases(self, factors):
        """Step 2: the layers' new eigenbases {w: Eigenbasis (None: another rank's)} and the
        factors {w: (A, G)} of those refreshed. A layer without an eigenbasis that is not due
        (a run resumed from a checkpoint) rebuilds the one it was using from A_eig, G_eig."""
        jobs, sources = [], {}
        for layer in self.layers:
            s = self.state[layer.weight]
            if self._refresh_due(layer, factors):
                A, G = factors.get(layer.weight, (s.get("A"), s.get("G")))
                if A is None:
                    raise RuntimeError(f"{self.name}: layer {layer.label!r} has no curvature "
                                       "factors yet; the first step must update them "
                                       "(steps % cov_update_every == 0)")
                jobs.append((layer.weight, layer.label, A, G))
                sources[layer.weight] = (A, G)
            elif layer.weight not in self._eigen:
                jobs.append((layer.weight, layer.label, s["A_eig"], s["G_eig"]))
        return self._decompose_all(jobs), sources

    def _decompose_all(self, jobs):
        """{w: Eigenbasis, None where another rank owns the layer} for jobs [(w, label, A, G)]."""
        return self._owners.decompose(jobs)

    def _precondition_all(self, grads, eigen, damping):
        """Steps 3 and 4: ({parameter index: the preconditioned gradient V'}, sum_l <V_l, V'_l>)
        over the covered layers, in the eigenbases of step 2 (`eigen`, not yet committed) or the
        ones kept from earlier steps."""
        def solve(w, V):
            return precondition(V, eigen.get(w, self._eigen.get(w)), damping, self.damping_form)

        matrices = [(layer.weight, self._grad_matrix(layer, grads)) for layer in self.layers]
        preconditioned, quads = self._owners.precondition(matrices, solve)
        updates = {}
        for layer, P in zip(self.layers, preconditioned):
            updates.update(layer.split(P))
        return updates, sum(quads)

    def _grad_matrix(self, layer, grads, decay=True):
        """[grad W.reshape(O, -1), grad b] (+ weight_decay [W, b] when `decay`)."""
        gw = grads[layer.weight]
        gb = grads[layer.bias] if layer.bias is not None else None
        if decay and self.weight_decay:
            gw = gw + self.weight_decay * self.params[layer.weight].data
            if gb is not None:
                gb = gb + self.weight_decay * self.params[layer.bias].data
        return layer_matrix(gw, gb)

    def _kl_clip_factor(self, kl):
        """Step 5: nu = min(1, sqrt(kl_clip / kl)), kl = lr^2 sum_l <V_l, V'_l> (1 without
        kl_clip); a kl that is not finite is an error (from a non-finite V')."""
        if not math.isfinite(kl):
            raise agreed(FloatingPointError(f"{self.name} step {self.steps + 1}: non-finite "
                                            "preconditioned gradient; the parameters were left "
                                            "unchanged"))
        if self.kl_clip is None or kl <= 0:
            return 1.0
        return min(1.0, math.sqrt(self.kl_clip / kl))

    def _commit(self, factors, eigen, sources):
        """Keep steps 1 and 2's results: the new factors (stale until their refresh), the new
        eigenbases, and the factors they came from."""
        for w, (A, G) in factors.items():
            self.state[w].update(A=A, G=G, stale=True)
        self._eigen.update(eigen)
        for w, (A, G) in sources.items():
            self.state[w].update(A_eig=A, G_eig=G, stale=False)

    def _apply(self, lr, nu, updates, grads):
        """Step 6: U = nu V' on the covered parameters, the (weight-decayed) gradient on the
        others; with momentum, buf <- momentum buf + U; theta <- theta - lr buf."""
        for i, (p, g, s) in enumerate(zip(self.params, grads, self.state)):
            if i in updates:
                u = nu * updates[i]
            else:
                u = g + self.weight_decay * p.data if self.weight_decay else g.copy()
            if self.momentum:                        # u is a new array: the buffer goes into it
                if "momentum_buffer" in s:
                    u += self.momentum * s["momentum_buffer"]
                s["momentum_buffer"] = u
            p.data = p.data - lr * u

    def _adapt_damping(self, closure, old_loss, before, grads, damping):
        """The Levenberg-Marquardt rule on the reduction ratio (module docstring)."""
        self._stats.clear()
        with no_grad():
            result = closure()
        new_loss = self.reduce_value(float(loss_and_outputs(result)[0].item()))
        if not math.isfinite(new_loss):  # the update overshot into inf/NaN: undo it, damp harder
            for p, b in zip(self.params, before):
                p.data = b
        deltas = [p.data - b for p, b in zip(self.params, before)]
        model_change = sum(float((g * d).sum()) for g, d in zip(grads, deltas))
        for layer in self.layers:
            D = self._grad_matrix(layer, deltas, decay=False)
            s = self.state[layer.weight]
            model_change += damped_kronecker_quadratic(D, s["A"], s["G"], damping) / 2
        rho = reduction_ratio(new_loss - old_loss, model_change)
        damping = levenberg_marquardt(damping, rho, self.adapt_every)
        self.damping = min(self.max_damping, max(self.min_damping, damping))
        self.info["rho"] = rho

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self):
        saved = super().state_dict()
        saved["rng"] = self.rng.bit_generator.state
        return saved

    def load_state_dict(self, saved):
        super().load_state_dict(saved)
        if "rng" in saved:
            self.rng.bit_generator.state = saved["rng"]
        self._eigen = {}       # rebuilt from the saved A_eig, G_eig at the next step
