"""docs/results/fashion-mnist/study_state.py: a study saved without its done trials' checkpoints
and restored on a new machine resumes with every finished trial done earlier, and writes the
same summary."""
import importlib.util
import os
import shutil
import subprocess
import tarfile

import h5py
import numpy as np
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

    archive = tmp_path / "state.tar.xz"
    commit = state.save(str(tmp_path / "machine1"), str(archive))
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert commit == head
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(kept + [state.PIN])

    assert state.restore(str(archive), str(tmp_path / "machine2")) == commit
    second = tmp_path / "machine2" / "s"
    assert not (second / "optuna.db").exists()
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
