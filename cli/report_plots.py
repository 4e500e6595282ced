"""The figures of `minigrad report` (matplotlib through cli/plotting.py; each function returns
False without drawing when matplotlib is not installed). A method has the same colour in every
figure: C<k>, k its place in the report's list of methods."""
import math

import numpy as np

from . import plotting
from . import report_rules as rules
from .report_data import model_text


def _log2_x(ax, sizes):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size")
    ax.grid(True, which="both", alpha=0.3)


def _log_y(ax):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # 0.5, 20, 1e+06
    ax.yaxis.set_minor_formatter(NullFormatter())


def _seed_ranges(ax, points, sizes, per, colour):
    """The range of the steps over the seeds (divided by `per`: steps per epoch for epochs) as
    a vertical bar at each batch size that has one."""
    lo = np.array([points[b].steps_min for b in sizes], np.float64)
    hi = np.array([points[b].steps_max for b in sizes], np.float64)
    several = np.array([points[b].seeds > 1 for b in sizes], bool) & np.isfinite(lo)
    per = np.broadcast_to(np.asarray(per, np.float64), lo.shape)
    if several.any():
        ax.vlines(sizes[several], lo[several] / per[several], hi[several] / per[several],
                  color=colour, linewidth=1.5, alpha=0.6)


def scaling_figure(c, path):
    """Steps and epochs to the target against batch size, a row of two panels per problem, each
    method with its ideal line S(B0) B0 / B (in epochs: divided by ceil(n / B))."""
    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(path)
        return False
    problems = [p for p in c.problems if any((m, p) in c.points for m in c.methods)]
    labels = c.labels()
    fig, axes = plt.subplots(len(problems), 2, squeeze=False, layout="constrained",
                             figsize=(10, 3.8 * len(problems)))
    for row, problem in zip(axes, problems):
        n = c.train_examples[problem]
        everything = sorted({b for m in c.methods for b in c.points.get((m, problem), {})})
        for col, (ax, field) in enumerate(zip(row, ("steps", "epochs"))):
            top = 0.0
            for k, m in enumerate(c.methods):
                points = c.points.get((m, problem))
                if not points:
                    continue
                sizes = np.array(sorted(points))
                y = np.array([getattr(points[b], field) for b in sizes])
                ok = np.array([points[b].reached for b in sizes])
                ax.plot(sizes[ok], y[ok], "o-", color=f"C{k}", label=m.label)
                _seed_ranges(ax, points, sizes[ok], 1.0 if field == "steps" else
                             np.ceil(n / sizes[ok]), f"C{k}")
                if ok.any():
                    top = max(top, np.nanmax(y[ok]))
                    first = int(np.flatnonzero(ok)[0])
                    steps0 = points[int(sizes[first])].steps
                    ideal = rules.ideal_steps(steps0, sizes[first], sizes.astype(np.float64))
                    if field == "epochs":
                        ideal = ideal / np.ceil(n / sizes)
                    ax.plot(sizes, ideal, ":", color=f"C{k}", linewidth=1)
            for k, m in enumerate(c.methods):   # failures on the top edge
                points = c.points.get((m, problem), {})
                missed = [b for b in sorted(points) if not points[b].reached]
                if missed and top > 0:
                    ax.plot(missed, [top] * len(missed), "x", color=f"C{k}", markersize=9)
            _log2_x(ax, everything)
            if top > 0:
                _log_y(ax)
            ax.set_ylabel(f"{field} to target")
            ax.set_title(f"{labels[problem]}: {problem.target_text()}", fontsize=9)
            if col == 0:
                ax.legend(fontsize=7, title="dotted: ideal; x: not reached", title_fontsize=7)
    plotting.save(fig, path)
    return True


def robustness_figure(c, path):
    """The fraction of each sensitivity grid reaching the target against batch size, a panel
    per problem."""
    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(path)
        return False
    problems = [p for p in c.problems if any((m, p) in c.fractions for m in c.methods)]
    labels = c.labels()
    fig, axes = plt.subplots(1, len(problems), squeeze=False, layout="constrained",
                             figsize=(5 * len(problems), 3.8))
    for ax, problem in zip(axes[0], problems):
        everything = sorted({b for m in c.methods for b in c.fractions.get((m, problem), {})})
        for k, m in enumerate(c.methods):
            fractions = c.fractions.get((m, problem))
            if fractions:
                sizes = sorted(fractions)
                ax.plot(sizes, [fractions[b].fraction for b in sizes], "o-", color=f"C{k}",
                        label=m.label)
        _log2_x(ax, everything)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("fraction of the grid reaching the target")
        ax.set_title(f"{labels[problem]}: {problem.target_text()}", fontsize=9)
        ax.legend(fontsize=7)
    plotting.save(fig, path)
    return True


def noise_figure(runs, c, path):
    """B_simple over training, a panel per reference run: each epoch's value (parts averaged),
    single evaluations (dots), the summary (dashed) and the critical batch sizes B_c of the
    methods studied on the run's data set and model (dotted)."""
    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(path)
        return False
    fig, axes = plt.subplots(1, len(runs), squeeze=False, layout="constrained",
                             figsize=(5.5 * len(runs), 3.8))
    for ax, run in zip(axes[0], runs):
        epoch = run.step / run.per_epoch
        with np.errstate(divide="ignore", invalid="ignore"):
            single = run.trace / run.grad_sq
        positive = np.isfinite(single) & (single > 0)   # a log axis; <= 0: |G|^2 estimate <= 0
        ax.plot(epoch[positive], single[positive], ".", color="0.6", markersize=3,
                label="one evaluation")
        windows = rules.noise_by_epoch(run.step, run.trace, run.grad_sq, run.per_epoch)
        ax.plot([e for e, _ in windows], [b for _, b in windows], "o-", color="black",
                label="per epoch")
        summary = rules.noise_summary(run.step, run.trace, run.grad_sq)[0]
        if math.isfinite(summary):
            ax.axhline(summary, color="black", linestyle="--", linewidth=1,
                       label=f"summary {summary:.3g}")
        for k, m in enumerate(c.methods):
            for problem in c.problems:
                points = c.points.get((m, problem))
                if not points or (problem.dataset, problem.model, problem.hidden) != \
                        (run.dataset, run.model, run.hidden):
                    continue
                sizes = sorted(points)
                s = rules.scaling(sizes, [points[b].steps for b in sizes],
                                  [points[b].reached for b in sizes])
                if s is not None:
                    ax.axhline(s.critical, color=f"C{k}", linestyle=":",
                               label=f"B_c {m.label}: {s.critical}")
        _log_y(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel("B_simple")
        ax.set_title(f"{run.dataset} {model_text(run.model, run.hidden)}: {run.optimizer}, "
                     f"B = {run.batch_size}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    plotting.save(fig, path)
    return True
