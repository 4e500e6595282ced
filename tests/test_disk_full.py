"""A full disk or an unwritable folder (cli/runlog.py): a failing write of checkpoint.npz,
run.h5 or a kept checkpoint raises WriteError naming the file and what is kept, leaves the
previous file intact and loadable and no temporary file behind; `minigrad train` stops with one
line and exit status 1 (never a crash), and resumes from what was kept.

Failures are injected (OSError(ENOSPC, ...) at the data write, the fsync, the rename, the temp
file's creation, h5py) and, once, real: a child process with a file size limit (RLIMIT_FSIZE,
SIGXFSZ ignored), where the kernel refuses the write with EFBIG.
"""
import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from click.testing import CliRunner

from minigrad.cli import atomic, main
from minigrad.cli.atomic import Kept, WriteError
from minigrad.cli.checkpoint import (CHECKPOINT_FILE, checkpoint_path, last_checkpoint_note,
                                     read_checkpoint, write_checkpoint)
from minigrad.cli.loading import load_run
from minigrad.cli.runlog import RUN_FILE, read_run, write_run

TRAIN = ["--hidden", "8", "--steps", 12, "--eval-every", 4, "--checkpoint-every", 4]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def temp_files(folder):
    """Leftover temporary files anywhere under folder."""
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
            if n.endswith(".tmp")]


def enospc(what="injected"):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)


