"""The checkpoint of a training run: ``checkpoint.npz``, everything a run needs to resume.

Written atomically (cli/atomic.py): a reader or a crash never sees a half-written checkpoint, and
a failed write leaves the previous one in place and says so ("the last checkpoint, step N, is
kept"). The log of the run, run.h5, is cli/runlog.py's.

checkpoints/step-NNNNNNNN.npz (--keep-checkpoints): a copy of every checkpoint written, by step.

checkpoint.npz (format 2): a NumPy .npz (a zip of .npy members, no pickle anywhere; read
with allow_pickle=False) holding

    model.<name>  the model's state_dict arrays, dtype and shape as they are
    state.json    1-D uint8: UTF-8 JSON (ASCII only, standard JSON: no NaN/Infinity tokens) of
                  the state, {"format": 2, "step", "optimizer" (its state_dict), "data" (epoch,
                  position in the epoch), "history" (the run.h5 series so far), "config",
                  "wall_time", "target_step", ...}: Trainer.state(), with
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
import json
import math
import os
import zipfile

import numpy as np

from .atomic import Kept, WriteError, reason, write_stream

CHECKPOINT_FILE = "checkpoint.npz"
KEPT_FOLDER = "checkpoints"
CHECKPOINT_FORMAT = 2   # 1: the state as a pickle (refused: it can run code)


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


def last_checkpoint_note(folder):
    """What is kept in `folder`, for write errors: a Kept saying "the last checkpoint, step N, is
    kept" (resumable) or "no checkpoint was written" (read from the disk, not assumed)."""
    path = checkpoint_path(folder)
    if not os.path.isfile(path):
        return Kept("no checkpoint was written")
    try:
        return Kept(f"the last checkpoint, step {checkpoint_step(path)}, is kept", resumable=True)
    except Exception:   # unreadable: say only that it was not touched
        return Kept(f"{path} is left as it was")


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

    def write(fh):
        _write_npz(fh, arrays)
    write_stream(os.path.join(folder, CHECKPOINT_FILE), write,
                 kept=lambda: last_checkpoint_note(folder))
    if keep:
        path = checkpoint_path(folder, state["step"])
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise WriteError(os.path.dirname(path), reason(e), last_checkpoint_note(folder),
                             e.errno) from e
        write_stream(path, write, kept=lambda: last_checkpoint_note(folder))


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
