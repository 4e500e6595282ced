"""`minigrad plot RUN...`: the curves of several training runs in one figure, and their table.

    minigrad plot runs/sgd runs/kfac runs/trcg --x cost --metric loss

It only reads RUN/run.h5 (layout in cli/runlog.py). First it prints one row per run (name,
optimizer, batch size, steps, epochs, wall time, cost, final train and test loss, final test
accuracy or reconstruction error, the step that reached --target-accuracy), then it draws the
figure; without matplotlib it prints the table and how to install it, and exits 0.

The x axis, as a function of k, the number of optimizer steps done (``x_values``):

    steps    k
    epochs   k / ceil(n / B)        n training examples of the run's data set, B its batch size
                                    (a step is one batch; an epoch's last batch is shorter)
    time     wall_time[k]           seconds of training at the end of step k (evaluations and
                                    checkpoints included, summed over resumed sessions)
    cost     sum_{j<=k} grad_equivalents[j]   gradient evaluations of the run's own mini-batch
                                    (cli/cost.py): SGD and K-FAC pay 1 a step, TRCG/STRCG
                                    1 + their curvature products and ratio tests

--metric loss draws the mini-batch loss of step k at x(k) as a thin line, smoothed by a trailing
moving average ``mean(loss[k-W+1..k])`` over W = --smooth steps (fewer at the start; default
max(1, steps // 50)), and the evaluated test loss at x(step) as a line with markers, in the same
colour. --metric accuracy draws the evaluated test accuracy; for autoencoder runs the test
reconstruction error instead (the axis says which; the two cannot share one figure).

Exit status: 0 on success (also without matplotlib); 1 with a one-line ``Error: ...`` when a run
folder or its run.h5 is missing or unreadable, or a run lacks what --x or --metric needs; 2 for
command-line misuse (unknown option, bad --labels count), as click reports it.
"""
import os

import click
import numpy as np

from minigrad import datasets

from . import plotting
from .common import UserError, one_line_errors, run_folder, table
from .inspect import _config, _fmt, _read_run, summary

METRICS = ("loss", "accuracy")
AXES = ("steps", "epochs", "time", "cost")
FORMATS = (".png", ".pdf", ".svg")
# training-split sizes, so that epochs need no data files at plotting time; a data set not
# listed here is loaded to count it (tests check the table against datasets.load)
TRAIN_EXAMPLES = {"digits": 1437, "mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000,
                  "svhn": 73257}
X_LABELS = {"steps": "optimizer steps",
            "epochs": "epochs (passes over the training split)",
            "time": "wall time (s)",
            "cost": "cost (gradient evaluations of the run's mini-batch)"}
HEADER = ("name", "optimizer", "batch", "steps", "epochs", "wall s", "cost", "train loss",
          "test loss", "{acc}", "target step")


class Run:
    """One run folder as read from its run.h5: name, path, data (runlog.read_run), config,
    autoencoder (evaluations report a reconstruction error, not an accuracy)."""

    def __init__(self, path, name):
        self.path, self.name = path, name
        self.data = _read_run(run_folder(path))   # a UserError naming the file
        try:
            self.config = _config(self.data["attrs"])
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
        self.steps = self.data["steps"]
        self.evals = self.data["evals"]
        self.autoencoder = ("test_reconstruction_error" in self.evals
                            or self.config.get("model") == "autoencoder")

    @property
    def done(self):
        """Optimizer steps logged (the length of the per-step series)."""
        return len(self.steps.get("loss", ()))


def train_examples(dataset):
    """n, the number of examples in the training split of `dataset`."""
    key = str(dataset).lower().replace("_", "-")
    if key in TRAIN_EXAMPLES:
        return TRAIN_EXAMPLES[key]
    return len(datasets.load(key, "train")[1])


def steps_per_epoch(config):
    """ceil(n / B): the steps of one epoch of the run (cli/training/data.py's data order)."""
    if config.get("steps_per_epoch"):   # written by train since per-step costs were added
        return int(config["steps_per_epoch"])
    missing = [key for key in ("dataset", "batch_size") if key not in config]
    if missing:
        raise UserError(f"--x epochs: the run's config has no {' or '.join(missing)}")
    return datasets.num_batches(train_examples(config["dataset"]), int(config["batch_size"]))


