"""`minigrad scaling`: iterations to a target as the batch size grows, per optimizer, each tuned.

The methodology of Ma et al., "Inefficiency of K-FAC for Large Batch Size Training" (AAAI 2020),
after Shallue et al. 2019 ("Measuring the effects of data parallelism"): for every optimizer and
batch size B, a hyperparameter search (cli/search.py) whose trials stop at the target; the best
trial's steps to target S(B) is the point of the curve. Perfect scaling halves the steps when B
doubles, the hyperbola

    S_ideal(B) = S(B0) B0 / B        (B0: the smallest batch size at which the method succeeded)

and per step of the batch-size list (B_prev -> B)

    speedup    = S(B_prev) / S(B)
    efficiency = speedup / (B / B_prev)     1 on the ideal line, 0 when more data buys nothing.

Outputs in the study folder (--out): trials/ (one `minigrad train` run per trial; see
cli/study/ for resuming), scaling.h5, scaling.png (with matplotlib), and a table on stdout.

scaling.h5::

    attrs   command ("scaling"), options (JSON of the command's options), base_batch_size,
            train_examples, software versions
    trials/ one entry per trial (cli/study/files.py write_trials): optimizer, batch_size, lr,
            momentum, damping, radius, hessian_fraction (nan where not used), status, reached,
            steps_to_target (-1 if not reached), epochs_/wall_/cost_to_target (nan if not),
            steps, wall_time, cost, curvature_products, cg_iterations, final_* metrics, folder
    best/<optimizer>/  one entry per batch size (ascending): batch_size, trial (index into
            trials/, -1 if none), reached, steps_to_target, epochs_to_target, wall_to_target,
            cost_to_target (nan where not reached), ideal_steps, speedup, efficiency (nan
            where undefined), and the best trial's hyperparameters (lr, momentum, ...);
            steps_min, steps_max: the spread over the setting's seeds (--seeds K: a setting is
            trained with K seeds, reaches the target if every seed does, and its figures are
            the means; trial is then its first seed's)

--confirm-seeds K: the search runs with one seed (--seed); then each batch size's best setting
is trained again with seeds --seed+1, ..., --seed+K-1 and the curve's point becomes that
setting's K-seed mean, reached if every seed reached the target, with steps_min/steps_max the
spread. A batch size whose best setting did not reach the target is not retrained (it cannot
count as reached; its point is the search's trial). The choice of the setting stays the
search's (choosing again on the means would favour whichever setting was lucky on more seeds);
the extra trials are in trials/ with their seed.
"""
import math
import os

import click
import numpy as np

from . import plotting, search, study
from .common import one_line_errors, table

COLUMNS = ("steps_to_target", "epochs_to_target", "wall_to_target", "cost_to_target")


def best_per_batch(specs, results, optimizer, sizes):
    """[(batch size, index of the best trial or None)] for one optimizer."""
    out = []
    for b in sizes:
        idx = [i for i, s in enumerate(specs) if s["optimizer"] == optimizer and s["batch_size"] == b]
        k = study.best_index([results[i] for i in idx])
        out.append((b, None if k is None else idx[k]))
    return out


def confirm_specs(specs, curves, seeds):
    """The trials that train each curve point's setting (the search's best at that batch size)
    again with the next seeds - 1 seeds (--confirm-seeds). A point whose best trial did not
    reach the target gets none: it counts as reached only if every seed reaches the target, so
    its outcome is known, and its seeds would each run the whole budget."""
    extra = []
    for c in curves.values():
        for trial, reached in zip(c["trial"], c["reached"]):
            if trial >= 0 and reached:
                extra += [dict(specs[trial], seed=specs[trial]["seed"] + k) for k in range(1, seeds)]
    return extra


def chosen_settings(settings, specs, curves):
    """{optimizer: [(batch size, index into settings or None)]}: the setting holding each curve
    point's trial, once the trials are grouped by setting (study.aggregate)."""
    where = {study.setting_key(s): i for i, s in enumerate(settings)}
    return {opt: [(int(b), None if t < 0 else where[study.setting_key(specs[t])])
                  for b, t in zip(c["batch_size"], c["trial"])] for opt, c in curves.items()}


