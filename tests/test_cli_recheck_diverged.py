"""`minigrad recheck-diverged` (cli/recheck.py): a trial the divergence rule stopped is
trained again without the rule, bit for bit the same run up to where the rule stopped it, and on
to its search's bound (or its whole budget), and the command says whether that changes a figure."""
import json
import os

import h5py
import numpy as np
from click.testing import CliRunner

from minigrad.cli import main
from minigrad.cli import recheck

COMMON = ["--hidden", "16", "--momentum", "0.9", "--batch-size", "64", "--epochs", "3",
          "--eval-every", "5", "--target-accuracy", "0.9", "--stop-at-target",
          "--diverged-after", "3", "--no-layer-stats"]


def trial(study, name, *options):
    """A study trial as the workers leave it: its run folder with the CLI's output in
    train.log."""
    out = os.path.join(study, "trials", name)
    result = CliRunner().invoke(main, ["train", *COMMON, *options, "--out", out])
    with open(os.path.join(out, "train.log"), "w") as fh:
        fh.write(result.output)
    return out


def losses(folder):
    with h5py.File(os.path.join(folder, "run.h5"), "r") as f:
        return f["steps/loss"][()]


def test_a_stopped_trial_is_rerun_bit_for_bit_to_its_search_bound(tmp_path, capsys):
    study = str(tmp_path / "study")
    best = trial(study, "sgd-b64-best", "--lr", "0.1")
    killed = trial(study, "sgd-b64-killed", "--lr", "2")
    confirm = trial(study, "sgd-b64-seed1", "--lr", "2", "--seed", "1")
    bound = recheck.outcome_of(best)[1]["steps_to_target"]
    assert bound > 0 and recheck.killed_by_rule(killed) and not recheck.killed_by_rule(best)
    stopped = len(losses(killed))
    assert stopped < bound   # the rule stopped it before the bound

    out = tmp_path / "recheck.md"
    # a study still running (no scaling.h5 yet) is rechecked as the kind given; two reruns at a
    # time, the table in the trials' order
    result = CliRunner().invoke(main, ["recheck-diverged", study, "--kind", "scaling",
                                       "--jobs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output   # neither reaches the target: nothing changes
    rerun = os.path.join(study, "rechecks", "sgd-b64-killed")
    again = losses(rerun)
    np.testing.assert_array_equal(again[:stopped], losses(killed))   # the same run, bit for bit
    assert len(again) == bound   # then on to the bound of its search (seed 0): pruned there
    # a seed other than the search's runs its whole budget (3 epochs of ceil(1437 / 64) steps)
    assert len(losses(os.path.join(study, "rechecks", "sgd-b64-seed1"))) == 3 * 23
    assert recheck.killed_by_rule(confirm)
    table = result.output
    assert f"| sgd-b64-killed | lr=2 momentum=0.9 | 0 | {stopped} | {bound} | {bound} steps, " \
        "acc" in table
    assert "| sgd-b64-seed1 | lr=2 momentum=0.9 | 1 |" in table and "| budget |" in table
    assert table.startswith("# study: the trials the divergence rule stopped")
    assert table.rstrip().endswith("2 trials stopped by the rule; 0 of them would change a figure.")
    assert out.read_text() == table   # --out holds what was printed

    # a second call reads the finished reruns instead of training them again
    mtime = os.path.getmtime(os.path.join(rerun, "run.h5"))
    again = CliRunner().invoke(main, ["recheck-diverged", study, "--kind", "scaling"])
    assert again.exit_code == 0 and again.output == table
    assert os.path.getmtime(os.path.join(rerun, "run.h5")) == mtime


def summary(study, kind, folders=None, **options):
    """The study's summary file as its command leaves it, with these options (and the trial
    folders its trial table lists)."""
    with h5py.File(os.path.join(study, kind + ".h5"), "w") as f:
        f.attrs["options"] = json.dumps(options)
        if folders is not None:
            f["trials/folder"] = [f"trials/{name}".encode() for name in folders]


def test_a_rerun_that_reaches_the_target_in_time_is_a_changed_figure(tmp_path, monkeypatch):
    """A sensitivity point the rule stopped whose rerun reaches the target: the point would
    have counted as reached, so the table says **yes** and the exit status is 3. The rerun has
    the study's BLAS threads per trial."""
    study = str(tmp_path / "study")
    trial(study, "sgd-b64-best", "--lr", "0.1")
    stopped = trial(study, "sgd-b64-other", "--lr", "0.1", "--seed", "1")
    # as if the rule had stopped it: its log's last line is the rule's
    with open(os.path.join(stopped, "train.log"), "a") as fh:
        fh.write("Error: diverged: 3 consecutive evaluations at chance (test accuracy 0.1)\n")
    summary(study, "sensitivity", seed=0, threads_per_job=2)
    envs, real = [], recheck.subprocess.run
    monkeypatch.setattr(recheck.subprocess, "run",
                        lambda *a, **k: envs.append(k["env"]) or real(*a, **k))
    result = CliRunner().invoke(main, ["recheck-diverged", study])
    assert result.exit_code == recheck.EXIT_CHANGED, result.output
    assert "| sgd-b64-other | lr=0.1 momentum=0.9 | 1 |" in result.output
    assert "| budget | target at" in result.output and "| **yes** |" in result.output
    assert result.output.rstrip().endswith("1 trials stopped by the rule; 1 of them would change "
                                           "a figure.")
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["2"]
    # a sensitivity map has no search bound: its seed-0 points run their whole budget too
    assert recheck.search_seed("sensitivity", {"seed": 0}) is None
    assert recheck.search_seed("scaling", {"seed": 3}) == 3


def test_the_study_kind_comes_from_its_summary_file_or_from_kind(tmp_path):
    study = str(tmp_path / "study")
    trial(study, "sgd-b64-best", "--lr", "0.1")
    result = CliRunner().invoke(main, ["recheck-diverged", study])
    assert result.exit_code == 1 and "the study has not ended; give --kind" in result.output
    summary(study, "scaling", seed=0)
    result = CliRunner().invoke(main, ["recheck-diverged", study, "--kind", "sensitivity"])
    assert result.exit_code == 1 and "is a scaling study" in result.output
    result = CliRunner().invoke(main, ["recheck-diverged", study, "--out",
                                       str(tmp_path / "nowhere" / "t.md")])
    assert result.exit_code == 1 and "--out" in result.output and "no folder" in result.output
    assert CliRunner().invoke(main, ["recheck-diverged", study]).exit_code == 0


def test_only_the_trials_the_summary_lists_are_the_studys(tmp_path):
    """A study folder can hold trials of an earlier form of the study (a grid since changed):
    those its summary file does not list are not its figures' and are not rerun."""
    study = str(tmp_path / "study")
    trial(study, "sgd-b64-best", "--lr", "0.1")
    trial(study, "sgd-b64-killed", "--lr", "2")
    summary(study, "scaling", folders=["sgd-b64-best"], seed=0)
    result = CliRunner().invoke(main, ["recheck-diverged", study])
    assert result.exit_code == 0 and "0 trials stopped by the rule" in result.output
    assert not os.path.exists(os.path.join(study, "rechecks"))
    summary(study, "scaling", folders=["sgd-b64-best", "sgd-b64-killed"], seed=0)
    result = CliRunner().invoke(main, ["recheck-diverged", study])
    assert result.exit_code == 0 and "1 trials stopped by the rule" in result.output


def test_a_folder_without_trials_is_one_line_naming_it(tmp_path):
    result = CliRunner().invoke(main, ["recheck-diverged", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no trials in {str(tmp_path)!r}: expected the folder of a `minigrad scaling`, "
        "`compare` or `sensitivity` study (with trials/)"]


def test_a_rerun_changes_a_figure_when_it_reaches_the_target_within_its_bound():
    assert recheck.changes(40, None) and recheck.changes(40, 40) and recheck.changes(35, 40)
    assert not recheck.changes(45, 40) and not recheck.changes(-1, 40)
    assert not recheck.changes(-1, None)


def test_the_rerun_options_are_the_run_config_without_the_rule():
    config = {"optimizer": "kfac", "model": "mlp", "lr": 0.05, "hidden": [256, 256],
              "layer_stats": False,
              "stop_at_target": True, "damping": None, "diverged_after": 3,
              "schedule_steps": 456, "steps_per_epoch": 4, "keep_checkpoints": False}
    args = recheck.train_args(config, "run")
    assert args == ["--out", "run", "--overwrite", "--hidden", "256,256", "--no-layer-stats",
                    "--lr", "0.05", "--model", "mlp", "--optimizer", "kfac", "--stop-at-target",
                    "--diverged-after", "0"]
    lenet = dict(config, model="lenet", hidden=[64, 64])   # recorded, but not an option of lenet
    assert "--hidden" not in recheck.train_args(lenet, "run")
    # resumed: the run's own options, and its bound again
    assert recheck.train_args(config, "run", "resume", "run/bound") == \
        ["--out", "run", "--prune-file", "run/bound", "--resume"]
