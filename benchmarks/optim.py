"""Optimizer step costs, run by hand (never in the tests).

    python benchmarks/optim.py                    # both parts, a few minutes on 2 idle cores
    python benchmarks/optim.py --quick            # smoke run: small batches, one round
    python benchmarks/optim.py --skip-loops --rounds 7 --batches 512,2048,8192
    OPENBLAS_NUM_THREADS=1 python benchmarks/optim.py --trust-region --clock cpu --rounds 5

MLP 784-1024-1024-10 (ReLU, softmax cross-entropy), float32, random data.

1. K-FAC at its floor. `FloorKFAC` is minigrad's K-FAC step (fisher="empirical",
   damping_form="factored", factor_init="batch") written out by hand in NumPy: the hand-written
   forward and backward, the factors as symmetric rank-k products, their running averages,
   eigh every inv_update_every steps with cached damped inverses, two GEMMs per layer to
   precondition, the KL clip and momentum: what the step costs at the least. First (untimed)
   the floor and minigrad.optim.KFAC run a few float64 steps from the same weights and their
   parameters must agree to rounding (exit status 1 otherwise). Then, at each batch size, one
   step of each kind is timed per round: SGD (momentum 0.9); for K-FAC and the floor a step
   without factors (P), with factors (F) and with factors and eigendecompositions (I), the kind
   picked by setting the step counter. With inv_update_every=20 a 20-step period costs
   19 F + I (factors every step) or 18 P + F + I (factors every 10 steps): the rows are these
   amortized steps as ratios, medians (and ranges) of same-round ratios, with the share of the
   amortized step spent in the eigendecompositions. Target: K-FAC within 1.15x of the floor.
2. Consecutive steps at batch 1024: time per step of SGD and K-FAC (inv_update_every=20,
   empirical and true Fisher, factors every step; and the empirical one with
   cov_update_every=10), each over `--steps` consecutive steps so that the refreshes are
   amortized as in training; target K-FAC <= 1.5 x SGD; and one TRCG step (hessian_fraction
   0.05) against one gradient, with its CG iterations and curvature products from `info`.
3. (--trust-region, alone) One TRCG and one STRCG step at batch 1024 from the same weights, at
   hessian_fraction 0.05 and 1, in gradients (medians of same-round ratios), against the ideal
   1 + trials x forward + products x matvec (a trial point is one forward; the matvec is the
   HessianOperator product measured on ceil(fraction N) rows) and against 1 + trials / 3 +
   products x 4/3 fraction; with the cost of building the operator and of a Hessian and a GGN
   product alone. Use --clock cpu with OPENBLAS_NUM_THREADS=1.
Rounds alternate the methods (the machine is shared and noisy); a 0.2 s pause before each
timed call lets the BLAS threads of the previous one stop spinning.
"""
import argparse
import math
import sys
import time

import numpy as np
import scipy.linalg

import minigrad as mg
import minigrad.functional as F
from minigrad.nn import models
from minigrad.curvature import GGNOperator, HessianOperator
from minigrad.optim import KFAC, SGD, STRCG, TRCG

SIZES = [784, 1024, 1024, 10]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]      # part 1's clock (--clock)
KFAC_SETTINGS = dict(lr=0.01, damping=1e-2, momentum=0.9, factor_decay=0.95, kl_clip=1e-3)


def data(rng, n=1024, dtype=np.float32):
    return (mg.tensor(rng.standard_normal((n, 784)).astype(dtype)), rng.integers(0, 10, n))


