"""`minigrad recheck-diverged STUDY_DIR...`: did the divergence rule change a figure?

A study's trials end as diverged after K consecutive evaluations at chance (`minigrad train
--diverged-after K`; the studies' default K is cli/study/trials.py TRIAL_DEFAULTS). The rule
saves the budget of runs that blew up and sit at chance, but it is not exact, as pruning is: a
run at chance can recover. This command trains every trial the rule stopped again without it.
The rerun has the trial's seed, options and code, so it is the trial bit for bit up to where
the rule stopped it, and it goes on until

    scaling or compare, a search trial     the target, or the fewest steps to target of its
    (the study's seed)                     search (same optimizer, batch size and seed): it
                                           can only change a figure by reaching the target in
                                           fewer steps (pruning's bound, cli/study/pruning.py)
    scaling, a confirmation seed;          the target, or the whole budget: the batch size
    sensitivity                            (the grid point) counts as reached only if the trial
                                           reaches the target at all

and `changes` says whether it would have: reached the target (sensitivity, confirmation seeds),
or at or before the search's bound (search trials; a tie at the bound is reported too, since
cost and accuracy then decide). Reruns live in STUDY_DIR/rechecks/<trial>/ and resume after an
interruption (a finished one is read, not trained again). A rerun uses the study's BLAS threads
per trial (--threads-per-job; the thread count changes the rounding). One Markdown table per
study, with a last line that counts the trials and those that change a figure.
"""
import glob
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import click
import h5py

from . import runlog
from .atomic import write_stream
from .common import UserError, one_line_errors
from .study import pruning, trials as study_trials
from .study.pool import BLAS_THREADS
from .study.results import trial_result
from .training.run_folder import check_writable

RECHECKS = "rechecks"   # the reruns' folder in the study's
CHANCE = "consecutive evaluations at chance"   # train's message when the rule ends a run
# config entries that are not train options, or that the rerun sets itself
SKIP = {"diverged_after", "diverged_epochs", "schedule_steps", "steps_per_epoch", "train_examples",
        "world_size"}
HIDDEN_MODELS = ("mlp", "autoencoder")   # the models that take --hidden
SETTING = ("lr", "momentum", "damping", "kl_clip", "radius", "hessian_fraction")
NOT_ENDED = ("crashed", "running", "interrupted")   # results.trial_result's statuses to (re)run
EXIT_CHANGED = 3   # a rerun changes a figure (1 and 2 are errors, as for every command)
SUMMARY = ("scaling", "compare", "sensitivity")   # the study commands (and their .h5 files)
FOLDERS = "trial folders"   # study_options' key for the trials its summary file lists


def write_text(path, text):
    """Write the text file `path` atomically (cli/atomic.py)."""
    write_stream(path, lambda fh: fh.write(text.encode()))


def outcome_of(folder):
    """(run config, results.trial_result) of a run folder, its run.h5 read once."""
    run = runlog.read_run(folder)
    return json.loads(run["attrs"]["config"]), trial_result(folder, run)


def killed_by_rule(folder):
    """Whether the trial ended by the divergence rule (its train.log's last line says so)."""
    try:
        with open(os.path.join(folder, study_trials.LOG_FILE)) as fh:
            lines = fh.read().strip().splitlines()
    except OSError:
        return False
    return bool(lines) and CHANCE in lines[-1]


def train_args(config, out, mode="new", prune_file=None):
    """`minigrad train`'s command line for the rerun of the run of `config` into `out` (mode
    "new" or "resume"), built as the study's workers build a trial's (cli/study/trials.py
    train_args) from the train options the config records, without the rule."""
    from .train import train
    options = {p.name for p in train.params}
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
    """{(optimizer, batch size, seed): fewest steps to target} over the ended trials
    ({folder: outcome_of(folder)})."""
    bounds = {}
    for config, result in trials.values():
        if result["reached"]:
            key = (config["optimizer"], config["batch_size"], config["seed"])
            bounds[key] = min(bounds.get(key, result["steps_to_target"]), result["steps_to_target"])
    return bounds


def study_options(study, kind=None):
    """(kind, options) of the study in `study`: from its summary file (scaling.h5, compare.h5 or
    sensitivity.h5, written when the study ends; options[FOLDERS]: the trials it lists), or,
    for a study still running, `kind` as given with its command's defaults (seed 0, one BLAS
    thread per trial, every trial folder); UserError if neither or if they disagree."""
    for name in SUMMARY:
        path = os.path.join(study, name + ".h5")
        if os.path.isfile(path):
            if kind not in (None, name):
                raise UserError(f"--kind {kind}: {study!r} is a {name} study ({path})")
            with h5py.File(path, "r") as f:
                options = json.loads(f.attrs["options"])
                if "trials/folder" in f:   # its trials (the folder may hold others' too)
                    options[FOLDERS] = [os.path.basename(x.decode() if isinstance(x, bytes)
                                                         else str(x))
                                        for x in f["trials/folder"][()]]
                return name, options
    if kind is None:
        raise UserError(f"no {', '.join(n + '.h5' for n in SUMMARY)} in {study!r}: the study "
                        "has not ended; give --kind to recheck it as it stands")
    return kind, {}


def search_seed(kind, options):
    """The seed of the study's searches (scaling, compare), whose trials are pruned at their
    search's bound; None for a sensitivity map, whose every trial runs its budget."""
    return None if kind == "sensitivity" else options.get("seed", 0)


