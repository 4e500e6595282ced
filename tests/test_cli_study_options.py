"""What a study can vary and fix: --train-option reaches each trial's `minigrad train`, the
evaluation interval and the budget per batch size, the trials' defaults (--diverged-after,
no layer statistics); and the train options behind them: the diverged-at-chance rule, the cost
of the true Fisher's extra backward pass, --no-layer-stats."""
import json
import math
import os

import h5py
import numpy as np
import click
import pytest
from click.testing import CliRunner
from minigrad.cli import cost, study
from minigrad.cli import main
from minigrad.cli.runlog import read_run
from minigrad.cli.scaling import scaling

N_TRAIN, CLASSES = 1437, 10   # digits


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def trial_configs(root):
    """[config of each trial's run.h5], read with h5py."""
    folder = os.path.join(root, study.TRIALS)
    out = []
    for name in sorted(os.listdir(folder)):
        with h5py.File(os.path.join(folder, name, "run.h5")) as f:
            out.append(dict(json.loads(f.attrs["config"]), has_layers="layers" in f))
    return out


# ------------------------------------------------------------------------- study options
def test_train_options_eval_interval_and_budget_reach_every_trial(tmp_path):
    out = tmp_path / "s"
    ok(invoke(scaling, "--optimizers", "sgd,kfac", "--batch-sizes", "256,512", "--hidden", "8",
              "--target-accuracy", "0.99", "--grid", "sgd.lr=0.1", "--grid", "kfac.lr=0.05",
              "--grid", "kfac.damping=0.1", "--budget-epochs", "256=1,512=2",
              "--eval-every", "256=2,512=3", "--train-option", "kfac.damping_form=eigen",
              "--train-option", "kfac.factor-init=identity", "--train-option", "kfac.momentum=0.5",
              "--train-option", "warmup_steps=2", "--out", out))
    configs = trial_configs(out)
    assert len(configs) == 4
    for c in configs:
        b, kfac = c["batch_size"], c["optimizer"] == "kfac"
        assert c["eval_every"] == {256: 2, 512: 3}[b]
        assert c["epochs"] == {256: 1, 512: 2}[b]
        assert c["warmup_steps"] == 2                                # every optimizer
        assert c["momentum"] == (0.5 if kfac else 0.9)               # (sgd's: its grid's)
        assert c["damping_form"] == ("eigen" if kfac else None)     # kfac's only
        assert c["factor_init"] == ("identity" if kfac else None)
        assert c["diverged_after"] == study.TRIAL_DEFAULTS["diverged_after"] == 3
        assert c["layer_stats"] is False and not c["has_layers"]
    for name in os.listdir(out / study.TRIALS):
        run = read_run(str(out / study.TRIALS / name))
        config = json.loads(run["attrs"]["config"])
        total = config["epochs"] * math.ceil(N_TRAIN / config["batch_size"])
        every = config["eval_every"]
        expected = list(range(every, total, every)) + [total]
        np.testing.assert_array_equal(run["evals"]["step"], expected)
    with h5py.File(out / "scaling.h5") as f:
        options = json.loads(f.attrs["options"])
    assert options["budget_epochs"] == {"256": 1, "512": 2}
    assert options["train_options"] == ["kfac.damping_form=eigen", "kfac.factor-init=identity",
                                        "kfac.momentum=0.5", "warmup_steps=2"]


def test_layer_statistics_can_be_turned_back_on_for_a_study(tmp_path):
    out = tmp_path / "s"
    ok(invoke(scaling, "--optimizers", "sgd", "--batch-sizes", "512", "--hidden", "8",
              "--target-accuracy", "0.99", "--grid", "sgd.lr=0.1", "--budget-epochs", "1",
              "--train-option", "layer_stats=true", "--train-option", "diverged_after=0",
              "--out", out))
    (config,) = trial_configs(out)
    assert config["layer_stats"] is True and config["has_layers"] and config["diverged_after"] == 0