# -- 1. the floor --------------------------------------------------------------------------------
class FloorKFAC:
    """minigrad.optim.KFAC's step for an MLP of Linear layers with ReLU between them,
    fisher="empirical", damping_form="factored", factor_init="batch", weight_decay=0, by hand.
    Per layer, with input a (N, D) and output gradient g = dL/ds (N, O) of the mean loss:

        A_batch = [a 1]^T [a 1] / N,  G_batch = N g^T g      (symmetric rank-N products: syrk)
        A <- decay A + (1 - decay) A_batch (the first time A_batch), the same for G
        every inv_update_every steps when the factors changed (and at the first step):
            A = Q_A diag(a) Q_A^T, G = Q_G diag(g) Q_G^T         (eigh: SciPy's LAPACK syevd)
            pi = sqrt((tr A / dim A) / (tr G / dim G))
            P_A = Q_A diag(1/(a + pi sqrt(lambda))) Q_A^T,  P_G = Q_G diag(1/(g + sqrt(lambda)/pi)) Q_G^T
        V = [dW, db],  V' = P_G V P_A                            (two GEMMs)
        nu = min(1, sqrt(kl_clip / (lr^2 sum_l <V, V'>)))
        buf <- momentum buf + nu V' (the first time nu V');  [W, b] <- [W, b] - lr buf
    Factors every cov_update_every steps; `steps` counts steps as KFAC.steps does.
    numpy.linalg.eigh calls the same LAPACK routine as SciPy, through numpy's own OpenBLAS
    build, and was 2 to 2.7x slower on these factors on this project's machine.
    """

    def __init__(self, model, lr, damping, momentum, factor_decay, kl_clip, cov_update_every,
                 inv_update_every):
        linears = [m for m in model.modules() if isinstance(m, mg.nn.Linear)]
        self.W = [m.weight.data.copy() for m in linears]
        self.b = [m.bias.data.copy() for m in linears]
        self.lr, self.damping, self.momentum, self.decay = lr, damping, momentum, factor_decay
        self.kl_clip, self.cov_every, self.inv_every = kl_clip, cov_update_every, inv_update_every
        self.A = self.G = self.inverses = self.buffers = None
        self.stale, self.steps, self.eigh_seconds = False, 0, 0.0

    def forward_backward(self, x, y):
        """([layer input a], [output gradient g], [dW], [db]) of the mean cross-entropy."""
        inputs, h = [], x
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            inputs.append(h)
            h = h @ W.T
            h += b
            if k < len(self.W) - 1:
                h = np.maximum(h, 0)
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        g = p / len(y)
        out_grads, dW, db = [None] * len(self.W), [None] * len(self.W), [None] * len(self.W)
        for k in reversed(range(len(self.W))):
            out_grads[k], dW[k], db[k] = g, g.T @ inputs[k], g.sum(axis=0)
            if k:
                g = (g @ self.W[k]) * (inputs[k] > 0)
        return inputs, out_grads, dW, db

    def update_factors(self, inputs, out_grads):
        """Step 1: the running averages, in place (a matrix times its own transpose is syrk)."""
        n = len(inputs[0])
        batch_A, batch_G = [], []
        for a, g in zip(inputs, out_grads):
            A = np.empty((a.shape[1] + 1,) * 2, a.dtype)
            A[:-1, :-1] = a.T @ a
            A[-1, :-1] = A[:-1, -1] = a.sum(axis=0)
            A[-1, -1] = n
            A /= n
            G = g.T @ g
            G *= n
            batch_A.append(A)
            batch_G.append(G)
        if self.A is None:
            self.A, self.G = batch_A, batch_G
        else:
            for old, new in zip(self.A + self.G, batch_A + batch_G):
                old *= self.decay
                new *= 1 - self.decay
                old += new
        self.stale = True

    def refresh(self):
        """Step 2: eigh of every factor and the damped inverses P_A, P_G."""
        root, self.inverses = math.sqrt(self.damping), []
        for A, G in zip(self.A, self.G):
            start = clock()
            a, QA = scipy.linalg.eigh(A, driver="evd", check_finite=False)
            g, QG = scipy.linalg.eigh(G, driver="evd", check_finite=False)
            self.eigh_seconds += clock() - start
            ta, tg = A.trace() / len(A), G.trace() / len(G)
            pi = math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
            BA = QA / np.sqrt(np.maximum(a, 0) + pi * root)   # P = B B^T, another syrk
            BG = QG / np.sqrt(np.maximum(g, 0) + root / pi)
            self.inverses.append((BG @ BG.T, BA @ BA.T))
        self.stale = False

    def precondition_and_update(self, dW, db):
        """Steps 4 to 6: V' = P_G V P_A, the KL clip, momentum and the update, in place."""
        P, quad = [], 0.0
        for gw, gb, (PG, PA) in zip(dW, db, self.inverses):
            V = np.concatenate([gw, gb[:, None]], axis=1)
            P.append(PG @ V @ PA)
            quad += float(np.vdot(V, P[-1]))
        kl = self.lr ** 2 * quad
        nu = min(1.0, math.sqrt(self.kl_clip / kl)) if kl > 0 else 1.0
        if self.buffers is None:
            self.buffers = [nu * p for p in P]
        else:
            for buf, p in zip(self.buffers, P):
                buf *= self.momentum
                p *= nu
                buf += p
        for W, b, buf in zip(self.W, self.b, self.buffers):
            W -= self.lr * buf[:, :-1]
            b -= self.lr * buf[:, -1]

    def step(self, x, y):
        inputs, out_grads, dW, db = self.forward_backward(x, y)
        if self.steps % self.cov_every == 0:
            self.update_factors(inputs, out_grads)
        if self.inverses is None or (self.steps % self.inv_every == 0 and self.stale):
            self.refresh()
        self.precondition_and_update(dW, db)
        self.steps += 1


