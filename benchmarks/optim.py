"""Optimizer step costs, run by hand (never in the tests).

    python benchmarks/optim.py [--steps 40] [--rounds 3]

MLP 784-1024-1024-10 (ReLU, softmax cross-entropy), batch 1024, float32, random data:
- time per step of SGD (momentum 0.9) and K-FAC (inv_update_every=20, empirical and true
  Fisher, factors every step; and the empirical one with cov_update_every=10), each over
  `--steps` consecutive steps so that the refreshes are amortized as in training; target
  K-FAC <= 1.5 x SGD;
- one TRCG step (hessian_fraction 0.05) against one gradient, with its CG iterations and
  curvature products from `info`: its cost in gradient-equivalents.
Rounds alternate the optimizers; ratios are medians of same-round ratios (the machine is
shared and noisy).
"""
import argparse
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.nn import models
from minigrad.optim import KFAC, SGD, TRCG


def data(rng, n=1024):
    return (mg.tensor(rng.standard_normal((n, 784)).astype(np.float32)), rng.integers(0, 10, n))


def build(kind):
    model = models.mlp([784, 1024, 1024, 10], rng=0)
    if kind == "sgd":
        return model, SGD(model.parameters(), lr=0.01, momentum=0.9)
    every = 10 if kind.endswith("cov10") else 1
    return model, KFAC(model, lr=0.01, damping=1e-2, inv_update_every=20, fisher=kind.split()[1],
                       cov_update_every=every)


def sgd_loop(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def kfac_loop(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        if opt.fisher == "empirical":
            F.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            opt.step(lambda indices=None: (lambda z: (F.cross_entropy(z, y), z))(model(x)))


def trcg_and_gradient(x, y):
    model = models.mlp([784, 1024, 1024, 10], rng=0)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    x, y = data(np.random.default_rng(0))
    rows = {"sgd": [], "kfac empirical": [], "kfac true": [], "kfac empirical cov10": []}
    for _ in range(args.rounds):
        for name in rows:
            model, opt = build(name)
            loop = sgd_loop if name == "sgd" else kfac_loop
            rows[name].append(timed(loop, model, opt, x, y, args.steps) / args.steps)
    base = np.array(rows["sgd"])
    print(f"MLP 784-1024-1024-10, batch 1024, float32; {args.steps} steps x {args.rounds} rounds")
    for name, times in rows.items():
        ratio = float(np.median(np.array(times) / base))
        target = f"  target <= 1.5 x sgd: {'PASS' if ratio <= 1.5 else 'FAIL'}" if name != "sgd" else ""
        print(f"  {name:16s} {1e3 * np.median(times):8.1f} ms/step  {ratio:5.2f} x sgd{target}")
    results = [trcg_and_gradient(x, y) for _ in range(args.rounds)]
    grad_ms = np.median([r[0] for r in results]) * 1e3
    step_ms = np.median([r[1] for r in results]) * 1e3
    info = results[-1][2]
    print(f"  TRCG step (hessian_fraction 0.05): {step_ms:.1f} ms = {step_ms / grad_ms:.2f} gradients "
          f"({grad_ms:.1f} ms); CG iterations {info.get('cg_iterations')}, curvature products "
          f"{info.get('curvature_products')}, stop {info.get('cg_stop')!r}, rho {info.get('rho')}")


if __name__ == "__main__":
    main()
