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
       inv_update_every steps when the factors changed since the last one [Sec. 8];
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

Why G^-1 V A^-1 (row-major convention). theta = vec_r([W, b]) (row-major, as W.reshape(-1)).
Example n's gradient is the matrix sum_t d_t a~_t^T, so its vec_r is sum_t d_t (x) a~_t and
E[vec_r vec_r^T] ~= E[d d^T] (x) E[a~ a~^T] = G (x) A = np.kron(G, A) (Martens & Grosse stack
columns, vec([W b]), and write it A (x) G). For any P, Q: (P (x) Q) vec_r(V) = vec_r(P V Q^T),
hence (G (x) A)^-1 vec_r(V) = (G^-1 (x) A^-1) vec_r(V) = vec_r(G^-1 V A^-T) = vec_r(G^-1 V A^-1)
(A symmetric). In the eigenbases, G (x) A = (Q_G (x) Q_A) diag(vec_r(g a^T)) (Q_G (x) Q_A)^T, and
(Q_G (x) Q_A)^T vec_r(V) = vec_r(Q_G^T V Q_A), which gives step 4 for any diagonal M.

Robust linear algebra. Factors are symmetrized before eigh; a decomposition that fails or
is not finite is retried in float64, and failing that a FloatingPointError names the layer.
Eigenvalues below 0 (round-off of a PSD factor) are set to 0. A non-finite loss, gradient or
batch factor raises FloatingPointError before anything changes (parameters, factors, buffers).

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
import numbers

import numpy as np

from minigrad import grad as _grad
from minigrad.backend import to_device, xp_of
from minigrad.function import enable_grad, no_grad
from minigrad.functional import cross_entropy
from minigrad.nn import Conv2d, Linear, capture
from minigrad.random import generator

from .kfac_factors import (
    damped_kronecker_quadratic,
    decompose_factors,
    layer_matrix,
    levenberg_marquardt,
    precondition,
    reduction_ratio,
    sample_categorical,
    split_matrix,
)
from .optimizer import (
    Optimizer,
    agreed,
    all_finite,
    check_number,
    check_schedule,
    loss_and_outputs,
)

FISHER_KINDS = ("true", "empirical")
DAMPING_FORMS = ("factored", "eigen")
FACTOR_INITS = ("batch", "identity")