def timed_decompositions(opt):
    """Wrap opt's eigendecompositions (step 2) with a timer; returns a list of their seconds."""
    seconds, decompose = [], opt._decompose_all

    def timed(jobs):
        start = clock()
        try:
            return decompose(jobs)
        finally:
            seconds.append(clock() - start)
    opt._decompose_all = timed
    return seconds


def train_step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def check_floor(steps=7, n=256, sizes=(784, 200, 100, 10)):
    """Largest |difference| / max |parameter| between FloorKFAC and minigrad's KFAC after
    `steps` float64 steps with factors every 2 steps and eigenbases every 3 (every kind of
    step, a refresh from stale factors and the KL clip all happen), on a narrower MLP than the
    timed one (float64 eigh of 1024 x 1024 factors would take most of the run)."""
    x, y = data(np.random.default_rng(1), n, np.float64)
    model = models.mlp(list(sizes), rng=0, dtype=np.float64)
    floor = FloorKFAC(model, **KFAC_SETTINGS, cov_update_every=2, inv_update_every=3)
    opt = KFAC(model, **KFAC_SETTINGS, cov_update_every=2, inv_update_every=3, fisher="empirical")
    nus = []
    for _ in range(steps):
        train_step(model, opt, x, y)
        floor.step(x.data, y)
        nus.append(opt.info["nu"])
    theirs = [p.data for p in model.parameters()]
    ours = [a for pair in zip(floor.W, floor.b) for a in pair]
    error = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs))
    return error, min(nus)


class Contender:
    """One method at one batch size: times a step of each kind (the step counter picks it)."""

    def __init__(self, kind, n):
        self.kind, self.model = kind, models.mlp(SIZES, rng=0)
        self.x, self.y = data(np.random.default_rng(0), n)
        if kind == "sgd":
            self.opt = SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        elif kind == "kfac":
            self.opt = KFAC(self.model, **KFAC_SETTINGS, cov_update_every=10,
                            inv_update_every=20, fisher="empirical")
            self.eigh = timed_decompositions(self.opt)
        else:
            self.opt = FloorKFAC(self.model, **KFAC_SETTINGS, cov_update_every=10,
                                 inv_update_every=20)
        self.run(0)                                    # the first step: factors, eigh, buffers

    def run(self, step):
        self.opt.steps = step
        if self.kind == "floor":
            self.opt.step(self.x.data, self.y)
        else:
            train_step(self.model, self.opt, self.x, self.y)

    def time(self, step, reps=1):
        """(seconds per step over `reps` steps with the step counter at `step`, seconds per
        step in the eigendecompositions)."""
        eigh_before = self.eigh_total()
        time.sleep(0.2)
        start = clock()
        for _ in range(reps):
            self.run(step)
        return (clock() - start) / reps, (self.eigh_total() - eigh_before) / reps

    def eigh_total(self):
        if self.kind == "kfac":
            return sum(self.eigh)
        return self.opt.eigh_seconds if self.kind == "floor" else 0.0


