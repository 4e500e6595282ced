"""A study's trials through its storage (cli/study/storage.py, queue.py, workers.py): scaling's
exact early stopping (pruning.py), several worker processes sharing one study, a killed worker
whose trial another one finishes from its checkpoint, and `minigrad study-status`.

The multi-worker tests take the database from the `study_storage_url` fixture (tests/
conftest.py: SQLite in a temporary folder); a fixture of that name returning another URL runs
them against that database."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from minigrad.cli import study
from minigrad.cli.runlog import read_run
from minigrad.cli.scaling import scaling
from minigrad.cli.study import queue, storage
from minigrad.cli.study_status import study_status

TINY = ["--hidden", "16", "--budget-epochs", "3", "--evals-per-epoch", "2"]
# K-FAC's second damping cannot beat the first at either size: pruned
PRUNABLE = TINY + ["--optimizers", "sgd,kfac", "--batch-sizes", "256,512",
                   "--target-accuracy", "0.6", "--grid", "sgd.lr=0.1,0.4", "--grid",
                   "kfac.lr=0.05", "--grid", "kfac.damping=0.01,0.1"]
BEST = ("trial", "reached", "steps_to_target", "epochs_to_target", "cost_to_target", "lr",
        "momentum", "damping", "ideal_steps", "speedup", "efficiency", "steps_min", "steps_max")


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def best_table(folder):
    """{(optimizer, key): array} of scaling.h5 best/ (the figures the table and plot show)."""
    with h5py.File(os.path.join(folder, "scaling.h5")) as f:
        return {(opt, key): f[f"best/{opt}/{key}"][()] for opt in f["best"] for key in BEST}


def assert_same_best(a, b):
    ta, tb = best_table(a), best_table(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=str(key))


def trial_table(folder):
    with h5py.File(os.path.join(folder, "scaling.h5")) as f:
        g = f["trials"]
        return {k: g[k][()] for k in g}


@pytest.fixture(scope="module")
def unpruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("unpruned") / "s"
    ok(invoke(scaling, *PRUNABLE, "--no-prune", "--out", out))
    return out


# ------------------------------------------------------------------------------- pruning
def test_pruning_skips_steps_and_changes_no_reported_figure(unpruned, tmp_path):
    out = tmp_path / "s"
    result = ok(invoke(scaling, *PRUNABLE, "--out", out))
    assert_same_best(out, unpruned)
    pruned, full = trial_table(out), trial_table(unpruned)
    status = pruned["status"].astype(str)
    # one K-FAC trial at each size, and at B = 512 SGD's lr 0.1, run after lr 0.4 (best at 256)
    assert (status == "pruned").sum() == 3 and set(status) <= {"finished", "pruned", "failed"}
    assert set(full["status"].astype(str)) <= {"finished", "failed"}
    assert pruned["steps"].sum() < full["steps"].sum()   # compute saved
    for i in np.flatnonzero(status == "pruned"):
        folder = os.path.join(out, pruned["folder"][i].decode())
        bound = study.trial_result(folder)["prune_bound"]
        assert pruned["steps"][i] == bound and not pruned["reached"][i]
        # without pruning the same trial reached the target later than the bound, or never
        assert not full["reached"][i] or full["steps_to_target"][i] > bound
        assert "pruned at step" in result.output and f"cannot beat step {bound}" in result.output
    same = status != "pruned"
    for key in ("steps", "steps_to_target", "final_test_accuracy", "cost"):
        np.testing.assert_array_equal(pruned[key][same], full[key][same])


def test_a_pruned_trial_runs_to_its_end_in_a_study_that_does_not_prune(tmp_path, unpruned):
    out = tmp_path / "s"
    ok(invoke(scaling, *PRUNABLE, "--out", out))
    result = ok(invoke(scaling, *PRUNABLE, "--no-prune", "--out", out))
    assert result.output.count("done earlier") == 5   # the 3 pruned ones were continued
    np.testing.assert_array_equal(trial_table(out)["steps"], trial_table(unpruned)["steps"])
    assert_same_best(out, unpruned)


def test_a_session_starts_from_the_storages_bound_not_a_stale_file(tmp_path, unpruned):
    """A bound file left smaller than any finished trial's steps (as one whose trial folder
    was removed since can be) is rewritten from the storage when a session starts: the removed
    trial reruns to its old outcome, and no figure changes."""
    out = tmp_path / "s"
    ok(invoke(scaling, *PRUNABLE, "--out", out))
    table = trial_table(out)
    reached = np.flatnonzero(table["reached"])
    best = reached[np.argmin(table["steps_to_target"][reached])]
    folder = table["folder"][best].decode()
    bounds = os.path.join(out, ".bounds")
    stale = [os.path.join(bounds, n) for n in os.listdir(bounds)
             if open(os.path.join(bounds, n)).read().strip() == str(table["steps_to_target"][best])]
    assert stale
    shutil.rmtree(os.path.join(out, folder))
    for path in stale:   # smaller than every trial's steps to target
        with open(path, "w") as fh:
            fh.write("1\n")
    ok(invoke(scaling, *PRUNABLE, "--out", out))
    again = trial_table(out)
    assert again["status"][best] == table["status"][best]
    assert again["steps_to_target"][best] == table["steps_to_target"][best]
    assert_same_best(out, unpruned)


def test_the_trainer_prunes_only_past_the_bound_and_after_its_evaluation(tmp_path):
    from minigrad.cli.training.stopping import cannot_win
    assert not cannot_win(9, 60, 10, reached=False)
    assert cannot_win(10, 60, 10, reached=False)      # after the evaluation at 10, if any
    assert not cannot_win(10, 60, 10, reached=True)
    assert not cannot_win(60, 60, 10, reached=False)  # the last step's evaluation comes later
    assert not cannot_win(30, 60, None, reached=False)


# ------------------------------------------------------------------------ several workers
def launch(*args):
    """`minigrad scaling ARGS` in its own process."""
    return subprocess.Popen([sys.executable, "-m", "minigrad.cli", "scaling", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def runs_of(folder):
    """{trial folder name: the `minigrad train` command lines in its train.log}."""
    root = os.path.join(folder, study.TRIALS)
    return {name: [line for line in open(os.path.join(root, name, study.LOG_FILE))
                   if line.startswith("$ minigrad train")] for name in os.listdir(root)}


def ended_trials(url, folder):
    """{trial folder name: [states of its Optuna trials that ended by themselves]}."""
    opened = storage.open_storage(url, 30)
    out = {}
    for summary in optuna.get_all_study_summaries(opened):
        if not summary.study_name.startswith(os.path.basename(folder) + "/"):
            continue
        trials = optuna.load_study(study_name=summary.study_name, storage=opened).get_trials()
        for t in trials:
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
                out.setdefault(t.user_attrs[queue.TRIAL], []).append(t.state)
    return out


def test_two_workers_on_one_storage_give_the_table_of_one(unpruned, tmp_path, study_storage_url):
    out = tmp_path / "shared"
    a = launch(*PRUNABLE, "--out", out, "--storage", study_storage_url)
    b = launch(*PRUNABLE, "--out", out, "--storage", study_storage_url)
    finish(a), finish(b)
    assert_same_best(out, unpruned)
    runs = runs_of(out)
    assert len(runs) == 8 and all(len(lines) == 1 for lines in runs.values()), runs
    ended = ended_trials(study_storage_url, out)
    assert sorted(ended) == sorted(runs) and all(len(s) == 1 for s in ended.values())
    assert not (out / storage.DB_FILE).exists()   # the study went to --storage


# a few hundred steps per trial: long enough to be killed in the middle. A heartbeat of 3 s
# (stale after 12 s): short enough to keep the test quick, long enough that a live worker on a
# loaded 2-core machine is not taken for dead (which would train its trial twice)
LONG = ["--hidden", "32", "--budget-epochs", "6", "--evals-per-epoch", "1", "--optimizers",
        "sgd", "--batch-sizes", "32", "--target-accuracy", "0.999", "--grid", "sgd.lr=0.02,0.05",
        "--train-option", "checkpoint_every=10", "--heartbeat", "3"]


def kill_a_training_worker(out, timeout=120):
    """SIGKILL the process training a trial of the study in `out` once it has written a
    checkpoint; returns the trial's folder."""
    trials = out / study.TRIALS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in sorted(os.listdir(trials)) if trials.is_dir() else []:
            folder = trials / name
            try:
                status = read_run(str(folder))["attrs"]["status"]
                pid = json.loads((folder / "process.json").read_text())["pid"]
            except (OSError, KeyError, ValueError):   # not written yet
                continue
            if status == "running" and (folder / "checkpoint.npz").exists():
                os.kill(pid, signal.SIGKILL)
                return folder
        time.sleep(0.02)
    raise AssertionError("no trial was seen training")