@pytest.mark.parametrize("entry, words", [
    ("damping_form", "expected [OPTIMIZER.]NAME=VALUE"),
    ("adam.lr=0.1", "expected [OPTIMIZER.]NAME=VALUE"),
    ("nonsense=1", "nonsense is not a `minigrad train` option"),
    ("batch_size=64", "batch-size is set by the study"),
    ("eval-every=3", "eval-every is set by the study"),
    ("kfac.damping_form=cubic", "'cubic' is not one of 'factored', 'eigen'"),
    ("kfac.cov_update_every=0", "0 is not in the range x>=1"),
    ("layer_stats=maybe", "'maybe' is not a valid boolean"),
    ("sgd.damping_form=eigen", "damping-form applies to kfac only, not sgd"),
    ("radius=2", "radius applies to trcg, strcg only, none of the studied optimizers (sgd, kfac)"),
    ("trcg.radius=2", "trcg is not in --optimizers"),
    ("kfac.damping=0.1", "damping is a search axis of kfac; fix it with --grid kfac.damping=VALUE"),
    ("lr=0.1", "lr is a search axis of sgd"),
])
def test_bad_train_options_are_usage_errors_naming_the_entry(tmp_path, entry, words):
    result = invoke(scaling, "--optimizers", "sgd,kfac", "--batch-sizes", "256",
                    "--target-accuracy", "0.9", "--train-option", entry, "--out", tmp_path / "s")
    assert result.exit_code == 2, result.output
    assert f"--train-option {entry!r}" in result.output and words in result.output
    assert not (tmp_path / "s").exists()


def test_schedule_options_reach_sgd_and_kfac_trials_only():
    """--lr's schedule (schedule, warmup_steps, warmup_epochs) is an sgd and kfac option: a
    study passes it to their trials, scoped to another optimizer it is refused, and given to all
    it skips the trust-region ones (whose train would refuse it)."""
    from minigrad.cli.study.trials import fixed_train_options, train_args
    fixed = fixed_train_options(["warmup_epochs=5"], ["sgd", "trcg"])
    assert fixed["sgd"]["warmup_epochs"] == 5.0 and "warmup_epochs" not in fixed["trcg"]
    with pytest.raises(click.UsageError, match="warmup-epochs applies to sgd, kfac only, not trcg"):
        fixed_train_options(["trcg.warmup_epochs=5"], ["trcg"])
    spec = {"optimizer": "sgd", "batch_size": 64, "lr": 0.1, **fixed["sgd"]}
    args = train_args(spec, "out", "new")
    assert args[args.index("--warmup-epochs") + 1] == "5.0"


@pytest.mark.parametrize("args, words", [
    (["--budget-epochs", "256=2"], "--budget-epochs gives no value for batch size 512 (it has 256)"),
    (["--eval-every", "512=4"], "--eval-every gives no value for batch size 256 (it has 512)"),
    (["--eval-every", "256=0,512=1"], "expected a positive int K, or B1=K1,B2=K2"),
    (["--budget-epochs", "many"], "expected a positive int K, or B1=K1,B2=K2"),
])
def test_per_batch_size_values_must_cover_every_batch_size(tmp_path, args, words):
    result = invoke(scaling, "--optimizers", "sgd", "--batch-sizes", "256,512",
                    "--target-accuracy", "0.9", *args, "--out", tmp_path / "s")
    assert result.exit_code == 2 and words in result.output, result.output


# --------------------------------------------------------------------- the train options
def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def test_a_run_stuck_at_chance_ends_as_diverged_by_the_stated_rule(tmp_path):
    """lr 5 blows the MLP up to a finite loss at chance. The run must end at the first
    evaluation that completes 3 consecutive evaluations at chance counted from the end of the
    first epoch (accuracy <= 1/C + 0.02 and train loss >= 0.99 ln C) once it has left its
    start (a train loss outside [0.99, 1.02] ln C at an evaluation so far), recomputed here
    from the evaluations it logged."""
    out = tmp_path / "blown"
    result = train("--lr", 5, "--epochs", 6, "--eval-every", 5, "--diverged-after", 3,
                   "--out", out)
    assert result.exit_code == 1 and "diverged: 3 consecutive evaluations at chance" in result.output
    run = read_run(str(out))
    ev = run["evals"]
    assert run["attrs"]["status"] == "failed"
    per_epoch = math.ceil(N_TRAIN / 64)
    low, high = 0.99 * math.log(CLASSES), 1.02 * math.log(CLASSES)
    left = np.maximum.accumulate([not low <= loss <= high for loss in ev["train_loss"]])
    chance = [(s >= per_epoch and a <= 1 / CLASSES + 0.02 and not loss < 0.99 * math.log(CLASSES)
               and gone) for s, a, loss, gone in zip(ev["step"], ev["test_accuracy"],
                                                      ev["train_loss"], left)]
    assert chance[-3:] == [True] * 3 and not all(chance[-4:])   # stopped at the first such run
    assert run["attrs"]["steps"] == ev["step"][-1] < 6 * per_epoch
    assert all(np.isfinite(run["steps"]["loss"]))                # not a non-finite loss