def _check_int(owner, name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class KFAC(Optimizer):
    """K-FAC on the Linear and Conv2d layers of `model`, SGD on its other parameters.

    KFAC(model, lr, damping, momentum=0.9, factor_decay=0.95, cov_update_every=1,
         inv_update_every=20, kl_clip=1e-3, fisher="true", damping_form="factored",
         factor_init="batch", weight_decay=0.0, layers=None, rng=None, adaptive_damping=False,
         adapt_every=5, min_damping=1e-8, max_damping=1e8)

    lr and damping: a number or a callable of the step. layers: None for every Linear/Conv2d
    of the model, or a list of them (or their dotted names). rng: int seed or Generator for the
    sampled labels of fisher="true". See the module docstring for the algorithm.
    """

    name = "KFAC"
    hyperparameters = ("damping", "momentum", "factor_decay", "cov_update_every",
                       "inv_update_every", "kl_clip", "fisher", "damping_form", "factor_init",
                       "weight_decay", "adaptive_damping", "adapt_every", "min_damping", "max_damping")
    bounds = {"lr": dict(low=0), "damping": dict(low=0, low_open=True),
              "momentum": dict(low=0, high=1, high_open=True),
              "factor_decay": dict(low=0, high=1, high_open=True), "cov_update_every": dict(low=1),
              "inv_update_every": dict(low=1), "kl_clip": dict(low=0, low_open=True),
              "weight_decay": dict(low=0), "adapt_every": dict(low=1),
              "min_damping": dict(low=0, low_open=True), "max_damping": dict(low=0, low_open=True)}

    def __init__(self, model, lr, damping, momentum=0.9, factor_decay=0.95, cov_update_every=1,
                 inv_update_every=20, kl_clip=1e-3, fisher="true", damping_form="factored",
                 factor_init="batch", weight_decay=0.0, layers=None, rng=None,
                 adaptive_damping=False, adapt_every=5, min_damping=1e-8, max_damping=1e8):
        super().__init__([p for p in model.parameters() if p.requires_grad])
        self.lr = lr
        self.damping = damping
        self.adaptive_damping = bool(adaptive_damping)
        self.adapt_every = _check_int(self.name, "adapt_every", adapt_every, 1)
        self.min_damping = check_number(self.name, "min_damping", min_damping, low=0, low_open=True)
        self.max_damping = check_number(self.name, "max_damping", max_damping, low=self.min_damping)
        if self.adaptive_damping and callable(self.damping):
            raise ValueError(f"{self.name}: adaptive_damping adapts a number; damping must not be "
                             f"a schedule, got {damping!r}")
        self.momentum = check_number(self.name, "momentum", momentum, low=0, high=1, high_open=True)
        self.factor_decay = check_number(self.name, "factor_decay", factor_decay, low=0, high=1,
                                         high_open=True)
        self.cov_update_every = _check_int(self.name, "cov_update_every", cov_update_every, 1)
        self.inv_update_every = _check_int(self.name, "inv_update_every", inv_update_every, 1)
        self.kl_clip = kl_clip
        self.fisher = fisher
        self.damping_form = damping_form
        self.factor_init = factor_init
        self.weight_decay = check_number(self.name, "weight_decay", weight_decay, low=0)
        # rng=None: a Generator of our own seeded from minigrad's global one (manual_seed makes
        # it reproducible; loading a checkpoint then never touches the global Generator)
        self.rng = generator(rng) if rng is not None else \
            np.random.default_rng(int(generator(None).integers(2 ** 63)))
        self.model = model

        index = {id(p): i for i, p in enumerate(self.params)}
        names = {id(m): n for n, m in model.named_modules()}
        if layers is None:
            layers = [m for m in model.modules() if isinstance(m, (Linear, Conv2d))]
        else:
            by_name = dict(model.named_modules())
            layers = [by_name[x] if isinstance(x, str) and x in by_name else x for x in layers]
            for m in layers:
                if not isinstance(m, (Linear, Conv2d)) or id(m) not in names:
                    raise ValueError(f"{self.name}: layers must be Linear or Conv2d modules of the "
                                     f"model (or their names), got {m!r}")
        # (label, module, weight index, bias index or None); frozen layers are left to SGD.
        self.layers = []
        for m in layers:
            if id(m.weight) in index and (m.bias is None or id(m.bias) in index):
                bias = index[id(m.bias)] if m.bias is not None else None
                self.layers.append((names[id(m)] or type(m).__name__, m, index[id(m.weight)], bias))
        if not self.layers:
            raise ValueError(f"{self.name}: the model has no trainable Linear or Conv2d layer to "
                             "precondition; use SGD")
        self._covered = {i for _, _, w, b in self.layers for i in (w, b) if i is not None}
        self._eigen = {}          # weight index -> (a, Q_A, g, Q_G, pi), never checkpointed
        self._capture = capture(model, [m for _, m, _, _ in self.layers])
        self._stats = self._capture.__enter__()

    # -- hyperparameters ---------------------------------------------------------------------
    @property
    def damping(self):
        return self._damping

    @damping.setter
    def damping(self, value):
        self._damping = check_schedule(self.name, "damping", value, low=0, low_open=True)

    @property
    def kl_clip(self):
        return self._kl_clip

    @kl_clip.setter
    def kl_clip(self, value):
        self._kl_clip = None if value is None else check_number(self.name, "kl_clip", value, low=0,
                                                               low_open=True)

    @property
    def fisher(self):
        return self._fisher

    @fisher.setter
    def fisher(self, value):
        if value not in FISHER_KINDS:
            raise ValueError(f"{self.name}: fisher must be 'true' or 'empirical', got {value!r}")
        self._fisher = value

    @property
    def damping_form(self):
        return self._damping_form

    @damping_form.setter
    def damping_form(self, value):
        if value not in DAMPING_FORMS:
            raise ValueError(f"{self.name}: damping_form must be 'factored' or 'eigen', got {value!r}")
        self._damping_form = value

    @property
    def factor_init(self):
        return self._factor_init

    @factor_init.setter
    def factor_init(self, value):
        if value not in FACTOR_INITS:
            raise ValueError(f"{self.name}: factor_init must be 'batch' or 'identity', got {value!r}")
        self._factor_init = value

    # -- the statistics' lifetime ------------------------------------------------------------
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
        for label, m, w, _ in self.layers:
            if m is layer or label == layer:
                s = self.state[w]
                return (s["A"], s["G"]) if "A" in s else None
        raise ValueError(f"{self.name}: {layer!r} is not a preconditioned layer")

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
        if self.adaptive_damping and (self.steps + 1) % self.adapt_every == 0 and closure is None:
            raise ValueError(f"{self.name}.step: adaptive_damping needs a closure to evaluate the "
                             "loss after the update")
        update_factors = self.steps % self.cov_update_every == 0
        sampled = self.fisher == "true" and update_factors
        idle = self.distributed and self.shard_weight == 0   # no rows of this batch here
        loss = global_loss = None
        if closure is not None:
            if outputs is not None:
                raise ValueError(f"{self.name}.step: give a closure or outputs, not both")
            self._stats.clear()
            with enable_grad():
                result = closure()
            loss, outputs = loss_and_outputs(result)
            global_loss = self.check_finite_loss(self.reduce_value(float(loss.item())))
            if sampled and outputs is None and not idle:
                raise ValueError(f"{self.name}.step: fisher='true' needs the model's outputs: let "
                                 "the closure return (loss, outputs)")
            super().zero_grad()
            loss.backward(retain_graph=sampled)
        elif sampled and outputs is None and not idle:
            raise ValueError(f"{self.name}.step: fisher='true' needs the model's outputs (logits) "
                             "to sample labels from: step(closure) with closure returning (loss, "
                             "outputs), or loss.backward(retain_graph=True); step(outputs=logits)")
        grads = self.gradients()
        if sampled:
            self._sampled_backward(outputs)

        lr, damping = self.value("lr"), self.value("damping")
        if damping <= 0:
            raise ValueError(f"{self.name}: damping({self.steps}) must be > 0, got {damping}")

        # Everything is computed first and committed last: an error changes nothing.
        new_factors = self._batch_factors() if update_factors else {}
        new_sources, jobs = {}, []
        refresh = self.steps % self.inv_update_every == 0
        for label, _, w, _ in self.layers:
            s = self.state[w]
            A, G = new_factors.get(w, (s.get("A"), s.get("G")))
            # resumed from a checkpoint: rebuild the eigenbases the run was using
            resumed = w not in self._eigen and "A_eig" in s and not (refresh and w in new_factors)
            fresh = w in new_factors or s.get("stale", False)
            if (refresh and fresh) or (w not in self._eigen and not resumed):
                if A is None:
                    raise RuntimeError(f"{self.name}: layer {label!r} has no curvature factors "
                                       "yet; the first step must update them "
                                       "(steps % cov_update_every == 0)")
                jobs.append((w, label, A, G))
                new_sources[w] = (A, G)
            elif resumed:
                jobs.append((w, label, s["A_eig"], s["G_eig"]))
        new_eigen = self._decompose_all(jobs)

        updates, quad = {}, 0.0
        preconditioned = self._precondition_all(new_eigen, grads, damping)
        for (label, m, w, b), (P, q) in zip(self.layers, preconditioned):
            quad += q
            updates[w], bias_update = split_matrix(P, self.params[w].shape, b is not None)
            if b is not None:
                updates[b] = bias_update
        quad *= lr * lr
        nu = 1.0
        if self.kl_clip is not None and quad > 0:
            nu = min(1.0, math.sqrt(self.kl_clip / quad))
        if not math.isfinite(quad):
            raise agreed(FloatingPointError(f"{self.name} step {self.steps + 1}: non-finite "
                                            "preconditioned gradient; the parameters were left "
                                            "unchanged"))

        # commit
        for w, (A, G) in new_factors.items():
            s = self.state[w]
            s["A"], s["G"] = A, G
            s["stale"] = True
        for w, eig in new_eigen.items():
            self._eigen[w] = eig
        for w, (A, G) in new_sources.items():
            s = self.state[w]
            s["A_eig"], s["G_eig"], s["stale"] = A, G, False
        adapt = self.adaptive_damping and (self.steps + 1) % self.adapt_every == 0
        before = [p.data for p in self.params] if adapt else None
        for i, (p, g, s) in enumerate(zip(self.params, grads, self.state)):
            if i in self._covered:
                u = nu * updates[i]
            else:
                u = g + self.weight_decay * p.data if self.weight_decay else g
            if self.momentum:
                u = u.copy() if "momentum_buffer" not in s else self.momentum * s["momentum_buffer"] + u
                s["momentum_buffer"] = u
            p.data = p.data - lr * u
        self.steps += 1
        self.info = {"lr": lr, "damping": damping, "nu": nu, "kl": quad,
                     "factors_updated": bool(new_factors), "inverses_refreshed": bool(new_sources),
                     "sampled_backward": sampled}
        if loss is not None:
            self.info["loss"] = global_loss
        if adapt:
            self._adapt_damping(closure, global_loss, before, grads, damping)
        return loss

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
        for _, m, w, b in self.layers:
            D = self._grad_matrix(m, w, b, deltas, decay=False)
            model_change += damped_kronecker_quadratic(D, self.state[w]["A"], self.state[w]["G"],
                                                       damping) / 2
        rho = reduction_ratio(new_loss - old_loss, model_change)
        damping = levenberg_marquardt(damping, rho, self.adapt_every)
        self.damping = min(self.max_damping, max(self.min_damping, damping))
        self.info["rho"] = rho

    # -- pieces of the step ------------------------------------------------------------------
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
        weights = [self.params[w] for _, _, w, _ in self.layers]
        _grad(sampled_loss, weights, allow_unused=True)     # recorded by the capture, then dropped

    def _batch_factors(self):
        """{weight index: (A, G)} after the moving average with this batch's factors (the
        global batch's when distributed: sum_r w_r A_r, sum_r w_r G_r in one allreduce)."""
        expected = 2 if self.fisher == "true" else 1
        raw = []
        for label, m, w, _ in self.layers:
            if self.shard_weight == 0:   # this rank has no rows of the batch: it adds nothing
                raw.extend(self._zero_factors(m))
                continue
            passes = self._stats.num_backward(m)
            if passes != expected:
                raise RuntimeError(
                    f"{self.name}: layer {label!r} recorded {passes} backward passes since "
                    f"zero_grad(), expected {expected} (fisher={self.fisher!r}): call "
                    "opt.zero_grad() before the forward and backward exactly once per step")
            raw.extend(self._stats.kfac_factors(m, backward=expected - 1))
        raw = self.reduce(raw)
        finite = all_finite(raw)   # [A_0, G_0, A_1, ...]: one host synchronization for all
        if not bool(finite.all()):
            k = int(np.argmin(to_device(finite, "cpu")))
            raise agreed(FloatingPointError(
                f"{self.name} step {self.steps + 1}: non-finite factor {'AG'[k % 2]} of layer "
                f"{self.layers[k // 2][0]!r}; the parameters were left unchanged"))
        out = {}
        for k, (label, m, w, _) in enumerate(self.layers):
            A_b, G_b = raw[2 * k], raw[2 * k + 1]
            s = self.state[w]
            before = (s["A"], s["G"]) if "A" in s else None
            if before is None and self.factor_init == "identity":
                xp = xp_of(A_b)
                before = (xp.eye(A_b.shape[0], dtype=A_b.dtype), xp.eye(G_b.shape[0], dtype=G_b.dtype))
            if before is not None and self.factor_decay > 0:
                d = self.factor_decay
                A_b = d * before[0] + (1 - d) * A_b
                G_b = d * before[1] + (1 - d) * G_b
            out[w] = (A_b, G_b)
        return out

    def _zero_factors(self, m):
        xp = xp_of(m.weight.data)
        d = m.weight.data[0].size + (m.bias is not None)
        o = m.weight.shape[0]
        return xp.zeros((d, d), m.weight.dtype), xp.zeros((o, o), m.weight.dtype)

    def _precondition_all(self, new_eigen, grads, damping):
        """[(P_l, <V_l, P_l>)] per layer, P_l the preconditioned gradient matrix V_l. Distributed:
        each layer's owner computes it, the others contribute zeros, and one fused allreduce
        (gradient-sized) gives every rank all of them."""
        out = []
        for label, m, w, b in self.layers:
            V = self._grad_matrix(m, w, b, grads)
            xp = xp_of(V)
            if self.distributed and self.owners()[w] != self.comm.rank:
                out.append((xp.zeros_like(V), xp.zeros((), dtype=np.float64)))
                continue
            P = precondition(V, new_eigen.get(w, self._eigen.get(w)), damping, self.damping_form)
            out.append((P, (V * P).sum().astype(np.float64)))
        # the <V_l, P_l> stay on the device and come back together: one host synchronization
        quads = xp_of(out[0][0]).stack([q for _, q in out])
        if self.distributed:
            reduced = self.comm.allreduce_sum([P for P, _ in out] + [quads])
            out, quads = [(P, None) for P in reduced[:-1]], reduced[-1]
        return [(P, float(q)) for (P, _), q in zip(out, to_device(quads, "cpu"))]

    def owners(self):
        """{weight index: rank} distributed: the rank that holds each layer's eigenbasis and
        preconditions its gradient (KAISA's memory-optimal layout). Layers go, largest first, to
        the rank with the least work so far, the work of a layer being its eigendecompositions'
        (d+1)^3 + o^3; the same on every rank."""
        if getattr(self, "_owners", None) is None:
            P = self.comm.world_size
            load, owners = [0] * P, {}
            sizes = [(-((m.weight.data[0].size + (b is not None)) ** 3 + m.weight.shape[0] ** 3), k, w)
                     for k, (_, m, w, b) in enumerate(self.layers)]
            for cost, _, w in sorted(sizes):
                r = min(range(P), key=lambda q: (load[q], q))
                owners[w], load[r] = r, load[r] - cost
            self._owners = owners
        return self._owners

    def _decompose_all(self, jobs):
        """{w: eigen} for jobs [(w, label, A, G)]. Distributed: only the owner of a layer
        decomposes it (about 1/P of the work on each rank); the others record None, "held by
        its owner", so that the bookkeeping of when to refresh is the same on every rank."""
        mine = jobs
        if self.distributed:
            owners = self.owners()
            mine = [job for job in jobs if owners[job[0]] == self.comm.rank]
        # all layers at once: one host synchronization (see decompose_factors)
        done = decompose_factors([(label, A, G) for _, label, A, G in mine])
        done = {job[0]: eig for job, eig in zip(mine, done)}
        return {w: done.get(w) for w, _, _, _ in jobs}

    def _decompose(self, label, A, G):
        """(a, Q_A, g, Q_G, pi, {}) of one layer; {}: precondition's cache of damped inverses."""
        return decompose_factors([(label, A, G)])[0]

    def _grad_matrix(self, m, w, b, grads, decay=True):
        """[grad W.reshape(O, -1), grad b] (+ weight_decay [W, b] when `decay`)."""
        gw, gb = grads[w], (grads[b] if b is not None else None)
        if decay and self.weight_decay:
            gw = gw + self.weight_decay * self.params[w].data
            if b is not None:
                gb = gb + self.weight_decay * self.params[b].data
        return layer_matrix(gw, gb)

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

