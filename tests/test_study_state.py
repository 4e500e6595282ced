"""docs/results/fashion-mnist/study_state.py: a study saved without its done trials' checkpoints
and restored on a new machine resumes with every finished trial done earlier, and writes the
same summary."""
import importlib.util
import io
import os
import shutil
import subprocess
import tarfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minigrad.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "docs", "results", "fashion-mnist", "study_state.py")
STUDY = ["scaling", "--optimizers", "sgd", "--batch-sizes", "64,128", "--budget-epochs", "1",
         "--grid", "sgd.lr=0.05,0.1", "--target-accuracy", "0.8"]


def load():
    spec = importlib.util.spec_from_file_location("study_state", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(path):
    with h5py.File(path, "r") as f:
        return {k: f["trials"][k][()] for k in f["trials"]}


def test_a_restored_study_resumes_with_its_finished_trials_done_earlier(tmp_path):
    state = load()
    first = tmp_path / "machine1" / "s"
    result = CliRunner().invoke(main, STUDY + ["--out", str(first)])
    assert result.exit_code == 0, result.output
    trials = sorted(os.listdir(first / "trials"))
    assert len(trials) == 4
    # one trial left unfinished: its checkpoint is kept, the finished trials' are not
    unfinished = first / "trials" / trials[0]
    with h5py.File(unfinished / "run.h5", "r+") as f:
        f.attrs["status"] = "running"
    kept = state.members(str(tmp_path / "machine1"))
    assert os.path.join("s", "trials", trials[0], "checkpoint.npz") in kept
    assert [k for k in kept if k.endswith("checkpoint.npz")] == [
        os.path.join("s", "trials", trials[0], "checkpoint.npz")]
    assert all(os.path.join("s", "trials", t, "run.h5") in kept for t in trials)
    # the study's summary and its recheck page, which a step recorded as done does not remake
    (first / "recheck-diverged.md").write_text("0 trials stopped by the rule")
    kept = state.members(str(tmp_path / "machine1"))
    assert [k for k in kept if os.path.dirname(k) == "s"] == [
        os.path.join("s", "scaling.h5"), os.path.join("s", "recheck-diverged.md")]

    # a rerun of recheck-diverged beside the trials: its files, and its checkpoint while open
    rerun = first / "rechecks" / trials[1]
    shutil.copytree(first / "trials" / trials[1], rerun)
    assert [k for k in state.members(str(tmp_path / "machine1")) if "rechecks" in k] == [
        os.path.join("s", "rechecks", trials[1], n) for n in ("run.h5", "train.log")]
    with h5py.File(rerun / "run.h5", "r+") as f:
        f.attrs["status"] = "interrupted"
    assert os.path.join("s", "rechecks", trials[1], "checkpoint.npz") in state.members(
        str(tmp_path / "machine1"))
    shutil.rmtree(first / "rechecks")

    archive = tmp_path / "state.tar.xz"
    pin = state.save(str(tmp_path / "machine1"), str(archive))
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert pin["commit"] == head and isinstance(pin["dirty"], bool)
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(kept + [state.PIN])

    assert state.restore(str(archive), str(tmp_path / "machine2")) == pin
    second = tmp_path / "machine2" / "s"
    assert not (second / "optuna.db").exists()
    assert (second / "scaling.h5").read_bytes() == (first / "scaling.h5").read_bytes()
    assert (second / "recheck-diverged.md").read_text() == "0 trials stopped by the rule"
    result = CliRunner().invoke(main, STUDY + ["--out", str(second)])
    assert result.exit_code == 0, result.output
    assert result.output.count("(done earlier)") == 3   # the unfinished one is resumed
    a, b = table(first / "scaling.h5"), table(second / "scaling.h5")
    for name in ("steps_to_target", "reached", "final_test_accuracy", "batch_size", "lr"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_restore_keeps_the_files_already_there(tmp_path):
    state = load()
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "a" / "run" / "run.h5").write_bytes(b"old")
    (tmp_path / "a" / "run" / "train.log").write_text("log")
    archive = tmp_path / "state.tar.xz"
    state.save(str(tmp_path / "a"), str(archive))
    shutil.rmtree(tmp_path / "a" / "run")
    (tmp_path / "b" / "run").mkdir(parents=True)
    (tmp_path / "b" / "run" / "run.h5").write_bytes(b"newer")
    state.restore(str(archive), str(tmp_path / "b"))
    assert (tmp_path / "b" / "run" / "run.h5").read_bytes() == b"newer"
    assert (tmp_path / "b" / "run" / "train.log").read_text() == "log"


def test_a_checkpoint_over_the_size_limit_is_left_out_and_its_trial_starts_again(tmp_path,
                                                                                  monkeypatch):
    state = load()
    first = tmp_path / "machine1" / "s"
    assert CliRunner().invoke(main, STUDY + ["--out", str(first)]).exit_code == 0
    unfinished = first / "trials" / sorted(os.listdir(first / "trials"))[0]
    with h5py.File(unfinished / "run.h5", "r+") as f:
        f.attrs["status"] = "interrupted"
    monkeypatch.setattr(state, "MAX_CHECKPOINT", 0)
    assert not [k for k in state.members(str(tmp_path / "machine1")) if "checkpoint" in k]
    state.save(str(tmp_path / "machine1"), str(tmp_path / "state.tar.xz"))
    state.restore(str(tmp_path / "state.tar.xz"), str(tmp_path / "machine2"))
    second = tmp_path / "machine2" / "s"
    result = CliRunner().invoke(main, STUDY + ["--out", str(second)])
    assert result.exit_code == 0, result.output
    assert result.output.count("(done earlier)") == 3
    np.testing.assert_array_equal(table(first / "scaling.h5")["steps_to_target"],
                                  table(second / "scaling.h5")["steps_to_target"])


def test_a_study_folder_or_an_empty_folder_is_refused(tmp_path):
    state = load()
    (tmp_path / "s" / "trials").mkdir(parents=True)
    with pytest.raises(SystemExit, match="is a study folder"):
        state.save(str(tmp_path / "s"), str(tmp_path / "x.tar.xz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="nothing to save"):
        state.save(str(tmp_path / "empty"), str(tmp_path / "x.tar.xz"))
    assert not (tmp_path / "x.tar.xz").exists()


def test_restore_refuses_a_member_outside_the_studies_folder(tmp_path):
    state = load()
    archive = tmp_path / "evil.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in ((state.PIN, b'{"commit": "0", "dirty": false}'), ("../outside", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SystemExit, match="refusing '../outside'"):
        state.restore(str(archive), str(tmp_path / "studies"))
    assert not (tmp_path / "outside").exists()


def test_a_restore_cut_short_leaves_no_part_file(tmp_path, monkeypatch):
    state = load()
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "a" / "run" / "run.h5").write_bytes(b"x" * 100_000)
    archive = tmp_path / "state.tar.xz"
    state.save(str(tmp_path / "a"), str(archive))

    def half(source, out):   # the machine goes while the file is being written
        out.write(source.read(50_000))
        raise OSError("no space left on device")
    monkeypatch.setattr(state.shutil, "copyfileobj", half)
    with pytest.raises(Exception, match="no space left"):
        state.restore(str(archive), str(tmp_path / "b"))
    assert os.listdir(tmp_path / "b" / "run") == []   # no run.h5 that a later restore keeps
    monkeypatch.undo()
    state.restore(str(archive), str(tmp_path / "b"))
    assert (tmp_path / "b" / "run" / "run.h5").read_bytes() == b"x" * 100_000
