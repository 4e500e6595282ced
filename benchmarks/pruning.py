"""What exact early stopping (`minigrad scaling`'s pruning, cli/study/pruning.py) saves on a
finished study that ran without it, computed from the study's own trials, run by hand:

    python benchmarks/pruning.py [--order grid|lr|previous-best] STUDY_DIR [STUDY_DIR ...]

For each search (optimizer, batch size) the trials are taken in the study's order (its trial
table, scaling.h5 trials/, which is the order of the search), as one worker (--jobs 1) would run
them: trial k sees the bound S_k = the fewest steps to target among trials 0..k-1 that reached
it (none: no bound). With pruning it would stop after S_k steps unless it reached the target by
then (cli/training/trainer.py: after the evaluation at step S_k, if one is due); every other
trial runs as it did. Saved = its steps (and gradient evaluations, run.h5 steps/grad_equivalents)
past S_k. With --order the trials of a search run in another order: largest lr first ("lr"), or the
grid point that was best at the next smaller batch size first ("previous-best", the workers'
order: cli/study/workers.py), so that a trial likely to be good gives the bound early. The best
trials, and so every figure, are the same in any order. Confirmation
seeds are never pruned. With several workers the bounds come later (a
trial only sees trials that have finished), so the saving is smaller; it is the same set of best
trials either way (the tests show it).

Prints, per optimizer, the trials, the steps and gradient evaluations run, and those pruning
would have saved, with the share; and the best trial of each search, checked to be the same
with and without pruning (exit status 1 if not).
"""
import json
import math
import os
import sys

import h5py
import numpy as np

from minigrad.cli import runlog
from minigrad.cli.study import queue
from minigrad.cli.study.results import best_index, trial_result


def searches(path):
    """{(optimizer, B): [trial folders in the search's order]} of a scaling study's first seed,
    and the search seed."""
    with h5py.File(os.path.join(path, "scaling.h5"), "r") as f:
        t = f["trials"]
        options = json.loads(f.attrs["options"])
        rows = zip(t["optimizer"][()], t["batch_size"][()], t["seed"][()], t["folder"][()])
        out = {}
        for opt, b, seed, folder in rows:
            if int(seed) == int(options["seed"]):
                name = folder.decode() if isinstance(folder, bytes) else str(folder)
                out.setdefault((opt.decode() if isinstance(opt, bytes) else str(opt), int(b)),
                               []).append(os.path.join(path, name))
    return out


def run_order(configs, order, previous_best):
    """The order one worker runs a search's trials in: the search's ("grid"), largest lr first
    ("lr"), or the search's with the trial at the grid point that was best at the next smaller
    batch size first ("previous-best", as the workers take them: cli/study/workers.py
    first_choice; position `previous_best` in the search, None: the search's order)."""
    index = list(range(len(configs)))
    if order == "lr":
        return sorted(index, key=lambda i: (-(configs[i].get("lr") or 0.0), i))
    if order == "previous-best" and previous_best is not None and previous_best < len(index):
        return [previous_best] + [i for i in index if i != previous_best]
    return index


def first_choice(results):
    """The position of the trial the workers take first at the next batch size (workers.py
    first_choice): the search's best by the workers' rule, queue.fewest_steps (the fewest steps
    to target, the earliest in the search among equals); None if none reached it."""
    return queue.fewest_steps((r["steps_to_target"], i, i) for i, r in enumerate(results)
                              if r["reached"])


def pruned(folders, order="grid", previous_best=None):
    """[(steps run, steps kept, grad evals run, grad evals kept)] of one search's trials (in the
    search's order, whatever order they ran in: run_order), whether its best trial stays the
    best, and the position in the search of the trial the workers take first at the next
    batch size (first_choice)."""
    runs = [runlog.read_run(folder) for folder in folders]
    results = [trial_result(folder, run) for folder, run in zip(folders, runs)]
    configs = [json.loads(run["attrs"]["config"]) for run in runs]
    bound, rows = None, [None] * len(folders)
    for i in run_order(configs, order, previous_best):
        r, run = results[i], runs[i]
        cost = np.cumsum(run["steps"].get("grad_equivalents", np.zeros(0)))
        steps = int(r["steps"])
        reached_by_bound = r["reached"] and bound is not None and r["steps_to_target"] <= bound
        keep = steps if bound is None or reached_by_bound or steps <= bound else bound
        total = float(cost[-1]) if len(cost) else math.nan
        kept = float(cost[keep - 1]) if keep and len(cost) >= keep else total
        rows[i] = (steps, keep, total, kept)
        if r["reached"]:
            bound = r["steps_to_target"] if bound is None else min(bound, r["steps_to_target"])
    # the pruned trials did not reach the target (within their bound): the best is unchanged
    # if it is the best among the trials that were not pruned
    best = best_index(results)
    unpruned = [i for i, (s, k, _, _) in enumerate(rows) if k == s]
    same = best is None or best == unpruned[best_index([results[i] for i in unpruned])]
    return rows, same, first_choice(results)


def main(args):
    order = "grid"
    if args[:1] == ["--order"]:
        order, args = args[1], args[2:]
    if order not in ("grid", "lr", "previous-best") or not args:
        print("usage: python benchmarks/pruning.py [--order grid|lr|previous-best] STUDY_DIR...",
              file=sys.stderr)
        return 2
    paths = args
    ok = True
    print("| study | optimizer | trials | steps run | steps saved | grad evals run | grad evals "
          "saved |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in paths:
        per = {}
        first = {}
        for (opt, b), folders in sorted(searches(path).items()):   # batch sizes in increasing order
            rows, same, first[opt] = pruned(folders, order, first.get(opt))
            ok &= same
            if not same:
                print(f"best trial changes: {opt} at B = {b}", file=sys.stderr)
            per.setdefault(opt, []).extend(rows)
        for opt, rows in per.items():
            run, keep, cost, kept = (np.array(c, np.float64) for c in zip(*rows))
            print(f"| {os.path.basename(os.path.normpath(path))} | {opt} | {len(rows)} | "
                  f"{run.sum():.0f} | {run.sum() - keep.sum():.0f} "
                  f"({(run.sum() - keep.sum()) / run.sum():.0%}) | {np.nansum(cost):.0f} | "
                  f"{np.nansum(cost) - np.nansum(kept):.0f} "
                  f"({(np.nansum(cost) - np.nansum(kept)) / np.nansum(cost):.0%}) |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