def test_diverged_epochs_makes_the_rule_wait_that_many_epochs_at_chance(tmp_path):
    """The same blown-up run with --diverged-epochs 2: it ends at the first evaluation that
    completes 3 or more evaluations at chance in a row whose first is 2 epochs (46 steps) or
    more before it, recomputed from its evaluations; without it, 3 evaluations (10 steps)."""
    out = tmp_path / "blown"
    result = train("--lr", 5, "--epochs", 12, "--eval-every", 5, "--diverged-after", 3,
                   "--diverged-epochs", 2, "--out", out)
    per_epoch = math.ceil(N_TRAIN / 64)
    assert result.exit_code == 1, result.output
    run = read_run(str(out))
    ev = run["evals"]
    low, high = 0.99 * math.log(CLASSES), 1.02 * math.log(CLASSES)
    left = np.maximum.accumulate([not low <= loss <= high for loss in ev["train_loss"]])
    chance = [(s >= per_epoch and a <= 1 / CLASSES + 0.02 and not loss < low and gone)
              for s, a, loss, gone in zip(ev["step"], ev["test_accuracy"], ev["train_loss"], left)]
    first = len(chance) - chance[::-1].index(False) if False in chance else 0   # streak start
    span = ev["step"][-1] - ev["step"][first]
    assert all(chance[first:]) and span >= 2 * per_epoch and len(chance) - first >= 3
    assert span - 5 < 2 * per_epoch                  # the evaluation before would not do
    assert f"consecutive evaluations at chance over {span} steps" in result.output
    quick = train("--lr", 5, "--epochs", 12, "--eval-every", 5, "--diverged-after", 3,
                  "--out", tmp_path / "quick")
    assert read_run(str(tmp_path / "quick"))["attrs"]["steps"] < run["attrs"]["steps"]
    assert "over" not in quick.output.splitlines()[-1]   # the message as before


def test_a_run_still_on_its_starting_plateau_is_slow_not_diverged(tmp_path):
    """lr 1e-7 leaves the MLP where it started (seed 1: test accuracy 0.078, the loss at ln C):
    every evaluation after the first epoch is at chance, but the run never left its start, so
    it runs its whole budget instead of ending as diverged."""
    out = tmp_path / "slow"
    ok(train("--lr", 1e-7, "--seed", 1, "--epochs", 6, "--eval-every", 5, "--diverged-after", 3,
             "--out", out))
    run = read_run(str(out))
    ev, per_epoch = run["evals"], math.ceil(N_TRAIN / 64)
    chance = [s >= per_epoch and a <= 1 / CLASSES + 0.02 and loss >= 0.99 * math.log(CLASSES)
              for s, a, loss in zip(ev["step"], ev["test_accuracy"], ev["train_loss"])]
    assert sum(chance) >= 10 and all(chance[-3:])             # the old rule would have stopped it
    assert 0.99 * math.log(CLASSES) <= min(ev["train_loss"])       # never left its start
    assert max(ev["train_loss"]) <= 1.02 * math.log(CLASSES)
    assert run["attrs"]["status"] == "finished" and run["attrs"]["steps"] == 6 * per_epoch


def test_a_learning_run_is_never_stopped_by_the_rule(tmp_path):
    out = tmp_path / "fine"
    ok(train("--epochs", 2, "--eval-every", 5, "--diverged-after", 1, "--out", out))
    assert read_run(str(out))["attrs"]["status"] == "finished"


def test_the_true_fisher_costs_its_extra_backward_on_factor_update_steps(tmp_path):
    out = tmp_path / "true"
    ok(train("--optimizer", "kfac", "--fisher", "true", "--cov-update-every", 2, "--steps", 5,
             "--out", out))
    expected = [1 + cost.BACKWARD if step % 2 == 0 else 1.0 for step in range(5)]
    np.testing.assert_allclose(read_run(str(out))["steps"]["grad_equivalents"], expected)
    assert cost.BACKWARD == pytest.approx(2 / 3)
    assert cost.step_cost("kfac", {"sampled_backward": False}, 64) == {"grad_equivalents": 1.0}


