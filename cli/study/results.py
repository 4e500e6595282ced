"""What came of the trials: one trial's outcome read from its run.h5 (trial_result), the
trials of one setting combined over their seeds (aggregate), the best trial (best_index), and
their text in the study commands' tables and lines.

Outcome of a trial (trial_result): `reached` = every given target (--target-accuracy on the test
split, --target-loss on the whole training split) was met at some evaluation; steps_to_target is
the first evaluated step at which the last of them was met (so its resolution is the evaluation
interval: --evals-per-epoch); epochs = steps / ceil(n / B); wall time (the optimizer steps'
own time, run.h5 steps/step_time: evaluations and file writes excluded) and cost (gradient
equivalents, cli/cost.py) are summed over the steps up to it. A trial stopped by `minigrad
scaling`'s early stopping has status "pruned" (cli/study/pruning.py) and did not reach the
target.
"""
import json
import math
import os
import textwrap

import numpy as np

from .. import runlog, search
from ..search import HYPERPARAMETERS
from ..training.hyperparameters import OFF, OPTIONS, declaration
from .trials import LOG_FILE


def describe(spec):
    """A trial in a few words: optimizer, batch size, hyperparameters."""
    params = " ".join(f"{k}={spec[k]:.4g}" for k in HYPERPARAMETERS if spec.get(k) is not None)
    return f"{spec['optimizer']:<5} B={spec['batch_size']:<5} {params}"


def outcome(result):
    """What came of a trial, in words."""
    if result["status"] == "crashed":
        return f"crashed, see {os.path.join(result['folder'], LOG_FILE)}"
    if result["status"] == "failed":
        return "diverged"
    if result["status"] == "pruned":
        return (f"pruned at step {result['steps']}: cannot beat step "
                f"{result.get('prune_bound', '?')}")
    if result["reached"]:
        return (f"target at step {result['steps_to_target']} "
                f"(epoch {result['epochs_to_target']:.2f})")
    if result["targets"]:
        return f"target not reached, final test acc {result['final_test_accuracy']:.4f}"
    return f"final test acc {result['final_test_accuracy']:.4f}"


def _last(values):
    return float(values[-1]) if values is not None and len(values) else float("nan")


def crashed_result(folder):
    """The outcome of a trial that left no readable run.h5 (see its train.log)."""
    nan = float("nan")
    return {"folder": folder, "status": "crashed", "targets": [], "reached": False,
            "steps_to_target": None, "epochs_to_target": nan, "wall_to_target": nan,
            "cost_to_target": nan, "steps": 0, "epochs": 0.0, "wall_time": nan, "cost": nan,
            "curvature_products": 0, "cg_iterations": 0, "final_train_loss": nan,
            "final_train_split_loss": nan, "final_test_loss": nan, "final_test_accuracy": nan}


def trial_result(folder, run=None):
    """A trial's outcome (see the module docstring) as a dict of plain values; status
    "crashed" when the trial left no readable run.h5. `run`: its run.h5 already read
    (runlog.read_run), to read it only once."""
    if run is None:
        try:
            run = runlog.read_run(folder)
        except (OSError, KeyError, ValueError):
            return crashed_result(folder)
    attrs, steps, evals = run["attrs"], run["steps"], run["evals"]
    config = json.loads(attrs["config"])
    at = []
    targets = []
    for target, key in (("target_accuracy", "target_step"), ("target_loss", "target_loss_step")):
        if config.get(target) is not None:
            targets.append(target)
            step = int(attrs.get(key, -1))
            at.append(step if step >= 0 else None)
    reached = bool(targets) and all(s is not None for s in at)
    step = max(at) if reached else None
    cost = np.cumsum(steps.get("grad_equivalents", np.zeros(0)))
    # training time only: evaluations and file writes would favour methods with fewer steps
    wall = np.cumsum(steps.get("step_time", np.zeros(0)))
    per_epoch = config.get("steps_per_epoch") or 1

    def upto(series, k):
        return float(series[k - 1]) if k and len(series) >= k else (0.0 if k == 0 else float("nan"))

    total_steps = int(attrs.get("steps", len(steps.get("loss", []))))
    return {
        "folder": folder, "status": str(attrs.get("status")), "targets": targets,
        "reached": reached, "steps_to_target": step,
        "epochs_to_target": step / per_epoch if reached else float("nan"),
        "wall_to_target": upto(wall, step) if reached else float("nan"),
        "cost_to_target": upto(cost, step) if reached else float("nan"),
        "steps": total_steps, "epochs": total_steps / per_epoch,
        "wall_time": float(wall[-1]) if len(wall) else float("nan"),
        "cost": float(cost[-1]) if len(cost) else float("nan"),
        "curvature_products": int(np.sum(steps.get("curvature_products", 0))),
        "cg_iterations": int(np.sum(steps.get("cg_iterations", 0))),
        "final_train_loss": _last(evals.get("train_loss")),
        "final_train_split_loss": _last(evals.get("train_split_loss")),
        "final_test_loss": _last(evals.get("test_loss")),
        "final_test_accuracy": _last(evals.get("test_accuracy")),
        **({"prune_bound": int(attrs["prune_bound"])} if "prune_bound" in attrs else {}),
    }


