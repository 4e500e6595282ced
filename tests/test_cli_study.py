"""The study commands end to end on digits with tiny grids: `minigrad scaling`, `sensitivity`,
`compare`; their search spaces (cli/search.py), trial bookkeeping (cli/study/) and the per-step
cost model (cli/cost.py)."""
import json
import math
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import minigrad.optim.trust_region as trust_region
from minigrad.cli import cost, plotting, search, study
from minigrad.cli.compare import compare
from minigrad.cli.runlog import read_run
from minigrad.cli.scaling import scaling
from minigrad.cli.sensitivity import sensitivity
from minigrad.cli.train import train

N_TRAIN = 1437   # digits' training split
TINY = ["--hidden", "16", "--budget-epochs", "3", "--evals-per-epoch", "2"]
SCALING = TINY + ["--optimizers", "sgd,kfac,trcg", "--batch-sizes", "256,512",
                  "--target-accuracy", "0.6", "--grid", "sgd.lr=0.1,0.4",
                  "--grid", "kfac.lr=0.05", "--grid", "kfac.damping=0.01,0.1",
                  "--grid", "trcg.radius=1", "--no-prune"]   # every trial to its end


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(message) == 1, result.output
    return message[0]


def trial_results(root):
    """{folder: trial_result} read back from every trial folder."""
    folder = os.path.join(root, study.TRIALS)
    return {name: study.trial_result(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """The same scaling study with --jobs 2 and with --jobs 1."""
    root = tmp_path_factory.mktemp("scaling")
    two = ok(invoke(scaling, *SCALING, "--jobs", 2, "--out", root / "two"))
    one = ok(invoke(scaling, *SCALING, "--jobs", 1, "--out", root / "one"))
    return root, two, one


# ---------------------------------------------------------------------------- search spaces
def test_lr_scaling_rules():
    assert search.lr_factor("linear", 512, 128) == 4.0
    assert search.lr_factor("sqrt", 512, 128) == 2.0
    assert search.lr_factor("none", 512, 128) == 1.0


def test_grid_points_are_the_row_major_product_with_lr_scaled():
    points = search.points("kfac", 256, 64, rule="linear", search="grid",
                           overrides={"kfac": {"lr": [0.01, 0.1]}})
    expected = [(lr * 4, d) for lr in (0.01, 0.1) for d in search.GRIDS["kfac"]["damping"]]
    np.testing.assert_allclose([(p["lr"], p["damping"]) for p in points], expected, rtol=1e-15)


def test_random_search_is_seeded_and_inside_its_ranges():
    a = search.points("sgd", 128, 128, search="random", trials=50, seed=3)
    b = search.points("sgd", 128, 128, search="random", trials=50, seed=3)
    c = search.points("sgd", 128, 128, search="random", trials=50, seed=4)
    assert a == b and a != c and len(a) == 50
    lrs = np.array([p["lr"] for p in a])
    momenta = np.array([p["momentum"] for p in a])
    assert lrs.min() >= 0.01 and lrs.max() <= 1.0 and momenta.min() >= 0 and momenta.max() <= 0.99
    # log-uniform: about half of the draws below the geometric middle 0.1
    assert 15 <= (lrs < 0.1).sum() <= 35
    # another batch size draws other points, the lr scaled by sqrt(B / B0)
    assert search.points("sgd", 512, 128, search="random", trials=50, seed=3) != a


@pytest.mark.parametrize("entry, words", [
    ("sgd.lr", "expected OPTIMIZER.NAME"), ("adam.lr=1", "unknown optimizer 'adam'"),
    ("sgd.damping=1", "sgd tunes lr and momentum"), ("sgd.momentum=1", "0<=x<1"),
    ("kfac.lr=0,0.1", "x>0"), ("trcg.hessian_fraction=1.5", "0<x<=1"),
    ("sgd.lr=x", "must be numbers")])
def test_bad_grid_entries_name_the_entry(entry, words):
    with pytest.raises(ValueError) as err:
        search.parse_grid([entry])
    assert entry in str(err.value) and words in str(err.value)


# -------------------------------------------------------------------------------- the cost model
def test_step_cost_of_first_order_methods_is_one_gradient():
    assert cost.step_cost("sgd", {}, 64) == {"grad_equivalents": 1.0}
    assert cost.step_cost("kfac", {"lr": 0.1}, 64) == {"grad_equivalents": 1.0}


def test_step_cost_of_a_trust_region_step():
    info = {"curvature_samples": 16, "curvature_products": 7, "cg_iterations": 7,
            "rejections": 2, "accepted": True}
    c = cost.step_cost("trcg", info, 64)
    # gradient + forward of the sub-sample + 7 products on 16 of 64 rows + 3 trial forwards
    assert c["grad_equivalents"] == pytest.approx(1 + (16 / 64) / 3 + 2 * 7 * 16 / 64 + 3 / 3)
    assert (c["cg_iterations"], c["curvature_products"], c["rejections"]) == (7, 7, 2)
    whole = cost.step_cost("strcg", dict(info, curvature_samples=64, accepted=False), 64)
    assert whole["grad_equivalents"] == pytest.approx(1 + 2 * 7 + 2 / 3)


def test_logged_curvature_counts_are_the_products_and_cg_iterations_done(tmp_path, monkeypatch):
    """run.h5's per-step counts against counters around the Hessian product and the CG solver."""
    calls, iterations = [0], [0]
    matvec = trust_region.HessianOperator.matvec_flat
    solve = trust_region.steihaug_cg

    def counting_matvec(self, v):
        calls[0] += 1
        return matvec(self, v)

    def counting_solve(*args, **kwargs):
        result = solve(*args, **kwargs)
        iterations[0] += result.iterations
        return result

    monkeypatch.setattr(trust_region.HessianOperator, "matvec_flat", counting_matvec)
    monkeypatch.setattr(trust_region, "steihaug_cg", counting_solve)
    ok(invoke(train, "--out", tmp_path / "r", "--optimizer", "trcg", "--hidden", "16",
              "--batch-size", 128, "--steps", 12, "--radius", 1.0, "--hessian-fraction", 0.1))
    steps = read_run(str(tmp_path / "r"))["steps"]
    assert calls[0] > 12 and steps["curvature_products"].sum() == calls[0]
    assert steps["cg_iterations"].sum() == iterations[0]
    assert steps["curvature_products"].dtype == np.int64
    sizes = [128] * 11 + [N_TRAIN - 11 * 128]   # the epoch's last batch is short
    expected = [cost.step_cost("trcg", {"curvature_samples": math.ceil(0.1 * b),
                                        "curvature_products": p, "rejections": r,
                                        "accepted": True}, b)["grad_equivalents"]
                for p, r, b in zip(steps["curvature_products"], steps["rejections"], sizes)]
    np.testing.assert_allclose(steps["grad_equivalents"], expected)


# --------------------------------------------------------------------------------- scaling
def test_scaling_writes_its_files_and_the_best_trial_of_each_batch_size(scaled):
    root, result, _ = scaled
    out = root / "two"
    assert (out / "scaling.h5").is_file() and (out / "scaling.png").stat().st_size > 10_000
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trials = trial_results(out)
    assert len(trials) == 2 * 2 + 1 * 2 * 2 + 1 * 2   # sgd 2 lr, kfac 1 x 2, trcg 1; x 2 sizes
    # the checks below need both kinds of trial (a target every trial meets would hide a bug)
    assert any(r["reached"] for r in trials.values())
    assert not all(r["reached"] for r in trials.values())
    for r in trials.values():
        assert os.path.isfile(os.path.join(r["folder"], "run.h5"))
        assert r["status"] in ("finished", "failed")
    with h5py.File(out / "scaling.h5") as f:
        assert json.loads(f.attrs["options"])["batch_sizes"] == [256, 512]
        assert f.attrs["base_batch_size"] == 256 and f.attrs["train_examples"] == N_TRAIN
        folders = [os.path.basename(x.decode() if isinstance(x, bytes) else x)
                   for x in f["trials/folder"][()]]
        for opt in ("sgd", "kfac", "trcg"):
            g = f[f"best/{opt}"]
            np.testing.assert_array_equal(g["batch_size"][()], [256, 512])
            for k, b in enumerate((256, 512)):
                mine = {n: r for n, r in trials.items() if n.startswith(f"{opt}-b{b}-")}
                reached = {n: r for n, r in mine.items() if r["reached"]}
                assert bool(g["reached"][k]) == bool(reached)
                if reached:
                    fewest = min(r["steps_to_target"] for r in reached.values())
                    assert g["steps_to_target"][k] == fewest
                    best = folders[g["trial"][k]]
                    assert trials[best]["steps_to_target"] == fewest
                    assert g["epochs_to_target"][k] == pytest.approx(
                        fewest / math.ceil(N_TRAIN / b))
                    run = read_run(trials[best]["folder"])
                    assert g["cost_to_target"][k] == pytest.approx(
                        run["steps"]["grad_equivalents"][:fewest].sum())
            s, b = g["steps_to_target"][()], np.array([256.0, 512.0])
            assert g["reached"][()].all()   # every method's best reaches 0.6 at both sizes
            np.testing.assert_allclose(g["ideal_steps"][()], s[0] * 256 / b)
            assert g["speedup"][1] == pytest.approx(s[0] / s[1])
            assert g["efficiency"][1] == pytest.approx(s[0] / s[1] / 2)
    assert "steps to test accuracy >= 0.6" in result.output
    assert result.output.count("\nsgd ") == 2 and result.output.count("\nkfac ") == 2


def test_trials_stop_at_the_target_with_the_asked_evaluation_interval(scaled):
    root, _, _ = scaled
    for r in trial_results(root / "two").values():
        run = read_run(r["folder"])
        config = json.loads(run["attrs"]["config"])
        per_epoch = math.ceil(N_TRAIN / config["batch_size"])
        assert config["eval_every"] == math.ceil(per_epoch / 2) and config["stop_at_target"]
        if not r["reached"]:   # the whole budget
            assert run["attrs"]["steps"] == 3 * per_epoch
        else:
            assert run["attrs"]["steps"] == r["steps_to_target"]   # stopped there
            acc = run["evals"]["test_accuracy"]
            first = np.flatnonzero(acc >= 0.6)[0]
            assert run["evals"]["step"][first] == r["steps_to_target"]


def test_jobs_2_gives_the_results_of_jobs_1(scaled):
    root, _, _ = scaled
    two, one = trial_results(root / "two"), trial_results(root / "one")
    assert two.keys() == one.keys()
    for name in two:
        a, b = read_run(two[name]["folder"]), read_run(one[name]["folder"])
        np.testing.assert_array_equal(a["steps"]["loss"], b["steps"]["loss"])
        np.testing.assert_array_equal(a["evals"]["test_accuracy"], b["evals"]["test_accuracy"])
    with h5py.File(root / "two" / "scaling.h5") as f, h5py.File(root / "one" / "scaling.h5") as g:
        for opt in ("sgd", "kfac", "trcg"):
            for key in ("trial", "steps_to_target", "cost_to_target", "lr", "radius"):
                np.testing.assert_array_equal(f[f"best/{opt}/{key}"][()], g[f"best/{opt}/{key}"][()])


def test_a_second_run_skips_finished_trials_and_resumes_an_interrupted_one(scaled, tmp_path):
    root, _, _ = scaled
    out = root / "one"
    trials = trial_results(out)
    stamps = {n: os.stat(os.path.join(r["folder"], "run.h5")).st_mtime_ns for n, r in trials.items()}
    # one trial left as if Ctrl-C had stopped it after a checkpoint, one lost before any
    name_resumed = next(n for n, r in trials.items() if r["reached"] and n.startswith("kfac"))
    with h5py.File(os.path.join(trials[name_resumed]["folder"], "run.h5"), "a") as f:
        f.attrs["status"] = "interrupted"
    name_lost = next(n for n in trials if n.startswith("sgd"))
    for fname in os.listdir(trials[name_lost]["folder"]):
        if fname != "train.log":
            os.remove(os.path.join(trials[name_lost]["folder"], fname))
    result = ok(invoke(scaling, *SCALING, "--out", out))
    assert result.output.count("done earlier") == len(trials) - 2
    again = trial_results(out)
    for n, r in trials.items():
        assert again[n]["steps_to_target"] == r["steps_to_target"]
        assert again[n]["final_test_accuracy"] == r["final_test_accuracy"]
        if n not in (name_resumed, name_lost):
            assert os.stat(os.path.join(r["folder"], "run.h5")).st_mtime_ns == stamps[n]
    log = open(os.path.join(trials[name_resumed]["folder"], study.LOG_FILE)).read()
    assert log.splitlines()[-1].startswith("done:") and "--resume" in log


def test_scaling_without_matplotlib_writes_the_results_and_says_how_to_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "pyplot", lambda: None)
    out = tmp_path / "s"
    result = ok(invoke(scaling, *TINY, "--optimizers", "sgd", "--batch-sizes", "512",
                       "--target-accuracy", "0.5", "--grid", "sgd.lr=0.2", "--out", out))
    assert (out / "scaling.h5").is_file() and not (out / "scaling.png").exists()
    assert 'pip install matplotlib' in result.output


@pytest.mark.parametrize("args, words", [
    (["--batch-sizes", "64"], "give --target-accuracy and/or --target-loss"),
    (["--target-accuracy", "0.5", "--batch-sizes", "2048"], "exceed the 1437 training examples"),
    (["--target-accuracy", "0.5", "--grid", "sgd.lr"], "expected OPTIMIZER.NAME"),
    (["--target-accuracy", "0.5", "--optimizers", "sgd", "--grid", "kfac.lr=0.1"],
     "not in --optimizers"),
    (["--target-accuracy", "0.5", "--optimizers", "sgd,adam"], "unknown optimizer(s) adam"),
    (["--target-accuracy", "0.5", "--batch-sizes", "64,x"], "comma-separated positive integers"),
])
def test_bad_study_options_are_usage_errors(tmp_path, args, words):
    result = invoke(scaling, *args, "--out", tmp_path / "x")
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_a_trial_that_cannot_start_is_one_line(tmp_path):
    result = invoke(scaling, "--model", "lenet", "--optimizers", "sgd", "--batch-sizes", "512",
                    "--grid", "sgd.lr=0.1", "--target-accuracy", "0.5", "--out", tmp_path / "x")
    assert "could not start" in one_line_error(result) and "lenet needs 28x28" in result.output


# ----------------------------------------------------------------------------- sensitivity
def test_sensitivity_maps_every_grid_point(tmp_path):
    out = tmp_path / "sens"
    result = ok(invoke(sensitivity, *TINY, "--optimizers", "sgd,trcg", "--batch-sizes",
                       "256,512", "--target-accuracy", "0.6", "--grid", "sgd.lr=0.05,0.4",
                       "--grid", "sgd.momentum=0,0.9", "--grid", "trcg.radius=0.1,1",
                       "--grid", "trcg.hessian_fraction=0.1", "--jobs", 2, "--out", out))
    trials = trial_results(out)
    assert len(trials) == 2 * (4 + 2)
    with h5py.File(out / "sensitivity.h5") as f:
        g = f["maps/sgd"]
        assert (g.attrs["rows"], g.attrs["columns"]) == ("lr", "momentum")
        np.testing.assert_array_equal(g["lr"][()], [0.05, 0.4])
        np.testing.assert_array_equal(g["momentum"][()], [0.0, 0.9])
        assert g["steps_to_target"].shape == (2, 2, 2)
        folders = [os.path.basename(x.decode() if isinstance(x, bytes) else x)
                   for x in f["trials/folder"][()]]
        for b, size in enumerate((256, 512)):
            for r, lr in enumerate((0.05, 0.4)):
                for c, momentum in enumerate((0.0, 0.9)):
                    name = folders[g["trial"][b, r, c]]
                    run = read_run(trials[name]["folder"])
                    config = json.loads(run["attrs"]["config"])
                    assert config["batch_size"] == size and config["momentum"] == momentum
                    assert config["lr"] == pytest.approx(lr * math.sqrt(size / 256))
                    assert not config["stop_at_target"]   # the whole budget
                    assert g["final_test_accuracy"][b, r, c] == run["evals"]["test_accuracy"][-1]
                    assert bool(g["reached"][b, r, c]) == trials[name]["reached"]
            assert g["fraction_reached"][b] == g["reached"][b].mean()
        assert f["maps/trcg/steps_to_target"].shape == (2, 2, 1)
    assert (out / "sensitivity.png").stat().st_size > 10_000
    assert (out / "sensitivity-accuracy.png").stat().st_size > 10_000
    assert "robustness" in result.output


def test_sensitivity_stopped_at_the_target_gives_the_same_fractions_and_steps(tmp_path):
    args = (*TINY, "--optimizers", "sgd", "--batch-sizes", "256,512", "--target-accuracy", "0.6",
            "--grid", "sgd.lr=0.02,0.4", "--grid", "sgd.momentum=0,0.9")
    ok(invoke(sensitivity, *args, "--out", tmp_path / "full"))
    ok(invoke(sensitivity, *args, "--stop-at-target", "--out", tmp_path / "stopped"))
    runs = {}
    for name in ("full", "stopped"):
        trials = trial_results(tmp_path / name)
        with h5py.File(tmp_path / name / "sensitivity.h5") as f:
            folders = [os.path.basename(x.decode() if isinstance(x, bytes) else x)
                       for x in f["trials/folder"][()]]
            maps = {k: v[()] for k, v in f["maps/sgd"].items()}
        runs[name] = maps, {i: read_run(trials[folders[maps["trial"][i]]]["folder"])
                            for i in np.ndindex(maps["reached"].shape)}
    (full, full_runs), (stop, stop_runs) = runs["full"], runs["stopped"]
    assert 0 < full["reached"].sum() < full["reached"].size   # both kinds of grid point
    for key in ("reached", "fraction_reached", "steps_to_target"):
        np.testing.assert_array_equal(stop[key], full[key])
    early = 0
    for i, run in stop_runs.items():
        assert json.loads(run["attrs"]["config"])["stop_at_target"]
        last = run["evals"]["step"][-1]
        if full["reached"][i]:   # it stopped at the evaluation that reached the target
            assert last == full["steps_to_target"][i] <= full_runs[i]["evals"]["step"][-1]
            early += last < full_runs[i]["evals"]["step"][-1]
            assert stop["final_test_accuracy"][i] >= 0.6
        else:                    # it used the whole budget, as without the flag
            assert last == full_runs[i]["evals"]["step"][-1]
            assert stop["final_test_accuracy"][i] == full["final_test_accuracy"][i]
    assert early > 0   # the flag saved steps


def test_sensitivity_refuses_random_search(tmp_path):
    result = invoke(sensitivity, "--target-accuracy", "0.5", "--search", "random",
                    "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--search random does not apply" in result.output


# --------------------------------------------------------------------------------- compare
def test_compare_reports_each_methods_counts(tmp_path):
    out = tmp_path / "cmp"
    result = ok(invoke(compare, *TINY, "--batch-size", 256, "--target-accuracy", "0.6",
                       "--grid", "sgd.lr=0.2", "--grid", "kfac.lr=0.05",
                       "--grid", "kfac.damping=0.01", "--grid", "trcg.radius=1",
                       "--grid", "strcg.radius=1", "--out", out))
    trials = trial_results(out)
    with h5py.File(out / "compare.h5") as f:
        names = [x.decode() if isinstance(x, bytes) else x for x in f["best/optimizer"][()]]
        assert names == ["sgd", "kfac", "trcg", "strcg"]
        folders = [os.path.basename(x.decode() if isinstance(x, bytes) else x)
                   for x in f["trials/folder"][()]]
        for k, opt in enumerate(names):
            r = trials[folders[f["best/trial"][k]]]
            steps = read_run(r["folder"])["steps"]
            products = int(steps.get("curvature_products", np.zeros(0)).sum())
            assert f["best/curvature_products"][k] == products
            assert f["best/cg_iterations"][k] == int(steps.get("cg_iterations", np.zeros(0)).sum())
            assert (products > 0) == (opt in ("trcg", "strcg"))
            # trials stop at the target (at an evaluation), else use the whole budget
            budget = 3 * math.ceil(N_TRAIN / 256)
            assert f["best/steps"][k] == len(steps["loss"]) == \
                (f["best/steps_to_target"][k] if f["best/reached"][k] else budget)
            assert f["best/cost"][k] == pytest.approx(steps["grad_equivalents"].sum())
            line = next(line for line in result.output.splitlines() if line.startswith(opt + " "))
            assert line.split()[5] == str(products)
    assert (out / "compare.png").stat().st_size > 10_000


def test_kfac_kl_clip_is_an_extra_axis():
    grids = search.parse_grid(["kfac.kl_clip=0,1e-3"])
    points = search.points("kfac", 64, 64, overrides=grids)
    assert len(points) == 2 * len(search.GRIDS["kfac"]["lr"]) * len(search.GRIDS["kfac"]["damping"])
    assert {p["kl_clip"] for p in points} == {0.0, 1e-3}
    assert "kl_clip" not in search.points("kfac", 64, 64)[0]   # not set: train's default


def test_sensitivity_needs_one_value_of_an_extra_axis(tmp_path):
    result = invoke(sensitivity, "--target-accuracy", "0.5", "--optimizers", "kfac",
                    "--grid", "kfac.kl_clip=0,0.001", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "give kl_clip one value, not 2" in result.output


def test_grid_edges_name_the_best_settings_on_an_edge():
    from minigrad.cli.study import grid_edges
    options = {"search_kind": "grid", "grid_entries": ["sgd.lr=0.1,0.2,0.4"], "lr_scaling": "sqrt"}
    specs = [{"optimizer": "sgd", "batch_size": 256, "lr": 0.4 * 2, "momentum": 0.9},
             {"optimizer": "sgd", "batch_size": 64, "lr": 0.2, "momentum": 0.9}]
    note = grid_edges(options, specs, [("sgd", 256, 0), ("sgd", 64, 1)], base=64)
    assert "sgd lr=0.4 (at B0) at B=256" in note and "B=64" not in note
    assert "momentum" not in note   # a one-value axis has no edge
    assert grid_edges(options, specs, [("sgd", 64, 1)], base=64) == ""
    assert grid_edges(dict(options, search_kind="random"), specs, [("sgd", 256, 0)], 64) == ""


def test_grid_edges_take_kl_clip_off_as_the_far_end_of_its_axis():
    # kl_clip 0 is "no clip": beyond every clip value, so 0.01 between 0.001 and off is inside
    # the grid, off itself has nothing beyond it, and only the smallest clip is an edge
    from minigrad.cli.study import grid_edges
    options = {"search_kind": "grid", "grid_entries": ["kfac.kl_clip=0,0.001,0.01"],
               "lr_scaling": "none"}
    specs = [{"optimizer": "kfac", "batch_size": 64, "lr": 0.05, "damping": 0.01, "kl_clip": c}
             for c in (0.0, 0.001, 0.01)]
    notes = [grid_edges(options, specs, [("kfac", 64, i)], base=64) for i in range(3)]
    assert "kl_clip" not in notes[0] and "kl_clip" not in notes[2]
    assert "kfac kl_clip=0.001 at B=64" in notes[1]
    # without off on the axis, its largest value is an edge as before
    options["grid_entries"] = ["kfac.kl_clip=0.001,0.01"]
    assert "kfac kl_clip=0.01 at B=64" in grid_edges(options, specs, [("kfac", 64, 2)], base=64)


def test_grid_edges_leave_out_an_edge_tied_by_the_trial_next_to_it():
    # the best (lr 0.1, the smallest) reaches the target at step 20 at the same cost and
    # accuracy as lr 0.2: flat across the edge, so no note; once lr 0.2 loses on accuracy or
    # needs 24 steps, lr 0.1 is an edge again
    from minigrad.cli.study import grid_edges
    options = {"search_kind": "grid", "grid_entries": ["sgd.lr=0.1,0.2,0.4"], "lr_scaling": "none"}
    specs = [{"optimizer": "sgd", "batch_size": 64, "seed": 0, "lr": lr, "momentum": 0.9}
             for lr in (0.1, 0.2, 0.4)]
    results = [{"reached": True, "steps_to_target": s, "cost_to_target": 2.0 * s,
                "final_test_accuracy": 0.9} for s in (20, 20, 30)]
    assert grid_edges(options, specs, [("sgd", 64, 0)], 64, results) == ""
    results[1]["final_test_accuracy"] = 0.89   # the same steps, but lr 0.1 won on accuracy
    assert "sgd lr=0.1 (at B0) at B=64" in grid_edges(options, specs, [("sgd", 64, 0)], 64, results)
    results[1].update(steps_to_target=24, final_test_accuracy=0.9)
    assert "sgd lr=0.1 (at B0) at B=64" in grid_edges(options, specs, [("sgd", 64, 0)], 64, results)
    # without results, as before
    assert "sgd lr=0.1" in grid_edges(options, specs, [("sgd", 64, 0)], 64)


def test_the_neighbour_of_the_smallest_clip_is_off_when_it_is_the_only_other_value():
    # kl_clip {0.001, off}: 0.001 is the edge and off (the far end) the value next to it
    from minigrad.cli.study import grid_edges
    options = {"search_kind": "grid", "grid_entries": ["kfac.kl_clip=0,0.001"],
               "lr_scaling": "none"}
    specs = [{"optimizer": "kfac", "batch_size": 64, "seed": 0, "lr": 0.05, "damping": 0.01,
              "kl_clip": c} for c in (0.0, 0.001)]
    results = [{"reached": True, "steps_to_target": 20, "cost_to_target": 40.0,
                "final_test_accuracy": 0.9} for _ in specs]
    assert grid_edges(options, specs, [("kfac", 64, 1)], 64, results) == ""   # ties off
    results[0]["steps_to_target"] = 22
    assert "kfac kl_clip=0.001 at B=64" in grid_edges(options, specs, [("kfac", 64, 1)], 64,
                                                      results)


def test_a_trial_without_a_run_log_counts_as_crashed(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    r = study.trial_result(str(folder))
    assert r["status"] == "crashed" and not r["reached"] and math.isnan(r["final_test_accuracy"])
    assert "crashed, see" in study.outcome(r) and study.best_index([r]) == 0


def test_scaling_plot_when_no_trial_reaches_the_target(tmp_path):
    out = tmp_path / "s"
    result = ok(invoke(scaling, *TINY, "--optimizers", "sgd", "--batch-sizes", "512",
                       "--target-accuracy", "0.999", "--grid", "sgd.lr=0.2", "--out", out))
    assert "not reached" in result.output
    assert (out / "scaling.png").stat().st_size > 10_000


def test_seeds_average_each_setting_over_its_seeds(tmp_path):
    out = tmp_path / "s"
    result = ok(invoke(scaling, *TINY, "--optimizers", "sgd", "--batch-sizes", "256",
                       "--target-accuracy", "0.5", "--grid", "sgd.lr=0.2,0.4", "--seeds", 2,
                       "--seed", 3, "--out", out))
    assert "2 seeds per setting" in result.output
    trials = trial_results(out)
    assert len(trials) == 4
    with h5py.File(out / "scaling.h5") as f:
        seeds = f["trials/seed"][()]
        lrs, steps, reached = f["trials/lr"][()], f["trials/steps_to_target"][()], f["trials/reached"][()]
        assert sorted(seeds) == [3, 3, 4, 4]
        settings = {}
        for lr, s, ok_ in zip(lrs, steps, reached):
            settings.setdefault(lr, []).append((s, ok_))
        means = {lr: np.mean([s for s, _ in v]) for lr, v in settings.items() if all(o for _, o in v)}
        g = f["best/sgd"]
        if means:
            assert g["steps_to_target"][0] == min(means.values())
            lr = min(means, key=means.get)
            assert g["lr"][0] == lr
            assert g["steps_min"][0] == min(s for s, _ in settings[lr])
            assert g["steps_max"][0] == max(s for s, _ in settings[lr])
        else:
            assert not g["reached"][0]


def test_aggregate_needs_every_seed_to_reach_the_target():
    base = {"optimizer": "sgd", "batch_size": 64, "lr": 0.1}
    def result(reached, steps, acc):
        return {"folder": "f", "status": "finished", "targets": ["target_accuracy"],
                "reached": reached, "steps_to_target": steps if reached else None,
                "epochs_to_target": 1.0 if reached else float("nan"), "wall_to_target": 0.1,
                "cost_to_target": float(steps or 0), "steps": 10, "epochs": 1.0,
                "wall_time": 1.0, "cost": 10.0, "curvature_products": 0, "cg_iterations": 0,
                "final_train_loss": 0.5, "final_train_split_loss": float("nan"),
                "final_test_loss": 0.5, "final_test_accuracy": acc}
    specs = [dict(base, seed=0), dict(base, seed=1), dict(base, lr=0.2, seed=0),
             dict(base, lr=0.2, seed=1)]
    results = [result(True, 4, 0.9), result(True, 8, 0.8), result(True, 4, 0.9),
               result(False, None, 0.7)]
    settings, agg = study.aggregate(specs, results)
    assert [s["lr"] for s in settings] == [0.1, 0.2] and [a["trial"] for a in agg] == [0, 2]
    assert agg[0]["reached"] and agg[0]["steps_to_target"] == 6.0
    assert (agg[0]["steps_min"], agg[0]["steps_max"]) == (4, 8)
    assert agg[0]["final_test_accuracy"] == pytest.approx(0.85)
    assert not agg[1]["reached"] and agg[1]["reached_fraction"] == 0.5
    assert agg[1]["steps_to_target"] is None and math.isnan(agg[1]["cost_to_target"])
    assert study.best_index(agg) == 0