class FullDisk:
    """A file object that accepts `room` bytes, writes part of the next write, then fails with
    ENOSPC as a full disk does; everything else goes to the real file."""

    def __init__(self, fh, room):
        self.fh, self.room = fh, room

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.fh.write(data[:self.room])
            self.room = 0
            raise enospc()
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A real 12-step run (checkpoints at 4, 8, 12)."""
    out = tmp_path_factory.mktemp("full") / "run"
    ok(invoke("train", *TRAIN, "--out", out))
    return out


@pytest.fixture
def run(done, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(done, folder)
    return folder


def fail_at(monkeypatch, where, only=None):
    """Make the next write of a run file fail at `where`; with `only`, just for paths that
    contain it."""
    def hit(path):
        return only is None or only in str(path)

    real_open, real_fsync, real_replace = open, os.fsync, os.replace
    real_mkstemp = tempfile.mkstemp
    if where == "write":
        monkeypatch.setattr(atomic, "open", lambda path, mode="r", *a, **k: (
            FullDisk(real_open(path, mode, *a, **k), 100) if "w" in mode and hit(path)
            else real_open(path, mode, *a, **k)), raising=False)
    elif where == "fsync":
        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""
            if path.endswith(".tmp") and hit(path):
                raise enospc()
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    elif where == "replace":
        def replace(src, dst):
            if hit(dst):
                raise enospc(dst)
            return real_replace(src, dst)
        monkeypatch.setattr(os, "replace", replace)
    elif where == "mkstemp":   # an unwritable folder (as root, chmod would not stop us)
        def mkstemp(*args, dir=None, prefix="", **kwargs):
            if hit(os.path.join(dir or "", prefix)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
            return real_mkstemp(*args, dir=dir, prefix=prefix, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    elif where == "h5py":
        def file(name, *args, **kwargs):
            raise enospc("h5py")
        monkeypatch.setattr(atomic.h5py, "File", file)
    else:  # pragma: no cover
        raise AssertionError(where)


WHERE = ["write", "fsync", "replace", "mkstemp"]


def state_and_model(folder):
    model_state, state = read_checkpoint(str(folder))
    return load_run(str(folder)).model, state


@pytest.mark.parametrize("where", WHERE)
def test_a_failing_checkpoint_write_keeps_the_previous_checkpoint(run, monkeypatch, where):
    path = run / CHECKPOINT_FILE
    before = path.read_bytes()
    model, state = state_and_model(run)
    fail_at(monkeypatch, where)
    with pytest.raises(WriteError) as caught:
        write_checkpoint(str(run), model, dict(state, step=13))
    monkeypatch.undo()
    e = caught.value
    assert isinstance(e, OSError) and e.filename == e.path == str(path)
    assert e.errno == (errno.EROFS if where == "mkstemp" else errno.ENOSPC)
    message = str(e)
    assert message.startswith(f"cannot write {path}: ") and "\n" not in message
    assert message.endswith("; the last checkpoint, step 12, is kept"), message
    assert os.strerror(e.errno) in message
    assert path.read_bytes() == before and read_checkpoint(str(run))[1]["step"] == 12
    assert temp_files(run) == []


@pytest.mark.parametrize("where", WHERE + ["h5py"])
def test_a_failing_run_log_write_keeps_the_previous_run_log(run, monkeypatch, where):
    path = run / RUN_FILE
    before = path.read_bytes()
    _, state = read_checkpoint(str(run))
    fail_at(monkeypatch, where)
    with pytest.raises(WriteError) as caught:
        write_run(str(run), state["config"], state["history"], "running", 13, None, 1.0)
    monkeypatch.undo()
    message = str(caught.value)
    assert caught.value.path == str(path)
    assert message.startswith(f"cannot write {path}: ") and "\n" not in message
    assert message.endswith("; the last checkpoint, step 12, is kept"), message
    assert path.read_bytes() == before and read_run(str(run))["attrs"]["status"] == "finished"
    assert temp_files(run) == []


def test_nothing_kept_says_so_and_leaves_nothing(tmp_path, done, monkeypatch):
    model, state = state_and_model(done)
    folder = tmp_path / "fresh"
    folder.mkdir()
    fail_at(monkeypatch, "write")
    with pytest.raises(WriteError, match="; no checkpoint was written$"):
        write_checkpoint(str(folder), model, state)
    with pytest.raises(WriteError, match=f"cannot write {folder / RUN_FILE}: No space left on "
                                         "device; no checkpoint was written$"):
        write_run(str(folder), state["config"], state["history"], "running", 12, None, 1.0)
    assert os.listdir(folder) == []


@pytest.mark.parametrize("where", ["write", "mkstemp"])
def test_a_failing_kept_copy_names_it_and_keeps_the_new_checkpoint(run, monkeypatch, where):
    model, state = state_and_model(run)
    kept = checkpoint_path(str(run), 13)
    fail_at(monkeypatch, where, only=os.path.join("checkpoints", ""))
    with pytest.raises(WriteError) as caught:
        write_checkpoint(str(run), model, dict(state, step=13), keep=True)
    monkeypatch.undo()
    assert caught.value.path == kept
    assert str(caught.value).startswith(f"cannot write {kept}: ")
    assert str(caught.value).endswith("; the last checkpoint, step 13, is kept")
    assert read_checkpoint(str(run))[1]["step"] == 13 and not os.path.exists(kept)
    assert temp_files(run) == []


def test_write_error_survives_pickling():
    """(It may cross a process boundary, e.g. from a study's worker.)"""
    e = WriteError("/x/run.h5", "No space left on device", "no checkpoint was written",
                   errno.ENOSPC)
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.errno == errno.ENOSPC and back.path == "/x/run.h5"
    kept = WriteError("/x/run.h5", "No space left on device",
                      Kept("the last checkpoint, step 3, is kept", resumable=True))
    assert pickle.loads(pickle.dumps(kept)).resumable and not back.resumable


def test_only_a_readable_checkpoint_is_resumable(run, tmp_path):
    """The resume hint rests on the flag last_checkpoint_note sets, not on its wording: no
    checkpoint, or an unreadable one, is not resumable; a plain string never is."""
    model, state = state_and_model(run)
    assert not last_checkpoint_note(str(tmp_path)).resumable
    write_checkpoint(str(run), model, dict(state, step=5))
    note = last_checkpoint_note(str(run))
    assert note == "the last checkpoint, step 5, is kept" and note.resumable
    with open(checkpoint_path(str(run)), "wb") as fh:
        fh.write(b"not a zip file")
    assert not last_checkpoint_note(str(run)).resumable
    assert not WriteError("/x", "reason", "the last checkpoint, step 5, is kept").resumable


def failing_nth(monkeypatch, name, n):
    """runlog's n-th write of the file `name` (1-based) fails with ENOSPC after a few bytes."""
    real_open = open
    count = {"n": 0}

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if "w" in mode and os.path.basename(str(path)).startswith(f".{name}."):
            count["n"] += 1
            if count["n"] == n:
                return FullDisk(fh, 10)
        return fh
    monkeypatch.setattr(atomic, "open", fake_open, raising=False)


@pytest.mark.parametrize("name, kept_step", [(CHECKPOINT_FILE, 4), (RUN_FILE, 8)])
def test_train_stops_with_one_line_and_resumes_exactly(tmp_path, monkeypatch, name, kept_step,
                                                       done):
    """The second write of the file fails (at step 8): one line, exit 1; the kept checkpoint
    loads, and --resume ends with the parameters of the uninterrupted run."""
    out = tmp_path / "run"
    failing_nth(monkeypatch, name, 2)
    result = invoke("train", *TRAIN, "--out", out)
    monkeypatch.undo()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), \
        (result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output   # (train may add a hint after runlog's message)
    assert errors[0].startswith(f"Error: cannot write {out / name}: No space left on device; "
                                f"the last checkpoint, step {kept_step}, is kept"), errors
    assert read_checkpoint(str(out))[1]["step"] == kept_step
    log = read_run(str(out))   # the previous run.h5, intact
    assert log["attrs"]["status"] == "running" and log["attrs"]["steps"] == 4
    assert temp_files(out) == []
    ok(invoke("train", "--out", out, "--resume"))
    straight, resumed = read_checkpoint(str(done))[0], read_checkpoint(str(out))[0]
    assert straight.keys() == resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key])
    assert read_run(str(out))["attrs"]["status"] == "finished"


