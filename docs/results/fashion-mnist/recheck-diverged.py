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

from minigrad.cli import main as cli_main, runlog
from minigrad.cli.study import trials as study_trials
from minigrad.cli.study.results import trial_result

CHANCE = "consecutive evaluations at chance"
# config entries that are not train options, or that the rerun sets itself
SKIP = {"diverged_after", "schedule_steps", "steps_per_epoch", "train_examples", "world_size"}
HIDDEN_MODELS = ("mlp", "autoencoder")   # the models that take --hidden
SETTING = ("lr", "momentum", "damping", "kl_clip", "radius", "hessian_fraction")


def outcome_of(folder):
    """(run config, results.trial_result) of a run folder, its run.h5 read once."""
    run = runlog.read_run(folder)
    return json.loads(run["attrs"]["config"]), trial_result(folder, run)


def killed_by_rule(folder):
    """Whether the trial ended by the divergence rule (its log's last line says so)."""
    try:
        with open(os.path.join(folder, "train.log")) as fh:
            lines = fh.read().strip().splitlines()
    except OSError:
        return False
    return bool(lines) and CHANCE in lines[-1]


def train_args(config, out, mode="new", prune_file=None):
    """`minigrad train`'s command line for the rerun of the run of `config` into `out` (mode
    "new" or "resume"), built as the study's workers build a trial's (cli/study/trials.py
    train_args) from the train options the config records, without the rule."""
    options = {p.name for p in cli_main.commands["train"].params}
    spec = {k: v for k, v in sorted(config.items())
            if k in options and k not in SKIP and v is not None
            # recorded at its default for every model, an error for the others
            and not (k == "hidden" and config.get("model") not in HIDDEN_MODELS)}
    args = study_trials.train_args(spec, out, mode, prune_file=prune_file)
    return args + (["--diverged-after", "0"] if mode == "new" else [])


def setting(config):
    """The trial's hyperparameters, "lr=0.1 momentum=0.9"."""
    return " ".join(f"{k}={config[k]:.4g}" for k in SETTING if config.get(k) is not None)


def changes(reached, bound):
    """Whether a rerun that reached the target at step `reached` (-1: not reached) would have
    changed a figure: at all when there is no bound (sensitivity, confirmation seeds), at or
    before the search's bound otherwise (at it: a tie, which cost and accuracy then break)."""
    return reached >= 0 and (bound is None or reached <= bound)


def search_bounds(trials):
    """{(optimizer, batch size, seed): fewest steps to target} over the finished trials
    ({folder: outcome_of(folder)})."""
    bounds = {}
    for config, result in trials.values():
        if result["reached"]:
            key = (config["optimizer"], config["batch_size"], config["seed"])
            bounds[key] = min(bounds.get(key, result["steps_to_target"]), result["steps_to_target"])
    return bounds


def search_seed(study):
    for name in ("scaling.h5", "compare.h5"):
        path = os.path.join(study, name)
        if os.path.isfile(path):
            with h5py.File(path, "r") as f:
                return json.loads(f.attrs["options"]).get("seed", 0)
    return None if os.path.isfile(os.path.join(study, "sensitivity.h5")) else 0


def rerun(folder, config, bound, out):
    """The rerun's results.trial_result and its log's last line."""
    if trial_result(out)["status"] in ("crashed", "running", "interrupted"):   # not ended
        os.makedirs(out, exist_ok=True)
        prune_file = None
        if bound is not None:   # (a resumed run is given its bound again)
            prune_file = os.path.join(out, "bound")
            with open(prune_file, "w") as fh:
                fh.write(f"{bound}\n")
        mode = "resume" if os.path.isfile(os.path.join(out, "checkpoint.npz")) else "new"
        with open(os.path.join(out, "train.log"), "a") as log:
            subprocess.run([sys.executable, "-m", "minigrad.cli", "train",
                            *train_args(config, out, mode, prune_file)],
                           stdout=log, stderr=subprocess.STDOUT)
    with open(os.path.join(out, "train.log")) as fh:
        last = (fh.read().strip().splitlines() or [""])[-1]
    result = trial_result(out)
    if result["status"] == "crashed":
        sys.exit(f"recheck-diverged: the rerun of {folder} did not start: {last}")
    return result, last


def recheck(study):
    trials = {d: outcome_of(d) for d in sorted(glob.glob(os.path.join(study, "trials", "*")))
              if os.path.isfile(os.path.join(d, "run.h5"))}
    seed = search_seed(study)
    bounds = search_bounds(trials)
    changed = stopped_trials = 0
    print(f"# {os.path.basename(os.path.normpath(study))}: the trials the divergence rule "
          "stopped, trained again without it\n\n"
          "| trial | setting | seed | stopped at | bound | rerun | changes |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for folder, (config, result) in trials.items():
        if not killed_by_rule(folder):
            continue
        search = seed is not None and config["seed"] == seed
        bound = bounds.get((config["optimizer"], config["batch_size"], config["seed"])) \
            if search else None
        again, last = rerun(folder, config, bound, os.path.join(study, "rechecks",
                                                                os.path.basename(folder)))
        reached = again["steps_to_target"] if again["reached"] else -1
        change = changes(reached, bound)
        changed += change
        stopped_trials += 1
        outcome = f"target at {reached}" if reached >= 0 else \
            f"{again['steps']} steps, acc {again['final_test_accuracy']:.4f}" + \
            (", non-finite loss" if "non-finite" in last or "nan" in last.lower() else "")
        print(f"| {os.path.basename(folder)} | {setting(config)} | {config['seed']} | "
              f"{result['steps']} | {bound if bound is not None else 'budget'} | {outcome} | "
              f"{'**yes**' if change else 'no'} |", flush=True)
    print(f"\n{stopped_trials} trials stopped by the rule; {changed} of them would change a "
          "figure.\n")
    return changed


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(1 if sum(recheck(s) for s in sys.argv[1:]) else 0)
