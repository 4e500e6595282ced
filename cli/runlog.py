"""The files of a training run: ``run.h5`` (the log) and ``checkpoint.npz`` (to resume).

Both are written whole into a temporary file in the run folder (``.<name>.<random>.tmp``),
flushed to disk (fsync) and moved into place with ``os.replace``, so a reader (or a crash) never
sees a half-written file: the previous version stays until the new one is complete. A write that
fails (disk full, no permission, read-only file system, a file size limit, ...) removes its
temporary file, leaves the previous version in place and raises WriteError (an OSError) whose
one-line message names the file and says what is kept ("the last checkpoint, step N, is kept"
or "no checkpoint was written"). run.h5 is built in memory by HDF5 and written to disk by plain
Python I/O: HDF5 itself never writes into the run folder, so a failing disk is an ordinary
OSError, never an HDF5 error at close or exit.

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

checkpoint.npz (format 2): a NumPy .npz (a zip of .npy members, no pickle anywhere; read
with allow_pickle=False) holding

    model.<name>  the model's state_dict arrays, dtype and shape as they are
    state.json    1-D uint8: UTF-8 JSON (ASCII only, standard JSON: no NaN/Infinity tokens) of
                  the state, {"format": 2, "step", "optimizer" (its state_dict), "data" (epoch,
                  position in the epoch), "history" (the run.h5 series so far), "config",
                  "wall_time", "target_step", ...}: whatever dict train passes, with
    state.<i>     (i = 0, 1, ...) the arrays the JSON refers to.

JSON holds dicts with str keys, lists, str, bool, None, ints of any size (the PCG64 state of a
Generator is a 128-bit int) and finite floats (Python's repr: exact). Everything else is an
object tagged by the key "__minigrad__":

    {"__minigrad__": "array", "member": "state.<i>"}     a NumPy array (any non-object dtype)
    {"__minigrad__": "floats", "member": "state.<i>"}    a list of >= 16 Python floats, as a
                                                         float64 array (nan, inf, -0.0 exact)
    {"__minigrad__": "ints", "member": "state.<i>"}      a list of >= 16 Python ints (int64)
    {"__minigrad__": "float", "value": "nan"|"inf"|"-inf"}   a non-finite Python float
    {"__minigrad__": "scalar", "dtype": "<name>", "value": v}  a NumPy bool/int/float scalar
                                                         (float16/32/64) of that dtype
    {"__minigrad__": "scalar", "member": "state.<i>"}    any other NumPy scalar (0-d array)
    {"__minigrad__": "tuple", "items": [...]}            a tuple
    {"__minigrad__": "dict", "items": [[key, value], ...]}  a dict with a key that is not a
                                                         str, or with the key "__minigrad__"

so that read_checkpoint gives back what write_checkpoint was given: the same types (list or
tuple, Python or NumPy scalar, array dtype) and values. An array referred to twice is stored
once and read back as one object. Format 1 (minigrad before this) kept a pickle of the state in a
member ``state``; a pickle can run any code when it is read, so such a file is refused with an
error naming it, without being unpickled (train the run again).
"""
import io
import json
import math
import os
import platform
import tempfile
import zipfile

import h5py
import numpy as np

from minigrad import __version__

RUN_FILE = "run.h5"
CHECKPOINT_FILE = "checkpoint.npz"
KEPT_FOLDER = "checkpoints"
CHECKPOINT_FORMAT = 2   # 1: the state as a pickle (refused: it can run code)
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


class WriteError(OSError):
    """A file of a run could not be written (disk full, no permission, read-only file system,
    ...). path: the file; reason: why, in words; kept: what is left on disk, in words (or None);
    errno: the OSError's errno (or None). str() is one line naming the file and saying what is
    kept, e.g. "cannot write runs/a/run.h5: No space left on device; the last checkpoint, step
    40, is kept". The previous version of the file, if any, is untouched and no temporary file
    is left."""

    def __init__(self, path, reason, kept=None, errno=None):
        super().__init__(errno, reason)
        self.filename = self.path = path
        self.reason, self.kept = reason, kept

    def __str__(self):
        return f"cannot write {self.path}: {self.reason}" + (f"; {self.kept}" if self.kept else "")

    def __reduce__(self):   # picklable (the constructor's arguments are not OSError's)
        return type(self), (self.path, self.reason, self.kept, self.errno)