def test_a_killed_workers_trial_is_finished_by_another_from_its_checkpoint(
        tmp_path, study_storage_url):
    reference = tmp_path / "reference"
    ok(invoke(scaling, *LONG, "--out", reference))
    out = tmp_path / "shared"
    a = launch(*LONG, "--out", out, "--storage", study_storage_url)
    b = launch(*LONG, "--out", out, "--storage", study_storage_url)
    killed = kill_a_training_worker(out)
    outputs = finish(a) + finish(b)
    assert "died (signal SIGKILL)" in outputs
    runs = runs_of(out)
    assert len(runs) == 2
    assert any("--resume" in line for line in runs[killed.name][1:]), runs[killed.name]
    for name, lines in runs.items():
        log = open(os.path.join(out, study.TRIALS, name, study.LOG_FILE)).read()
        assert log.count("\ndone: ") == 1, log   # trained to its end once
        a_run, b_run = read_run(str(out / study.TRIALS / name)), read_run(
            str(reference / study.TRIALS / name))
        assert a_run["attrs"]["status"] == "finished"
        np.testing.assert_array_equal(a_run["steps"]["loss"], b_run["steps"]["loss"])
    ended = ended_trials(study_storage_url, out)
    assert sorted(ended) == sorted(runs) and all(len(s) == 1 for s in ended.values())
    assert_same_best(out, reference)


