"""The study's folder and its HDF5 file (scaling.h5, sensitivity.h5, compare.h5): the
attributes (study_attrs), the trial table (write_trials) and what each command adds (its fill
function)."""
import json
import os
import sys
import time

import click
import h5py
import numpy as np

from .. import parallel, runlog
from ..atomic import atomic_write
from ..search import HYPERPARAMETERS
from .trials import TRIALS


def study_folder(out, command, jobs=1):
    """The study's folder, created; under mpiexec (P > 1) only rank 0 prints from here on, and
    --jobs must be 1 (each trial uses all the processes)."""
    comm = parallel.communicator()
    if comm.world_size > 1:
        if jobs != 1:
            raise click.UsageError(f"--jobs {jobs}: under mpiexec every trial is trained by all "
                                   f"{comm.world_size} processes, one trial at a time; use --jobs 1")
        if comm.rank != 0:
            sys.stdout = open(os.devnull, "w")   # noqa: SIM115 (for the life of the process)
    if out is None:
        out = os.path.join("studies", f"{command}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
        out = comm.broadcast_object(out)   # rank 0's clock decides
    if os.path.exists(out) and not os.path.isdir(out):
        raise click.UsageError(f"--out {out!r} is a file, not a study folder")
    os.makedirs(os.path.join(out, TRIALS), exist_ok=True)
    return out


def write_trials(group, specs, results):
    """The trial table as parallel 1-D datasets of `group` (an h5py group). For settings
    (aggregate() over several seeds) also trial, seeds, reached_fraction, steps_min, steps_max,
    and steps_to_target as float64 means (nan if not reached) instead of int64 (-1)."""
    string = lambda values: np.array([str(v) for v in values], dtype=object)  # noqa: E731
    group.create_dataset("folder", data=string(os.path.relpath(r["folder"], os.path.dirname(
        os.path.dirname(r["folder"]))) for r in results), dtype=_h5_str())
    group.create_dataset("optimizer", data=string(s["optimizer"] for s in specs), dtype=_h5_str())
    group.create_dataset("batch_size", data=np.array([s["batch_size"] for s in specs], np.int64))
    group.create_dataset("seed", data=np.array([s["seed"] for s in specs], np.int64))
    for name in HYPERPARAMETERS:
        group.create_dataset(name, data=np.array([np.nan if s.get(name) is None else s[name]
                                                  for s in specs], np.float64))
    group.create_dataset("status", data=string(r["status"] for r in results), dtype=_h5_str())
    group.create_dataset("reached", data=np.array([r["reached"] for r in results], bool))
    if any(r.get("seeds", 1) > 1 for r in results):
        group.create_dataset("steps_to_target", data=np.array(
            [np.nan if r["steps_to_target"] is None else r["steps_to_target"] for r in results],
            np.float64))
    else:
        group.create_dataset("steps_to_target", data=np.array(
            [-1 if r["steps_to_target"] is None else r["steps_to_target"] for r in results],
            np.int64))
    if results and "seeds" in results[0]:
        for name in ("trial", "seeds", "steps_min", "steps_max"):
            group.create_dataset(name, data=np.array(
                [-1 if r[name] is None else r[name] for r in results], np.int64))
        group.create_dataset("reached_fraction", data=np.array(
            [r["reached_fraction"] for r in results], np.float64))
    for name in ("epochs_to_target", "wall_to_target", "cost_to_target", "wall_time", "cost",
                 "final_train_loss", "final_train_split_loss", "final_test_loss",
                 "final_test_accuracy"):
        group.create_dataset(name, data=np.array([r[name] for r in results], np.float64))
    for name in ("steps", "curvature_products", "cg_iterations"):   # means over seeds: float
        values = np.array([r[name] for r in results], np.float64)
        integral = np.all(values == np.round(values))
        group.create_dataset(name, data=values.astype(np.int64) if integral else values)


def _h5_str():
    return h5py.string_dtype()


def write_study(path, attrs, fill):
    """Atomically write the study file `path` (on rank 0 only): attrs (JSON-able values) and
    fill(h5 file)."""
    if not parallel.is_root():
        return

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            for key, value in runlog.versions().items():
                f.attrs[key] = value
            fill(f)
    atomic_write(path, write)


def study_attrs(command, options, base, n):
    """The attributes of the study file of `command` (write_study), the options among them."""
    # JSON: a per-batch-size option's {B: value} gets string keys
    return {"command": command, "options": {k: (list(v) if isinstance(v, tuple) else v)
                                            for k, v in options.items()},
            "base_batch_size": int(base), "train_examples": int(n)}