def _reason(error):
    """An OSError (or anything raised by a failing write) as a few words, on one line."""
    code = getattr(error, "errno", None)
    text = (os.strerror(code) if isinstance(code, int) and code > 0 else "") or \
        getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _fsync_folder(folder):
    """Make a rename in `folder` durable; best effort (not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path, write, kept=None):
    """Call write(tmp_path), fsync it, then os.replace(tmp_path, path). On any error the temp
    file is removed and `path` is left as it was; an OSError becomes a WriteError naming `path`,
    with kept() (a callable, evaluated after the failure) or `kept` saying what is kept."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=folder)
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)   # mkstemp makes 0600; give the usual permissions
        write(tmp)
        # a full disk may only show when the data reach it (NFS, quotas, delayed allocation):
        # flush before the rename, so that a checkpoint in place is always a complete one
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        note = kept() if callable(kept) else kept
        raise WriteError(path, _reason(e), note, getattr(e, "errno", None)) from e
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:   # e.g. the folder became read-only: nothing more to do
                pass
    _fsync_folder(folder)


def last_checkpoint_note(folder):
    """What is kept in `folder`, in words, for write errors: "the last checkpoint, step N, is
    kept" or "no checkpoint was written" (read from the disk, not assumed)."""
    path = checkpoint_path(folder)
    if not os.path.isfile(path):
        return "no checkpoint was written"
    try:
        return f"the last checkpoint, step {checkpoint_step(path)}, is kept"
    except Exception:   # unreadable: say only that it was not touched
        return f"{path} is left as it was"


def write_run(folder, config, history, status, steps, target_step, wall_time,
              target_loss_step=None):
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


def write_h5(path, fill, kept=None):
    """Atomically write the HDF5 file `path` that fill(f) (an h5py.File open for writing)
    builds; WriteError naming it (and kept, as in _atomic) if it cannot be written.

    HDF5 writes into memory only (a file image, closed before the disk is touched); the disk
    sees one plain write of the bytes. An HDF5 file written in place on a failing disk stays
    open inside HDF5 in an undefined state (errors again at close, a crash at exit was
    reported); this way that cannot happen, and a failure is an ordinary OSError."""
    def write(tmp):
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            fill(f)
        with open(tmp, "wb") as fh:
            fh.write(image.getbuffer())
    _atomic(path, write, kept=kept)


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


STATE_MEMBER = "state.json"
ARRAY_MEMBER = "state.{}"
TAG = "__minigrad__"
SHORTEST_PACKED = 16   # lists of floats (ints) at least this long are stored as one array
_INLINE_KINDS = "biuf"   # NumPy scalars written as JSON numbers (floats up to 64 bits)


class _Encoder:
    """state -> (JSON-ready tree, {member name: array}) as the module docstring describes."""

    def __init__(self):
        self.members = {}
        self.seen = {}   # id(array) -> member name, so that a shared array is stored once

    def member(self, array):
        name = self.seen.get(id(array))
        if name is None:
            name = self.seen[id(array)] = ARRAY_MEMBER.format(len(self.members))
            self.members[name] = array
        return name

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"checkpoint state {where}: arrays of Python objects "
                                f"({value.dtype}) cannot be stored")
            return {TAG: "array", "member": self.member(value)}
        if isinstance(value, np.generic):   # before float: np.float64 is a float
            if value.dtype.hasobject:
                raise TypeError(f"checkpoint state {where}: a NumPy object scalar cannot be stored")
            if value.dtype.kind in _INLINE_KINDS and value.dtype.itemsize <= 8:
                return {TAG: "scalar", "dtype": value.dtype.name,
                        "value": self.encode(value.item(), where)}
            return {TAG: "scalar", "member": self.member(np.asarray(value))}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            value = float(value)
            return value if math.isfinite(value) else {TAG: "float", "value": repr(value)}
        if isinstance(value, tuple):
            return {TAG: "tuple", "items": [self.encode(v, f"{where}[{i}]")
                                            for i, v in enumerate(value)]}
        if isinstance(value, list):
            if len(value) >= SHORTEST_PACKED:
                if all(type(v) is float for v in value):
                    return {TAG: "floats", "member": self.member(np.array(value, np.float64))}
                if all(type(v) is int and -2 ** 63 <= v < 2 ** 63 for v in value):
                    return {TAG: "ints", "member": self.member(np.array(value, np.int64))}
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and TAG not in value:
                return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
            return {TAG: "dict", "items": [[self.encode(k, f"{where} key {k!r}"),
                                            self.encode(v, f"{where}[{k!r}]")]
                                           for k, v in value.items()]}
        raise TypeError(f"checkpoint state {where}: cannot store a {type(value).__name__} "
                        f"({value!r:.60}); only arrays, numbers, str, bool, None, lists, tuples "
                        "and dicts")


