"""Cost of curvature products relative to one gradient, run by hand (never in the tests).

    python benchmarks/curvature.py [--rounds 15]

For each model (float32): one gradient (forward + backward), building a HessianOperator (a
forward and one create_graph backward), one HessianOperator.matvec (a further backward walk
through the recorded gradient), and the same for GGNOperator. Ratios are medians of
same-round ratios, rounds interleaved, as in engine.py (the machine is shared and noisy).
Target: one Hessian matvec <= 2.5 x one gradient.
"""
import argparse
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.curvature import GGNOperator, HessianOperator
from minigrad.nn import models


def setups(rng):
    mlp = models.mlp([784, 1024, 1024, 10], rng=0)
    x_mlp = mg.tensor(rng.standard_normal((512, 784)).astype(np.float32))
    lenet = models.lenet5(rng=0)
    x_lenet = mg.tensor(rng.random((256, 1, 28, 28)).astype(np.float32))
    return [("mlp 784-1024-1024-10, batch 512", mlp, x_mlp, rng.integers(0, 10, 512)),
            ("lenet5, batch 256", lenet, x_lenet, rng.integers(0, 10, 256))]


def timed(fn):
    time.sleep(0.1)  # let idle BLAS threads of the previous call stop spinning
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model, x, labels, rounds, rng):
    params = model.parameters()
    vectors = [mg.tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in params]

    def gradient():
        mg.grad(F.cross_entropy(model(x), labels), params)

    def operators():
        logits = model(x)
        loss = F.cross_entropy(logits, labels)
        return HessianOperator(loss, params), GGNOperator(loss, logits, params)

    gradient()
    hess, ggn = operators()
    hess.matvec(vectors)
    ggn.matvec(vectors)
    rows = {"gradient": [], "build both operators": [], "Hessian matvec": [], "GGN matvec": []}
    for _ in range(rounds):
        rows["gradient"].append(timed(gradient))
        rows["build both operators"].append(timed(operators))
        rows["Hessian matvec"].append(timed(lambda: hess.matvec(vectors)))
        rows["GGN matvec"].append(timed(lambda: ggn.matvec(vectors)))
    base = np.array(rows["gradient"])
    return {k: (1e3 * float(np.median(v)), float(np.median(np.array(v) / base))) for k, v in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, model, x, labels in setups(rng):
        print(f"\n{name}: median of {args.rounds} interleaved rounds")
        print(f"  {'what':24s} {'ms':>9s} {'x gradient':>11s}")
        for what, (ms, ratio) in measure(model, x, labels, args.rounds, rng).items():
            target = "  target <= 2.5: " + ("PASS" if ratio <= 2.5 else "FAIL") if what == "Hessian matvec" else ""
            print(f"  {what:24s} {ms:9.2f} {ratio:11.2f}{target}")


if __name__ == "__main__":
    main()
