"""What the commands that read run folders share: one-line errors and loading a checkpoint."""
import functools
import os
import sys

import click
import numpy as np

from minigrad import datasets

from . import runlog


class UserError(Exception):
    """A problem with the user's files or options: one line on stderr, exit status 1."""


def one_line_errors(fn):
    """UserError, ValueError, TypeError, KeyError and OSError as `Error: ...` and exit 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FloatingPointError as e:
            click.echo(f"Error: non-finite value: {' '.join(str(e).split())}", err=True)
            sys.exit(1)
        except (UserError, ValueError, TypeError, KeyError, OSError) as e:
            click.echo(f"Error: {' '.join(str(e).split()) or repr(e)}", err=True)
            sys.exit(1)
    return wrapper


def run_folder(run):
    if not os.path.exists(run):
        raise UserError(f"run folder {run!r} not found")
    if not os.path.isdir(run):
        raise UserError(f"{run!r} is not a run folder")
    return run


def checkpoint_config(path, state):
    """A copy of the run configuration in the state of the checkpoint `path`, checked enough to
    rebuild the model from it (UserError naming the file otherwise). Checkpoints hold no code
    (runlog: JSON and arrays), but their contents are still only data to check."""
    config = state.get("config")
    if not isinstance(config, dict):
        raise UserError(f"{path} holds no run configuration")
    bad = [k for k in ("dataset", "model", "dtype") if not isinstance(config.get(k), str)]
    if bad:
        raise UserError(f"{path}: the run configuration it holds has no valid "
                        f"{', '.join(bad)}")
    return dict(config)


class Loaded:
    """A run's model at one checkpoint with its data: model (train mode), config, step,
    flatten (the model takes flattened images), images/labels of the split asked for, loss_of."""

    def __init__(self, model, config, step, images, labels):
        self.model, self.config, self.step = model, config, step
        self.images, self.labels = images, labels
        self.flatten = config["model"] in ("mlp", "autoencoder")
        self.autoencoder = config["model"] == "autoencoder"

    def batch(self, rows):
        """(x, target) arrays of the given rows (x flattened when the model wants it)."""
        x = self.images[rows]
        if self.flatten:
            x = x.reshape(len(x), -1)
        return x, (x if self.autoencoder else self.labels[rows])


def load_run(run, step=None, split="train", dtype=None):
    """Loaded(...) for the checkpoint of `run` (the latest, or the kept one of `step`: train
    --keep-checkpoints). dtype overrides the run's (e.g. float64 for curvature work)."""
    from .parallel import communicator
    from .train import build_model   # train imports the optimizers; only load it when needed

    if communicator().world_size > 1:
        raise UserError("this command works on one process; run it without mpiexec")
    folder = run_folder(run)
    path = runlog.checkpoint_path(folder, step)
    if not os.path.isfile(path):
        if step is None:
            raise UserError(f"no {runlog.CHECKPOINT_FILE} in {folder!r}")
        kept = runlog.kept_steps(folder)
        raise UserError(f"no checkpoint of step {step} in {folder!r}; kept steps: "
                        f"{', '.join(map(str, kept)) if kept else 'none (train with --keep-checkpoints)'}")
    model_state, state = runlog.read_checkpoint(folder, step)   # never unpickles anything
    config = checkpoint_config(path, state)
    if dtype is not None:
        config["dtype"] = str(np.dtype(dtype))
    images, labels, meta = datasets.load(config["dataset"], split)
    images = images.astype(np.dtype(config["dtype"]), copy=False)
    model = build_model(config, tuple(meta["shape"]), len(meta["classes"]))
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    try:
        model.load_state_dict({k: np.asarray(v, dtype=dtypes[k]) if k in dtypes else v
                               for k, v in model_state.items()})
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{path}: weights do not fit the run's model: {' '.join(str(e).split())}")
    return Loaded(model, config, int(state.get("step", 0)), images, labels)