class _Decoder:
    """The inverse of _Encoder, reading the members of an open NpzFile (allow_pickle=False)."""

    def __init__(self, npz):
        self.npz, self.loaded = npz, {}

    def member(self, name):
        if not (isinstance(name, str) and name.startswith(ARRAY_MEMBER.format(""))
                and name != STATE_MEMBER and name in self.npz.files):
            raise ValueError(f"{name!r} is not an array member of the checkpoint")
        if name not in self.loaded:
            self.loaded[name] = self.npz[name]   # allow_pickle=False: never unpickles
        return self.loaded[name]

    def packed(self, name, dtype):
        array = self.member(name)
        if array.dtype != dtype or array.ndim != 1:
            raise ValueError(f"{name!r} is {array.dtype} {array.shape}, expected 1-D {dtype}")
        return array.tolist()   # Python floats (ints), exactly

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node   # str, int, float, bool, None (json gives nothing else)
        if TAG not in node:
            return {k: self.decode(v) for k, v in node.items()}
        kind = node[TAG]
        if kind == "array":
            return self.member(node["member"])
        if kind == "floats":
            return self.packed(node["member"], np.float64)
        if kind == "ints":
            return self.packed(node["member"], np.int64)
        if kind == "float":
            if node["value"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad non-finite float {node['value']!r}")
            return float(node["value"])
        if kind == "scalar":
            if "member" in node:
                array = self.member(node["member"])
                if array.ndim != 0:
                    raise ValueError(f"scalar member {node['member']!r} has shape {array.shape}")
                return array[()]
            dtype = np.dtype(str(node["dtype"]))
            if dtype.kind not in _INLINE_KINDS or dtype.itemsize > 8:
                raise ValueError(f"bad scalar dtype {node['dtype']!r}")
            value = self.decode(node["value"])
            if not isinstance(value, (bool, int, float)):
                raise ValueError(f"bad {dtype} scalar {value!r}")
            return dtype.type(value)
        if kind == "tuple":
            return tuple(self.decode(v) for v in node["items"])
        if kind == "dict":
            out = {}
            for key, value in node["items"]:
                out[self.decode(key)] = self.decode(value)
            return out
        raise ValueError(f"unknown tag {kind!r}")


def _write_npz(fh, arrays):
    """numpy.savez's layout (one .npy per member, stored), with pickles refused on every
    NumPy version (numpy.savez only takes allow_pickle from 2.1 on)."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_checkpoint(folder, model, state, keep=False):
    """Atomically write folder/checkpoint.npz (format 2, see the module docstring): the model's
    arrays and `state`; with keep=True also a copy at checkpoint_path(folder, state["step"]).
    TypeError (before anything is written) if `state` holds something the format cannot store;
    WriteError naming the file and the last checkpoint kept if a file cannot be written."""
    arrays = {}
    for k, v in model.state_dict().items():
        v = np.asarray(v)
        if v.dtype.hasobject:
            raise TypeError(f"model parameter {k!r}: arrays of Python objects cannot be stored")
        arrays[f"model.{k}"] = v
    encoder = _Encoder()
    tree = encoder.encode(dict(state, format=CHECKPOINT_FORMAT), "")
    text = json.dumps(tree, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    arrays[STATE_MEMBER] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    arrays.update(encoder.members)

    def write(tmp):
        with open(tmp, "wb") as fh:
            _write_npz(fh, arrays)
    _atomic(os.path.join(folder, CHECKPOINT_FILE), write,
            kept=lambda: last_checkpoint_note(folder))
    if keep:
        path = checkpoint_path(folder, state["step"])
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise WriteError(os.path.dirname(path), _reason(e), last_checkpoint_note(folder),
                             e.errno) from e
        _atomic(path, write, kept=lambda: last_checkpoint_note(folder))


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: damaged, not minigrad's, or of another format. The
    message is one line naming the file."""


class OldCheckpointError(CheckpointError):
    """A checkpoint of format 1 (a pickle): refused unread, since reading it could run code."""


def _open_checkpoint(path):
    """np.load of `path` as an .npz, pickles refused; CheckpointError if it is anything else."""
    z = np.load(path, allow_pickle=False)   # a bare pickle file: ValueError, nothing unpickled
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is not a readable minigrad checkpoint: not an .npz archive")
    return z


def _state_tree(z, path):
    """The parsed JSON of the state.json member (format checked), or CheckpointError."""
    if STATE_MEMBER not in z.files:
        if "state" in z.files:
            raise OldCheckpointError(
                f"{path} was written by an older minigrad (checkpoint format 1, which stores a "
                "pickle) and cannot be read safely; it was not loaded (train the run again, "
                "with --overwrite)")
        raise CheckpointError(f"{path} is not a readable minigrad checkpoint: no {STATE_MEMBER}")
    raw = z[STATE_MEMBER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path} is not a readable minigrad checkpoint: {STATE_MEMBER} is "
                              f"{raw.dtype} {raw.shape}, expected 1-D uint8")

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    tree = json.loads(raw.tobytes().decode("utf-8"), parse_constant=refuse)
    if not isinstance(tree, dict) or "format" not in tree:
        raise CheckpointError(f"{path} is not a readable minigrad checkpoint: no format in its "
                              "state")
    found = tree["format"]
    if found != CHECKPOINT_FORMAT:
        newer = isinstance(found, int) and not isinstance(found, bool) and found > CHECKPOINT_FORMAT
        raise CheckpointError(
            f"{path} is a minigrad checkpoint of format {found!r}"
            + (", written by a newer minigrad" if newer else "")
            + f"; this minigrad reads format {CHECKPOINT_FORMAT}")
    return tree