SEED_MEANS = ("steps_to_target", "epochs_to_target", "wall_to_target", "cost_to_target", "steps",
              "epochs", "wall_time", "cost", "curvature_products", "cg_iterations",
              "final_train_loss", "final_train_split_loss", "final_test_loss",
              "final_test_accuracy")


def setting_key(spec):
    """What identifies a setting: a trial's options except its seed (a JSON string)."""
    return json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True)


def aggregate(specs, results):
    """(setting specs, setting results): the trials of one setting (the same options but the
    seed) combined. A setting reaches the target if every seed does; its figures are the means
    over its seeds (to-target ones only when it reached the target), with steps_min/steps_max
    the spread of steps to target, reached_fraction the share of seeds that reached it, status
    "failed" if any seed diverged, and trial/folder those of its first seed. One seed: the
    trial's own result, with trial, seeds=1 and the spread added."""
    groups = {}
    for i, spec in enumerate(specs):
        key = setting_key(spec)
        groups.setdefault(key, []).append(i)
    out_specs, out_results = [], []
    for idx in groups.values():
        rs = [results[i] for i in idx]
        r = dict(rs[0], trial=idx[0], seeds=len(idx))
        steps = [x["steps_to_target"] for x in rs if x["reached"]]
        r["reached"] = all(x["reached"] for x in rs)
        r["reached_fraction"] = len(steps) / len(rs)
        r["steps_min"], r["steps_max"] = (min(steps), max(steps)) if steps else (None, None)
        if any(x["status"] == "failed" for x in rs):
            r["status"] = "failed"
        if len(rs) > 1:
            for key in SEED_MEANS:
                if key.endswith("_to_target") and not r["reached"]:
                    r[key] = None if key == "steps_to_target" else float("nan")
                    continue
                values = [x[key] for x in rs]
                r[key] = float(np.mean([np.nan if v is None else v for v in values]))
        out_specs.append(specs[idx[0]])
        out_results.append(r)
    return out_specs, out_results


def best_index(results):
    """The best trial: among those that reached the target, the fewest steps, then the lowest
    cost, then the best final test accuracy (reached_rank); if none reached it, the best final
    test accuracy, then the lowest final train loss. Wall time never decides (it is noisy; the
    rest is deterministic). Ties left after that go to the first trial. None if there are no
    trials."""
    if not results:
        return None
    reached = [i for i, r in enumerate(results) if r["reached"]]
    if reached:
        return min(reached, key=lambda i: reached_rank(results[i]) + (i,))
    return min(range(len(results)),
               key=lambda i: (_worst_if_nan(results[i]["final_test_accuracy"], -1.0),
                              _worst_if_nan(results[i]["final_train_loss"]), i))


def reached_rank(result):
    """What best_index orders the trials that reached the target by (smaller is better): steps
    to target, cost to target, final test accuracy (higher first)."""
    return (result["steps_to_target"], _worst_if_nan(result["cost_to_target"]),
            _worst_if_nan(result["final_test_accuracy"], -1.0))


def _worst_if_nan(value, sign=1.0):
    return np.inf if value is None or math.isnan(value) else sign * value


def target_text(options):
    """The study's targets in words, e.g. "test accuracy >= 0.95"."""
    parts = []
    if options["target_accuracy"] is not None:
        parts.append(f"test accuracy >= {options['target_accuracy']:g}")
    if options["target_loss"] is not None:
        parts.append(f"train loss <= {options['target_loss']:g}")
    return " and ".join(parts)


