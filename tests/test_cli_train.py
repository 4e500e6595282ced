"""`minigrad train` (cli/train.py): defaults reach 95% on digits, every optimizer trains, the
run.h5 layout, exact resume (also after Ctrl-C), and the error paths."""
import os
import shutil
import signal
import subprocess
import sys

import h5py
import minigrad.datasets
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.runlog import read_checkpoint, read_run

train_module = sys.modules["minigrad.cli.train"]


def invoke(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def params(folder):
    return read_checkpoint(str(folder))[0]


def test_default_run_reaches_95_percent_and_writes_the_documented_layout(tmp_path):
    out = tmp_path / "default"
    result = ok(invoke("--out", out, "--target-accuracy", 0.95))
    assert "done: 460 steps" in result.output and "test accuracy" in result.output
    run = read_run(str(out))
    attrs = run["attrs"]
    assert attrs["status"] == "finished" and attrs["steps"] == 460
    assert attrs["dataset"] == "digits" and attrs["model"] == "mlp" and attrs["optimizer"] == "sgd"
    assert attrs["hidden"] == "64,64" and attrs["batch_size"] == 64 and attrs["dtype"] == "float32"
    assert attrs["lr"] == 0.1 and attrs["momentum"] == 0.9 and attrs["seed"] == 0
    for key in ("config", "minigrad_version", "numpy_version", "h5py_version", "wall_time"):
        assert key in attrs
    assert 0 < attrs["target_step"] <= 460
    assert set(run["steps"]) == {"loss", "lr", "wall_time"}
    assert all(len(v) == 460 for v in run["steps"].values())
    assert np.all(np.diff(run["steps"]["wall_time"]) >= 0)
    assert set(run["evals"]) == {"step", "train_loss", "test_loss", "test_accuracy"}
    np.testing.assert_array_equal(run["evals"]["step"], np.arange(23, 461, 23))
    assert run["evals"]["test_accuracy"][-1] >= 0.95
    assert attrs["target_step"] in run["evals"]["step"]
    with h5py.File(out / "run.h5") as f:
        assert f["steps/loss"].maxshape == (None,) and f["evals/step"].maxshape == (None,)
    assert set(os.listdir(out)) == {"run.h5", "checkpoint.npz"}


@pytest.mark.parametrize("optimizer", ["sgd", "kfac", "trcg", "strcg"])
def test_each_optimizer_runs_and_lowers_the_loss(tmp_path, optimizer):
    out = tmp_path / optimizer
    ok(invoke("--optimizer", optimizer, "--steps", 30, "--eval-every", 10, "--out", out))
    run = read_run(str(out))
    loss = run["steps"]["loss"]
    assert len(loss) == 30 and np.all(np.isfinite(loss))
    assert loss[-5:].mean() < 0.7 * loss[:5].mean()
    assert run["evals"]["test_loss"][-1] < run["evals"]["test_loss"][0]
    assert ("radius" in run["steps"]) == (optimizer in ("trcg", "strcg"))
    assert ("lr" in run["steps"]) == (optimizer in ("sgd", "kfac"))


@pytest.mark.parametrize("optimizer", ["sgd", "kfac", "strcg"])
def test_resume_gives_the_parameters_of_an_uninterrupted_run(tmp_path, optimizer):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    ok(invoke("--optimizer", optimizer, "--steps", 40, "--out", a))
    ok(invoke("--optimizer", optimizer, "--steps", 20, "--out", b))
    assert read_run(str(b))["attrs"]["steps"] == 20
    ok(invoke("--steps", 40, "--out", b, "--resume"))
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    ra, rb = read_run(str(a)), read_run(str(b))
    np.testing.assert_array_equal(ra["steps"]["loss"], rb["steps"]["loss"])
    assert rb["attrs"]["steps"] == 40 and rb["attrs"]["status"] == "finished"


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        ok(invoke("--steps", 10, "--seed", seed, "--out", tmp_path / name))
    pa, pb, pc = (params(tmp_path / n) for n in "abc")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert not all(np.array_equal(pa[k], pc[k]) for k in pa)


def test_ctrl_c_checkpoints_exits_130_and_resumes_exactly(tmp_path, monkeypatch):
    real = train_module._one_step

    def step_then_ctrl_c(name, model, optimizer, xb, yb, step):
        if step == 12:
            os.kill(os.getpid(), signal.SIGINT)   # deferred: the step finishes first
        return real(name, model, optimizer, xb, yb, step)

    monkeypatch.setattr(train_module, "_one_step", step_then_ctrl_c)
    result = invoke("--steps", 30, "--out", tmp_path / "b")
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output
    assert read_run(str(tmp_path / "b"))["attrs"]["steps"] == 13
    monkeypatch.setattr(train_module, "_one_step", real)
    ok(invoke("--out", tmp_path / "b", "--resume"))
    ok(invoke("--steps", 30, "--out", tmp_path / "a"))
    pa, pb = params(tmp_path / "a"), params(tmp_path / "b")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_existing_folder_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "run"
    ok(invoke("--steps", 3, "--out", out))
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    result = invoke("--steps", 5, "--out", out)
    assert result.exit_code == 2 and "exists" in result.output
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    ok(invoke("--steps", 5, "--out", out, "--overwrite"))
    assert read_run(str(out))["attrs"]["steps"] == 5


def test_resume_errors(tmp_path):
    result = invoke("--out", tmp_path / "none", "--resume")
    assert result.exit_code == 2 and "no checkpoint" in result.output
    ok(invoke("--steps", 3, "--out", tmp_path / "r"))
    result = invoke("--steps", 6, "--out", tmp_path / "r", "--resume", "--optimizer", "kfac")
    assert result.exit_code == 2 and "--optimizer" in result.output


@pytest.mark.parametrize("args, option", [
    (["--optimizer", "adam"], "--optimizer"),
    (["--dataset", "cifar10"], "--dataset"),
    (["--model", "vgg"], "--model"),
    (["--dtype", "float16"], "--dtype"),
    (["--batch-size", "0"], "--batch-size"),
    (["--hidden", "64,x"], "--hidden"),
    (["--lr", "-1"], "--lr"),
    (["--hessian-fraction", "2"], "--hessian-fraction"),
    (["--model", "lenet"], "lenet"),
    (["--optimizer", "trcg", "--lr", "0.1"], "--lr"),
    (["--epochs", "1", "--steps", "5"], "--steps"),
])
def test_bad_options_are_usage_errors_naming_the_option(tmp_path, args, option):
    result = invoke(*args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_non_finite_loss_stops_with_exit_1_keeping_the_last_checkpoint(tmp_path):
    out = tmp_path / "nan"
    result = invoke("--steps", 50, "--lr", 1e6, "--checkpoint-every", 1, "--out", out)
    assert result.exit_code == 1
    line = next(l for l in result.output.splitlines() if l.startswith("Error:"))
    assert "step" in line and "non-finite" in line
    run = read_run(str(out))
    assert run["attrs"]["status"] == "failed"
    good = run["attrs"]["steps"]
    assert np.isfinite(run["steps"]["loss"]).all()
    _, state = read_checkpoint(str(out))
    assert state["step"] == good
    assert all(np.isfinite(v).all() for v in params(out).values())


def test_missing_data_is_one_line_exit_1(tmp_path, monkeypatch):
    def missing(name, split="train", **kw):
        raise minigrad.datasets.DataNotFoundError(f"{name} ({split} split): missing files.\nPut them ...")

    monkeypatch.setattr(minigrad.datasets, "load", missing)
    result = invoke("--dataset", "mnist", "--out", tmp_path / "m")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: mnist")


def test_installed_console_script(tmp_path):
    script = shutil.which("minigrad", path=os.path.dirname(sys.executable)) or shutil.which("minigrad")
    if script is None:
        pytest.skip("the minigrad console script is not installed")
    proc = subprocess.run([script, "train", "--steps", "5", "--out", str(tmp_path / "s")],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "done: 5 steps" in proc.stdout
    assert read_run(str(tmp_path / "s"))["attrs"]["steps"] == 5
