"""Checkpoints cannot execute code (cli/runlog.py, format 2: arrays and JSON, no pickle).

A crafted checkpoint.npz carrying a pickle that would create a marker file when unpickled is
fed to every command that loads a checkpoint (`evaluate`, `train --resume`, `hessian`,
`landscape`, and a study resuming its trials): the marker never appears and each command stops
with one line, exit status 1, no traceback. Also: the format round-trips what train stores
(types and values, bit for bit), holds no pickle, and a format-1 checkpoint gets its own error.
"""
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minigrad.cli import main, study
from minigrad.cli.checkpoint import (CHECKPOINT_FILE, CHECKPOINT_FORMAT, CheckpointError,
                                     OldCheckpointError, read_checkpoint, write_checkpoint)
from minigrad.cli.runlog import read_run
from minigrad.cli.scaling import scaling
from minigrad.nn import models

MARKER = "pwned.txt"


class Payload:
    """Unpickling an instance opens (creates) `path`: what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(marker):
    return pickle.dumps({"step": 1, "config": {}, "x": Payload(marker)}, protocol=2)


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npz_with(source, replace=None, drop=()):
    """The members of the .npz `source` as {name: .npy bytes}, some dropped or replaced."""
    members = {}
    with zipfile.ZipFile(source) as zf:
        for name in zf.namelist():
            key = name[:-len(".npy")]
            if key not in drop:
                members[key] = zf.read(name)
    members.update(replace or {})
    return members


def write_npz(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def craft(kind, source, target, marker):
    """Write at `target` a hostile variant `kind` of the real checkpoint `source`."""
    payload = np.array([Payload(marker)], dtype=object)
    if kind == "format-1 state pickle":   # what minigrad <= format 1 wrote, with a payload
        members = npz_with(source, drop=[m for m in np.load(source).files
                                         if not m.startswith("model.")])
        members["state"] = npy_bytes(np.frombuffer(evil_pickle(marker), np.uint8))
        write_npz(target, members)
    elif kind == "pickled model array":
        write_npz(target, npz_with(source, replace={
            "model.0.weight": npy_bytes(payload, allow_pickle=True)}))
    elif kind == "pickled state array":   # a member that state.json refers to
        write_npz(target, npz_with(source, replace={
            "state.0": npy_bytes(payload, allow_pickle=True)}))
    elif kind == "pickled state.json":
        write_npz(target, npz_with(source, replace={"state.json": npy_bytes(payload, True)}))
    elif kind == "bare pickle":
        with open(target, "wb") as fh:
            fh.write(evil_pickle(marker))
    elif kind == "npy pickle":
        with open(target, "wb") as fh:
            fh.write(npy_bytes(payload, allow_pickle=True))
    else:  # pragma: no cover
        raise AssertionError(kind)


KINDS = ["format-1 state pickle", "pickled model array", "pickled state array",
         "pickled state.json", "bare pickle", "npy pickle"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result):
    """The command failed as it should: exit 1 through sys.exit, one line, no traceback."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny real runs: `a` with kept checkpoints at steps 3 and 6, and `b`."""
    root = tmp_path_factory.mktemp("safety")
    for name in ("a", "b"):
        ok(invoke("train", "--hidden", "8", "--steps", 6, "--checkpoint-every", 3,
                  "--eval-every", 3, "--keep-checkpoints", "--out", root / name))
    return root


@pytest.fixture
def hostile(runs, tmp_path, request):
    """A copy of run `a` whose checkpoint.npz and kept checkpoint of step 6 are hostile."""
    kind = request.param
    folder = tmp_path / "a"
    shutil.copytree(runs / "a", folder)
    marker = tmp_path / MARKER
    for path in (folder / CHECKPOINT_FILE, folder / "checkpoints" / "step-00000006.npz"):
        source = tmp_path / "source.npz"
        shutil.copy(path, source)
        craft(kind, source, path, marker)
        os.remove(source)
    return folder, marker


def test_the_payload_is_live(tmp_path):
    """The hostile pickle really runs code when unpickled: the tests below test something."""
    marker = tmp_path / MARKER
    pickle.loads(evil_pickle(marker))
    assert marker.exists()


