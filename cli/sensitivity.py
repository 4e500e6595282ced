"""`minigrad sensitivity`: the whole hyperparameter grid of each optimizer at each batch size.

Where `minigrad scaling` keeps only the best trial, this keeps them all: for each optimizer its
two key hyperparameters (cli/search.py AXES and SENSITIVITY_GRIDS: lr x momentum for SGD, lr x
damping for K-FAC, radius x hessian_fraction for TRCG/STRCG; `--grid` replaces an axis) span a
grid, every point is trained for the full budget at every batch size (to the target with
--stop-at-target), and the maps of final test accuracy and of steps to the target show how
wide the region of good settings is. The robustness measure of Ma et al. (AAAI 2020) is the
fraction of the grid that reaches the target:

    robustness(optimizer, B) = #{grid points reaching the target within the budget} / #grid

Trials run to the end of the budget by default, so the final accuracy is comparable across the
grid; they are different trials from a scaling study's (which stop at the target). With
`--stop-at-target` a trial stops at the evaluation where it reaches the target, as in `scaling`:
the fraction reached and the steps-to-target maps are the same as without it (a trial's
evaluations up to the target do not depend on whether it goes on), the accuracy and
train-loss maps then hold the values where each trial stopped, and a grid most of whose points
reach the target early costs a fraction of the full budget.

Outputs in the study folder: trials/ (run folders; rerunning resumes, see cli/study/),
sensitivity.h5, sensitivity.png (steps-to-target maps) and sensitivity-accuracy.png (final
accuracy maps), and a table on stdout.

sensitivity.h5::

    attrs   command ("sensitivity"), options (JSON), base_batch_size, train_examples, versions
    trials/ the trial table (cli/study/files.py write_trials)
    maps/<optimizer>/  rows, columns: the names of the two axes (attrs); <rows name>,
            <columns name>: their values (lr as at the base batch size, before scaling);
            batch_size (nb,); fraction_reached (nb,); and (nb, R, C) arrays over batch size x
            rows x columns: steps_to_target (nan where not reached), epochs_to_target,
            final_test_accuracy, final_train_loss, reached, trial (index into trials/); with
            --seeds K each cell is the mean over the setting's K seeds, reached if all reached
"""
import os

import click
import numpy as np

from . import plotting, search, study
from .common import one_line_errors, table
from .study import prepare, study_attrs, target_text

MAPS = ("steps_to_target", "epochs_to_target", "final_test_accuracy", "final_train_loss")


def maps(specs, results, optimizer, sizes, axes, names, factors):
    """{name: array (nb, R, C)} for one optimizer; lr rows/columns matched after scaling."""
    rows, cols = axes[names[0]], axes[names[1]]
    shape = (len(sizes), len(rows), len(cols))
    m = {k: np.full(shape, np.nan) for k in MAPS}
    m["reached"] = np.zeros(shape, bool)
    m["trial"] = np.full(shape, -1, np.int64)
    for i, s in enumerate(specs):
        if s["optimizer"] != optimizer:
            continue
        b = sizes.index(s["batch_size"])
        unscaled = {n: s[n] / factors[s["batch_size"]] if n == "lr" else s[n] for n in names}
        r = int(np.argmin([abs(v - unscaled[names[0]]) for v in rows]))
        c = int(np.argmin([abs(v - unscaled[names[1]]) for v in cols]))
        res = results[i]
        m["trial"][b, r, c] = res.get("trial", i)
        m["reached"][b, r, c] = res["reached"]
        for k in MAPS:
            m[k][b, r, c] = np.nan if res[k] is None else float(res[k])
    m["fraction_reached"] = m["reached"].reshape(len(sizes), -1).mean(axis=1)
    return m


def print_table(all_maps, sizes):
    header = ("optimizer", "batch", "grid", "reached", "fraction", "best steps", "median steps",
              "best final acc", "median final acc")
    rows = []
    for optimizer, m in all_maps.items():
        for b, size in enumerate(sizes):
            steps = m["steps_to_target"][b][m["reached"][b]]
            acc = m["final_test_accuracy"][b]
            rows.append((optimizer, size, acc.size, int(m["reached"][b].sum()),
                         f"{m['fraction_reached'][b]:.2f}",
                         study.fmt(steps.min() if steps.size else None, ".0f"),
                         study.fmt(float(np.median(steps)) if steps.size else None, ".0f"),
                         study.fmt(np.nanmax(acc) if np.isfinite(acc).any() else None, ".4f"),
                         study.fmt(median_accuracy(acc), ".4f")))
    click.echo(table(header, rows))


def median_accuracy(acc):
    """The median final test accuracy over the whole grid, a point without one (a run ended by a
    non-finite loss before its first evaluation, a crashed trial) counting as the lowest:
    leaving such points out would report the median of the survivors. None where the median
    is such a point."""
    median = float(np.median(np.where(np.isnan(acc), -np.inf, acc)))
    return median if np.isfinite(median) else None


def _norm(values, log):
    """One colour scale for all of an optimizer's maps (log for step counts)."""
    import matplotlib.colors as colors

    finite = values[np.isfinite(values)]
    if not finite.size:
        return colors.Normalize(0, 1)
    low, high = finite.min(), max(finite.max(), finite.min() * 1.01 if log else finite.min() + 1e-9)
    if log and low > 0:
        return colors.LogNorm(vmin=low, vmax=high)
    return colors.Normalize(vmin=low, vmax=high)