def rerun(folder, config, bound, out, threads):
    """Train the rerun of the trial in `folder` into `out` (resumed, or read if it ended) with
    `threads` BLAS threads, the study's per trial (the thread count changes the rounding: with
    another, the rerun would not be the trial bit for bit); its results.trial_result and its
    log's last line."""
    if trial_result(out)["status"] in NOT_ENDED:
        os.makedirs(out, exist_ok=True)
        prune_file = None
        if bound is not None:   # (a resumed run is given its bound again)
            prune_file = os.path.join(out, "bound")
            pruning.reset(prune_file, bound)
        mode = "resume" if os.path.isfile(os.path.join(out, "checkpoint.npz")) else "new"
        with open(os.path.join(out, study_trials.LOG_FILE), "a") as log:
            subprocess.run([sys.executable, "-m", "minigrad.cli", "train",
                            *train_args(config, out, mode, prune_file)],
                           stdout=log, stderr=subprocess.STDOUT,
                           env=dict(os.environ, **{k: str(threads) for k in BLAS_THREADS}))
    with open(os.path.join(out, study_trials.LOG_FILE)) as fh:
        last = (fh.read().strip().splitlines() or [""])[-1]
    result = trial_result(out)
    if result["status"] in NOT_ENDED:
        raise UserError(f"recheck-diverged: the rerun of {folder} in {out} did not end: {last}")
    return result, last


def recheck(study, echo, jobs=1, kind=None):
    """Rerun the trials of `study` that the rule stopped, `jobs` at a time, calling echo(line)
    with the table's lines (in the trials' order, each as soon as it and those before it are
    known); the number of trials whose rerun changes a figure. `kind`: study_options'."""
    folders = sorted(glob.glob(os.path.join(study, study_trials.TRIALS, "*")))
    if not folders:
        raise UserError(f"no trials in {study!r}: expected the folder of a `minigrad scaling`, "
                        f"`compare` or `sensitivity` study (with {study_trials.TRIALS}/)")
    kind, options = study_options(study, kind)
    if FOLDERS in options:   # trials of an earlier form of the study are not its figures'
        listed = set(options[FOLDERS])
        folders = [d for d in folders if os.path.basename(d) in listed]
    trials = {d: outcome_of(d) for d in folders if os.path.isfile(os.path.join(d, "run.h5"))}
    seed = search_seed(kind, options)
    threads = options.get("threads_per_job", 1)
    bounds = search_bounds(trials)
    stopped = []   # (folder, config, result, bound) of the trials the rule stopped
    for folder, (config, result) in trials.items():
        if killed_by_rule(folder):
            search = seed is not None and config["seed"] == seed
            stopped.append((folder, config, result, bounds.get(
                (config["optimizer"], config["batch_size"], config["seed"])) if search else None))
    echo(f"# {os.path.basename(os.path.normpath(study))}: the trials the divergence rule "
         "stopped, trained again without it\n\n"
         "| trial | setting | seed | stopped at | bound | rerun | changes |\n"
         "| --- | --- | --- | --- | --- | --- | --- |")
    changed = 0
    # each rerun is a `minigrad train` process: threads only wait for them
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reruns = pool.map(lambda t: rerun(t[0], t[1], t[3], os.path.join(
            study, RECHECKS, os.path.basename(t[0])), threads), stopped)
        for (folder, config, result, bound), (again, last) in zip(stopped, reruns):
            reached = again["steps_to_target"] if again["reached"] else -1
            change = changes(reached, bound)
            changed += change
            outcome = f"target at {reached}" if reached >= 0 else \
                f"{again['steps']} steps, acc {again['final_test_accuracy']:.4f}" + \
                (", non-finite loss" if "non-finite" in last or "nan" in last.lower() else "")
            echo(f"| {os.path.basename(folder)} | {setting(config)} | {config['seed']} | "
                 f"{result['steps']} | {bound if bound is not None else 'budget'} | {outcome} | "
                 f"{'**yes**' if change else 'no'} |")
    echo(f"\n{len(stopped)} trials stopped by the rule; {changed} of them would change a "
         "figure.\n")
    return changed


@click.command("recheck-diverged", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("study_dirs", metavar="STUDY_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Reruns trained at a time, each a `minigrad train` process (the table keeps "
                   "the trials' order).")
@click.option("--kind", type=click.Choice(SUMMARY), default=None,
              help="The study command, for a study that has not ended (no summary file yet: "
                   "a scaling or compare search's trials then run to its bound so far).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the tables to this Markdown file (atomically, once all reruns "
                   "have ended; its folder is checked first).")
@one_line_errors
def recheck_diverged(study_dirs, jobs, kind, out):
    """Train every trial of each study that the divergence rule (--diverged-after) stopped
    again without the rule, to where it could still change a figure (its search's fewest steps
    to target; the whole budget for a confirmation seed or a sensitivity point), and print a
    table per study saying whether any would have. Reruns go to STUDY_DIR/rechecks/ and resume
    after an interruption; an error in one is reported once those running beside it have
    ended. Exit status 0 if no rerun changes a figure, 3 if one does (the study's figures are
    then not exact), 1 or 2 on an error (2: the command line)."""
    if out:   # before hours of reruns, not after
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise UserError(f"--out {out!r}: no folder {folder!r}")
        check_writable(folder)
    lines = []

    def echo(line):
        click.echo(line)
        lines.append(line)

    changed = sum(recheck(study, echo, jobs, kind) for study in study_dirs)
    if out:
        write_text(out, "\n".join(lines) + "\n")
    sys.exit(EXIT_CHANGED if changed else 0)