def _checked(path, read):
    """read() with every failure but a missing file turned into a one-line CheckpointError."""
    try:
        return read()
    except (FileNotFoundError, CheckpointError):
        raise
    except Exception as e:   # zip, npy, JSON, tag errors; RecursionError of absurd nesting
        reason = " ".join(str(e).split()) or type(e).__name__
        if "pickle" in reason:   # NumPy's refusal suggests loading it unsafely: we never do
            reason = "it holds pickled Python objects, which minigrad never loads (they can run code)"
        raise CheckpointError(f"{path} is not a readable minigrad checkpoint: {reason}") from e


def read_checkpoint(folder, step=None):
    """(model_state, state) from folder/checkpoint.npz (or the kept checkpoint of `step`):
    model_state {name: array}, state the dict write_checkpoint was given, plus "format".
    Nothing in the file is unpickled. CheckpointError (a ValueError) if it is not one of ours,
    OldCheckpointError if it is of format 1; FileNotFoundError if it is missing."""
    path = checkpoint_path(folder, step)

    def read():
        with _open_checkpoint(path) as z:
            tree = _state_tree(z, path)
            model_state = {k[len("model."):]: z[k] for k in z.files if k.startswith("model.")}
            state = _Decoder(z).decode(tree)
        return model_state, state
    model_state, state = _checked(path, read)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a minigrad checkpoint: its state is not a dict")
    return model_state, state


def checkpoint_step(path):
    """The step of the checkpoint file `path`, reading its state.json only (not the arrays);
    CheckpointError as read_checkpoint."""
    def read():
        with _open_checkpoint(path) as z:
            tree = _state_tree(z, path)
        step = tree.get("step")
        if isinstance(step, dict) and step.get(TAG) == "scalar" and "value" in step:
            step = step["value"]   # a NumPy int
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"its step is {step!r}")
        return step
    return _checked(path, read)