def _heat(ax, values, rows, cols, names, title, norm, fmt, cmap):
    image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=cmap,
                      norm=norm)
    ax.set_facecolor("0.85")   # grey: not reached / diverged
    colormap = image.get_cmap()
    for (r, c), v in np.ndenumerate(values):
        color = "0.4"
        if np.isfinite(v):
            red, green, blue, _ = colormap(norm(v))
            color = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
        ax.text(c, r, "-" if not np.isfinite(v) else format(v, fmt), ha="center", va="center",
                fontsize=7, color=color)
    ax.set_xticks(range(len(cols)), [f"{v:g}" for v in cols], fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{v:g}" for v in rows], fontsize=7)
    ax.set_xlabel(names[1], fontsize=8)
    ax.set_ylabel(names[0] + (" (at B0)" if names[0] == "lr" else ""), fontsize=8)
    ax.set_title(title, fontsize=9)
    return image


def plot(all_maps, grids, sizes, key, path, title, log, fmt, cmap):
    plt = plotting.pyplot()
    if plt is None:
        return plotting.hint(path)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axs = plt.subplots(len(all_maps), len(sizes), squeeze=False, layout="constrained",
                            figsize=(3.2 * len(sizes) + 1, 2.8 * len(all_maps)))
    for r, (optimizer, m) in enumerate(all_maps.items()):
        names = search.AXES[optimizer]
        axes = grids[optimizer]
        norm = _norm(m[key], log)
        for b, size in enumerate(sizes):
            image = _heat(axs[r, b], m[key][b], axes[names[0]], axes[names[1]], names,
                          f"{optimizer} B={size}: {m['fraction_reached'][b]:.0%} reach", norm, fmt,
                          cmap)
        bar = fig.colorbar(image, ax=axs[r, :].tolist(), shrink=0.9)
        if log:
            bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(title)
    plotting.save(fig, path)


@click.command("sensitivity", context_settings={"help_option_names": ["-h", "--help"]})
@study.study_options(click.option("--batch-sizes", callback=study.int_list,
                                  default="64,256,1024", show_default=True,
                                  help="Comma-separated batch sizes."))
@click.option("--stop-at-target", is_flag=True,
              help="Stop each trial where it reaches the target: the same fractions and steps "
                   "maps for less compute; the accuracy and train-loss maps then show the "
                   "values where a trial stopped.")
@one_line_errors
def sensitivity(**options):
    """Every point of each optimizer's hyperparameter grid at each batch size: heat maps of
    steps to target and final accuracy, and the fraction of the grid reaching the target.

    Writes OUT/sensitivity.h5, OUT/sensitivity.png, OUT/sensitivity-accuracy.png and one run
    folder per trial under OUT/trials/; running the same command again skips finished trials.
    """
    study.check_targets(options)
    if options["search_kind"] != "grid":
        raise click.UsageError(f"sensitivity maps a grid; --search {options['search_kind']} "
                               "does not apply")
    sizes = options["batch_sizes"]
    options["grid_entries"] = list(options["grid_entries"])
    grids = search.SENSITIVITY_GRIDS
    try:
        overrides = search.parse_grid(options["grid_entries"])
    except ValueError as e:
        raise click.UsageError(str(e))
    for opt, axes in overrides.items():
        for name, values in axes.items():
            if name in search.EXTRA_AXES[opt] and len(values) > 1:
                raise click.UsageError(f"--grid {opt}.{name}: sensitivity maps {' x '.join(search.AXES[opt])}; "
                                       f"give {name} one value, not {len(values)}")
    root, specs, n, base = prepare(options, sizes, options["stop_at_target"], "sensitivity", grids)
    specs, trials = study.run_trials(root, specs, options, "sensitivity")
    settings, results = study.aggregate(specs, trials)
    axes = {opt: search.grid(opt, overrides, grids) for opt in options["optimizers"]}
    factors = {b: search.lr_factor(options["lr_scaling"], b, base) for b in sizes}
    all_maps = {opt: maps(settings, results, opt, sizes, axes[opt], search.AXES[opt], factors)
                for opt in options["optimizers"]}

    def fill(f):
        study.write_trials(f.create_group("trials"), specs, trials)
        for opt, m in all_maps.items():
            g = f.create_group(f"maps/{opt}")
            names = search.AXES[opt]
            g.attrs["rows"], g.attrs["columns"] = names
            for name in names:
                g.create_dataset(name, data=np.array(axes[opt][name], np.float64))
            g.create_dataset("batch_size", data=np.array(sizes, np.int64))
            for key, values in m.items():
                g.create_dataset(key, data=values)
    study.write_study(os.path.join(root, "sensitivity.h5"),
                      study_attrs("sensitivity", options, base, n), fill)
    click.echo(f"\nrobustness: fraction of each grid reaching {target_text(options)} within "
               f"{study.per_batch_text(options, 'budget_epochs')} epochs ({options['dataset']}, "
               f"{options['model']}):")
    print_table(all_maps, sizes)
    click.echo(f"results written to {os.path.join(root, 'sensitivity.h5')}")
    what = f"{options['dataset']} {options['model']}"
    plot(all_maps, axes, sizes, "steps_to_target", os.path.join(root, "sensitivity.png"),
         f"{what}: steps to {target_text(options)} (grey: not reached)", True, ".0f", "viridis_r")
    ended = ("where the trial stopped (at the target or after "
             if options["stop_at_target"] else "after ")
    plot(all_maps, axes, sizes, "final_test_accuracy",
         os.path.join(root, "sensitivity-accuracy.png"),
         f"{what}: test accuracy {ended}{study.per_batch_text(options, 'budget_epochs')} "
         f"epochs{')' if options['stop_at_target'] else ''} (grey: diverged)",
         False, ".2f", "viridis")