def limited(limit):
    def preexec():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_real_file_size_limit_is_one_line_and_no_crash(tmp_path):
    args = ["--hidden", "8", "--steps", 30, "--eval-every", 5, "--checkpoint-every", 5]
    full = tmp_path / "full"
    ok(invoke("train", *args, "--out", full))
    biggest = max(os.path.getsize(full / f) for f in (CHECKPOINT_FILE, RUN_FILE))
    out = tmp_path / "limited"
    proc = subprocess.run([sys.executable, "-m", "minigrad.cli", "train", *map(str, args),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limited(biggest - 64))
    assert proc.returncode == 1, (proc.returncode, proc.stderr)   # not -11 (SIGSEGV) nor 139
    assert "Traceback" not in proc.stderr and "HDF5" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot write {out}{os.sep}"), lines
    assert os.strerror(errno.EFBIG) in lines[0]
    assert temp_files(out) == []
    if lines[0].endswith("no checkpoint was written"):
        assert not (out / CHECKPOINT_FILE).exists()
    else:
        step = int(lines[0].rsplit("step ", 1)[1].split(",")[0])
        assert read_checkpoint(str(out))[1]["step"] == step
    if (out / RUN_FILE).exists():
        assert read_run(str(out))["attrs"]["status"] == "running"


def test_a_failed_write_at_a_failing_run_is_added_to_the_reason_in_one_line(tmp_path,
                                                                           monkeypatch):
    """A run that stops (a non-finite loss) and cannot write its run log says both, in one
    line: why it stopped, and what could not be written."""
    out = tmp_path / "run"
    fail_at(monkeypatch, "write", only=RUN_FILE)
    result = invoke("train", "--hidden", 8, "--steps", 12, "--eval-every", 4, "--lr", 1e12,
                    "--out", out)
    monkeypatch.undo()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith("Error: training stopped at step 3 (no checkpoint was written): "
                                "step 3: non-finite loss"), errors
    assert errors[0].endswith(f"; and cannot write {out / RUN_FILE}: No space left on device; "
                              "no checkpoint was written"), errors
    assert temp_files(out) == []


def test_a_stop_signal_with_a_failing_run_log_write_says_both_and_how_to_resume(tmp_path,
                                                                               monkeypatch):
    """SIGTERM after step 8, and from then on run.h5 cannot be written: the checkpoint of step 8
    is kept, and the one line says so, why run.h5 is missing, and how to resume."""
    from minigrad.cli.training import steps as step_module
    real = step_module.one_step

    def step_then_signal(name, model, optimizer, xb, yb, step, *rows):
        if step == 7:
            fail_at(monkeypatch, "write", only=RUN_FILE)
            os.kill(os.getpid(), signal.SIGTERM)   # deferred: the step finishes first
        return real(name, model, optimizer, xb, yb, step, *rows)

    monkeypatch.setattr(step_module, "one_step", step_then_signal)
    out = tmp_path / "run"
    result = invoke("train", "--hidden", 8, "--steps", 20, "--eval-every", 20, "--out", out)
    monkeypatch.undo()
    assert result.exit_code == 128 + signal.SIGTERM and "Traceback" not in result.output
    line = [x for x in result.output.splitlines() if x.strip()][-1]
    assert line == (f"SIGTERM: stopped at step 8; and cannot write {out / RUN_FILE}: No space "
                    "left on device; the last checkpoint, step 8, is kept; resume with: "
                    f"minigrad train --out {out} --resume"), line
    assert read_checkpoint(str(out))[1]["step"] == 8 and temp_files(out) == []
    ok(invoke("train", "--out", out, "--resume"))