def floor_round(contenders, reps):
    """{kind: {"step" (SGD) | "cov1" | "cov10": amortized step seconds, "eigh1" | "eigh10": its
    share in eigh}} for one round; the step kinds P (no factors) and F (factors) over `reps`
    steps each, I (factors and eigh) once."""
    out = {}
    for kind, c in contenders.items():
        if kind == "sgd":
            out[kind] = {"step": c.time(1, reps)[0]}
            continue
        (plain, _), (factors, _), (refresh, eigh) = c.time(1, reps), c.time(10, reps), c.time(20)
        cov1, cov10 = (19 * factors + refresh) / 20, (18 * plain + factors + refresh) / 20
        out[kind] = {"cov1": cov1, "cov10": cov10, "eigh1": eigh / 20 / cov1,
                     "eigh10": eigh / 20 / cov10}
    return out


def ratio_cells(results, cov):
    """The row of one batch size and factor schedule `cov` from the rounds' results."""
    def ratio(top, bottom):
        r = np.array([res[top][cov] / res[bottom]["step" if bottom == "sgd" else cov]
                      for res in results])
        return f"{np.median(r):.2f} [{r.min():.2f}-{r.max():.2f}]", float(np.median(r))
    (to_floor, median), (to_sgd, _), (floor_sgd, _) = (ratio("kfac", "floor"), ratio("kfac", "sgd"),
                                                       ratio("floor", "sgd"))
    share = [f"{100 * np.median([res[k]['eigh' + cov[3:]] for res in results]):.0f}%"
             for k in ("kfac", "floor")]
    ms = f"{1e3 * np.median([res['kfac'][cov] for res in results]):.0f}"
    return [to_floor, to_sgd, floor_sgd, *share, ms, "PASS" if median <= 1.15 else "FAIL"]


