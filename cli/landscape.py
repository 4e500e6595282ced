"""`minigrad landscape`: the loss around a checkpoint, on a line or a plane, or between two runs.

    minigrad landscape RUN [--dims 1|2] [--resolution R] [--span X] [--step S] ...
    minigrad landscape --between RUN_A RUN_B [--resolution R] [--span X] ...

RUN: the loss and accuracy at theta* + a d1 (+ b d2), theta* the checkpoint of RUN (the
latest, or the kept one of --step), d1, d2 random Gaussian directions drawn from --seed and
filter-normalized (Li et al. 2018; see minigrad/nn/landscape.py), a and b on `resolution`
points from -span to span (odd, so that theta* itself is on the grid).
--between: theta(a) = (1 - a) theta_A + a theta_B, `resolution` points from a = 0 (RUN_A) to
a = 1 (RUN_B), continued at the same spacing for --span beyond each end (default 0.5: a in
[-0.5, 1.5], as in Goodfellow et al. 2015). Both runs need the same dataset, model and hidden.

The loss (and accuracy; for the autoencoder the reconstruction error) is that of
cli/training/evaluation.py's evaluate (eval mode, no graph) on --batch-size examples of --split:
the first B of numpy.random.default_rng(0).permutation(n), the same rows whatever --seed says, so
that different seeds (and different runs) are compared on one objective.

Files: --out (default RUN/landscape-1d.h5 or RUN/landscape-2d.h5, with --step
RUN/landscape-1d-step-S.h5; --between RUN_A/between-<name of RUN_B>.h5) and a PNG next to it
with the same stem. An existing file is replaced only with --overwrite. HDF5 layout::

    attrs   kind ("directions" or "between"), run, step, run_b and step_b ("" and -1 unless
            --between), dims, span (--between: the span actually used, a multiple of the
            spacing), resolution, normalization ("filter", "layer", "none"; "" for --between),
            ignore ("biasbn" or "none"), seed, batch_size, split, dtype, rows_seed (0),
            metric ("accuracy", or "reconstruction_error" for the autoencoder),
            center_loss, center_metric (at theta*, or at theta_A for --between),
            loss_min, loss_max (over the grid), direction_cosine (2-D: cos of d1, d2),
            loss_b, metric_b, distance (||theta_B - theta_A||), barrier, barrier_at
            (--between: max over 0 <= a <= 1 of L(a) - ((1 - a) L(0) + a L(1)), and where),
            config (JSON of RUN's training options), minigrad_version, numpy_version, ...
    x       float64 (Rx,), the coordinates a along d1 (or along the line A -> B)
    y       float64 (Ry,), the coordinates b along d2 (2-D only)
    loss    float64 (Rx,) or (Rx, Ry): loss[i, j] = L(theta* + x[i] d1 + y[j] d2)
    accuracy (or reconstruction_error)  float64, the same shape
    rows    int64 (B,), the indices into the split of the examples used
    parameters/names           (P,) strings, the dotted parameter names
    parameters/weight_norm     float64 (P,), ||theta*_p|| (||theta_A_p|| for --between)
    parameters/direction_norm  float64 (dims, P), ||d_k,p|| (--between: (1, P),
                               ||theta_B_p - theta_A_p||)

Terminal: the center loss, min and max over the grid; 1-D and --between a table and a
sparkline of the loss against a; 2-D a character map of log10 loss. Plots (matplotlib,
optional): 1-D the loss with the accuracy on a second axis; 2-D filled contours of log10 loss
and a surface of the loss; --between the loss and accuracy along a with A and B marked.
Exit status 1 with one line for a missing or mismatched run or an existing --out; 2 for
misuse of the options.
"""
import json
import os
import sys

import click
import h5py
import numpy as np
from click.core import ParameterSource

from minigrad.nn import landscape as ls

from . import plotting, runlog
from .atomic import atomic_write
from .common import UserError, one_line_errors
from .loading import load_run
from .training.evaluation import evaluate

CONTEXT = {"help_option_names": ["-h", "--help"]}
ROWS_SEED = 0
DEFAULT_BATCH = 2000
DEFAULT_RESOLUTION = {1: 21, 2: 11, "between": 21}
DEFAULT_SPAN = {"directions": 1.0, "between": 0.5}
MATCH_KEYS = ("dataset", "model", "hidden")
SPARK = "▁▂▃▄▅▆▇█"
SHADES = " .:-=+*#%@"