def fmt(value, spec=".4g"):
    """A table cell: `value` formatted, "-" for None or nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def edge_values(optimizer, name, values):
    """The values of a grid axis beyond which a wider grid could go: its smallest and largest.
    An optional hyperparameter's OFF (K-FAC's kl_clip 0: no clip) is the axis's far end, beyond
    every value, and nothing lies beyond it: with OFF on the axis, only the smallest other value
    is an edge. A one-value axis has none."""
    if len(values) < 2:
        return ()
    finite = [v for v in values if not is_off(optimizer, name, v)]
    return (min(finite),) if len(finite) < len(values) else (min(values), max(values))


def on_edge(optimizer, name, values, best, rows):
    """Whether the best trial `best` sits on an edge of the axis `name` (tried `values`) that a
    wider grid could improve on: its value is an edge (edge_values), and the trial one value
    inside the axis with the best's other hyperparameters, batch size and seed (found in `rows`)
    does not tie it on everything best_index ranks by (reached_rank: steps to target, cost,
    accuracy). Where that trial ties, only the search's order picked the edge value (K-FAC
    under an active KL clip, whose step length does not depend on lr, ties along the whole lr
    axis). `best` and `rows` are dicts with the axes' values, "optimizer", "batch_size", "seed"
    and "rank" (reached_rank, None where the target was not reached); a best that did not reach
    the target keeps every edge."""
    value = best[name]
    if not any(math.isclose(value, v) for v in edge_values(optimizer, name, values)):
        return False
    if best["rank"] is None:
        return True
    ordered = sorted(v for v in values if not is_off(optimizer, name, v)) + \
        [v for v in values if is_off(optimizer, name, v)]   # OFF after every finite value
    inside = ordered[1] if math.isclose(value, ordered[0]) else ordered[-2]
    others = [n for n in search.AXES[optimizer] + search.EXTRA_AXES[optimizer]
              if n != name and best.get(n) is not None]
    for row in rows:
        if (row["optimizer"] == optimizer and row["batch_size"] == best["batch_size"]
                and row.get("seed") == best.get("seed") and row.get(name) is not None
                and math.isclose(row[name], inside)
                and all(row.get(n) is not None and math.isclose(row[n], best[n]) for n in others)):
            return row["rank"] != best["rank"]
    return True


def is_off(optimizer, name, value):
    """Whether `value` is an optional hyperparameter's OFF (K-FAC's kl_clip 0: no clip)."""
    return name in OPTIONS[optimizer] and declaration(optimizer, name).optional and value == OFF


def grid_edges(options, specs, best, base, results=None):
    """A note naming the best settings that sit on the edge of their grid axis (the optimum may
    lie outside the grid), or "" (random search, or nothing on an edge). best: [(optimizer,
    batch size, trial index or None)]. With `results` (one per spec: the figures the search
    chose by) an edge that the trial next to it inside the grid ties is not named (on_edge)."""
    if options["search_kind"] != "grid":
        return ""
    overrides = search.parse_grid(options["grid_entries"])
    rows = None if results is None else [_edge_row(s, r) for s, r in zip(specs, results)]
    found = {}
    for optimizer, size, i in best:
        if i is None:
            continue
        axes = search.grid(optimizer, overrides)
        factor = search.lr_factor(options["lr_scaling"], size, base)
        for name, values in axes.items():
            scale = factor if name == "lr" else 1.0
            scaled = [v * scale for v in values]
            if rows is None:
                edge = any(math.isclose(specs[i][name], v)
                           for v in edge_values(optimizer, name, scaled))
            else:
                edge = on_edge(optimizer, name, scaled, rows[i], rows)
            if edge:
                value = specs[i][name] / scale
                found.setdefault((optimizer, name, min(values, key=lambda v: abs(v - value))),
                                 []).append(size)
    if not found:
        return ""
    parts = [f"{opt} {name}={value:g}{' (at B0)' if name == 'lr' else ''} at B={','.join(map(str, sizes))}"
             for (opt, name, value), sizes in found.items()]
    return textwrap.fill("note: best setting on the edge of its grid, the optimum may lie beyond "
                         "it (widen it with --grid): " + "; ".join(parts), width=100,
                         subsequent_indent="  ")


def _edge_row(spec, result):
    """A trial as on_edge reads it: its spec with its rank (None if it did not reach the
    target)."""
    return dict(spec, rank=reached_rank(result) if result["reached"] else None)
