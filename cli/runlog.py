"""The files of a training run: ``run.h5`` (the log) and ``checkpoint.npz`` (to resume).

Both are written whole into a temporary file in the run folder and moved into place with
``os.replace``, so a reader (or a crash) never sees a half-written file: the previous
version stays until the new one is complete.

run.h5 layout (h5py)::

    attrs   config (JSON of every option), one attribute per option (None stored as "",
            hidden as "64,64"),
            minigrad_version, numpy_version, h5py_version, python_version,
            status ("running" at a checkpoint, "finished", "interrupted", "failed"),
            steps (completed), target_accuracy (nan if none), target_step (-1 if not reached),
            wall_time (seconds of training, summed over resumed sessions)
    steps/  one entry per optimizer step, resizable 1-D datasets (maxshape (None,)):
            loss       float64, the mini-batch loss at the start of the step
            lr         float64, the learning rate used (sgd, kfac)
            radius     float64, the trust radius after the step (trcg, strcg)
            wall_time  float64, seconds since the start of training at the end of the step
    evals/  one entry per evaluation (every --eval-every steps and at the end), resizable:
            step           int64, optimizer steps done before the evaluation
            train_loss     float64, mean mini-batch loss over the steps since the last evaluation
            test_loss      float64, mean cross-entropy on the test split
            test_accuracy  float64, fraction of the test split classified correctly

checkpoint.npz (numpy.savez): ``model.<name>`` arrays (the model's state_dict) and ``state``, a
uint8 array holding a pickle of {"format", "step", "optimizer" (its state_dict), "data"
(epoch, position in the epoch), "history" (the run.h5 series so far), "config",
"wall_time", "target_step"}. The pickle is only read from the run folder the user points at;
do not resume from checkpoints you did not write yourself (pickle can run code).
"""
import json
import os
import pickle
import platform
import tempfile

import h5py
import numpy as np

from minigrad import __version__

RUN_FILE = "run.h5"
CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_FORMAT = 1
STEP_SERIES = ("loss", "lr", "radius", "wall_time")
EVAL_SERIES = ("step", "train_loss", "test_loss", "test_accuracy")


def new_history():
    return {"steps": {k: [] for k in STEP_SERIES}, "evals": {k: [] for k in EVAL_SERIES}}


def versions():
    return {"minigrad_version": __version__, "numpy_version": np.__version__,
            "h5py_version": h5py.__version__, "python_version": platform.python_version()}


def _atomic(path, write):
    """Call write(tmp_path), then os.replace(tmp_path, path); the temp file is removed on error."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)   # mkstemp makes 0600; give the usual permissions
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_run(folder, config, history, status, steps, target_step, wall_time):
    """(Re)write folder/run.h5 atomically from the in-memory history."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["config"] = json.dumps(config, sort_keys=True)
            for key, value in config.items():
                if isinstance(value, (list, tuple)):
                    value = ",".join(str(v) for v in value)
                f.attrs[key] = "" if value is None else value
            for key, value in versions().items():
                f.attrs[key] = value
            f.attrs["status"] = status
            f.attrs["steps"] = int(steps)
            tgt = config.get("target_accuracy")
            f.attrs["target_accuracy"] = float("nan") if tgt is None else float(tgt)
            f.attrs["target_step"] = -1 if target_step is None else int(target_step)
            f.attrs["wall_time"] = float(wall_time)
            for group, series in history.items():
                g = f.create_group(group)
                for name, values in series.items():
                    if group == "steps" and name in ("lr", "radius") and not values:
                        continue  # only the series this optimizer has
                    dtype = np.int64 if name == "step" else np.float64
                    g.create_dataset(name, data=np.asarray(values, dtype=dtype), maxshape=(None,),
                                     chunks=True)
    _atomic(os.path.join(folder, RUN_FILE), write)


def read_run(folder):
    """{"attrs": {...}, "steps": {...}, "evals": {...}} of folder/run.h5 as NumPy arrays."""
    out = {}
    with h5py.File(os.path.join(folder, RUN_FILE), "r") as f:
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for group in ("steps", "evals"):
            out[group] = {k: f[group][k][()] for k in f[group]}
    return out


def write_checkpoint(folder, model, state):
    """Atomically write folder/checkpoint.npz: the model's arrays and the pickled `state`."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    blob = pickle.dumps(dict(state, format=CHECKPOINT_FORMAT), protocol=pickle.HIGHEST_PROTOCOL)
    arrays["state"] = np.frombuffer(blob, dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    _atomic(os.path.join(folder, CHECKPOINT_FILE), write)


def read_checkpoint(folder):
    """(model_state, state) from folder/checkpoint.npz; ValueError if it is not one of ours."""
    path = os.path.join(folder, CHECKPOINT_FILE)
    try:
        with np.load(path, allow_pickle=False) as z:
            model_state = {k[len("model."):]: z[k] for k in z.files if k.startswith("model.")}
            state = pickle.loads(z["state"].tobytes())
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a readable minigrad checkpoint: {e}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a minigrad checkpoint of format {CHECKPOINT_FORMAT}")
    return model_state, state