def _stdout_is_terminal():
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _paths(run, between, dims, step, out):
    """(h5 path, png path) of the result."""
    if out is None:
        if between:
            out = os.path.join(between[0], f"between-{os.path.basename(os.path.normpath(between[1]))}.h5")
        else:
            suffix = "" if step is None else f"-step-{step}"
            out = os.path.join(run, f"landscape-{dims}d{suffix}.h5")
    png = os.path.splitext(out)[0] + ".png"
    return out, png


def _check_out(h5, png, overwrite):
    folder = os.path.dirname(os.path.abspath(h5))
    if not os.path.isdir(folder):
        raise UserError(f"--out {h5}: folder {folder!r} not found")
    if not overwrite:
        for path in (h5, png):
            if os.path.exists(path):
                raise UserError(f"{path} exists; pass --overwrite to replace it")


def _rows(n, batch_size):
    if batch_size is None:
        batch_size = min(DEFAULT_BATCH, n)
    if batch_size > n:
        raise UserError(f"--batch-size {batch_size} is more than the {n} examples of the split")
    return np.random.default_rng(ROWS_SEED).permutation(n)[:batch_size]


def _loss_fn(loaded, rows):
    images, labels = loaded.images[rows], loaded.labels[rows]
    return lambda model: evaluate(model, images, labels, loaded.flatten)


def _progress(total):
    """A click progress bar on terminals (a callback for evaluate_grid), else nothing."""
    if not _stdout_is_terminal():
        return None, None
    bar = click.progressbar(length=total, label="evaluating", show_pos=True, show_eta=True,
                            file=sys.stdout)
    bar.is_hidden = False
    return bar, (lambda done, _total: bar.update(1))


def _evaluate(fn, total, *args):
    bar, callback = _progress(total)
    if bar is None:
        return fn(*args)
    with bar:
        return fn(*args, callback=callback)


