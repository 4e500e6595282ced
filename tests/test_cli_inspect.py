"""`minigrad evaluate`, `minigrad runs` and `minigrad show` (cli/inspect.py) on short digits runs:
evaluate reproduces the recorded final accuracy, runs lists the right figures and marks a
damaged run.h5 unreadable, show prints the configuration, and the error paths are one line."""
import re
import shutil

import pytest
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.runlog import read_run


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """runs/sgd (30 steps, target 0.5), runs/kfac (8 steps) and runs/broken (garbage run.h5)."""
    root = tmp_path_factory.mktemp("runs")
    ok(invoke("train", "--steps", 30, "--eval-every", 10, "--target-accuracy", 0.5,
              "--out", root / "sgd"))
    ok(invoke("train", "--steps", 8, "--optimizer", "kfac", "--batch-size", 32,
              "--out", root / "kfac"))
    shutil.copytree(root / "sgd", root / "broken")
    (root / "broken" / "run.h5").write_bytes(b"not an hdf5 file")
    return root


def test_evaluate_matches_the_accuracy_recorded_at_the_end_of_training(runs_dir):
    for name in ("sgd", "kfac"):
        recorded = read_run(str(runs_dir / name))["evals"]
        for batch_size in (1000, 7):
            out = ok(invoke("evaluate", runs_dir / name, "--batch-size", batch_size)).output
            assert len(out.strip().splitlines()) == 1
            m = re.search(r"loss ([\d.]+), accuracy ([\d.]+) \((\d+)/(\d+)\)", out)
            assert m, out
            assert int(m[3]) / int(m[4]) == recorded["test_accuracy"][-1]
            assert float(m[1]) == pytest.approx(recorded["test_loss"][-1], abs=2e-6)
    out = ok(invoke("evaluate", runs_dir / "sgd", "--split", "train")).output
    assert "train split (1437 examples)" in out


def test_runs_lists_the_runs_with_their_figures_and_marks_a_broken_one(runs_dir):
    out = ok(invoke("runs", runs_dir)).output
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["name", "dataset"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert [line.split()[0] for line in lines[1:]] == ["broken", "kfac", "sgd"]
    assert rows["broken"][-1] == "unreadable"
    for name, target in (("sgd", None), ("kfac", "-")):
        run = read_run(str(runs_dir / name))
        a, ev = run["attrs"], run["evals"]
        row = rows[name]
        assert row[1:6] == ["digits", "mlp", name, str(a["batch_size"]), str(a["steps"])]
        assert row[6] == f"{ev['train_loss'][-1]:.4f}" and row[7] == f"{ev['test_accuracy'][-1]:.4f}"
        assert row[8] == (target or str(a["target_step"]))
        assert row[9] == f"{a['wall_time']:.1f}" and row[10] == "finished"
    assert rows["sgd"][8] != "-"


def test_show_prints_config_versions_history_and_summary(runs_dir):
    out = ok(invoke("show", runs_dir / "sgd")).output
    for text in ("configuration:", "optimizer          sgd", "hidden             64,64",
                 "lr                 0.1", "versions:", "numpy", "evaluations:", "summary:",
                 "status             finished", "steps              30"):
        assert text in out, text
    history = out.split("evaluations:")[1].split("summary:")[0].strip().splitlines()
    assert [line.split()[0] for line in history[1:]] == ["10", "20", "30"]
    acc = read_run(str(runs_dir / "sgd"))["evals"]["test_accuracy"][-1]
    assert f"test accuracy      {acc:.4f}" in out
    assert "reached at step" in out


@pytest.mark.parametrize("args, message", [
    (["evaluate", "{root}/nope"], "not found"),
    (["show", "{root}/nope"], "not found"),
    (["runs", "{root}/nope"], "not found"),
    (["show", "{root}/broken"], "not a readable run log"),
    (["evaluate", "{tmp}/empty"], "no checkpoint.npz"),
    (["show", "{tmp}/empty"], "no run.h5"),
    (["evaluate", "{tmp}/badckpt"], "not a readable minigrad checkpoint"),
    (["runs", "{tmp}/empty/file"], "is not a folder"),
])
def test_missing_or_corrupt_runs_are_one_line_errors(runs_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "file").write_text("x")
    (tmp_path / "badckpt").mkdir()
    (tmp_path / "badckpt" / "checkpoint.npz").write_bytes(b"garbage")
    result = invoke(*[a.format(root=runs_dir, tmp=tmp_path) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_options_are_usage_errors(runs_dir):
    result = invoke("evaluate", runs_dir / "sgd", "--split", "valid")
    assert result.exit_code == 2 and "--split" in result.output
    result = invoke("evaluate", runs_dir / "sgd", "--batch-size", 0)
    assert result.exit_code == 2 and "--batch-size" in result.output


def test_runs_of_an_empty_folder(tmp_path):
    assert "no runs" in ok(invoke("runs", tmp_path)).output
