"""`minigrad plot` (cli/plot.py) on two short digits runs (sgd, kfac): the table repeats run.h5,
the x axes are the documented functions of the step, a PNG is written (and overwritten), the
command succeeds without matplotlib, and the error paths are one line."""
import json
import math
import shutil
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import plotting
from minigrad.cli.plot import Run, moving_average, plot, train_examples, x_values
from minigrad.cli.runlog import read_run
from minigrad.cli.train import train

from minigrad import datasets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH = {"sgd": 32, "kfac": 100}


def invoke(*args):
    return CliRunner().invoke(plot, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result, *words):
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)   # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """root/sgd (B=32), root/kfac (B=100), 30 steps each; root/old: sgd without
    steps/grad_equivalents; root/mnist: sgd whose config says mnist."""
    root = tmp_path_factory.mktemp("plot")
    for name, batch in BATCH.items():
        result = CliRunner().invoke(train, ["--out", str(root / name), "--hidden", "16",
                                            "--steps", "30", "--eval-every", "10",
                                            "--optimizer", name, "--batch-size", str(batch),
                                            *(["--fisher", "empirical"] if name == "kfac" else [])])
        assert result.exit_code == 0, (result.output, result.exception)
    shutil.copytree(root / "sgd", root / "old")
    with h5py.File(root / "old" / "run.h5", "a") as f:
        del f["steps/grad_equivalents"]
    shutil.copytree(root / "sgd", root / "mnist")
    with h5py.File(root / "mnist" / "run.h5", "a") as f:
        config = dict(json.loads(f.attrs["config"]), dataset="mnist")
        for key in ("train_examples", "steps_per_epoch"):   # as in runs written before they were
            config.pop(key)
        f.attrs["config"] = json.dumps(config)
    return root


def test_table_rows_repeat_the_run_logs(runs, tmp_path):
    result = ok(invoke(runs / "sgd", runs / "kfac", "--out", tmp_path / "p.png"))
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["name", "optimizer", "batch", "steps", "epochs", "wall", "s",
                                "cost", "train", "loss", "test", "loss", "test", "acc", "target",
                                "step"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert list(rows) == ["sgd", "kfac"]
    assert lines[-1] == f"plot written to {tmp_path / 'p.png'}"
    for name, batch in BATCH.items():
        run = read_run(str(runs / name))
        attrs, ev, st = run["attrs"], run["evals"], run["steps"]
        row = rows[name]
        assert row[1:4] == [name, str(batch), str(attrs["steps"])]
        assert attrs["steps"] == 30 and list(ev["step"]) == [10, 20, 30]
        assert float(row[4]) == pytest.approx(30 / math.ceil(1437 / batch), abs=5e-3)
        assert float(row[5]) == pytest.approx(attrs["wall_time"], abs=0.051)
        assert float(row[6]) == pytest.approx(np.sum(st["grad_equivalents"]), abs=0.051)
        assert float(row[6]) == 30.0   # sgd and kfac pay one gradient a step
        for cell, value in zip(row[7:10], (ev["train_loss"][-1], ev["test_loss"][-1],
                                           ev["test_accuracy"][-1])):
            assert float(cell) == pytest.approx(value, rel=1e-3)
        assert row[10] == "-"   # no --target-accuracy


def test_png_written_to_the_first_run_by_default_and_overwritten(runs, tmp_path):
    default = runs / "sgd" / "plot-loss-steps.png"
    ok(invoke(runs / "sgd", runs / "kfac"))
    data = default.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    out = tmp_path / "acc.png"
    out.write_bytes(b"an old picture")
    result = ok(invoke(runs / "sgd", runs / "kfac", "--metric", "accuracy", "--x", "cost",
                       "--labels", "plain,curved", "--log-y", "--title", "t", "--out", out))
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert "overwritten" in ok(invoke("--help")).output
    assert result.stderr == ""   # one data set: no warning
    for axis in ("epochs", "time"):
        ok(invoke(runs / "kfac", "--x", axis, "--smooth", 3, "--out", tmp_path / f"{axis}.png"))
        assert (tmp_path / f"{axis}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_x_axes_are_the_documented_functions_of_the_step(runs):
    assert train_examples("digits") == len(datasets.load("digits", "train")[1]) == 1437
    for name, batch in BATCH.items():
        run = Run(str(runs / name), name)
        steps = np.arange(0, 31)
        np.testing.assert_array_equal(x_values(run, "steps", steps), steps)
        np.testing.assert_allclose(x_values(run, "epochs", steps),
                                   steps / math.ceil(1437 / batch), rtol=1e-15)
        cost = x_values(run, "cost", steps)
        assert cost[0] == 0
        np.testing.assert_allclose(cost[1:], np.cumsum(run.steps["grad_equivalents"]))
        time = x_values(run, "time", steps)
        assert time[0] == 0
        np.testing.assert_array_equal(time[1:], run.steps["wall_time"])


def test_moving_average_is_the_trailing_mean():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    for window in (1, 2, 3, 10):
        expected = [values[max(0, k - window + 1):k + 1].mean() for k in range(len(values))]
        np.testing.assert_allclose(moving_average(values, window), expected)


def test_without_matplotlib_the_table_and_the_hint_and_no_png(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    assert plotting.pyplot() is None
    out = tmp_path / "p.png"
    result = ok(invoke(runs / "sgd", runs / "kfac", "--out", out))
    assert result.stdout.splitlines()[0].startswith("name")
    assert 'pip install matplotlib' in result.stdout
    assert not out.exists()


def test_different_data_sets_warn_on_stderr(runs, tmp_path):
    result = ok(invoke(runs / "sgd", runs / "mnist", "--x", "epochs", "--out", tmp_path / "p.png"))
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Warning: ")
    assert "digits: sgd" in result.stderr and "mnist: mnist" in result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("mnist"))
    assert float(row[4]) == pytest.approx(30 / math.ceil(60000 / 32), abs=5e-3)


def test_errors_are_one_line(runs, tmp_path):
    one_line_error(invoke(tmp_path / "nowhere"), "not found", "nowhere")
    (tmp_path / "empty").mkdir()
    one_line_error(invoke(runs / "sgd", tmp_path / "empty"), "no run.h5", "empty")
    out = tmp_path / "p.png"
    result = invoke(runs / "sgd", runs / "old", "--x", "cost", "--out", out)
    one_line_error(result, "--x cost", "old", "grad_equivalents")
    assert result.stdout == "" and not out.exists()
    ok(invoke(runs / "old", "--x", "time", "--out", out))   # the other axes still work
    one_line_error(invoke(runs / "sgd", "--out", tmp_path / "no" / "p.png"), "--out", "does not exist")
    one_line_error(invoke(runs / "sgd", "--out", tmp_path / "p.jpg"), "--out", "p.jpg")
    usage = invoke(runs / "sgd", runs / "kfac", "--labels", "a,b,c")
    assert usage.exit_code == 2 and "expected 2" in usage.output
    assert invoke(runs / "sgd", "--metric", "accuracy", "--smooth", 3).exit_code == 2
