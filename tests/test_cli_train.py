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
from minigrad.cli.checkpoint import read_checkpoint
from minigrad.cli.runlog import read_run
from minigrad.cli.training import evaluation, progress
from minigrad.cli.training import steps as step_module
from minigrad.cli.training.model import build_model


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
    assert set(run["steps"]) == {"loss", "lr", "wall_time", "step_time", "grad_equivalents"}
    np.testing.assert_array_equal(run["steps"]["grad_equivalents"], 1.0)
    assert all(len(v) == 460 for v in run["steps"].values())
    assert np.all(np.diff(run["steps"]["wall_time"]) >= 0)
    assert set(run["evals"]) == {"step", "train_loss", "test_loss", "test_accuracy"}
    np.testing.assert_array_equal(run["evals"]["step"], np.arange(23, 461, 23))
    assert run["evals"]["test_accuracy"][-1] >= 0.95
    assert attrs["target_step"] in run["evals"]["step"]
    with h5py.File(out / "run.h5") as f:
        assert f["steps/loss"].maxshape == (None,) and f["evals/step"].maxshape == (None,)
    assert set(os.listdir(out)) == {"run.h5", "checkpoint.npz", "process.json"}


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
    real = step_module.one_step

    def step_then_ctrl_c(name, model, optimizer, xb, yb, step, *rows):
        if step == 12:
            os.kill(os.getpid(), signal.SIGINT)   # deferred: the step finishes first
        return real(name, model, optimizer, xb, yb, step, *rows)

    monkeypatch.setattr(step_module, "one_step", step_then_ctrl_c)
    result = invoke("--steps", 30, "--out", tmp_path / "b")
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output
    assert read_run(str(tmp_path / "b"))["attrs"]["steps"] == 13
    monkeypatch.setattr(step_module, "one_step", real)
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
    (["--dataset", "imagenet"], "--dataset"),
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


# ------------------------------------------------------------------ --config (TOML options)
def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('optimizer = "kfac"\nsteps = 12\neval-every = 4\nhidden = [32]\n'
                   'batch_size = 32\nlr = 0.5\n')
    out = tmp_path / "c"
    ok(invoke("--config", cfg, "--lr", 0.02, "--out", out))
    attrs = read_run(str(out))["attrs"]
    assert attrs["optimizer"] == "kfac" and attrs["steps"] == 12 and attrs["hidden"] == "32"
    assert attrs["batch_size"] == 32 and attrs["eval_every"] == 4
    assert attrs["lr"] == 0.02     # the command line wins over the file
    np.testing.assert_array_equal(read_run(str(out))["evals"]["step"], [4, 8, 12])


