"""Did the divergence rule change a figure? Every trial of a study that `minigrad train
--diverged-after K` ended as diverged (K consecutive evaluations at chance) is trained again
without the rule, and the script says whether it would have counted:

    python docs/results/fashion-mnist/recheck-diverged.py STUDY_DIR [STUDY_DIR ...]

The rule saves the budget of runs that blew up and sit at chance; it is not exact, as pruning
is: a run at chance can recover. A rerun (seed, options and code the same, so bit for bit the
trial up to where the rule stopped it) goes on until

    scaling, a search trial (the search's seed)   the target, or the fewest steps to target of
                                                  its search (same optimizer, batch size and
                                                  seed): it can only change a figure by
                                                  reaching the target in fewer steps (pruning's
                                                  bound, cli/study/pruning.py)
    scaling, a confirmation seed                  the target, or the whole budget: the batch
    sensitivity                                   size (the grid point) counts as reached only
                                                  if the trial reaches it at all

and `changes` says whether it would have: reached the target (sensitivity, confirmation seeds),
or within the search's bound, before it (search trials; a tie at the bound is reported too).
Reruns live in STUDY_DIR/rechecks/<trial>/ and resume after an interruption (a finished one is
read, not rerun). One table per study is printed, with a last line that counts the trials
and those that change a figure; the exit status is 1 if a rerun changes a figure.
"""
import glob
import json
import os
import subprocess
import sys

import h5py

from minigrad.cli import main as cli_main

CHANCE = "consecutive evaluations at chance"
# config entries that are not train options, or that the rerun sets itself
SKIP = {"diverged_after", "schedule_steps", "steps_per_epoch", "train_examples", "world_size"}
HIDDEN_MODELS = ("mlp", "autoencoder")   # the models that take --hidden
SETTING = ("lr", "momentum", "damping", "kl_clip", "radius", "hessian_fraction")


def config_of(folder):
    with h5py.File(os.path.join(folder, "run.h5"), "r") as f:
        return json.loads(f.attrs["config"]), int(f.attrs.get("target_step", -1)), \
            str(f.attrs.get("status"))


def killed_by_rule(folder):
    """Whether the trial ended by the divergence rule (its log's last line says so)."""
    try:
        with open(os.path.join(folder, "train.log")) as fh:
            lines = fh.read().strip().splitlines()
    except OSError:
        return False
    return bool(lines) and CHANCE in lines[-1]


def train_args(config):
    """`minigrad train` options that retrain the run of `config`, without the rule."""
    params = {p.name: p for p in cli_main.commands["train"].params}
    args = []
    for key, value in sorted(config.items()):
        if key in SKIP or key not in params or value is None:
            continue
        if key == "hidden" and config.get("model") not in HIDDEN_MODELS:
            continue   # recorded at its default for every model, an error for the others
        p = params[key]
        if p.is_flag:
            if p.secondary_opts and not value:
                args.append(p.secondary_opts[0])
            elif value:
                args.append(p.opts[0])
        elif isinstance(value, list):
            args += [p.opts[0], ",".join(str(v) for v in value)]
        else:
            args += [p.opts[0], repr(value) if isinstance(value, float) else str(value)]
    return args + ["--diverged-after", "0"]


def setting(config):
    """The trial's hyperparameters, "lr=0.1 momentum=0.9"."""
    return " ".join(f"{k}={config[k]:.4g}" for k in SETTING if config.get(k) is not None)


def changes(reached, bound):
    """Whether a rerun that reached the target at step `reached` (-1: not reached) would have
    changed a figure: at all when there is no bound (sensitivity, confirmation seeds), at or
    before the search's bound otherwise (at it: a tie, which cost and accuracy then break)."""
    return reached >= 0 and (bound is None or reached <= bound)


