"""The log of a training run: ``run.h5``, rewritten whole at every evaluation and at the end.

It is built in memory and written atomically (cli/atomic.py): a reader or a crash never sees a
half-written file, and a failed write leaves the previous version in place and raises
WriteError, whose one-line message names the file and says which checkpoint is kept ("the last
checkpoint, step N, is kept" or "no checkpoint was written"). The checkpoint itself,
checkpoint.npz, is cli/checkpoint.py's.

run.h5 layout (h5py)::

    attrs   config (JSON of every option), one attribute per option (None stored as "",
            hidden as "64,64"),
            minigrad_version, numpy_version, h5py_version, python_version,
            status ("running" at a checkpoint, "finished", "interrupted", "failed", "pruned":
            stopped by --prune-file, with prune_bound the step count it could not beat),
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
"""
import json
import os
import platform

import h5py
import numpy as np

from minigrad import __version__

from .atomic import write_h5
from .checkpoint import last_checkpoint_note

RUN_FILE = "run.h5"
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


def write_run(folder, config, history, status, steps, target_step, wall_time,
              target_loss_step=None, prune_bound=None):
    """(Re)write folder/run.h5 atomically from the in-memory history; WriteError (naming the
    file and the last checkpoint kept) if it cannot be written."""
    def fill(f):
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
        if prune_bound is not None:   # status "pruned": the bound it could not beat
            f.attrs["prune_bound"] = int(prune_bound)
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

    write_h5(os.path.join(folder, RUN_FILE), fill, kept=lambda: last_checkpoint_note(folder))


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
