"""Looking at finished (or running) runs: `minigrad evaluate`, `minigrad runs`, `minigrad show`.

They only read the files `minigrad train` writes (see cli/runlog.py and cli/checkpoint.py for
the layout):

- ``minigrad evaluate RUN [--split test|train] [--batch-size N]`` rebuilds the model from the
  configuration stored in RUN/checkpoint.npz, loads its weights and prints one line with the
  mean cross-entropy and the accuracy on the split. On the test split this is the evaluation
  ``minigrad train`` recorded last (same checkpoint, same data).
- ``minigrad runs [FOLDER]`` (default ``runs``) prints one row per sub-folder of FOLDER, sorted
  by name; a folder whose run.h5 is missing or cannot be read is listed with status
  ``unreadable`` instead of stopping the listing.
- ``minigrad show RUN`` prints the configuration, the software versions, the evaluation history
  and the summary figures of RUN/run.h5.

Exit status: 0 on success; 1 with a one-line ``Error: ...`` on stderr when a run folder, its
run.h5 or its checkpoint is missing or unreadable (also a missing FOLDER for ``runs``); 2 for
command-line misuse (unknown option, bad --split or --batch-size), as click reports it.
"""
import json
import math
import os
import socket

import click
import numpy as np

from minigrad import datasets

from . import runlog
from .checkpoint import CHECKPOINT_FILE, checkpoint_path, read_checkpoint
from .common import UserError as _UserError, one_line_errors, run_folder, table
from .loading import checkpoint_config
from .training.evaluation import evaluate as evaluate_model
from .training.model import build_model
from .training.run_folder import PROCESS_FILE

CONTEXT = {"help_option_names": ["-h", "--help"]}


# what h5py and numpy raise on a missing, truncated or foreign file
_READ_ERRORS = (_UserError, OSError, KeyError, ValueError, TypeError, AttributeError, IndexError,
                RuntimeError, EOFError)


def _read_run(folder):
    """runlog.read_run, with any failure (missing, truncated, not HDF5, wrong layout) turned
    into a _UserError naming the file."""
    path = os.path.join(folder, runlog.RUN_FILE)
    if not os.path.isfile(path):
        raise _UserError(f"no {runlog.RUN_FILE} in {folder!r}")
    try:
        return runlog.read_run(folder)
    except _READ_ERRORS as e:
        raise _UserError(f"{path} is not a readable run log: {' '.join(str(e).split()) or repr(e)}")