def curve(specs, results, optimizer, sizes, best=None):
    """{column: array over sizes} of the best trials (or of `best`, [(B, index)]), with
    ideal_steps, speedup, efficiency."""
    best = best or best_per_batch(specs, results, optimizer, sizes)
    c = {"batch_size": np.array(sizes, np.int64),
         "trial": np.array([-1 if i is None else results[i].get("trial", i) for _, i in best],
                           np.int64),
         "reached": np.array([i is not None and results[i]["reached"] for _, i in best], bool)}
    for key in ("steps_min", "steps_max"):
        c[key] = np.array([np.nan if i is None or results[i].get(key) is None
                           else results[i][key] for _, i in best], np.float64)
    for col in COLUMNS:
        c[col] = np.array([float(results[i][col]) if ok else np.nan
                           for (_, i), ok in zip(best, c["reached"])], np.float64)
    for name in search.HYPERPARAMETERS:
        c[name] = np.array([np.nan if i is None or specs[i].get(name) is None else specs[i][name]
                            for _, i in best], np.float64)
    s, b = c["steps_to_target"], c["batch_size"].astype(np.float64)
    first = np.flatnonzero(c["reached"])
    c["ideal_steps"] = (s[first[0]] * b[first[0]] / b) if len(first) else np.full(len(b), np.nan)
    c["speedup"] = np.full(len(b), np.nan)
    c["efficiency"] = np.full(len(b), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        c["speedup"][1:] = s[:-1] / s[1:]
        c["efficiency"][1:] = c["speedup"][1:] / (b[1:] / b[:-1])
    return c


def _params(c, k):
    return " ".join(f"{name}={c[name][k]:.3g}" for name in search.HYPERPARAMETERS
                    if not math.isnan(c[name][k]))


def print_table(curves):
    header = ("optimizer", "batch", "steps", "epochs", "wall s", "grad evals", "speedup",
              "efficiency", "ideal steps", "best hyperparameters")
    rows = []
    for optimizer, c in curves.items():
        for k, b in enumerate(c["batch_size"]):
            reached = c["reached"][k]
            spread = ("" if c["steps_min"][k] == c["steps_max"][k] or not reached else
                      f" [{c['steps_min'][k]:.0f}-{c['steps_max'][k]:.0f}]")
            rows.append((optimizer, int(b),
                         study.fmt(c["steps_to_target"][k], ".0f") + spread if reached
                         else "not reached",
                         study.fmt(c["epochs_to_target"][k], ".2f"),
                         study.fmt(c["wall_to_target"][k], ".2f"),
                         study.fmt(c["cost_to_target"][k], ".0f"),
                         study.fmt(c["speedup"][k], ".2f"), study.fmt(c["efficiency"][k], ".2f"),
                         study.fmt(c["ideal_steps"][k], ".0f"), _params(c, k)))
    click.echo(table(header, rows))


def plot(curves, path, title):
    plt = plotting.pyplot()
    if plt is None:
        return plotting.hint(path)
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    panels = (("steps_to_target", "steps to target"), ("epochs_to_target", "epochs to target"),
              ("wall_to_target", "wall time to target (s)"))
    sizes = next(iter(curves.values()))["batch_size"]
    for ax, (col, label) in zip(axes, panels):
        reached = np.concatenate([c[col][c["reached"]] for c in curves.values()])
        top = np.nanmax(reached) if reached.size else None
        for k, (optimizer, c) in enumerate(curves.items()):
            color = f"C{k}"
            b, y, ok = c["batch_size"], c[col], c["reached"]
            ax.plot(b[ok], y[ok], "o-", color=color, label=optimizer)
            if col == "steps_to_target" and ok.any():
                ax.plot(b, c["ideal_steps"], ":", color=color, linewidth=1)
            if (~ok).any() and top is not None:   # failures drawn on the top edge
                ax.plot(b[~ok], np.full((~ok).sum(), top), "x", color=color, markersize=9)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        if top is None:   # nothing to put on a log axis
            ax.text(0.5, 0.5, "no trial reached the target", transform=ax.transAxes,
                    ha="center", va="center")
        else:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(title="dotted: ideal S(B0)B0/B; x: not reached", fontsize=8, title_fontsize=7)
    fig.suptitle(title)
    plotting.save(fig, path)


@click.command("scaling", context_settings={"help_option_names": ["-h", "--help"]})
@study.study_options(click.option("--batch-sizes", callback=study.int_list,
                                  default="64,128,256,512", show_default=True,
                                  help="Comma-separated batch sizes."))
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Stop a trial once it has done as many steps as the best finished trial of "
                   "its optimizer and batch size took to the target without reaching it: it "
                   "cannot be the best, and no reported figure changes (its status is pruned).")