COMMANDS = {
    "evaluate": lambda run, other: ["evaluate", run],
    "evaluate train split": lambda run, other: ["evaluate", run, "--split", "train"],
    "train --resume": lambda run, other: ["train", "--out", run, "--resume", "--steps", 9],
    "hessian": lambda run, other: ["hessian", run, "--top-k", 1, "--batch-size", 50],
    "hessian --step": lambda run, other: ["hessian", run, "--step", 6, "--top-k", 1],
    "landscape": lambda run, other: ["landscape", run, "--resolution", 3, "--batch-size", 50],
    "landscape --step": lambda run, other: ["landscape", run, "--step", 6, "--resolution", 3],
    "landscape --between": lambda run, other: ["landscape", "--between", other, run,
                                               "--resolution", 3, "--batch-size", 50],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("hostile", KINDS, indirect=True)
def test_no_command_runs_code_from_a_checkpoint(hostile, runs, command):
    folder, marker = hostile
    result = invoke(*COMMANDS[command](folder, runs / "b"))
    line = one_line_error(result)
    assert not marker.exists(), f"{command} ran the checkpoint's code"
    assert "checkpoint" in line and str(folder) in line, line


@pytest.mark.parametrize("hostile", ["format-1 state pickle"], indirect=True)
def test_a_format_1_checkpoint_is_named_and_refused_unread(hostile):
    folder, marker = hostile
    path = folder / CHECKPOINT_FILE
    with pytest.raises(OldCheckpointError) as caught:
        read_checkpoint(str(folder))
    message = str(caught.value)
    assert str(path) in message and "older minigrad" in message and "cannot be read safely" in message
    assert "\n" not in message and not marker.exists()
    line = one_line_error(invoke("evaluate", folder))
    assert "older minigrad" in line and str(path) in line


@pytest.mark.parametrize("hostile", ["format-1 state pickle"], indirect=True)
def test_one_line_on_the_real_stderr(hostile):
    """Outside CliRunner: the installed entry point, exit status 1, one line on stderr."""
    folder, marker = hostile
    proc = subprocess.run([sys.executable, "-m", "minigrad.cli", "evaluate", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "older minigrad" in lines[0]
    assert "Traceback" not in proc.stderr and not marker.exists()


@pytest.mark.parametrize("hostile", KINDS, indirect=True)
def test_read_checkpoint_refuses_without_unpickling(hostile):
    folder, marker = hostile
    for step in (None, 6):
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(str(folder), step=step)
        assert "\n" not in str(caught.value)
    assert not marker.exists()


def set_status(folder, status):
    with h5py.File(folder / "run.h5", "a") as f:
        f.attrs["status"] = status


@pytest.mark.parametrize("hostile", KINDS, indirect=True)
def test_a_study_restarts_a_trial_with_an_unreadable_checkpoint(hostile, runs, tmp_path):
    folder, marker = hostile
    set_status(folder, "interrupted")
    assert study.trial_mode(str(folder)) == "restart"
    good = tmp_path / "good"
    shutil.copytree(runs / "a", good)
    set_status(good, "interrupted")
    assert study.trial_mode(str(good)) == "resume"
    (good / CHECKPOINT_FILE).write_bytes(b"truncated")
    assert study.trial_mode(str(good)) == "restart"
    assert not marker.exists()


def test_a_resumed_study_reruns_a_trial_with_a_format_1_checkpoint(tmp_path):
    args = ["--hidden", "8", "--budget-epochs", "2", "--evals-per-epoch", "1", "--optimizers",
            "sgd", "--batch-sizes", "512", "--target-accuracy", "0.3", "--grid", "sgd.lr=0.2",
            "--out", str(tmp_path / "s")]
    ok(CliRunner().invoke(scaling, args))
    trials = tmp_path / "s" / study.TRIALS
    (name,) = os.listdir(trials)
    trial = trials / name
    before = read_run(str(trial))
    set_status(trial, "interrupted")
    marker = tmp_path / MARKER
    source = tmp_path / "source.npz"
    shutil.copy(trial / CHECKPOINT_FILE, source)
    craft("format-1 state pickle", source, trial / CHECKPOINT_FILE, marker)
    result = ok(CliRunner().invoke(scaling, args))
    assert "done earlier" not in result.output
    assert not marker.exists()
    log = (trial / study.LOG_FILE).read_text().splitlines()
    last_command = [line for line in log if line.startswith("$ minigrad train")][-1]
    assert "--overwrite" in last_command and "--resume" not in last_command
    after = read_run(str(trial))
    assert after["attrs"]["status"] == "finished"
    np.testing.assert_array_equal(after["steps"]["loss"], before["steps"]["loss"])
    read_checkpoint(str(trial))   # rewritten in the current format


# ---------------------------------------------------------------------------- the format
def same(a, b, where="state"):
    """Equal in type and value, arrays in dtype and shape, nan == nan, -0.0 != 0.0."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, (float, np.floating)) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, (float, np.floating)):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), where
    else:
        assert a == b, where


def test_round_trip_keeps_types_and_values(tmp_path):
    model = models.mlp([4, 3, 2], rng=0)
    rng = np.random.default_rng(7)
    rng.random(5)
    shared = np.arange(4.0)
    state = {
        "step": 12,
        "optimizer": {"name": "KFAC", "steps": 12,
                      "hyperparameters": {"lr": 0.05, "kl_clip": None, "fisher": "true",
                                          "nesterov": False, "inv_update_every": 20},
                      "state": [{"A": np.eye(3, dtype=np.float32), "stale": True,
                                 "f64": np.float64(2.5), "f32": np.float32(0.1),
                                 "f16": np.float16(1.5), "i64": np.int64(-3),
                                 "u64": np.uint64(2 ** 64 - 1), "b": np.bool_(True),
                                 "c": np.complex128(1 + 2j), "nan32": np.float32("nan")}, {}],
                      "rng": rng.bit_generator.state},
        "data": {"epoch": 1, "position": 3},
        "history": {"steps": {"loss": [0.1 * i for i in range(30)] + [math.nan, math.inf, -0.0],
                              "lr": [], "rejections": list(range(40)), "short": [1.5, -0.0]},
                    "evals": {"step": [4, 8], "x": [math.nan, -math.inf, 5e-324]}, "layers": {}},
        "config": {"hidden": [64, 64], "pair": (1, "a"), "none": None, "text": "é\udcff\n",
                   "big": 2 ** 100, "neg": -(2 ** 70)},
        "wall_time": 1.25, "target_step": None,
        "odd keys": {1: "int", (1, 2): [3], "__minigrad__": 4, None: 5.0},
        "zero_d": np.array(3.0), "empty": np.zeros((0, 3), np.int8), "nested": [[(1,)], ()],
        "mixed": [1, 2.0, 3, True] * 10, "huge ints": [2 ** 64] * 20, "strings": np.array(["ab"]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "s1": shared, "s2": shared,
    }
    write_checkpoint(str(tmp_path), model, state, keep=True)
    for step in (None, 12):
        model_state, back = read_checkpoint(str(tmp_path), step=step)
        same(dict(state, format=CHECKPOINT_FORMAT), back)
        same(dict(model.state_dict()), model_state)
        assert back["s1"] is back["s2"]
    # the PCG64 state (128-bit ints) restores the Generator exactly
    restored = np.random.default_rng()
    restored.bit_generator.state = back["optimizer"]["rng"]
    np.testing.assert_array_equal(restored.random(4), rng.random(4))


def test_the_file_holds_arrays_and_standard_json_only(runs):
    path = runs / "a" / CHECKPOINT_FILE
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in names:
            array = np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)
            assert not array.dtype.hasobject
        raw = np.lib.format.read_array(io.BytesIO(zf.read("state.json.npy")))

    def refuse(token):
        raise AssertionError(f"non-standard JSON {token}")
    tree = json.loads(raw.tobytes().decode("ascii"), parse_constant=refuse)
    assert tree["format"] == CHECKPOINT_FORMAT == 2 and tree["step"] == 6
    assert "state.npy" not in names and "state.json.npy" in names
    assert all(n.startswith(("model.", "state.")) for n in names)


def test_other_formats_and_damage_are_one_line_errors(runs, tmp_path):
    folder = tmp_path / "a"
    shutil.copytree(runs / "a", folder)
    path = folder / CHECKPOINT_FILE
    original = path.read_bytes()
    tree = json.loads(np.load(path)["state.json"].tobytes())
    for fmt, words in ((3, "written by a newer minigrad"), ("x", "of format 'x'")):
        write_npz(path, npz_with(io.BytesIO(original), replace={"state.json": npy_bytes(
            np.frombuffer(json.dumps(dict(tree, format=fmt)).encode(), np.uint8))}))
        assert words in one_line_error(invoke("evaluate", folder))
    for bad in (b'{"format": 2, "step": NaN}', b'{"format": 2, "x": {"__minigrad__": "eval"}}',
                b'{"format": 2, "x": {"__minigrad__": "array", "member": "model.0.weight"}}',
                b'{"format": 2, "x": {"__minigrad__": "scalar", "dtype": "O", "value": 1}}',
                b"[" * 100000 + b"]" * 100000, b"\xff"):
        write_npz(path, npz_with(io.BytesIO(original),
                                 replace={"state.json": npy_bytes(np.frombuffer(bad, np.uint8))}))
        with pytest.raises(CheckpointError, match="not a readable minigrad checkpoint"):
            read_checkpoint(str(folder))
    path.write_bytes(original[: len(original) // 2])
    assert "not a readable minigrad checkpoint" in one_line_error(invoke("evaluate", folder))


def test_unstorable_state_is_refused_before_anything_is_written(runs, tmp_path):
    folder = tmp_path / "a"
    shutil.copytree(runs / "a", folder)
    before = (folder / CHECKPOINT_FILE).read_bytes()
    model = models.mlp([64, 8, 10], rng=0)
    for bad in ({"step": 1, "x": object()}, {"step": 1, "x": np.array([None], dtype=object)},
                {"step": 1, "x": {1.5j}}):
        with pytest.raises(TypeError, match="checkpoint state"):
            write_checkpoint(str(folder), model, bad)
    assert (folder / CHECKPOINT_FILE).read_bytes() == before
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