def floor_table(batches, rounds, clock_name):
    print(f"K-FAC at its floor: MLP 784-1024-1024-10, float32, empirical Fisher, inverses every "
          f"20 steps; {clock_name} time, {rounds} rounds, medians of same-round ratios [range]")
    print("| batch | factors | K-FAC / floor | K-FAC / SGD | floor / SGD | eigh share K-FAC | "
          "eigh share floor | K-FAC ms | K-FAC <= 1.15 x floor |")
    print("| --- " * 9 + "|")
    for n in batches:
        contenders = {kind: Contender(kind, n) for kind in ("sgd", "floor", "kfac")}
        results, reps = [], max(1, 2048 // n)
        for r in range(rounds):
            order = list(contenders.items())[r % 3:] + list(contenders.items())[:r % 3]
            results.append(floor_round(dict(order), reps))
        for cov, every in (("cov1", "every step"), ("cov10", "every 10")):
            print("| " + " | ".join([str(n), every] + ratio_cells(results, cov)) + " |")
        sys.stdout.flush()


# -- 2. consecutive steps at batch 1024 ------------------------------------------------------------
def build(kind):
    model = models.mlp(SIZES, rng=0)
    if kind == "sgd":
        return model, SGD(model.parameters(), lr=0.01, momentum=0.9)
    every = 10 if kind.endswith("cov10") else 1
    return model, KFAC(model, lr=0.01, damping=1e-2, inv_update_every=20, fisher=kind.split()[1],
                       cov_update_every=every)


def sgd_loop(model, opt, x, y, steps):
    for _ in range(steps):
        train_step(model, opt, x, y)


def kfac_loop(model, opt, x, y, steps):
    for _ in range(steps):
        if opt.fisher == "empirical":
            train_step(model, opt, x, y)
        else:
            opt.zero_grad()
            opt.step(lambda indices=None: (lambda z: (F.cross_entropy(z, y), z))(model(x)))


def trcg_and_gradient(x, y):
    model = models.mlp(SIZES, rng=0)
    params = model.parameters()
    opt = TRCG(params, hessian_fraction=0.05, seed=0)

    def closure(indices=None):
        if indices is None:
            return F.cross_entropy(model(x), y)
        return F.cross_entropy(model(x[indices]), y[indices])

    start = time.perf_counter()
    mg.grad(F.cross_entropy(model(x), y), params)
    gradient = time.perf_counter() - start
    start = time.perf_counter()
    opt.step(closure, batch_size=len(y))
    return gradient, time.perf_counter() - start, dict(opt.info)


def timed(fn, *args):
    time.sleep(0.2)
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def loops_table(steps, rounds):
    x, y = data(np.random.default_rng(0))
    rows = {"sgd": [], "kfac empirical": [], "kfac true": [], "kfac empirical cov10": []}
    for _ in range(rounds):
        for name in rows:
            model, opt = build(name)
            loop = sgd_loop if name == "sgd" else kfac_loop
            rows[name].append(timed(loop, model, opt, x, y, steps) / steps)
    base = np.array(rows["sgd"])
    print(f"MLP 784-1024-1024-10, batch 1024, float32; {steps} steps x {rounds} rounds")
    for name, times in rows.items():
        ratio = float(np.median(np.array(times) / base))
        target = (f"  target <= 1.5 x sgd: {'PASS' if ratio <= 1.5 else 'FAIL'}"
                  if name != "sgd" else "")
        print(f"  {name:20s} {1e3 * np.median(times):8.1f} ms/step  {ratio:5.2f} x sgd{target}")
    results = [trcg_and_gradient(x, y) for _ in range(rounds)]
    grad_ms = np.median([r[0] for r in results]) * 1e3
    step_ms = np.median([r[1] for r in results]) * 1e3
    info = results[-1][2]
    print(f"  TRCG step (hessian_fraction 0.05): {step_ms:.1f} ms = {step_ms / grad_ms:.2f} "
          f"gradients ({grad_ms:.1f} ms); CG iterations {info.get('cg_iterations')}, curvature products "
          f"{info.get('curvature_products')}, stop {info.get('cg_stop')!r}, rho {info.get('rho')}")


# -- 3. trust-region cost per step ---------------------------------------------------------------
def batch_closure(model, x, y):
    """closure(indices=None) -> (mean loss, logits) of the batch or of its rows `indices`."""
    def closure(indices=None):
        xs, ys = (x, y) if indices is None else (x[indices], y[indices])
        out = model(xs)
        return F.cross_entropy(out, ys), out
    return closure


def clocked(fn, *args):
    """(seconds on `clock`, fn's result) after a short pause for the BLAS threads to settle."""
    time.sleep(0.1)
    start = clock()
    result = fn(*args)
    return clock() - start, result


def operator_costs(model, x, y, fraction, products):
    """{name: seconds} on the first ceil(fraction N) rows: "build" (forward and the recorded
    gradient of HessianOperator), "hessian" and "ggn" (one matvec, mean over `products`)."""
    rows = np.arange(max(1, math.ceil(fraction * len(y))))
    loss, out = batch_closure(model, x, y)(rows)
    params = model.parameters()
    build, hessian = clocked(HessianOperator, loss, params)
    ggn = GGNOperator(loss, out, params)
    v = [mg.tensor(np.random.default_rng(1).standard_normal(p.shape).astype(p.dtype))
         for p in params]
    seconds = {"build": build}
    for name, op in (("hessian", hessian), ("ggn", ggn)):
        seconds[name] = clocked(lambda: [op.matvec(v) for _ in range(products)])[0] / products
    return seconds


def trust_region_round(x, y, fractions, products):
    """One round: a gradient, a forward, the operators' costs at each fraction, and one step of
    TRCG and STRCG (fresh model, seed 0) at each fraction with its info."""
    model = models.mlp(SIZES, rng=0)
    closure = batch_closure(model, x, y)
    out = {"gradient": clocked(lambda: mg.grad(closure()[0], model.parameters()))[0]}
    with mg.no_grad():
        out["forward"] = clocked(closure)[0]
    for f in fractions:
        out[f] = operator_costs(model, x, y, f, products)
        for cls in (TRCG, STRCG):
            model = models.mlp(SIZES, rng=0)
            opt = cls(model.parameters(), hessian_fraction=f, seed=0)
            seconds, _ = clocked(opt.step, batch_closure(model, x, y), len(y))
            out[cls.name, f] = (seconds, dict(opt.info))
    return out


def trust_region_table(rounds, fractions=(0.05, 1.0), n=1024, products=3):
    """Per step in gradients (medians of same-round ratios): measured, and the ideal
    1 + trials * forward + products * matvec (a trial point is one forward, one per solve)."""
    x, y = data(np.random.default_rng(0), n)
    results = [trust_region_round(x, y, fractions, products) for _ in range(rounds)]

    def grads(get):
        return float(np.median([get(r) / r["gradient"] for r in results]))
    forward = grads(lambda r: r["forward"])
    gradient_ms = 1e3 * np.median([r["gradient"] for r in results])
    print(f"Trust-region cost: MLP 784-1024-1024-10, batch {n}, float32, the first step from the "
          f"same weights; {rounds} rounds, medians in gradients (one: {gradient_ms:.0f} ms); "
          f"forward {forward:.2f}")
    print("| fraction | HessianOperator build | Hessian matvec | GGN matvec | 4/3 f |")
    print("| --- | --- | --- | --- | --- |")
    for f in fractions:
        cells = [grads(lambda r, k=k: r[f][k]) for k in ("build", "hessian", "ggn")]
        print(f"| {f} | " + " | ".join(f"{c:.3f}" for c in cells + [4 * f / 3]) + " |")
    print("| method | fraction | CG iterations | products | trials | step | ideal (measured "
          "matvec) | measured / ideal | ideal (4/3 f) | measured / ideal 4/3 |")
    print("| --- " * 10 + "|")
    for f in fractions:
        matvec = grads(lambda r: r[f]["hessian"])
        for name in ("TRCG", "STRCG"):
            info = results[-1][name, f][1]
            trials = info["rejections"] + int(info["accepted"])
            step = grads(lambda r: r[name, f][0])
            ideal = 1 + trials * forward + info["curvature_products"] * matvec
            ideal43 = 1 + trials / 3 + info["curvature_products"] * 4 * f / 3
            print(f"| {name} | {f} | {info['cg_iterations']} | {info['curvature_products']} | "
                  f"{trials} | {step:.2f} | {ideal:.2f} | {step / ideal:.2f} | {ideal43:.2f} | "
                  f"{step / ideal43:.2f} |")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="512,2048,8192", help="part 1's batch sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="part 2's steps per round")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="parts 1 and 3: wall time, or the process's CPU time (steadier on "
                        "a loaded machine; with one BLAS thread, OPENBLAS_NUM_THREADS=1, it is "
                        "the work)")
    parser.add_argument("--skip-loops", action="store_true", help="part 1 only")
    parser.add_argument("--trust-region", action="store_true", help="part 3 only: TRCG's and "
                        "STRCG's step against the ideal, in gradients")
    parser.add_argument("--quick", action="store_true", help="smoke run: batches 256,512, one "
                        "round, 3 steps")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.trust_region:
        trust_region_table(args.rounds)
        return 0
    if args.quick:
        args.batches, args.rounds, args.steps = "256,512", 1, 3
    error, nu = check_floor()
    ok = error < 1e-10
    print(f"floor check (MLP 784-200-100-10, float64, 7 steps, factors every 2, eigh every 3, "
          f"smallest nu {nu:.3g}): "
          f"max |floor - KFAC| / max |param| = {error:.1e}  {'OK' if ok else 'MISMATCH'}")
    floor_table([int(n) for n in args.batches.split(",")], args.rounds, args.clock)
    if not args.skip_loops:
        loops_table(args.steps, args.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
