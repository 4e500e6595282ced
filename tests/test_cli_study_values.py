"""The values the study commands report, against each trial's own run.h5 read with h5py.

`minigrad sensitivity` and `minigrad compare` on digits with tiny grids (2 epochs of a 64-16-10
MLP). Every reference is recomputed here from the trial files: the steps to the target are the
first evaluation step (evals/step) whose evals/test_accuracy is at or above the target, the
epochs those over ceil(n / B), the cost the sum of steps/grad_equivalents up to that step, the
final figures the last evaluation's. The grids hold settings that reach the target and
settings that cannot (an lr of 0.002, a trust radius of 0.001), so both branches are checked.
"""
import json
import math
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minigrad.cli import plotting
from minigrad.cli.compare import compare
from minigrad.cli.sensitivity import sensitivity

N_TRAIN = 1437   # digits' training split
TINY = ["--hidden", "16", "--budget-epochs", "2", "--evals-per-epoch", "3", "--jobs", "2"]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """The pictures are tested in test_cli_study.py; here they would only take time."""
    monkeypatch.setattr(plotting, "pyplot", lambda: None)


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def text(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def trial(root, folder):
    """What the trial's run.h5 says, with the figures a study reports recomputed from it."""
    with h5py.File(os.path.join(root, folder, "run.h5"), "r") as f:
        config = json.loads(f.attrs["config"])
        step = f["evals/step"][()]
        accuracy = f["evals/test_accuracy"][()]
        train_loss = f["evals/train_loss"][()]
        cost = f["steps/grad_equivalents"][()]
        steps = int(f.attrs["steps"])
    target = config["target_accuracy"]
    hits = np.flatnonzero(accuracy >= target)
    per_epoch = math.ceil(N_TRAIN / config["batch_size"])
    at = int(step[hits[0]]) if len(hits) else None
    return {"config": config, "reached": at is not None, "steps_to_target": at,
            "epochs_to_target": np.nan if at is None else at / per_epoch,
            "cost_to_target": np.nan if at is None else float(cost[:at].sum()),
            "final_test_accuracy": float(accuracy[-1]), "final_train_loss": float(train_loss[-1]),
            "steps": steps, "budget": 2 * per_epoch}


# ----------------------------------------------------------------------------- sensitivity
SGD_LR, SGD_MOMENTUM = [0.002, 0.4], [0.0, 0.9]
TRCG_RADIUS, TRCG_FRACTION = [0.001, 1.0], [0.1]
SIZES = [256, 512]


def test_every_sensitivity_map_cell_is_its_trials_outcome(tmp_path):
    out = tmp_path / "sens"
    ok(CliRunner().invoke(sensitivity, TINY + [
        "--optimizers", "sgd,trcg", "--batch-sizes", "256,512", "--target-accuracy", "0.55",
        "--grid", "sgd.lr=0.002,0.4", "--grid", "sgd.momentum=0,0.9",
        "--grid", "trcg.radius=0.001,1", "--grid", "trcg.hessian_fraction=0.1",
        "--out", str(out)]))
    expected_axes = {"sgd": (SGD_LR, SGD_MOMENTUM), "trcg": (TRCG_RADIUS, TRCG_FRACTION)}
    outcomes = []
    with h5py.File(out / "sensitivity.h5", "r") as f:
        folders = text(f["trials/folder"][()])
        assert len(folders) == len(SIZES) * (4 + 2)
        for opt, (rows, cols) in expected_axes.items():
            g = f[f"maps/{opt}"]
            names = (g.attrs["rows"], g.attrs["columns"])
            np.testing.assert_array_equal(g[names[0]][()], rows)
            np.testing.assert_array_equal(g[names[1]][()], cols)
            np.testing.assert_array_equal(g["batch_size"][()], SIZES)
            shape = (len(SIZES), len(rows), len(cols))
            maps = {k: g[k][()] for k in ("trial", "reached", "steps_to_target",
                                          "epochs_to_target", "final_test_accuracy",
                                          "final_train_loss")}
            assert all(m.shape == shape for m in maps.values())
            # each trial of the optimizer sits in exactly one cell
            mine = [i for i, name in enumerate(folders) if name.startswith(f"trials/{opt}-")]
            assert sorted(maps["trial"].reshape(-1)) == mine
            for (b, r, c), index in np.ndenumerate(maps["trial"]):
                t = trial(out, folders[index])
                config = t["config"]
                # the cell's trial has the cell's settings (lr given at B0 = 256, sqrt scaling)
                assert config["optimizer"] == opt and config["batch_size"] == SIZES[b]
                factor = math.sqrt(SIZES[b] / 256) if names[0] == "lr" else 1.0
                assert config[names[0]] == pytest.approx(rows[r] * factor, rel=1e-12)
                assert config[names[1]] == cols[c]
                assert not config["stop_at_target"] and t["steps"] == t["budget"]
                cell = (b, r, c)
                assert bool(maps["reached"][cell]) == t["reached"], (opt, cell)
                if t["reached"]:
                    assert maps["steps_to_target"][cell] == t["steps_to_target"], (opt, cell)
                    assert maps["epochs_to_target"][cell] == pytest.approx(
                        t["epochs_to_target"], rel=1e-12)
                else:
                    assert np.isnan(maps["steps_to_target"][cell]), (opt, cell)
                    assert np.isnan(maps["epochs_to_target"][cell]), (opt, cell)
                assert maps["final_test_accuracy"][cell] == t["final_test_accuracy"]
                assert maps["final_train_loss"][cell] == t["final_train_loss"]
                outcomes.append((opt, t["reached"], t["steps_to_target"], t["budget"]))
            np.testing.assert_allclose(g["fraction_reached"][()],
                                       maps["reached"].reshape(len(SIZES), -1).mean(axis=1))
    # both branches were exercised, for each optimizer, and a target reached before the end of
    # the budget (so a map holding the budget instead of the steps to target would differ)
    for opt in expected_axes:
        assert {reached for o, reached, _, _ in outcomes if o == opt} == {True, False}, outcomes
        assert any(o == opt and reached and at < budget
                   for o, reached, at, budget in outcomes), outcomes


# --------------------------------------------------------------------------------- compare
def best_of(outcomes):
    """The index cli/study/results.py (best_index) documents as best: among the trials that reached the target the
    fewest steps, then the lowest cost to it, then the best final test accuracy, then the first;
    if none reached, the best final test accuracy, then the lowest final train loss."""
    reached = [i for i, t in enumerate(outcomes) if t["reached"]]
    if reached:
        return min(reached, key=lambda i: (outcomes[i]["steps_to_target"],
                                           outcomes[i]["cost_to_target"],
                                           -outcomes[i]["final_test_accuracy"], i))
    return min(range(len(outcomes)), key=lambda i: (-outcomes[i]["final_test_accuracy"],
                                                    outcomes[i]["final_train_loss"], i))


def test_compare_picks_the_best_of_several_trials(tmp_path):
    """lr 0.002 cannot reach the target, 3 is too large; 0.4 and 1 both reach it at the same
    evaluation, with the same cost, so the final test accuracy decides: the best is neither the
    first nor the last trial, nor the first with the fewest steps."""
    out = tmp_path / "cmp"
    ok(CliRunner().invoke(compare, TINY + [
        "--optimizers", "sgd", "--batch-size", "256", "--target-accuracy", "0.55",
        "--grid", "sgd.lr=0.002,0.4,1,3", "--out", str(out)]))
    with h5py.File(out / "compare.h5", "r") as f:
        folders = text(f["trials/folder"][()])
        outcomes = [trial(out, name) for name in folders]
        assert [t["config"]["lr"] for t in outcomes] == [0.002, 0.4, 1.0, 3.0]
        assert any(t["reached"] for t in outcomes) and not all(t["reached"] for t in outcomes)
        best = best_of(outcomes)
        fewest = min(t["steps_to_target"] for t in outcomes if t["reached"])
        first_fewest = next(i for i, t in enumerate(outcomes) if t["steps_to_target"] == fewest)
        assert best not in (0, len(outcomes) - 1, first_fewest)   # the premise of this test
        assert text(f["best/optimizer"][()]) == ["sgd"]
        assert f["best/trial"][0] == best
        t = outcomes[best]
        assert f["best/lr"][0] == t["config"]["lr"]
        assert bool(f["best/reached"][0]) and f["best/steps_to_target"][0] == t["steps_to_target"]
        assert f["best/epochs_to_target"][0] == pytest.approx(t["epochs_to_target"], rel=1e-12)
        assert f["best/cost_to_target"][0] == pytest.approx(t["cost_to_target"], rel=1e-12)
        assert f["best/final_test_accuracy"][0] == t["final_test_accuracy"]
        assert f["best/final_train_loss"][0] == t["final_train_loss"]
        # the trial table agrees with the files too
        np.testing.assert_array_equal(f["trials/reached"][()], [t["reached"] for t in outcomes])
        np.testing.assert_array_equal(f["trials/steps_to_target"][()],
                                      [-1 if t["steps_to_target"] is None else t["steps_to_target"]
                                       for t in outcomes])


# ------------------------------------------------------------------- best_index's rule, cell by cell
def outcome(reached, steps=None, cost=float("nan"), acc=float("nan"), loss=float("nan")):
    return {"reached": reached, "steps_to_target": steps, "cost_to_target": cost,
            "final_test_accuracy": acc, "final_train_loss": loss}


@pytest.mark.parametrize("trials, best", [
    # fewest steps to the target wins, whatever the order
    ([outcome(True, 30, 30), outcome(True, 20, 40), outcome(False, acc=0.99)], 1),
    # equal steps: the lower cost
    ([outcome(True, 20, 50, 0.9), outcome(True, 20, 40, 0.8)], 1),
    # equal steps and cost: the better final accuracy; a nan cost counts as the worst
    ([outcome(True, 20, 40, 0.8), outcome(True, 20, 40, 0.9), outcome(True, 20, acc=0.99)], 1),
    # a full tie: the first trial
    ([outcome(True, 20, 40, 0.9), outcome(True, 20, 40, 0.9)], 0),
    # nobody reached: the best final accuracy (not the worst), then the lower train loss
    ([outcome(False, acc=0.5, loss=1.0), outcome(False, acc=0.7, loss=2.0),
      outcome(False, acc=0.6, loss=0.1)], 1),
    ([outcome(False, acc=0.7, loss=2.0), outcome(False, acc=0.7, loss=1.0)], 1),
    # nan (a diverged trial) never wins while a number is there
    ([outcome(False, acc=float("nan"), loss=0.1), outcome(False, acc=0.2, loss=3.0)], 1),
    ([], None),
])
def test_best_index_applies_its_documented_order(trials, best):
    from minigrad.cli.study import best_index
    assert best_index(trials) == best


def test_aggregate_keeps_the_first_seeds_trial_and_marks_a_diverged_seed():
    from minigrad.cli.study import aggregate

    def spec(lr, seed):
        return {"optimizer": "sgd", "batch_size": 64, "lr": lr, "seed": seed}

    def result(folder, reached, steps, status="finished", acc=0.9):
        return {"folder": folder, "status": status, "reached": reached,
                "steps_to_target": steps if reached else None, "final_test_accuracy": acc,
                **{k: float(steps or 0) for k in ("epochs_to_target", "wall_to_target",
                                                   "cost_to_target", "steps", "epochs",
                                                   "wall_time", "cost", "curvature_products",
                                                   "cg_iterations", "final_train_loss",
                                                   "final_train_split_loss", "final_test_loss")}}
    specs = [spec(0.1, 0), spec(0.2, 0), spec(0.1, 1), spec(0.2, 1)]
    results = [result("a0", True, 10), result("b0", True, 20, acc=0.8), result("a1", True, 14),
               result("b1", False, None, status="failed", acc=float("nan"))]
    settings, merged = aggregate(specs, results)
    assert [s["lr"] for s in settings] == [0.1, 0.2] and [s["seed"] for s in settings] == [0, 0]
    a, b = merged
    assert (a["folder"], a["trial"], a["seeds"], a["status"]) == ("a0", 0, 2, "finished")
    assert a["reached"] and a["steps_to_target"] == 12.0 and (a["steps_min"], a["steps_max"]) == (10, 14)
    assert a["reached_fraction"] == 1.0 and a["epochs"] == 12.0
    assert (b["folder"], b["trial"], b["status"], b["reached"]) == ("b0", 1, "failed", False)
    assert b["reached_fraction"] == 0.5 and b["steps_to_target"] is None
    assert (b["steps_min"], b["steps_max"]) == (20, 20)


def test_trial_result_totals_come_from_the_run_file(tmp_path):
    """steps, epochs (= steps / steps_per_epoch) and wall_time (the sum of steps/step_time)
    of a finished run, recomputed from its run.h5 with h5py."""
    from minigrad.cli import main
    from minigrad.cli.study import trial_result
    out = tmp_path / "run"
    ok(CliRunner().invoke(main, ["train", "--hidden", "8", "--steps", "30", "--batch-size", "128",
                                 "--target-accuracy", "0.5", "--out", str(out)]))
    r = trial_result(str(out))
    with h5py.File(out / "run.h5") as f:
        config = json.loads(f.attrs["config"])
        step_time = f["steps/step_time"][()]
        target = int(f.attrs["target_step"])
    assert r["steps"] == 30 == len(step_time)
    assert r["epochs"] == pytest.approx(30 / config["steps_per_epoch"]) and config["steps_per_epoch"] == 12
    assert r["wall_time"] == pytest.approx(step_time.sum())
    assert r["reached"] and r["steps_to_target"] == target
    assert r["wall_to_target"] == pytest.approx(step_time[:target].sum())


def test_sensitivity_maps_place_each_trial_by_its_unscaled_lr():
    """lr 0.3 and 0.4 at B0 = 256 are 0.6 and 0.8 at B = 1024 (sqrt rule, factor 2): each trial
    lands in its own row, at every batch size (matching the scaled values to the grid would put
    both large-batch trials in the 0.4 row)."""
    from minigrad.cli.sensitivity import maps
    sizes, factors = [256, 1024], {256: 1.0, 1024: 2.0}
    specs, results = [], []
    for b in sizes:
        for lr in (0.3, 0.4):
            specs.append({"optimizer": "sgd", "batch_size": b, "lr": lr * factors[b],
                          "momentum": 0.9})
            results.append({"reached": True, "steps_to_target": 100 * lr * b,
                            "epochs_to_target": 1.0, "final_test_accuracy": lr,
                            "final_train_loss": 1.0})
    m = maps(specs, results, "sgd", sizes, {"lr": [0.3, 0.4], "momentum": [0.9]},
             ("lr", "momentum"), factors)
    np.testing.assert_array_equal(m["trial"][:, :, 0], [[0, 1], [2, 3]])
    np.testing.assert_allclose(m["final_test_accuracy"][:, :, 0], [[0.3, 0.4], [0.3, 0.4]])
    np.testing.assert_array_equal(m["fraction_reached"], [1.0, 1.0])


def test_the_median_final_accuracy_counts_a_point_without_one_as_the_lowest():
    """A run ended by a non-finite loss has no accuracy (nan): it counts below every accuracy,
    so a grid most of whose points blew up does not report the median of its survivors."""
    from minigrad.cli.sensitivity import median_accuracy

    nan = float("nan")
    assert median_accuracy(np.array([nan, nan, 0.1, 0.85, 0.86])) == 0.1
    assert median_accuracy(np.array([0.2, 0.4, nan])) == 0.2
    assert median_accuracy(np.array([0.2, 0.4])) == pytest.approx(0.3)
    assert median_accuracy(np.array([nan, nan, 0.85])) is None
    assert median_accuracy(np.array([nan, nan, 0.8, 0.85])) is None   # between nan and 0.8