@pytest.mark.parametrize("text, words", [
    ("steps = 3\nfoo = 1\nbar-baz = 2\n", ["unknown", "foo", "bar-baz"]),
    ("steps = -1\n", ["steps", "-1"]),
    ('optimizer = "adam"\n', ["optimizer", "adam"]),
    ("steps = [\n", ["TOML"]),
])
def test_config_file_errors_are_usage_errors(tmp_path, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    result = invoke("--config", cfg, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert all(w in result.output for w in words) and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_config_file_on_resume_counts_as_given(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--steps", 3, "--out", out))
    cfg = tmp_path / "more.toml"
    cfg.write_text(f'steps = 6\nresume = true\nout = "{out.as_posix()}"\n')
    ok(invoke("--config", cfg))
    assert read_run(str(out))["attrs"]["steps"] == 6
    cfg.write_text(f'steps = 9\nresume = true\nout = "{out.as_posix()}"\noptimizer = "kfac"\n')
    result = invoke("--config", cfg)
    assert result.exit_code == 2 and "--optimizer" in result.output


# --------------------------------------------------------------------- --schedule, --warmup-steps
@pytest.mark.parametrize("optimizer", ["sgd", "kfac"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_schedules_are_recorded_per_step(tmp_path, optimizer, schedule):
    from minigrad.optim import schedules
    out = tmp_path / "s"
    ok(invoke("--optimizer", optimizer, "--schedule", schedule, "--warmup-steps", 4,
              "--lr", 0.04, "--steps", 30, "--out", out))
    lr = read_run(str(out))["steps"]["lr"]
    base = {"constant": schedules.constant(0.04), "cosine": schedules.cosine(0.04, 30),
            "step": schedules.step_decay(0.04, 10, 0.1)}[schedule]
    expected = schedules.linear_warmup(base, 4)
    np.testing.assert_allclose(lr, [expected(t) for t in range(30)], rtol=1e-12)
    assert lr[0] == pytest.approx(0.01)


@pytest.mark.parametrize("optimizer", ["sgd", "kfac"])
def test_warmup_epochs_warm_up_over_that_share_of_the_epoch_steps(tmp_path, optimizer):
    """--warmup-epochs E: linear warmup over ceil(E x steps per epoch) steps (digits, B = 64:
    ceil(1437 / 64) = 23 steps per epoch, so E = 0.5 is 12 steps), recorded in the config."""
    from minigrad.optim import schedules
    out = tmp_path / "w"
    ok(invoke("--optimizer", optimizer, "--batch-size", 64, "--warmup-epochs", 0.5, "--lr", 0.04,
              "--steps", 30, "--out", out))
    run = read_run(str(out))
    expected = schedules.linear_warmup(schedules.constant(0.04), 12)
    np.testing.assert_allclose(run["steps"]["lr"], [expected(t) for t in range(30)], rtol=1e-12)
    assert run["steps"]["lr"][11] == pytest.approx(0.04) and run["steps"]["lr"][10] < 0.04
    assert run["attrs"]["warmup_epochs"] == 0.5 and run["attrs"]["warmup_steps"] == 0


def test_default_schedule_is_the_constant_lr(tmp_path):
    ok(invoke("--steps", 5, "--out", tmp_path / "d"))
    run = read_run(str(tmp_path / "d"))
    assert run["attrs"]["schedule"] == "constant" and run["attrs"]["warmup_steps"] == 0
    np.testing.assert_array_equal(run["steps"]["lr"], [0.1] * 5)


@pytest.mark.parametrize("warmup", [("--warmup-steps", 3), ("--warmup-epochs", 0.2)])
def test_schedule_resumes_exactly(tmp_path, warmup):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ("--schedule", "cosine", *warmup, "--steps", 24, "--checkpoint-every", 10)
    ok(invoke(*args, "--out", a))
    real = step_module.one_step
    try:
        def stop_at_13(name, model, optimizer, xb, yb, step, *rows):
            if step == 12:
                os.kill(os.getpid(), signal.SIGINT)
            return real(name, model, optimizer, xb, yb, step, *rows)
        step_module.one_step = stop_at_13
        assert invoke(*args, "--out", b).exit_code == 130
    finally:
        step_module.one_step = real
    ok(invoke("--out", b, "--resume"))
    ra, rb = read_run(str(a)), read_run(str(b))
    np.testing.assert_array_equal(ra["steps"]["lr"], rb["steps"]["lr"])
    pa, pb = params(a), params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("args, option", [
    (["--optimizer", "trcg", "--schedule", "cosine"], "--schedule"),
    (["--optimizer", "strcg", "--warmup-steps", "3"], "--warmup-steps"),
    (["--optimizer", "trcg", "--warmup-epochs", "1"], "--warmup-epochs"),
    (["--warmup-steps", "3", "--warmup-epochs", "1"], "--warmup-steps 3 and --warmup-epochs 1"),
    (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number of epochs, got inf"),
    (["--diverged-after", "3", "--diverged-epochs", "nan"], "--diverged-epochs must be a finite"),
    (["--diverged-epochs", "2"], "--diverged-epochs 2 qualifies --diverged-after K, which is 0"),
    (["--schedule", "linear"], "--schedule"),
])
def test_schedule_option_errors(tmp_path, args, option):
    result = invoke(*args, "--out", tmp_path / "x")
    assert result.exit_code == 2 and option in result.output, result.output


def test_a_run_interrupted_at_chance_resumes_to_the_same_divergence(tmp_path, monkeypatch):
    """--diverged-epochs counts the epochs at chance from the first evaluation of the streak
    (read from the logged evaluations): a run interrupted inside the streak, between two
    evaluations, ends where it would have."""
    args = ("--lr", 5, "--epochs", 12, "--eval-every", 5, "--diverged-after", 3,
            "--diverged-epochs", 2)
    whole = invoke(*args, "--out", tmp_path / "a")
    assert whole.exit_code == 1 and "over 50 steps" in whole.output
    real = step_module.one_step

    def stop_at_142(name, model, optimizer, xb, yb, step, *rows):
        if step == 141:   # inside the streak at chance that ends the run, not at an evaluation
            os.kill(os.getpid(), signal.SIGINT)
        return real(name, model, optimizer, xb, yb, step, *rows)
    monkeypatch.setattr(step_module, "one_step", stop_at_142)
    assert invoke(*args, "--out", tmp_path / "b").exit_code == 130
    monkeypatch.setattr(step_module, "one_step", real)
    resumed = invoke("--out", tmp_path / "b", "--resume")
    assert resumed.exit_code == 1 and "over 50 steps" in resumed.output
    ra, rb = read_run(str(tmp_path / "a")), read_run(str(tmp_path / "b"))
    assert ra["attrs"]["steps"] == rb["attrs"]["steps"] == 155
    np.testing.assert_array_equal(ra["steps"]["loss"], rb["steps"]["loss"])


def test_a_resume_checks_a_new_diverged_epochs_too(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--steps", 4, "--diverged-after", 3, "--out", out))
    result = invoke("--out", out, "--resume", "--steps", 8, "--diverged-epochs", "inf")
    assert result.exit_code == 2 and "--diverged-epochs must be a finite" in result.output


def test_a_resume_cannot_change_the_warmup(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--steps", 4, "--out", out))
    result = invoke("--out", out, "--resume", "--steps", 8, "--warmup-epochs", 1)
    assert result.exit_code == 2 and "--warmup-epochs 1.0 differs from the run's 0" in result.output


# ---------------------------------------------------------------------------- progress bar
def test_progress_bar_on_a_terminal_only(tmp_path, monkeypatch):
    plain = ok(invoke("--steps", 20, "--eval-every", 10, "--out", tmp_path / "p")).output
    assert "\r" not in plain and "steps 0->20" not in plain
    assert sum(l.startswith("step ") for l in plain.splitlines()) == 2
    monkeypatch.setattr(progress, "stdout_is_terminal", lambda: True)
    shown = ok(invoke("--steps", 20, "--eval-every", 10, "--out", tmp_path / "t")).output
    assert "steps 0->20" in shown and "20/20" in shown
    assert "loss " in shown and "test acc 0." in shown
    assert "done: 20 steps" in shown and shown.count("test loss") == 2


# ------------------------------------------------------------------- per-layer statistics
def test_layer_statistics_are_logged_at_each_evaluation(tmp_path):
    from minigrad.cli.runlog import LAYER_METRICS
    out = tmp_path / "l"
    ok(invoke("--steps", 30, "--eval-every", 10, "--out", out))
    run = read_run(str(out))
    assert set(run["layers"]) == {"0", "2", "4"}          # the mlp's three Linear layers
    for name, series in run["layers"].items():
        assert set(series) == set(LAYER_METRICS)
        for metric, values in series.items():
            assert len(values) == 3 and np.all(np.isfinite(values)), (name, metric)
    zero = run["layers"]["2"]["input_zero_fraction"]       # after a ReLU
    assert np.all((zero > 0) & (zero < 1))
    assert np.all(run["layers"]["0"]["grad_norm"] > 0)
    with h5py.File(out / "run.h5") as f:
        assert f["layers/4/grad_norm"].maxshape == (None,)


@pytest.mark.parametrize("optimizer", ["sgd", "kfac"])
def test_layer_statistics_do_not_disturb_training(tmp_path, optimizer):
    a, b = tmp_path / "often", tmp_path / "rarely"
    ok(invoke("--optimizer", optimizer, "--steps", 25, "--eval-every", 1, "--out", a))
    ok(invoke("--optimizer", optimizer, "--steps", 25, "--eval-every", 100, "--out", b))
    pa, pb = params(a), params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert len(read_run(str(a))["layers"]["0"]["grad_norm"]) == 25


def test_layer_statistics_of_a_resumed_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(invoke("--steps", 30, "--eval-every", 10, "--out", a))
    ok(invoke("--steps", 20, "--eval-every", 10, "--out", b))
    ok(invoke("--steps", 30, "--out", b, "--resume"))
    la, lb = read_run(str(a))["layers"], read_run(str(b))["layers"]
    assert la.keys() == lb.keys()
    for name in la:
        for metric in la[name]:
            np.testing.assert_array_equal(la[name][metric], lb[name][metric])


# ------------------------------------------------------------------------------ --device
def test_device_cpu_is_recorded(tmp_path):
    ok(invoke("--device", "cpu", "--steps", 3, "--out", tmp_path / "c"))
    assert read_run(str(tmp_path / "c"))["attrs"]["device"] == "cpu"


def test_device_cuda_without_cupy_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)     # import cupy fails, as without CuPy
    result = invoke("--device", "cuda", "--steps", 3, "--out", tmp_path / "g")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and 'pip install cupy-cuda12x' in result.output
    assert not (tmp_path / "g").exists()


def test_device_cuda_trains_when_a_gpu_is_there(tmp_path):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception:
        pytest.skip("CUDA not usable")
    for optimizer in ("sgd", "kfac", "trcg"):
        out = tmp_path / optimizer
        ok(invoke("--device", "cuda", "--optimizer", optimizer, "--steps", 20, "--eval-every", 10,
                  "--out", out))
        run = read_run(str(out))
        assert np.all(np.isfinite(run["steps"]["loss"])) and run["attrs"]["device"] == "cuda"
        assert np.all(np.isfinite(run["layers"]["0"]["grad_norm"]))
    ok(invoke("--device", "cuda", "--steps", 10, "--out", tmp_path / "r"))
    ok(invoke("--steps", 20, "--out", tmp_path / "r", "--resume"))


# ------------------------------------------------------------------ --model autoencoder
@pytest.mark.parametrize("optimizer", ["sgd", "kfac"])
def test_autoencoder_reconstructs_digits(tmp_path, optimizer):
    out = tmp_path / optimizer
    result = ok(invoke("--model", "autoencoder", "--optimizer", optimizer, "--steps", 60,
                       "--eval-every", 30, "--out", out))
    assert "test recon err" in result.output and "test reconstruction error" in result.output
    run = read_run(str(out))
    assert run["attrs"]["hidden"] == "32,16,8" and run["attrs"]["model"] == "autoencoder"
    assert set(run["evals"]) == {"step", "train_loss", "test_loss", "test_reconstruction_error"}
    loss = run["steps"]["loss"]
    assert np.all(np.isfinite(loss)) and loss[-5:].mean() < 0.9 * loss[0]
    err = run["evals"]["test_reconstruction_error"]
    assert len(err) == 2 and np.all((err > 0) & (err < 64))
    assert {"encoder.0", "decoder.4"} <= set(run["layers"])


def test_autoencoder_hidden_and_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(invoke("--model", "autoencoder", "--hidden", "24,6", "--steps", 20, "--out", a))
    ok(invoke("--model", "autoencoder", "--hidden", "24,6", "--steps", 10, "--out", b))
    ok(invoke("--steps", 20, "--out", b, "--resume"))
    assert read_run(str(b))["attrs"]["hidden"] == "24,6"
    pa, pb = params(a), params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_autoencoder_with_a_trust_region_optimizer(tmp_path):
    ok(invoke("--model", "autoencoder", "--optimizer", "strcg", "--steps", 4, "--out", tmp_path / "t"))
    run = read_run(str(tmp_path / "t"))
    assert np.all(np.isfinite(run["steps"]["loss"])) and len(run["steps"]["radius"]) == 4


def test_autoencoder_refuses_target_accuracy(tmp_path):
    result = invoke("--model", "autoencoder", "--target-accuracy", 0.9, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--target-accuracy" in result.output


# ----------------------------------------------------------------- targets, checkpoints, costs
def test_target_loss_is_measured_on_the_whole_training_split(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--out", out, "--hidden", "16", "--steps", 60, "--eval-every", 10,
              "--target-loss", 0.8, "--dtype", "float64"))
    run = read_run(str(out))
    split = run["evals"]["train_split_loss"]
    assert len(split) == 6
    images, labels, _ = minigrad.datasets.load("digits", "train")
    model_state, state = read_checkpoint(str(out))
    model = build_model(state["config"], (1, 8, 8), 10)
    model.load_state_dict(model_state)
    loss, _ = evaluation.evaluate(model, images.astype(np.float64), labels, True)
    assert split[-1] == pytest.approx(loss, rel=1e-12)
    first = int(np.flatnonzero(split <= 0.8)[0])
    assert run["attrs"]["target_loss_step"] == run["evals"]["step"][first]
    assert run["attrs"]["target_loss"] == 0.8


def test_stop_at_target_ends_the_run_at_the_first_evaluation_meeting_every_target(tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    args = ("--hidden", "16", "--steps", 200, "--eval-every", 10, "--target-accuracy", 0.85,
            "--target-loss", 0.5)
    ok(invoke("--out", full, *args))
    result = ok(invoke("--out", stopped, *args, "--stop-at-target"))
    a, b = read_run(str(full))["attrs"], read_run(str(stopped))["attrs"]
    last = max(a["target_step"], a["target_loss_step"])
    assert 0 < last < 200 and b["steps"] == last and b["status"] == "finished"
    assert (b["target_step"], b["target_loss_step"]) == (a["target_step"], a["target_loss_step"])
    np.testing.assert_array_equal(read_run(str(stopped))["steps"]["loss"],
                                  read_run(str(full))["steps"]["loss"][:last])
    assert "stopped at target" in result.output
    # resuming a run that stopped at its target does not train on
    ok(invoke("--out", stopped, "--resume"))
    assert read_run(str(stopped))["attrs"]["steps"] == last


def test_stop_at_target_needs_a_target(tmp_path):
    result = invoke("--out", tmp_path / "r", "--stop-at-target")
    assert result.exit_code == 2 and "--stop-at-target needs" in result.output


def test_keep_checkpoints_keeps_one_file_per_checkpoint(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--out", out, "--hidden", "16", "--steps", 25, "--checkpoint-every", 10,
              "--keep-checkpoints"))
    kept = sorted(os.listdir(out / "checkpoints"))
    # every 10 steps and at the end (the evaluation of step 23 comes within 10 s of the last
    # checkpoint: train.EVAL_CHECKPOINT_SPACING)
    assert kept == ["step-00000010.npz", "step-00000020.npz", "step-00000025.npz"]
    last = read_checkpoint(str(out))
    same = read_checkpoint(str(out), step=25)
    for k in last[0]:
        np.testing.assert_array_equal(last[0][k], same[0][k])
    assert read_checkpoint(str(out), step=10)[1]["step"] == 10
    assert not any(n.endswith(".tmp") for n in os.listdir(out / "checkpoints"))


def test_step_time_and_cost_series(tmp_path):
    out = tmp_path / "r"
    ok(invoke("--out", out, "--hidden", "16", "--steps", 8, "--optimizer", "strcg"))
    steps = read_run(str(out))["steps"]
    assert len(steps["step_time"]) == 8 and (steps["step_time"] > 0).all()
    assert steps["step_time"].sum() <= read_run(str(out))["attrs"]["wall_time"]
    assert (steps["grad_equivalents"] > 1).all()   # curvature products cost extra
    assert steps["cg_iterations"].dtype == np.int64 and steps["rejections"].dtype == np.int64


def test_kl_clip_option(tmp_path):
    ok(invoke("--out", tmp_path / "a", "--optimizer", "kfac", "--steps", 5, "--hidden", "16"))
    ok(invoke("--out", tmp_path / "b", "--optimizer", "kfac", "--steps", 5, "--hidden", "16",
              "--kl-clip", 0))
    a, b = read_run(str(tmp_path / "a")), read_run(str(tmp_path / "b"))
    assert a["attrs"]["kl_clip"] == 1e-3 and b["attrs"]["kl_clip"] == 0
    assert a["steps"]["loss"][0] == b["steps"]["loss"][0]
    assert not np.array_equal(a["steps"]["loss"], b["steps"]["loss"])   # the clip acted
    result = invoke("--out", tmp_path / "c", "--kl-clip", 0.01)
    assert result.exit_code == 2 and "--kl-clip does not apply to --optimizer sgd" in result.output


def test_fisher_option(tmp_path):
    args = ("--optimizer", "kfac", "--steps", 6, "--hidden", "16")
    ok(invoke(*args, "--out", tmp_path / "e", "--fisher", "empirical"))
    ok(invoke(*args, "--out", tmp_path / "t", "--fisher", "true"))
    ok(invoke(*args, "--out", tmp_path / "t2", "--fisher", "true"))
    e, t, t2 = (read_run(str(tmp_path / k)) for k in ("e", "t", "t2"))
    assert e["attrs"]["fisher"] == "empirical" and t["attrs"]["fisher"] == "true"
    assert not np.array_equal(e["steps"]["loss"], t["steps"]["loss"])   # other curvature
    np.testing.assert_array_equal(t["steps"]["loss"], t2["steps"]["loss"])   # seeded samples
    result = invoke("--out", tmp_path / "a", "--model", "autoencoder", "--optimizer", "kfac",
                    "--fisher", "true")
    assert result.exit_code == 2 and "--fisher true samples class labels" in result.output


def test_kfac_update_intervals(tmp_path):
    args = ("--optimizer", "kfac", "--steps", 12, "--hidden", "16")
    ok(invoke(*args, "--out", tmp_path / "a"))
    ok(invoke(*args, "--out", tmp_path / "b", "--cov-update-every", 5, "--inv-update-every", 5))
    a, b = read_run(str(tmp_path / "a")), read_run(str(tmp_path / "b"))
    assert (b["attrs"]["cov_update_every"], b["attrs"]["inv_update_every"]) == (5, 5)
    assert a["attrs"]["cov_update_every"] == 1 and a["attrs"]["inv_update_every"] == 20
    # both precondition with the eigenbases of step 1 until b refreshes its own at step 6
    np.testing.assert_array_equal(a["steps"]["loss"][:6], b["steps"]["loss"][:6])
    assert a["steps"]["loss"][6] != b["steps"]["loss"][6]
    result = invoke("--out", tmp_path / "c", "--cov-update-every", 2)
    assert result.exit_code == 2 and "does not apply to --optimizer sgd" in result.output


def test_evaluate_leaves_each_modules_mode_as_it_was():
    from minigrad.nn import models
    model = models.resnet_cifar(depth=8, num_classes=10, in_channels=1, width=4, rng=0)
    model.eval()
    first = next(iter(model.modules()))
    children = list(model.modules())[1:]
    object.__setattr__(children[0], "training", True)   # a mixed state, as a user may set it
    before = [m.training for m in model.modules()]
    x = np.zeros((3, 1, 8, 8), np.float32)
    evaluation.evaluate(model, x, np.zeros(3, np.int64), flatten=False)
    assert [m.training for m in model.modules()] == before and not first.training