def search_bounds(trials):
    """{(optimizer, batch size, seed): fewest steps to target} over the finished trials."""
    bounds = {}
    for folder, (config, target_step, _) in trials.items():
        if target_step >= 0:
            key = (config["optimizer"], config["batch_size"], config["seed"])
            bounds[key] = min(bounds.get(key, target_step), target_step)
    return bounds


def search_seed(study):
    for name in ("scaling.h5", "compare.h5"):
        path = os.path.join(study, name)
        if os.path.isfile(path):
            with h5py.File(path, "r") as f:
                return json.loads(f.attrs["options"]).get("seed", 0)
    return None if os.path.isfile(os.path.join(study, "sensitivity.h5")) else 0


def rerun(folder, config, bound, out):
    """The rerun's (reached step or -1, final test accuracy, steps run, its log's last line)."""
    done = os.path.isfile(os.path.join(out, "run.h5")) and \
        config_of(out)[2] not in ("running", "interrupted")
    if not done:
        os.makedirs(out, exist_ok=True)
        if os.path.isfile(os.path.join(out, "checkpoint.npz")):
            args = ["--out", out, "--resume"]
        else:
            args = train_args(config) + ["--out", out, "--overwrite"]
        if bound is not None:   # (a resumed run is given its bound again)
            with open(os.path.join(out, "bound"), "w") as fh:
                fh.write(f"{bound}\n")
            args += ["--prune-file", os.path.join(out, "bound")]
        with open(os.path.join(out, "train.log"), "a") as log:
            subprocess.run([sys.executable, "-m", "minigrad.cli", "train", *args],
                           stdout=log, stderr=subprocess.STDOUT)
    with open(os.path.join(out, "train.log")) as fh:
        last = (fh.read().strip().splitlines() or [""])[-1]
    if not os.path.isfile(os.path.join(out, "run.h5")):
        sys.exit(f"recheck-diverged: the rerun of {folder} did not start: {last}")
    with h5py.File(os.path.join(out, "run.h5"), "r") as f:
        acc = f["evals/test_accuracy"][()] if "evals/test_accuracy" in f else []
        return int(f.attrs.get("target_step", -1)), float(acc[-1]) if len(acc) else float("nan"), \
            int(f.attrs.get("steps", 0)), last


def recheck(study):
    trials = {d: config_of(d) for d in sorted(glob.glob(os.path.join(study, "trials", "*")))
              if os.path.isfile(os.path.join(d, "run.h5"))}
    seed = search_seed(study)
    bounds = search_bounds(trials)
    changed = 0
    print(f"# {os.path.basename(os.path.normpath(study))}: the trials the divergence rule "
          "stopped, trained again without it\n\n"
          "| trial | setting | seed | stopped at | bound | rerun | changes |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    stopped_trials = 0
    for folder, (config, _, _) in trials.items():
        if not killed_by_rule(folder):
            continue
        search = seed is not None and config["seed"] == seed
        bound = bounds.get((config["optimizer"], config["batch_size"], config["seed"])) \
            if search else None
        out = os.path.join(study, "rechecks", os.path.basename(folder))
        with h5py.File(os.path.join(folder, "run.h5"), "r") as f:
            stopped = int(f.attrs.get("steps", 0))
        reached, acc, steps, last = rerun(folder, config, bound, out)
        change = changes(reached, bound)
        changed += change
        stopped_trials += 1
        outcome = f"target at {reached}" if reached >= 0 else \
            f"{steps} steps, acc {acc:.4f}" + (", non-finite loss" if "non-finite" in last
                                              or "nan" in last.lower() else "")
        print(f"| {os.path.basename(folder)} | {setting(config)} | {config['seed']} | "
              f"{stopped} | {bound if bound is not None else 'budget'} | {outcome} | "
              f"{'**yes**' if change else 'no'} |", flush=True)
    print(f"\n{stopped_trials} trials stopped by the rule; {changed} of them would change a "
          "figure.\n")
    return changed


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(1 if sum(recheck(s) for s in sys.argv[1:]) else 0)