@click.option("--confirm-seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="After the search, train each batch size's best setting again with seeds "
                   "--seed+1, ..., --seed+K-1; the curve shows its K-seed mean and spread (the "
                   "choice stays the search's). Settings that did not reach the target are not "
                   "retrained.")
@one_line_errors
def scaling(**options):
    """Steps to a target vs batch size for each optimizer, each tuned per batch size.

    Writes OUT/scaling.h5, OUT/scaling.png and one run folder per trial under OUT/trials/;
    running the same command again skips the finished trials.
    """
    study.check_targets(options)
    sizes = options["batch_sizes"]
    options["grid_entries"] = list(options["grid_entries"])
    if options["confirm_seeds"] > 1 and options["seeds"] > 1:
        raise click.UsageError("--confirm-seeds retrains the best settings with more seeds; "
                               "with --seeds every setting has its seeds already: give one")
    root, specs, n, base = study.prepare(options, sizes, True, "scaling")
    # no bound on a mean over seeds; TPE's draws depend on every trial's whole result
    prune = options["prune"] and options["seeds"] == 1 and options["search_kind"] != "tpe"
    specs, trials = study.run_trials(root, specs, options, "scaling", prune=prune)
    settings, results = study.aggregate(specs, trials)
    curves = {opt: curve(settings, results, opt, sizes) for opt in options["optimizers"]}
    # the edges of the search's choice, by the figures it chose on (the K-seed means of --seeds)
    note = study.grid_edges(options, settings, [(opt, b, i) for opt in curves for b, i in
                                                best_per_batch(settings, results, opt, sizes)],
                            base, results)
    extra = confirm_specs(specs, curves, options["confirm_seeds"])
    if extra:
        click.echo(f"confirming the best settings with {options['confirm_seeds']} seeds: "
                   f"{len(extra)} more trials")
        extra, more = study.run_trials(root, extra, options, "scaling", phase="confirm")
        trials += more
        specs = specs + extra
        settings, results = study.aggregate(specs, trials)   # the best settings' seeds together
        chosen = chosen_settings(settings, specs, curves)
        curves = {opt: curve(settings, results, opt, sizes, chosen[opt]) for opt in curves}

    def fill(f):
        study.write_trials(f.create_group("trials"), specs, trials)
        for opt, c in curves.items():
            g = f.create_group(f"best/{opt}")
            for key, values in c.items():
                g.create_dataset(key, data=values)
    study.write_study(os.path.join(root, "scaling.h5"),
                      study.study_attrs("scaling", options, base, n), fill)
    click.echo(f"\nsteps to {study.target_text(options)} ({options['dataset']}, "
               f"{options['model']}, best of each search; budget "
               f"{study.per_batch_text(options, 'budget_epochs')} epochs):")
    print_table(curves)
    if note:
        click.echo(note)
    click.echo(f"results written to {os.path.join(root, 'scaling.h5')}")
    plot(curves, os.path.join(root, "scaling.png"),
         f"{options['dataset']} {options['model']}: steps to {study.target_text(options)}")