def test_no_layer_stats_logs_none_and_trains_the_same(tmp_path):
    ok(train("--steps", 6, "--eval-every", 3, "--out", tmp_path / "on"))
    ok(train("--steps", 6, "--eval-every", 3, "--no-layer-stats", "--out", tmp_path / "off"))
    on, off = read_run(str(tmp_path / "on")), read_run(str(tmp_path / "off"))
    assert on["layers"] and not off["layers"]
    np.testing.assert_array_equal(on["steps"]["loss"], off["steps"]["loss"])


def test_confirm_seeds_retrain_the_chosen_setting_and_report_its_seed_mean(tmp_path):
    """--confirm-seeds 3: the search (seed 0) picks each batch size's setting; that setting is
    trained with seeds 1 and 2 too, and the curve shows the mean and spread of the three runs'
    steps to target, read here from each run's own run.h5."""
    out = tmp_path / "s"
    ok(invoke(scaling, "--optimizers", "sgd", "--batch-sizes", "256,512", "--hidden", "16",
              "--target-accuracy", "0.6", "--grid", "sgd.lr=0.05,0.2", "--budget-epochs", "6",
              "--eval-every", "1", "--confirm-seeds", "3", "--out", out))
    runs = {}
    for name in os.listdir(out / study.TRIALS):
        run = read_run(str(out / study.TRIALS / name))
        config = json.loads(run["attrs"]["config"])
        at = run["attrs"]["target_step"]
        runs[(config["batch_size"], config["lr"], config["seed"])] = None if at < 0 else int(at)
    with h5py.File(out / "scaling.h5") as f:
        g = f["best/sgd"]
        seeds, lrs = f["trials/seed"][()], f["trials/lr"][()]
        for k, b in enumerate((256, 512)):
            search = {lr: runs[(b, lr, 0)] for (bb, lr, seed) in runs if bb == b and seed == 0}
            reached = {lr: s for lr, s in search.items() if s is not None}
            fewest = min(reached.values())
            (lr,) = [v for v, steps in reached.items() if steps == fewest]   # no tie to break
            assert lrs[g["trial"][k]] == lr and seeds[g["trial"][k]] == 0
            three = [runs[(b, lr, seed)] for seed in (0, 1, 2)]
            assert g["reached"][k] and all(s is not None for s in three)
            assert g["steps_to_target"][k] == pytest.approx(np.mean(three))
            assert (g["steps_min"][k], g["steps_max"][k]) == (min(three), max(three))
        # the other setting is not retrained
        assert sorted(seeds.tolist()).count(0) == 4 and len(seeds) == 4 + 2 * 2


def test_confirm_seeds_skip_a_batch_size_whose_best_setting_missed_the_target(tmp_path):
    """Where no setting reaches the target the point is not reached whatever the other seeds
    do: no trial with another seed is run for it, and its point is the search's own trial."""
    out = tmp_path / "s"
    ok(invoke(scaling, "--optimizers", "sgd", "--batch-sizes", "256,1024", "--hidden", "16",
              "--target-accuracy", "0.8", "--grid", "sgd.lr=0.05,0.2", "--budget-epochs",
              "256=6,1024=1", "--eval-every", "1", "--confirm-seeds", "3", "--out", out))
    with h5py.File(out / "scaling.h5") as f:
        g = f["best/sgd"]
        assert g["reached"][()].tolist() == [True, False]
        seeds, sizes = f["trials/seed"][()], f["trials/batch_size"][()]
        assert sorted(seeds[sizes == 256].tolist()) == [0, 0, 1, 2]
        assert seeds[sizes == 1024].tolist() == [0, 0]
        assert seeds[g["trial"][1]] == 0 and sizes[g["trial"][1]] == 1024


def test_left_start_is_a_training_loss_outside_the_band_around_ln_c():
    from minigrad.cli.training.stopping import left_start

    ln10 = math.log(10)
    assert not left_start([2.31, 2.30, 0.995 * ln10, 1.015 * ln10], 10)   # on the plateau
    assert left_start([2.30, 0.98 * ln10], 10)                           # it learned
    assert left_start([2.30, 1.03 * ln10], 10) and left_start([math.inf], 10)   # it went up
    assert not left_start([math.nan, 2.30], 10)    # no step before the evaluation: no news