def x_values(run, axis, steps):
    """x(k) for every k in `steps` (optimizer steps done; 0 gives 0): see the module docstring.

    A UserError naming the run if it lacks the series `axis` needs (time: steps/wall_time,
    cost: steps/grad_equivalents, which runs written before per-step costs do not have)."""
    steps = np.asarray(steps, dtype=np.int64)
    if axis == "steps":
        return steps.astype(np.float64)
    if axis == "epochs":
        return steps / steps_per_epoch(run.config)
    series = {"time": "wall_time", "cost": "grad_equivalents"}[axis]
    if series not in run.steps:
        raise UserError(f"--x {axis}: run {run.path!r} has no steps/{series} series in its "
                        f"run.h5 (written by an older minigrad train); use --x "
                        + ("steps or epochs" if axis == "time" else "steps, epochs or time"))
    per_step = np.asarray(run.steps[series], dtype=np.float64)
    if steps.size and (steps.min() < 0 or steps.max() > len(per_step)):
        raise UserError(f"--x {axis}: run {run.path!r} logs {len(per_step)} steps of "
                        f"steps/{series} but refers to step {int(steps.max())}")
    # at_step[k] = x after k steps: wall_time is already cumulative, the cost is summed here
    at_step = np.concatenate(([0.0], per_step if axis == "time" else np.cumsum(per_step)))
    return at_step[steps]


def moving_average(values, window):
    """Trailing mean: out[k] = mean(values[max(0, k-W+1) .. k]) for W = window."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.concatenate(([0.0], values)))
    k = np.arange(1, values.size + 1)
    start = np.maximum(0, k - window)
    return (sums[k] - sums[start]) / (k - start)


def default_smooth(steps):
    return max(1, steps // 50)


def _accuracy_key(run):
    return "test_reconstruction_error" if run.autoencoder else "test_accuracy"


def table_row(run):
    """The table's cells of one run (HEADER order), as strings."""
    s = summary(run.data)
    config = run.config
    cost = (float(np.sum(run.steps["grad_equivalents"])) if "grad_equivalents" in run.steps
            else None)
    try:
        epochs = s["steps"] / steps_per_epoch(config)
    except (UserError, TypeError, ValueError, OSError):   # e.g. a data set not on this machine
        epochs = None
    acc = run.evals.get(_accuracy_key(run))
    target = ("-" if s["target_accuracy"] is None else
              "no" if s["target_step"] is None else str(s["target_step"]))
    return (run.name, str(config.get("optimizer", "?")), str(config.get("batch_size", "?")),
            str(s["steps"]), _fmt(epochs, ".2f"), _fmt(s["wall_time"], ".1f"), _fmt(cost, ".1f"),
            _fmt(s["final_train_loss"], ".4g"), _fmt(s["final_test_loss"], ".4g"),
            _fmt(float(acc[-1]) if acc is not None and len(acc) else None), target)


def _accuracy_header(runs):
    kinds = {run.autoencoder for run in runs}
    return "test acc" if kinds == {False} else "recon err" if kinds == {True} else "acc/recon err"


def _names(paths):
    """Folder names, or the paths as given where two runs share a folder name."""
    bases = [os.path.basename(os.path.normpath(p)) for p in paths]
    return [b if bases.count(b) == 1 else os.path.normpath(p) for b, p in zip(bases, paths)]


def _parse_labels(ctx, param, value):
    if value is None:
        return None
    labels = [s.strip() for s in value.split(",")]
    if len(labels) != len(ctx.params.get("runs", ())):
        raise click.BadParameter(f"expected {len(ctx.params.get('runs', ()))} comma-separated "
                                 f"labels (one per RUN), got {len(labels)} in {value!r}")
    return labels


def _default_label(run):
    """"NAME (OPTIMIZER, B=BATCH)", the optimizer left out when it is the folder's name."""
    optimizer = str(run.config.get("optimizer", "?"))
    batch = f"B={run.config.get('batch_size', '?')}"
    return f"{run.name} ({batch})" if run.name == optimizer else f"{run.name} ({optimizer}, {batch})"


def draw(plt, runs, labels, metric, axis, smooth, log_y, title):
    """The figure: one colour per run (see the module docstring for what is drawn)."""
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles, windows = [], set()
    for i, (run, label) in enumerate(zip(runs, labels)):
        colour = colours[i % len(colours)]
        ev_steps = np.asarray(run.evals.get("step", ()), dtype=np.int64)
        ev_x = x_values(run, axis, ev_steps)
        if metric == "loss":
            losses = run.steps.get("loss", np.zeros(0))
            window = smooth or default_smooth(len(losses))
            windows.add(window)
            # the loss of step k (k = 1..N) is drawn at the end of that step, x(k)
            ax.plot(x_values(run, axis, np.arange(1, len(losses) + 1)),
                    moving_average(losses, window), color=colour, lw=0.8, alpha=0.55)
            ax.plot(ev_x, run.evals.get("test_loss", ()), color=colour, lw=1.6, marker="o", ms=3)
        else:
            ax.plot(ev_x, run.evals[_accuracy_key(run)], color=colour, lw=1.6, marker="o", ms=3)
        handles.append(Line2D([], [], color=colour, lw=1.6, label=label))
    if metric == "loss":
        # one legend: the runs by colour, then what the two line styles are
        window = f"W = {windows.pop()}" if len(windows) == 1 else "W = steps // 50"
        handles += [Line2D([], [], color="0.4", lw=0.8, alpha=0.7,
                           label=f"mini-batch loss, moving avg. ({window})"),
                    Line2D([], [], color="0.4", lw=1.6, marker="o", ms=3, label="test loss")]
        kinds = {run.autoencoder for run in runs}
        ax.set_ylabel("loss (cross-entropy)" if kinds == {False} else
                      "loss (binary cross-entropy summed over pixels)" if kinds == {True}
                      else "loss")
    else:
        ax.set_ylabel("test reconstruction error" if runs[0].autoencoder else "test accuracy")
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_xlabel(X_LABELS[axis])
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