# ---------------------------------------------------------------------------- study-status
def test_study_status_counts_the_trials_of_each_search(unpruned, tmp_path):
    out = tmp_path / "s"
    ok(invoke(scaling, *PRUNABLE, "--out", out))
    result = ok(invoke(study_status, out))
    lines = {tuple(line.split()[:3]): line.split() for line in result.output.splitlines()[1:]}
    assert lines[("scaling", "kfac", "256")][3:8] == ["0", "0", "1", "1", "0"]
    assert lines[("scaling", "sgd", "256")][3:8] == ["0", "0", "2", "0", "0"]
    assert "best" in result.output.splitlines()[0]


@pytest.mark.parametrize("args, words", [
    (["nowhere"], "no study"),
    (["{tmp}", "--storage", "nosuchdb://x"], "--storage nosuchdb://x"),
])
def test_study_status_errors_are_one_line(tmp_path, args, words):
    result = invoke(study_status, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0 and words in result.output and "Traceback" not in result.output


def test_study_status_leaves_an_empty_database_empty(study_storage_url, tmp_path):
    import sqlalchemy
    sqlite = study_storage_url.startswith("sqlite")
    if sqlite:   # an existing, empty SQLite file (a file that does not exist stays absent)
        missing = tmp_path / "missing.db"
        result = invoke(study_status, tmp_path, "--storage", f"sqlite:///{missing}")
        assert result.exit_code == 1 and "no Optuna tables" in result.output
        assert not missing.exists()
        open(study_storage_url[len("sqlite:///"):], "wb").close()
    result = invoke(study_status, tmp_path, "--storage", study_storage_url)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"no study in --storage {study_storage_url}: it has no Optuna tables" in result.output
    engine = sqlalchemy.create_engine(study_storage_url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    if sqlite:   # the study folder's own database, empty: named as the folder's
        empty = tmp_path / "study"
        empty.mkdir()
        (empty / "optuna.db").write_bytes(b"")
        result = invoke(study_status, empty)
        assert result.exit_code == 1 and f"no study in {str(empty)!r}: its optuna.db has no " \
            "Optuna tables" in result.output
        assert (empty / "optuna.db").stat().st_size == 0


# ------------------------------------------------------------------------------------ TPE
def test_tpe_draws_the_same_trials_whatever_the_number_of_workers(tmp_path):
    from minigrad.cli.compare import compare
    args = TINY + ["--optimizers", "sgd", "--batch-size", "512", "--target-accuracy", "0.6",
                   "--search", "tpe", "--trials", "3"]
    one = ok(invoke(compare, *args, "--jobs", 1, "--out", tmp_path / "one"))
    ok(invoke(compare, *args, "--jobs", 2, "--out", tmp_path / "two"))
    names = sorted(os.listdir(tmp_path / "one" / study.TRIALS))
    assert len(names) == 3 and names == sorted(os.listdir(tmp_path / "two" / study.TRIALS))
    assert one.output.count("sgd   B=512") == 3
    with h5py.File(tmp_path / "one" / "compare.h5") as f:
        assert len(set(f["trials/lr"][()])) == 3   # three points drawn
    assert "--seeds" in invoke(compare, *args, "--seeds", 2, "--out", tmp_path / "x").output
