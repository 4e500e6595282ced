"""A run's model at one of its checkpoints, rebuilt from the configuration stored there, with
the data of a split: what the commands that work on a trained model start from (evaluate,
hessian, landscape)."""
import os

import numpy as np

from minigrad import datasets

from .checkpoint import CHECKPOINT_FILE, checkpoint_path, kept_steps, read_checkpoint
from .common import UserError, run_folder
from .parallel import communicator
from .training.model import build_model


def checkpoint_config(path, state):
    """A copy of the run configuration in the state of the checkpoint `path`, checked enough to
    rebuild the model from it (UserError naming the file otherwise). Checkpoints hold no code
    (cli/checkpoint.py: JSON and arrays), but their contents are still only data to check."""
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
    if communicator().world_size > 1:
        raise UserError("this command works on one process; run it without mpiexec")
    folder = run_folder(run)
    path = checkpoint_path(folder, step)
    if not os.path.isfile(path):
        if step is None:
            raise UserError(f"no {CHECKPOINT_FILE} in {folder!r}")
        kept = kept_steps(folder)
        raise UserError(f"no checkpoint of step {step} in {folder!r}; kept steps: "
                        f"{', '.join(map(str, kept)) if kept else 'none (train with --keep-checkpoints)'}")
    model_state, state = read_checkpoint(folder, step)   # never unpickles anything
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