@click.command("plot", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(), is_eager=True,
                metavar="RUN...")
@click.option("--metric", type=click.Choice(METRICS), default="loss", show_default=True,
              help="loss: mini-batch loss (smoothed, thin) and test loss; accuracy: test accuracy "
                   "(test reconstruction error for autoencoder runs).")
@click.option("--x", "axis", type=click.Choice(AXES), default="steps", show_default=True,
              help="steps; epochs = step / ceil(n_train / batch size); time = wall-clock seconds; "
                   "cost = cumulative gradient evaluations of the run's batch (cli/cost.py), "
                   "which puts SGD and second-order methods on one scale.")
@click.option("--smooth", type=click.IntRange(min=1), default=None,
              help="W: trailing moving average of the mini-batch loss over W steps "
                   "(--metric loss; default max(1, steps // 50) per run; 1 = raw).")
@click.option("--labels", callback=_parse_labels,
              help="Comma-separated legend labels, one per RUN (default: folder name, optimizer "
                   "and batch size).")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis.")
@click.option("--title", default=None, help="Figure title (default: data set(s) and metric).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Picture file, .png (or .pdf, .svg); an existing file is overwritten. Default: "
                   "<first RUN>/plot-<metric>-<x>.png.")
@one_line_errors
def plot(runs, metric, axis, smooth, labels, log_y, title, out):
    """Plot the curves of the training runs RUN... (run folders) in one figure.

    Prints one row per run first (final figures from run.h5), then writes the picture; without
    matplotlib only the table and the install hint (exit status 0). Runs of different data sets
    may share a figure (with a warning on stderr).
    """
    if smooth is not None and metric != "loss":
        raise click.UsageError(f"--smooth applies to --metric loss only, not {metric}")
    runs_read = [Run(path, name) for path, name in zip(runs, _names(runs))]
    autoencoders = [r.path for r in runs_read if r.autoencoder]
    classifiers = [r.path for r in runs_read if not r.autoencoder]
    if metric == "accuracy" and autoencoders and classifiers:
        raise UserError(f"--metric accuracy: autoencoder runs ({', '.join(autoencoders)}: test "
                        f"reconstruction error) and classifiers ({', '.join(classifiers)}: test "
                        f"accuracy) cannot share an axis; plot them separately")
    if out is None:
        out = os.path.join(runs[0], f"plot-{metric}-{axis}.png")
    if os.path.splitext(out)[1].lower() not in FORMATS:
        raise UserError(f"--out {out!r}: the picture's suffix must be one of {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UserError(f"--out {out!r}: folder {folder!r} does not exist")
    for run in runs_read:   # before anything is printed: a bad --x is one line, no half table
        x_values(run, axis, [run.done])

    sets = {}
    for run in runs_read:
        sets.setdefault(str(run.config.get("dataset", "?")), []).append(run.name)
    if len(sets) > 1:
        click.echo("Warning: the runs use different data sets (" + "; ".join(
            f"{d}: {', '.join(names)}" for d, names in sets.items()) + "); their losses and "
            "epochs are not on one scale", err=True)
    if metric == "loss" and autoencoders and classifiers:
        click.echo(f"Warning: autoencoder runs ({', '.join(autoencoders)}: binary cross-entropy "
                   f"summed over pixels) and classifiers ({', '.join(classifiers)}: "
                   f"cross-entropy) have losses of different kinds", err=True)

    header = tuple(h.format(acc=_accuracy_header(runs_read)) for h in HEADER)
    click.echo(table(header, [table_row(r) for r in runs_read]))

    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(out)
        return
    if title is None:
        title = f"{', '.join(sets)}: " + ("loss" if metric == "loss" else
                                          "test reconstruction error" if runs_read[0].autoencoder
                                          else "test accuracy")
    fig = draw(plt, runs_read, labels or [_default_label(r) for r in runs_read], metric, axis,
               smooth, log_y, title)
    plotting.save(fig, out, dpi=100)