def _config(attrs):
    """The run's options from the JSON ``config`` attribute."""
    try:
        config = json.loads(attrs["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise _UserError(f"run log has no readable config attribute ({e!r})")
    if not isinstance(config, dict):
        raise _UserError("run log config is not a JSON object")
    return config


def _fmt(value, spec=".4f", missing="-"):
    if value is None:
        return missing
    try:
        if isinstance(value, float) and math.isnan(value):
            return missing
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _last(series):
    return float(series[-1]) if series is not None and len(series) else None


def summary(run):
    """The figures of one read run (runlog.read_run output) as a dict of plain values."""
    attrs, evals, steps = run["attrs"], run["evals"], run["steps"]
    target_step = int(attrs.get("target_step", -1))
    target = attrs.get("target_accuracy", float("nan"))
    return {
        "status": str(attrs.get("status", "?")),
        "steps": int(attrs["steps"]) if "steps" in attrs else len(steps.get("loss", [])),
        "final_train_loss": _last(evals.get("train_loss")),
        "final_test_loss": _last(evals.get("test_loss")),
        "test_accuracy": _last(evals.get("test_accuracy")),
        "best_test_accuracy": (float(np.max(evals["test_accuracy"]))
                               if len(evals.get("test_accuracy", [])) else None),
        "target_accuracy": None if target is None or (isinstance(target, float) and math.isnan(target))
        else float(target),
        "target_step": target_step if target_step >= 0 else None,
        "wall_time": float(attrs["wall_time"]) if "wall_time" in attrs else None,
    }


def live_status(folder, status):
    """run.h5's status, with a "running" run checked against OUT/process.json (the pid and host
    of the process writing it, cli/training/run_folder.py): "stale" when that process is gone
    (killed, e.g. with -9 or out of memory: resume it with `train --resume`), "running on HOST"
    when it is on another host (not checkable from here)."""
    if status != "running":
        return status
    try:
        with open(os.path.join(folder, PROCESS_FILE)) as fh:
            owner = json.load(fh)
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return status   # written before process.json existed, or unreadable: no verdict
    if host != socket.gethostname():
        return f"running on {host}"
    return "running" if _alive(pid) else "stale"


def _alive(pid):
    """Whether process `pid` exists and is a Python process (a recycled pid of another
    program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read()
    except OSError:
        return True   # no /proc: the pid exists, take it
    return b"python" in command or b"minigrad" in command


# ------------------------------------------------------------------------------- evaluate
def evaluate_split(model, images, labels, flatten, batch_size):
    """(mean cross-entropy, correct count) of `model` on a whole split, eval mode, no graph."""
    loss, accuracy = evaluate_model(model, images, labels, flatten, batch_size=batch_size)
    return loss, int(round(accuracy * len(labels)))


@click.command("evaluate", context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--split", type=click.Choice(("test", "train")), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Examples per forward pass (does not change the result).")
@one_line_errors
def evaluate(run, split, batch_size):
    """Evaluate the checkpoint of RUN (a run folder): loss and accuracy on a split.

    The model is rebuilt from the configuration stored in RUN/checkpoint.npz; on the test split
    the result is the last evaluation `minigrad train` recorded. Exit status 1 with a one-line
    error if RUN or its checkpoint is missing or unreadable.
    """
    folder = run_folder(run)
    if not os.path.isfile(os.path.join(folder, CHECKPOINT_FILE)):
        raise _UserError(f"no {CHECKPOINT_FILE} in {folder!r}")
    model_state, state = read_checkpoint(folder)   # never unpickles anything
    config = checkpoint_config(checkpoint_path(folder), state)
    images, labels, meta = datasets.load(config["dataset"], split)
    images = images.astype(np.dtype(config["dtype"]), copy=False)
    model = build_model(config, tuple(meta["shape"]), len(meta["classes"]))
    try:
        model.load_state_dict(model_state)
    except _READ_ERRORS as e:
        raise _UserError(f"checkpoint weights do not fit the run's model: {' '.join(str(e).split())}")
    if config["model"] == "autoencoder":
        raise _UserError(f"{run} is an autoencoder run: evaluate reports classification accuracy; "
                         f"see `minigrad show {run}` for its reconstruction error")
    flatten = config["model"] == "mlp"
    loss, correct = evaluate_split(model, images, labels, flatten, batch_size)
    n = len(labels)
    click.echo(f"{run}: step {int(state.get('step', 0))}, {split} split ({n} examples): "
               f"loss {loss:.6f}, accuracy {correct / n:.6f} ({correct}/{n})")


# ----------------------------------------------------------------------------------- runs
RUNS_HEADER = ("name", "dataset", "model", "optimizer", "batch", "steps", "train loss",
               "test acc", "to target", "wall s", "status")


@click.command("runs", context_settings=CONTEXT)
@click.argument("folder", type=click.Path(), default="runs", required=False)
@one_line_errors
def runs(folder):
    """List the runs in FOLDER (default: runs), sorted by name.

    One row per sub-folder; a folder whose run.h5 is missing or damaged gets status
    "unreadable". Exit status 1 if FOLDER does not exist.
    """
    if not os.path.isdir(folder):
        raise _UserError(f"runs folder {folder!r} not found" if not os.path.exists(folder)
                         else f"{folder!r} is not a folder")
    names = sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))
                   and not n.startswith("."))
    rows = []
    for name in names:
        try:
            run = _read_run(os.path.join(folder, name))
            config = _config(run["attrs"])
            s = summary(run)
            s["status"] = live_status(os.path.join(folder, name), s["status"])
            rows.append((name, config.get("dataset", "?"), config.get("model", "?"),
                         config.get("optimizer", "?"), config.get("batch_size", "?"), s["steps"],
                         _fmt(s["final_train_loss"]), _fmt(s["test_accuracy"]),
                         _fmt(s["target_step"], "d"), _fmt(s["wall_time"], ".1f"), s["status"]))
        except _READ_ERRORS:   # a damaged run must not hide the others
            rows.append((name,) + ("-",) * (len(RUNS_HEADER) - 2) + ("unreadable",))
    if not rows:
        click.echo(f"no runs in {folder}")
        return
    click.echo(table(RUNS_HEADER, rows))


# ----------------------------------------------------------------------------------- show
@click.command("show", context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@one_line_errors
def show(run):
    """Show RUN's configuration, versions, evaluation history and summary.

    Exit status 1 with a one-line error if RUN or its run.h5 is missing or unreadable.
    """
    folder = run_folder(run)
    data = _read_run(folder)
    attrs = data["attrs"]
    config = _config(attrs)
    click.echo(f"run {run}")
    click.echo("configuration:")
    for key in sorted(config):
        value = config[key]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        click.echo(f"  {key:<18} {'-' if value is None else value}")
    click.echo("versions:")
    for key in ("minigrad_version", "numpy_version", "h5py_version", "python_version"):
        click.echo(f"  {key[:-len('_version')]:<18} {attrs.get(key, '?')}")
    evals = data["evals"]
    click.echo("evaluations:")
    n = len(evals.get("step", []))
    if n:
        metric, label = (("test_accuracy", "test acc") if "test_accuracy" in evals
                         else ("test_reconstruction_error", "test recon err"))
        rows = [(int(evals["step"][i]), _fmt(float(evals["train_loss"][i])),
                 _fmt(float(evals["test_loss"][i])), _fmt(float(evals[metric][i])))
                for i in range(n)]
        lines = table(("step", "train loss", "test loss", label), rows)
        click.echo("\n".join("  " + line for line in lines.splitlines()))
    else:
        click.echo("  (none)")
    s = summary(data)
    s["status"] = live_status(folder, s["status"])
    click.echo("summary:")
    target = ("-" if s["target_accuracy"] is None else
              f"{s['target_accuracy']:g} reached at step {s['target_step']}"
              if s["target_step"] is not None else f"{s['target_accuracy']:g} not reached")
    for label, value in (("status", s["status"]), ("steps", s["steps"]),
                         ("final train loss", _fmt(s["final_train_loss"])),
                         ("final test loss", _fmt(s["final_test_loss"])),
                         ("test accuracy", _fmt(s["test_accuracy"])),
                         ("best test accuracy", _fmt(s["best_test_accuracy"])),
                         ("target", target),
                         ("wall time", _fmt(s["wall_time"], ".1f", "-") + ("" if s["wall_time"] is None else " s"))):
        click.echo(f"  {label:<18} {value}")
