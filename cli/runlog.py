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
            target_loss (nan if none), target_loss_step (-1 if not reached),
            wall_time (seconds of training, summed over resumed sessions)
            schedule_steps (the steps the lr schedule spans: the first session's total)
    steps/  one entry per optimizer step, resizable 1-D datasets (maxshape (None,)):
            loss       float64, the mini-batch loss at the start of the step
            lr         float64, the learning rate used (sgd, kfac)
            radius     float64, the trust radius after the step (trcg, strcg)
            wall_time  float64, seconds since the start of training at the end of the step
            step_time  float64, seconds of the optimizer step alone (no evaluation, no files)
            grad_equivalents  float64, the step's cost in gradients of its batch (cli/cost.py)
            cg_iterations, curvature_products, rejections  int64 (trcg, strcg): CG iterations
                       (summed over re-solves), curvature-vector products, rejected tries
    evals/  one entry per evaluation (every --eval-every steps and at the end), resizable:
            step           int64, optimizer steps done before the evaluation
            train_loss     float64, mean mini-batch loss over the steps since the last evaluation
            test_loss      float64, mean cross-entropy on the test split
            train_split_loss  float64, --target-loss only: mean loss on the whole training split
            test_accuracy  float64, fraction of the test split classified correctly
                           (classifiers; absent for --model autoencoder)
            test_reconstruction_error  float64, --model autoencoder only: mean over the test
                           images of sum over pixels of (sigmoid(logit) - pixel)^2
            noise_scale, noise_trace_cov, noise_grad_sq_norm  float64, --noise-scale-examples N
                           only: the gradient noise scale B_simple = tr(Sigma) / |G|^2 and the
                           unbiased estimates of tr(Sigma) and |G|^2 it is the ratio of
                           (minigrad.nn.noise_scale; average the two parts over evaluations
                           before dividing), from the exact per-example gradients of N training
                           examples drawn without replacement by default_rng([seed, 1, step]),
                           in eval mode, over every Linear and Conv2d layer
            (for the autoencoder, train_loss and test_loss are the binary cross-entropy summed
            over pixels, averaged over images)
    layers/<name>/<metric>  one entry per evaluation (aligned with evals/), resizable float64:
            per-layer statistics (minigrad.nn.capture, stats.summary()) of one forward and
            backward pass, in eval mode, of the first --batch-size examples of the training
            split (the same batch at every evaluation), for every Linear and Conv2d <name> of
            the model (its dotted module name): input_mean, input_std, input_zero_fraction,
            input_saturated_fraction (of the layer's input, |a| >= 0.99), output_grad_norm
            (||dL/ds||) and grad_norm (||dL/d[W, b]||); nan where not available.

checkpoints/step-NNNNNNNN.npz (--keep-checkpoints): a copy of every checkpoint written, by step.

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
KEPT_FOLDER = "checkpoints"
CHECKPOINT_FORMAT = 1
STEP_SERIES = ("loss", "lr", "radius", "wall_time")
EVAL_SERIES = ("step", "train_loss", "test_loss", "test_accuracy")
OPTIONAL_EVALS = ("test_accuracy", "test_reconstruction_error")
INT_SERIES = ("step", "cg_iterations", "curvature_products", "rejections")
LAYER_METRICS = ("input_mean", "input_std", "input_zero_fraction", "input_saturated_fraction",
                 "output_grad_norm", "grad_norm")


def new_history():
    return {"steps": {k: [] for k in STEP_SERIES}, "evals": {k: [] for k in EVAL_SERIES},
            "layers": {}}


def append_layers(history, evals, stats):
    """Add one evaluation's {layer: {metric: value}} to history["layers"], every series padded
    with nan to `evals` entries (the number of evaluations so far, this one included)."""
    layers = history.setdefault("layers", {})
    for name, values in stats.items():
        series = layers.setdefault(name, {k: [] for k in LAYER_METRICS})
        for k in LAYER_METRICS:
            v = values.get(k)
            series[k].append(float("nan") if v is None else float(v))
    for series in layers.values():
        for k in LAYER_METRICS:
            values = series[k]
            if len(values) < evals:
                values[:0] = [float("nan")] * (evals - len(values))  # a layer seen late


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


def write_run(folder, config, history, status, steps, target_step, wall_time,
              target_loss_step=None):
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
            tgt = config.get("target_loss")
            f.attrs["target_loss"] = float("nan") if tgt is None else float(tgt)
            f.attrs["target_loss_step"] = -1 if target_loss_step is None else int(target_loss_step)
            f.attrs["wall_time"] = float(wall_time)
            for name, series in history.get("layers", {}).items():
                g = f.require_group("layers").create_group(name)
                for metric, values in series.items():
                    g.create_dataset(metric, data=np.asarray(values, dtype=np.float64),
                                     maxshape=(None,), chunks=True)
            for group, series in history.items():
                if group == "layers":
                    continue
                g = f.create_group(group)
                for name, values in series.items():
                    if group == "steps" and name in ("lr", "radius") and not values:
                        continue  # only the series this optimizer has
                    if group == "evals" and name in OPTIONAL_EVALS and not values:
                        continue  # test_accuracy (classifiers) or the reconstruction error
                    dtype = np.int64 if name in INT_SERIES else np.float64
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
        layers = f.get("layers")
        out["layers"] = ({name: {k: layers[name][k][()] for k in layers[name]} for name in layers}
                         if layers is not None else {})
    return out


def checkpoint_path(folder, step=None):
    """folder/checkpoint.npz, or with `step` the kept copy folder/checkpoints/step-NNNNNNNN.npz."""
    if step is None:
        return os.path.join(folder, CHECKPOINT_FILE)
    return os.path.join(folder, KEPT_FOLDER, f"step-{int(step):08d}.npz")


def kept_steps(folder):
    """The steps of the kept checkpoints of folder (train --keep-checkpoints), sorted."""
    found = []
    kept = os.path.join(folder, KEPT_FOLDER)
    for name in os.listdir(kept) if os.path.isdir(kept) else ():
        stem = name[len("step-"):-len(".npz")]
        if name.startswith("step-") and name.endswith(".npz") and stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def write_checkpoint(folder, model, state, keep=False):
    """Atomically write folder/checkpoint.npz: the model's arrays and the pickled `state`;
    with keep=True also a copy at checkpoint_path(folder, state["step"])."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    blob = pickle.dumps(dict(state, format=CHECKPOINT_FORMAT), protocol=pickle.HIGHEST_PROTOCOL)
    arrays["state"] = np.frombuffer(blob, dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    _atomic(os.path.join(folder, CHECKPOINT_FILE), write)
    if keep:
        os.makedirs(os.path.join(folder, KEPT_FOLDER), exist_ok=True)
        _atomic(checkpoint_path(folder, state["step"]), write)


def read_checkpoint(folder, step=None):
    """(model_state, state) from folder/checkpoint.npz (or the kept checkpoint of `step`);
    ValueError if it is not one of ours."""
    path = checkpoint_path(folder, step)
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
