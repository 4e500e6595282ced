"""`minigrad compare`: the optimizers side by side at one batch size, each tuned.

For every optimizer, the search of cli/search.py at --batch-size (grid by default); every trial
stops at the first evaluation that meets the target (as in `minigrad scaling`: what comes after
cannot change steps to target, and it saves most of the compute), and the best trial (fewest
steps to the target; if none reached it, the best final test accuracy) stands for the
optimizer. The table answers the questions of the large-batch debate in one place:

    reached      did the tuned method reach the target within the budget?
    steps        optimizer steps to the target (iterations: what data parallelism shortens)
    epochs       passes over the training data to the target (data efficiency)
    grad evals   cost to the target in gradient evaluations of a batch, with each curvature-
                 vector product and trial-point forward counted (cli/cost.py)
    HVPs, CG     curvature-vector products and CG iterations over the whole run
    wall s       seconds of optimizer steps to the target (evaluations excluded)
    final        train loss (mean mini-batch loss of the last evaluation interval) and test
                 accuracy where the trial ended: at the target, or at the end of the budget

Outputs in the study folder: trials/ (run folders; rerunning resumes, see cli/study/),
compare.h5, compare.png (the best trials' curves against epochs, gradient evaluations and
wall time) and the table on stdout.

compare.h5::

    attrs   command ("compare"), options (JSON), base_batch_size, train_examples, versions
    trials/ the trial table (cli/study/files.py write_trials)
    best/   one entry per optimizer (in --optimizers order): the trial-table columns of its best
            setting (with --seeds K the means over the K seeds: reached if every seed reached
            the target; steps_to_target then float64), plus trial (index into trials/ of the
            setting's first seed), seeds, reached_fraction, steps_min, steps_max
"""
import json
import os

import click
import numpy as np

from . import plotting, runlog, search, study
from .common import one_line_errors, table
from .study import grid_edges, prepare, study_attrs, target_text


def print_table(best, specs, results):
    header = ("optimizer", "reached", "steps", "epochs", "grad evals", "HVPs", "CG iters",
              "wall s", "final train loss", "final test acc", "hyperparameters")
    rows = []
    for optimizer, i in best.items():
        r, s = results[i], specs[i]
        rows.append((optimizer, "yes" if r["reached"] else "no",
                     study.fmt(r["steps_to_target"], ".0f"), study.fmt(r["epochs_to_target"], ".2f"),
                     study.fmt(r["cost_to_target"], ".0f"), study.fmt(r["curvature_products"], ".0f"),
                     study.fmt(r["cg_iterations"], ".0f"), study.fmt(r["wall_to_target"], ".2f"),
                     study.fmt(r["final_train_loss"], ".4f"),
                     study.fmt(r["final_test_accuracy"], ".4f"),
                     " ".join(f"{k}={s[k]:.3g}" for k in search.HYPERPARAMETERS
                              if s.get(k) is not None)))
    click.echo(table(header, rows))


def curves(folder):
    """x axes (epochs, grad evals, seconds) and test accuracy / train loss at each evaluation."""
    run = runlog.read_run(folder)
    config = run["attrs"]["config"]
    per_epoch = json.loads(config).get("steps_per_epoch") or 1
    steps, evals = run["steps"], run["evals"]
    at = evals["step"].astype(np.int64)
    cost = np.concatenate([[0.0], np.cumsum(steps["grad_equivalents"])])
    wall = np.concatenate([[0.0], np.cumsum(steps["step_time"])])
    return {"epochs": at / per_epoch, "grad evals": cost[at], "wall time (s)": wall[at],
            "test accuracy": evals["test_accuracy"], "train loss": evals["train_loss"]}


def plot(best, results, path, title, target):
    plt = plotting.pyplot()
    if plt is None:
        return plotting.hint(path)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    for k, (optimizer, i) in enumerate(best.items()):
        c = curves(results[i]["folder"])
        for ax, x in zip(axes, ("epochs", "grad evals", "wall time (s)")):
            ax.plot(c[x], c["test accuracy"], "-", color=f"C{k}", label=optimizer)
            ax.set_xlabel(x)
    for ax in axes:
        if target is not None:
            ax.axhline(target, color="0.5", linestyle=":", linewidth=1)
        ax.set_ylabel("test accuracy")
        ax.grid(True, alpha=0.3)
    axes[2].set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    plotting.save(fig, path)


@click.command("compare", context_settings={"help_option_names": ["-h", "--help"]})
@study.study_options(click.option("--batch-size", type=click.IntRange(min=1), default=256,
                                  show_default=True, help="The batch size of every trial."))
@one_line_errors
def compare(**options):
    """The optimizers side by side at one batch size, each tuned by its search: steps, epochs,
    gradient evaluations, HVPs and CG iterations, wall time, final loss and accuracy.

    Writes OUT/compare.h5, OUT/compare.png and one run folder per trial under OUT/trials/;
    running the same command again skips finished trials.
    """
    study.check_targets(options)
    size = options["batch_size"]
    options["grid_entries"] = list(options["grid_entries"])
    root, specs, n, base = prepare(options, [size], True, "compare")
    specs, trials = study.run_trials(root, specs, options, "compare")
    settings, results = study.aggregate(specs, trials)
    best = {}
    for optimizer in options["optimizers"]:
        idx = [i for i, s in enumerate(settings) if s["optimizer"] == optimizer]
        best[optimizer] = idx[study.best_index([results[i] for i in idx])]

    def fill(f):
        study.write_trials(f.create_group("trials"), specs, trials)
        # the best setting of each optimizer (means over its seeds), in --optimizers order
        study.write_trials(f.create_group("best"), [settings[i] for i in best.values()],
                           [results[i] for i in best.values()])
    study.write_study(os.path.join(root, "compare.h5"), study_attrs("compare", options, base, n),
                      fill)
    click.echo(f"\n{options['dataset']}, {options['model']}, batch size {size}, target "
               f"{target_text(options)}, budget {study.per_batch_text(options, 'budget_epochs')} "
               "epochs; each "
               "optimizer's best trial:")
    print_table(best, settings, results)
    note = grid_edges(options, settings, [(opt, size, i) for opt, i in best.items()], base,
                      results)
    if note:
        click.echo(note)
    click.echo(f"results written to {os.path.join(root, 'compare.h5')}")
    plot(best, results, os.path.join(root, "compare.png"),
         f"{options['dataset']} {options['model']}, batch size {size}: best trial per optimizer",
         options["target_accuracy"])
