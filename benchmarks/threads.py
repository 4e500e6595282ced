"""How the BLAS thread count of `minigrad train --threads N` changes a run's time, run by hand:

    python benchmarks/threads.py [--threads 1,2] [--rounds 5] [-- TRAIN OPTIONS ...]

Each round runs the same `minigrad train` once per thread count, in a fresh process and in
turn (1, 2, 1, 2, ...), so that a change in the machine's load falls on every count alike, and
takes each process's wall time and CPU time (user + system, from the child's rusage). The
default run is one epoch of the default MLP on Fashion-MNIST without layer statistics (the
dataset must be installed: see datasets/README.md); anything after `--` replaces it. Prints one
row per thread count: the median and range of both times over the rounds, and the median ratio
of each round's wall time to the first count's in the same round.

The run's result is the same for every count up to rounding (products may sum in another
order), so only the time is compared; the folder of each run is a fresh temporary one.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

DEFAULT_RUN = ["--dataset", "fashion-mnist", "--epochs", "1", "--no-layer-stats"]


def timed_run(threads, train_args):
    """(wall seconds, CPU seconds) of one `minigrad train --threads threads` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "minigrad.cli", "train", *train_args,
                   "--threads", str(threads), "--out", os.path.join(tmp, "run")]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, DEFAULT_RUN)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(own)
    counts = [int(t) for t in args.threads.split(",")]
    times = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in counts:
            times[n].append(timed_run(n, train_args))
        print(f"round {r + 1}: " + ", ".join(f"{n} thread(s) {times[n][-1][0]:.2f} s"
                                              for n in counts), flush=True)
    first = np.array([w for w, _ in times[counts[0]]])
    print(f"\nminigrad train {' '.join(train_args)}; {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| threads | wall s, median (range) | CPU s, median (range) | wall / "
          f"{counts[0]} thread(s), median |")
    print("| --- | --- | --- | --- |")
    for n in counts:
        wall = np.array([w for w, _ in times[n]])
        cpu = np.array([c for _, c in times[n]])
        print(f"| {n} | {np.median(wall):.2f} ({wall.min():.2f}-{wall.max():.2f}) | "
              f"{np.median(cpu):.2f} ({cpu.min():.2f}-{cpu.max():.2f}) | "
              f"{np.median(wall / first):.2f} |")


if __name__ == "__main__":
    main()