def sparkline(values):
    """One character per value, ▁ at the minimum to █ at the maximum (? for non-finite)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return "?" * len(values)
    lo, hi = finite.min(), finite.max()
    out = []
    for v in values:
        if not np.isfinite(v):
            out.append("?")
        else:
            k = 0 if hi == lo else round((v - lo) / (hi - lo) * (len(SPARK) - 1))
            out.append(SPARK[k])
    return "".join(out)


def _table(x, loss, metric, label, marks=None):
    head = f"  {'a':>7}  {'loss':>12}  {label:>10}"
    lines = [head]
    for i, a in enumerate(x):
        m = "-" if metric is None else f"{metric[i]:.4f}"
        mark = (marks or {}).get(i, "")
        lines.append(f"  {a:7.3f}  {loss[i]:12.6f}  {m:>10}  {mark}".rstrip())
    return "\n".join(lines)


def _shade_map(x, y, loss):
    """Rows of characters for log10 loss: y from top (max) to bottom, x left to right."""
    z = np.log10(np.maximum(loss, 1e-12))
    finite = z[np.isfinite(z)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    lines = []
    for j in reversed(range(len(y))):
        chars = []
        for i in range(len(x)):
            v = z[i, j]
            k = (len(SHADES) - 1 if not np.isfinite(v) or hi == lo
                 else round((v - lo) / (hi - lo) * (len(SHADES) - 1)))
            chars.append("O" if x[i] == 0 and y[j] == 0 else SHADES[k])
        lines.append(f"  {y[j]:6.2f} |" + " ".join(chars) + "|")
    return "\n".join(lines)


def _write(path, attrs, data, names, weight_norm, direction_norm):
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            for key, value in data.items():
                f.create_dataset(key, data=value)
            g = f.create_group("parameters")
            g.create_dataset("names", data=np.array(names, dtype=h5py.string_dtype()))
            g.create_dataset("weight_norm", data=np.asarray(weight_norm, dtype=np.float64))
            g.create_dataset("direction_norm", data=np.asarray(direction_norm, dtype=np.float64))
    atomic_write(path, write)


def _where(x, index):
    return ", ".join(f"{name}={c[i]:g}" for name, c, i in zip("ab", x, index))


# ------------------------------------------------------------------------------------ plots
def _plot_line(plt, x, loss, metric, label, title, marks=()):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, loss, color="C0", marker=".", label="loss")
    ax.set_xlabel("a")
    ax.set_ylabel("loss", color="C0")
    if metric is not None:
        ax2 = ax.twinx()
        ax2.plot(x, metric, color="C1", linestyle="--", label=label)
        ax2.set_ylabel(label.replace("_", " "), color="C1")
    for at, name in marks:
        ax.axvline(at, color="0.6", linewidth=0.8)
        ax.annotate(name, (at, 1.0), xycoords=("data", "axes fraction"), ha="center",
                    va="bottom", fontsize=8)
    ax.set_title(title, fontsize=9, pad=14 if marks else 6)
    return fig


def _plot_plane(plt, x, y, loss, title):
    X, Y = np.meshgrid(x, y, indexing="ij")   # loss[i, j] is at (x[i], y[j])
    z = np.log10(np.maximum(loss, 1e-12))
    fig = plt.figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    filled = ax.contourf(X, Y, z, levels=20, cmap="viridis")
    ax.contour(X, Y, z, levels=10, colors="k", linewidths=0.4, linestyles="solid")
    ax.plot([0], [0], marker="*", color="w", markeredgecolor="k", markersize=10)
    fig.colorbar(filled, ax=ax, label="log10 loss")
    ax.set_xlabel("a (d1)")
    ax.set_ylabel("b (d2)")
    ax.set_aspect("equal")
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    ax3.plot_surface(X, Y, loss, cmap="viridis", linewidth=0, antialiased=True)
    ax3.set_xlabel("a")
    ax3.set_ylabel("b")
    ax3.set_zlabel("loss")
    fig.suptitle(title, fontsize=9)
    return fig


def _draw(png, make):
    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(png)
        return
    plotting.save(make(plt), png, dpi=100)


# ---------------------------------------------------------------------------------- command
@click.command("landscape", context_settings=CONTEXT)
@click.argument("run", type=click.Path(), required=False)
@click.option("--between", nargs=2, type=click.Path(), default=None, metavar="RUN_A RUN_B",
              help="Instead of RUN: the line (1 - a) theta_A + a theta_B between two runs of "
                   "the same dataset, model and hidden.")
@click.option("--step", type=click.IntRange(min=0), default=None,
              help="A kept checkpoint of RUN (train --keep-checkpoints) instead of the latest.")
@click.option("--dims", type=click.IntRange(1, 2), default=1, show_default=True,
              help="A line (1) or a plane (2) of random directions.")
@click.option("--resolution", type=click.IntRange(min=2), default=None,
              help="Points per axis, odd (default 21 for 1-D, 11 for 2-D); --between: points "
                   "from RUN_A to RUN_B, both included (default 21).")
@click.option("--span", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Coordinates in [-span, span] (default 1.0); --between: a in "
                   "[-span, 1 + span] (default 0.5).")
@click.option("--normalization", type=click.Choice(("filter", "layer", "none")), default="filter",
              show_default=True, help="Scale of the random directions: per filter (Li et al. "
                                      "2018), per tensor, or the raw Gaussian.")
@click.option("--ignore", type=click.Choice(("biasbn", "none")), default="biasbn",
              show_default=True, help="biasbn: no step along biases and BatchNorm parameters "
                                      "(ndim <= 1); none: normalize them too.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"Examples the loss is evaluated on: the first B of a fixed permutation "
                   f"of the split, whatever --seed (default min({DEFAULT_BATCH}, n)).")
@click.option("--split", type=click.Choice(("train", "test")), default="train", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random directions.")
@click.option("--dtype", type=click.Choice(("float32", "float64")), default=None,
              help="Evaluate in this dtype (default: the run's).")
@click.option("--out", type=click.Path(), default=None,
              help="The HDF5 file (the PNG goes next to it); default in the run folder.")
@click.option("--overwrite", is_flag=True, default=False, help="Replace existing output files.")
@click.pass_context
@one_line_errors
def landscape(ctx, run, between, step, dims, resolution, span, normalization, ignore, batch_size,
              split, seed, dtype, out, overwrite):
    """Loss landscape around the checkpoint of RUN, or between two runs (--between).

    Filter-normalized random directions (Li et al., NeurIPS 2018) on a line or a plane
    through the checkpoint, or the straight line between two solutions (Goodfellow et al.,
    ICLR 2015). Writes an HDF5 file and a PNG; prints the center loss, the range over the
    grid and a text picture.
    """
    if (run is None) == (between is None):
        raise click.UsageError("give either RUN or --between RUN_A RUN_B (exactly one)")
    if between:
        if dims == 2:
            raise click.UsageError("--between draws a line; --dims 2 applies to random "
                                   "directions around RUN")
        for name in ("normalization", "ignore", "seed", "step"):
            if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name} applies to random directions around RUN, "
                                       f"not to --between (a fixed line)")
    elif resolution is not None and resolution % 2 == 0:
        raise click.BadParameter(f"must be odd so that the checkpoint (a = 0) is on the grid, "
                                 f"got {resolution}", param_hint="--resolution")
    h5, png = _paths(run, between, dims, step, out)
    if between:
        _between(between, resolution, span, batch_size, split, dtype, h5, png, overwrite)
    else:
        _directions(run, step, dims, resolution, span, normalization, ignore, batch_size, split,
                    seed, dtype, h5, png, overwrite)


def _common_attrs(loaded, rows, split, metric):
    return dict(batch_size=len(rows), split=split, dtype=loaded.config["dtype"],
                rows_seed=ROWS_SEED, metric=metric, config=json.dumps(loaded.config, sort_keys=True),
                **runlog.versions())


def _directions(run, step, dims, resolution, span, normalization, ignore, batch_size, split,
                seed, dtype, h5, png, overwrite):
    resolution = resolution or DEFAULT_RESOLUTION[dims]
    span = span or DEFAULT_SPAN["directions"]
    coords = ls.symmetric_coordinates(span, resolution)
    loaded = load_run(run, step=step, split=split, dtype=dtype)
    rows = _rows(len(loaded.labels), batch_size)
    _check_out(h5, png, overwrite)
    model = loaded.model
    metric = "reconstruction_error" if loaded.autoencoder else "accuracy"
    rng = np.random.default_rng(seed)
    norm = None if normalization == "none" else normalization
    skip = None if ignore == "none" else ignore
    directions = [ls.random_direction(model, rng, norm, skip) for _ in range(dims)]
    center = ls.current_parameters(model)
    axes = [coords] * dims
    loss, acc = _evaluate(ls.evaluate_grid, resolution ** dims, model, _loss_fn(loaded, rows),
                          center, directions, axes)
    mid = (resolution - 1) // 2
    c = (mid,) * dims
    center_loss = float(loss[c])
    center_metric = float("nan") if acc is None else float(acc[c])
    attrs = dict(kind="directions", run=run, step=loaded.step, run_b="", step_b=-1, dims=dims,
                 span=float(span), resolution=resolution, normalization=normalization,
                 ignore=ignore, seed=seed, center_loss=center_loss, center_metric=center_metric,
                 loss_min=float(np.nanmin(loss)), loss_max=float(np.nanmax(loss)),
                 direction_cosine=ls.cosine(*directions) if dims == 2 else float("nan"),
                 **_common_attrs(loaded, rows, split, metric))
    data = {"x": coords, "loss": loss, "rows": rows.astype(np.int64)}
    if dims == 2:
        data["y"] = coords
    if acc is not None:
        data[metric] = acc
    names = [n for n, _ in model.named_parameters()]
    _write(h5, attrs, data, names, ls.direction_norms(center),
           np.stack([ls.direction_norms(d) for d in directions]))

    _echo_directions(run, loaded, attrs, coords, loss, acc)
    click.echo(f"written to {h5}")

    title = f"{run} step {loaded.step}: {normalization}-normalized, seed {seed}"
    if dims == 1:
        _draw(png, lambda plt: _plot_line(plt, coords, loss, acc, metric, title, [(0, "checkpoint")]))
    else:
        _draw(png, lambda plt: _plot_plane(plt, coords, coords, loss, title))

def _echo_directions(run, loaded, attrs, coords, loss, acc):
    """What `landscape` prints of a plane (or line) through the checkpoint: the settings, the
    center, the extremes over the grid, the table or the shaded map."""
    dims, span, resolution = attrs["dims"], attrs["span"], attrs["resolution"]
    axes = [coords] * dims
    mid = (resolution - 1) // 2
    label = "recon err" if loaded.autoencoder else "accuracy"
    click.echo(f"{run} at step {loaded.step}: {attrs['split']} split, {attrs['batch_size']} "
               f"examples, {attrs['dtype']}; {dims}-D, {attrs['normalization']}-normalized "
               f"directions (ignore {attrs['ignore']}), seed {attrs['seed']}")
    click.echo(f"center loss {attrs['center_loss']:.6f}, {label} {attrs['center_metric']:.4f}")
    lo, hi = np.nanargmin(loss), np.nanargmax(loss)
    click.echo(f"over the grid ({resolution}{'x' + str(resolution) if dims == 2 else ''} points, "
               f"coordinates in [-{span:g}, {span:g}]): loss min {np.nanmin(loss):.6f} at "
               f"{_where(axes, np.unravel_index(lo, loss.shape))}, max {np.nanmax(loss):.6f} at "
               f"{_where(axes, np.unravel_index(hi, loss.shape))}")
    if dims == 1:
        click.echo(_table(coords, loss, acc, label, {mid: "<- checkpoint"}))
        click.echo(f"  loss {sparkline(loss)}  (a = -{span:g} .. {span:g})")
    else:
        click.echo(f"cos(d1, d2) = {attrs['direction_cosine']:.4f}")
        click.echo(f"log10 loss, '{SHADES[1]}' low to '{SHADES[-1]}' high, O the checkpoint "
                   f"(rows b, columns a from -{span:g} to {span:g}):")
        click.echo(_shade_map(coords, coords, loss))


def _between(between, resolution, span, batch_size, split, dtype, h5, png, overwrite):
    run_a, run_b = between
    resolution = resolution or DEFAULT_RESOLUTION["between"]
    span = DEFAULT_SPAN["between"] if span is None else span
    coords = ls.between_coordinates(span, resolution)
    a = load_run(run_a, split=split, dtype=dtype)
    b = load_run(run_b, split=split, dtype=dtype or a.config["dtype"])
    for key in MATCH_KEYS:
        if a.config.get(key) != b.config.get(key):
            raise UserError(f"--between: the runs differ in {key}: {run_a} has "
                            f"{_describe(a.config.get(key))}, {run_b} has "
                            f"{_describe(b.config.get(key))}")
    rows = _rows(len(a.labels), batch_size)
    _check_out(h5, png, overwrite)
    metric = "reconstruction_error" if a.autoencoder else "accuracy"
    theta_a, theta_b = ls.current_parameters(a.model), ls.current_parameters(b.model)
    loss, acc = _evaluate(ls.interpolate, len(coords), a.model, _loss_fn(a, rows), theta_a,
                          theta_b, coords)
    i0, i1 = int(np.argmin(np.abs(coords))), int(np.argmin(np.abs(coords - 1)))
    inside = slice(i0, i1 + 1)
    chord = (1 - coords[inside]) * loss[i0] + coords[inside] * loss[i1]
    excess = loss[inside] - chord
    k = int(np.nanargmax(excess))
    nan = float("nan")
    diff = [tb - ta for ta, tb in zip(theta_a, theta_b)]
    attrs = dict(kind="between", run=run_a, step=a.step, run_b=run_b, step_b=b.step, dims=1,
                 span=float(-coords[0]), resolution=resolution, normalization="", ignore="",
                 seed=-1, center_loss=float(loss[i0]),
                 center_metric=nan if acc is None else float(acc[i0]),
                 loss_b=float(loss[i1]), metric_b=nan if acc is None else float(acc[i1]),
                 loss_min=float(np.nanmin(loss)), loss_max=float(np.nanmax(loss)),
                 direction_cosine=nan, distance=float(np.sqrt(np.sum(ls.direction_norms(diff) ** 2))),
                 barrier=float(excess[k]), barrier_at=float(coords[inside][k]),
                 **_common_attrs(a, rows, split, metric))
    data = {"x": coords, "loss": loss, "rows": rows.astype(np.int64)}
    if acc is not None:
        data[metric] = acc
    names = [n for n, _ in a.model.named_parameters()]
    _write(h5, attrs, data, names, ls.direction_norms(theta_a), ls.direction_norms(diff)[None])

    label = "recon err" if a.autoencoder else "accuracy"
    metric_a = "" if acc is None else f", {label} {acc[i0]:.4f}"
    metric_b = "" if acc is None else f", {label} {acc[i1]:.4f}"
    click.echo(f"line from A = {run_a} (step {a.step}) to B = {run_b} (step {b.step}): {split} "
               f"split, {len(rows)} examples, {attrs['dtype']}; ||theta_B - theta_A|| = "
               f"{attrs['distance']:.4f}")
    click.echo(f"A (a = 0): loss {loss[i0]:.6f}{metric_a}; B (a = 1): loss {loss[i1]:.6f}{metric_b}")
    click.echo(f"barrier: max over 0 <= a <= 1 of L(a) - ((1 - a) L(A) + a L(B)) = "
               f"{attrs['barrier']:.6f} at a = {attrs['barrier_at']:g}; over the line "
               f"a in [{coords[0]:g}, {coords[-1]:g}]: loss min {np.nanmin(loss):.6f}, "
               f"max {np.nanmax(loss):.6f}")
    click.echo(_table(coords, loss, acc, label, {i0: "<- A", i1: "<- B"}))
    click.echo(f"  loss {sparkline(loss)}  (a = {coords[0]:g} .. {coords[-1]:g})")
    click.echo(f"written to {h5}")
    title = f"A = {run_a} (step {a.step}) -> B = {run_b} (step {b.step})"
    _draw(png, lambda plt: _plot_line(plt, coords, loss, acc, metric, title,
                                      [(0, "A"), (1, "B")]))
