"""Data parallelism on this machine, and what it would cost on a cluster.

    python benchmarks/distributed.py [--ranks 2] [--steps 40] [--dataset fashion-mnist]
    python benchmarks/distributed.py --analysis

Measured (default): for each optimizer, `minigrad train --profile` on one process and under
`mpiexec -n P`, with the same global batch, one BLAS thread per process; reported per step:
median step time, the bytes each rank sent into collectives and the share of the step spent in
them (run.h5 steps/comm_bytes, steps/comm_time), and the speedup of P processes over one.

--analysis: communication volume per step from the model's shapes, and its time on a ring
allreduce (each rank sends and receives 2 (P-1)/P S bytes for a buffer of S bytes, in 2 (P-1)
latency-bound rounds) for P = 64 and 512 on 10 and 100 Gb/s links:

    SGD          one allreduce of the gradient (n parameters)
    K-FAC        the gradient, on factor-update steps one allreduce of every layer's factors
                 A ((d+1)^2) and G (o^2), and the preconditioned gradient (each layer's owner
                 computes its part, one allreduce of n values gathers them)
    TRCG/STRCG   the gradient, then one allreduce of n values per CG iteration (each
                 curvature-vector product), plus a few scalars
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OPTIMIZERS = ("sgd", "kfac", "trcg", "strcg")


def run(command, env):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}")


def measure(args):
    from minigrad.cli.runlog import read_run

    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    train = ["-m", "minigrad.cli", "train", "--dataset", args.dataset, "--hidden", args.hidden,
             "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--eval-every", str(args.steps), "--profile"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for opt in OPTIMIZERS:
            one, many = os.path.join(tmp, f"{opt}-1"), os.path.join(tmp, f"{opt}-P")
            run([sys.executable, *train, "--optimizer", opt, "--out", one], env)
            run([mpiexec, "-n", str(args.ranks), sys.executable, "-m", "mpi4py", *train,
                 "--optimizer", opt, "--out", many], env)
            a, b = read_run(one)["steps"], read_run(many)["steps"]
            skip = min(5, args.steps // 4)   # warm-up steps
            t1, tp = np.median(a["step_time"][skip:]), np.median(b["step_time"][skip:])
            share = np.sum(b["comm_time"][skip:]) / np.sum(b["step_time"][skip:])
            rows.append((opt, 1e3 * t1, 1e3 * tp, t1 / tp, np.mean(b["comm_bytes"]) / 1e6, share))
    print(f"{args.dataset}, mlp {args.hidden}, global batch {args.batch_size}, {args.steps} steps, "
          f"1 BLAS thread per process; medians after {skip} warm-up steps")
    print(f"{'optimizer':<10}{'1 proc ms':>11}{f'{args.ranks} procs ms':>12}{'speedup':>9}"
          f"{'MB/step':>10}{'comm share':>12}")
    for opt, t1, tp, speedup, mb, share in rows:
        print(f"{opt:<10}{t1:>11.2f}{tp:>12.2f}{speedup:>9.2f}{mb:>10.3f}{100 * share:>11.1f}%")


# ------------------------------------------------------------------------------ analysis
def layer_shapes(model):
    """[(d, o, has bias)] of the model's Linear and Conv2d layers (d = inputs per output)."""
    from minigrad.nn import Conv2d, Linear
    out = []
    for _, m in model.named_modules():
        if isinstance(m, (Linear, Conv2d)):
            out.append((m.weight.data[0].size, m.weight.shape[0], m.bias is not None))
    return out


def volumes(model, cg_iterations):
    """{method: (floats per step put into collectives, collectives per step)} (K-FAC with its
    factors updated every step), and the number of parameters."""
    n = sum(p.size for p in model.parameters())
    factors = sum((d + b) ** 2 + o * o for d, o, b in layer_shapes(model))
    return {"sgd": (n, 1), "kfac": (2 * n + factors, 3),
            "trcg": (n * (1 + cg_iterations), 1 + cg_iterations)}, n


def ring_seconds(floats, calls, P, gbit, latency=5e-6, bytes_per_float=4):
    """calls ring allreduces moving `floats` values in all: 2 (P-1) latency-bound rounds each,
    and 2 (P-1)/P of the bytes through each rank's link."""
    size = floats * bytes_per_float
    return calls * 2 * (P - 1) * latency + 2 * (P - 1) / P * size / (gbit * 1e9 / 8)


def analysis(args):
    from minigrad.nn import models
    cases = [("MLP 784-1024-1024-10", models.mlp([784, 1024, 1024, 10], rng=0)),
             ("ResNet-20 (CIFAR-10)", models.resnet20(10, rng=0))]
    print(f"communication per step, ring allreduce, 5 us latency per round, float32; TRCG with "
          f"{args.cg} CG iterations per step; K-FAC factors every step")
    print(f"{'model':<22}{'params':>9}{'method':>7}{'MB/step':>9}" + "".join(
        f"{f'P={P} {g}G ms':>15}" for P in (64, 512) for g in (10, 100)))
    for name, model in cases:
        vol, n = volumes(model, args.cg)
        for method, (floats, calls) in vol.items():
            cells = "".join(f"{1e3 * ring_seconds(floats, calls, P, g):>15.2f}"
                            for P in (64, 512) for g in (10, 100))
            print(f"{name:<22}{n:>9}{method:>7}{floats * 4 / 1e6:>9.2f}{cells}")
    print(json.dumps({"note": "a rank's compute per step shrinks like 1/P at a fixed global "
                              "batch; the communication above does not"}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--hidden", default="512,512")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--analysis", action="store_true")
    p.add_argument("--cg", type=int, default=10, help="CG iterations per TRCG step (--analysis)")
    args = p.parse_args()
    analysis(args) if args.analysis else measure(args)


if __name__ == "__main__":
    main()
