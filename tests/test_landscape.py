"""Loss landscapes: minigrad/nn/landscape.py (filter normalization, exact restoration, a
quadratic's slice against its dense Hessian, interpolation endpoints) and `minigrad
landscape` (cli/landscape.py) on tiny digits runs: the center is the checkpoint's loss, the
HDF5 layout, seeds, the --between endpoints, the PNG, no matplotlib, and the error paths."""
import os
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli.landscape import landscape
from minigrad.cli.checkpoint import read_checkpoint
from minigrad.cli.train import train
from minigrad.cli.training.model import build_model

import minigrad as mg
import minigrad.functional as F
import minigrad.nn as nn
from minigrad import datasets
from minigrad.curvature import HessianOperator
from minigrad.nn import landscape as ls

F64 = np.float64


def conv_net():
    return nn.Sequential(nn.Conv2d(2, 3, 3, rng=0, dtype=F64), nn.ReLU(), nn.Flatten(),
                         nn.Linear(12, 4, rng=1, dtype=F64))


def rows_norms(a):
    return np.linalg.norm(a.reshape(len(a), -1), axis=1)


# ---------------------------------------------------------------------------- directions
def test_filter_normalization_gives_each_filter_the_norm_of_the_weights_filter():
    model = conv_net()
    params = model.parameters()
    d = ls.random_direction(model, rng=3)
    assert [x.shape for x in d] == [p.shape for p in params]
    assert all(x.dtype == F64 for x in d)
    conv_w, conv_b, lin_w, lin_b = d
    # Conv2d: output channel i of (out, in, kh, kw); Linear: row i of (out, in)
    np.testing.assert_allclose(rows_norms(conv_w), rows_norms(params[0].data), rtol=1e-13)
    np.testing.assert_allclose(rows_norms(lin_w), rows_norms(params[2].data), rtol=1e-13)
    assert not np.any(conv_b) and not np.any(lin_b)   # "biasbn": no step along biases
    # the direction is the Gaussian draw rescaled per filter (same direction inside a filter)
    raw = np.random.default_rng(3).standard_normal(params[0].shape)
    unit = raw.reshape(3, -1) / rows_norms(raw)[:, None]
    np.testing.assert_allclose(conv_w.reshape(3, -1) / rows_norms(conv_w)[:, None], unit, rtol=1e-12)


def test_ignore_none_normalizes_biases_entry_by_entry_and_layer_uses_whole_tensors():
    model = conv_net()
    params = model.parameters()
    d = ls.random_direction(model, rng=0, ignore=None)
    for k in (1, 3):
        np.testing.assert_allclose(np.abs(d[k]), np.abs(params[k].data), rtol=1e-13)
    layer = ls.random_direction(model, rng=0, normalization="layer")
    for k in (0, 2):
        assert np.linalg.norm(layer[k]) == pytest.approx(np.linalg.norm(params[k].data), rel=1e-13)
        assert not np.allclose(rows_norms(layer[k]), rows_norms(params[k].data))
    assert not np.any(layer[1]) and not np.any(layer[3])
    raw = ls.random_direction(model, rng=0, normalization=None, ignore=None)
    rng = np.random.default_rng(0)
    for x, p in zip(raw, params):
        np.testing.assert_array_equal(x, rng.standard_normal(p.shape))


def test_directions_are_reproducible_and_bad_choices_are_named():
    model = conv_net()
    a, b, c = (ls.random_direction(model, rng=s) for s in (5, 5, 6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="normalization.*'batch'"):
        ls.random_direction(model, rng=0, normalization="batch")
    with pytest.raises(ValueError, match="ignore.*'bias'"):
        ls.random_direction(model, rng=0, ignore="bias")
    with pytest.raises(ValueError, match="odd.*10"):
        ls.symmetric_coordinates(1.0, 10)
    with pytest.raises(ValueError, match=r"center\[1\] has shape \(2,\), parameter 1 \(3,\)"):
        ls.evaluate_grid(model, lambda m: 0.0, [p.data for p in model.parameters()[:1]]
                         + [np.zeros(2)] + [p.data for p in model.parameters()[2:]], [a], [[0.0]])


def test_coordinates_are_exactly_symmetric_and_contain_the_solutions():
    x = ls.symmetric_coordinates(0.7, 9)
    assert len(x) == 9 and x[4] == 0 and x[0] == -0.7 and x[-1] == 0.7
    np.testing.assert_array_equal(x, -x[::-1])
    a = ls.between_coordinates(0.5, 21)
    assert len(a) == 41 and a[0] == -0.5 and a[-1] == 1.5 and a[10] == 0 and a[30] == 1


# ---------------------------------------------------------------------------- evaluation
def batchnorm_net():
    return nn.Sequential(nn.Linear(4, 5, rng=0, dtype=F64), nn.BatchNorm1d(5, dtype=F64),
                         nn.ReLU(), nn.Linear(5, 2, rng=1, dtype=F64))


def test_parameters_buffers_and_modes_come_back_bit_for_bit_also_when_loss_fn_raises():
    model = batchnorm_net().eval()
    x = mg.tensor(np.random.default_rng(0).standard_normal((8, 4)))
    before = [(p, p.data, p.data.copy()) for p in model.parameters()]
    buffers = {n: b.copy() for n, b in model.named_buffers()}
    d = ls.random_direction(model, rng=0, ignore=None)
    calls, fail_at = [], [None]

    def loss_fn(m):   # training mode: BatchNorm updates its running statistics in place
        calls.append(1)
        m.train()
        if len(calls) == fail_at[0]:
            raise RuntimeError("boom")
        return float((m(x) ** 2).mean().item())

    def check():
        for p, array, copy in before:
            assert p.data is array and np.array_equal(p.data, copy)
        for n, b in model.named_buffers():
            np.testing.assert_array_equal(b, buffers[n])
        assert not any(m.training for m in model.modules())

    loss, acc = ls.evaluate_grid(model, loss_fn, ls.current_parameters(model), [d], [[-1, 0, 1]])
    assert acc is None and loss.shape == (3,) and np.all(np.isfinite(loss))
    check()
    calls.clear()
    fail_at[0] = 3
    with pytest.raises(RuntimeError, match="boom"):
        ls.evaluate_grid(model, loss_fn, ls.current_parameters(model), [d, d], [[-1, 1], [-1, 1]])
    check()
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        ls.interpolate(model, loss_fn, ls.current_parameters(model), d, [0, 0.5, 1, 2])
    check()


def least_squares_layer():
    """A Linear(5, 3) at the least-squares minimum of mse(model(X), Y), with its loss_fn."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    model = nn.Linear(5, 3, rng=0, dtype=F64)
    A = np.hstack([X, np.ones((40, 1))])
    solution = np.linalg.lstsq(A, Y, rcond=None)[0]   # (6, 3): W^T over b
    model.weight.data[...] = solution[:5].T
    model.bias.data[...] = solution[5]

    def loss_fn(m):
        return F.mse_loss(m(mg.tensor(X)), mg.tensor(Y))
    return model, loss_fn, X


def test_a_quadratic_slice_through_its_minimum_is_symmetric_with_the_hessian_curvature():
    model, loss_fn, X = least_squares_layer()
    d = ls.random_direction(model, rng=1, ignore=None)   # the bias moves too
    x = ls.symmetric_coordinates(2.0, 21)
    loss, _ = ls.evaluate_grid(model, loss_fn, ls.current_parameters(model), [d], [x])
    np.testing.assert_allclose(loss, loss[::-1], rtol=0, atol=1e-12)   # L(a) == L(-a)
    L0 = float(loss_fn(model).item())
    assert loss[10] == L0
    H = HessianOperator(loss_fn(model), model.parameters()).dense()
    flat = np.concatenate([a.reshape(-1) for a in d])
    curvature = flat @ H @ flat
    np.testing.assert_allclose(loss, L0 + x ** 2 * curvature / 2, rtol=1e-12, atol=1e-12)
    # closed form: L = ||X W^T + b - Y||^2 / (n k), so d^T H d / 2 = ||X dW^T + db||^2 / (n k)
    step = X @ d[0].T + d[1]
    assert curvature / 2 == pytest.approx(np.sum(step ** 2) / step.size, rel=1e-12)


def test_the_plane_passes_through_the_center_and_contains_the_line():
    model, loss_fn, _ = least_squares_layer()
    d1, d2 = (ls.random_direction(model, rng=s, ignore=None) for s in (1, 2))
    center = ls.current_parameters(model)
    x, y = ls.symmetric_coordinates(1.0, 5), ls.symmetric_coordinates(0.5, 7)
    plane, _ = ls.evaluate_grid(model, loss_fn, center, [d1, d2], [x, y])
    line, _ = ls.evaluate_grid(model, loss_fn, center, [d1], [x])
    assert plane.shape == (5, 7)
    assert plane[2, 3] == float(loss_fn(model).item())
    np.testing.assert_array_equal(plane[:, 3], line)
    assert plane[4, 6] == pytest.approx(float(loss_fn(_moved(model, center, d1, d2, 1.0, 0.5))
                                              .item()), rel=1e-14)


def _moved(model, center, d1, d2, a, b):
    moved = nn.Linear(5, 3, dtype=F64)
    moved.weight.data[...] = center[0] + a * d1[0] + b * d2[0]
    moved.bias.data[...] = center[1] + a * d1[1] + b * d2[1]
    return moved


def test_interpolation_hits_both_solutions_exactly():
    a, b = nn.Linear(5, 3, rng=0, dtype=F64), nn.Linear(5, 3, rng=1, dtype=F64)
    X = mg.tensor(np.random.default_rng(0).standard_normal((10, 5)))
    labels = np.arange(10) % 3

    def loss_fn(m):
        logits = m(X)
        return F.cross_entropy(logits, labels), float((logits.numpy().argmax(1) == labels).mean())

    coords = ls.between_coordinates(0.25, 5)
    loss, acc = ls.interpolate(a, loss_fn, ls.current_parameters(a), ls.current_parameters(b), coords)
    assert coords[1] == 0 and coords[5] == 1 and loss.shape == acc.shape == (7,)
    assert loss[1] == float(loss_fn(a)[0].item()) and acc[1] == loss_fn(a)[1]
    assert loss[5] == float(loss_fn(b)[0].item()) and acc[5] == loss_fn(b)[1]


# ----------------------------------------------------------------------------------- CLI
def invoke(*args):
    return CliRunner().invoke(landscape, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """a and b: mlp 16 (seeds 1, 2), c: mlp 8; 30 sgd steps in float64 on digits."""
    root = tmp_path_factory.mktemp("landscape")
    for name, hidden, seed in (("a", "16", 1), ("b", "16", 2), ("c", "8", 1)):
        result = CliRunner().invoke(train, ["--out", str(root / name), "--hidden", hidden,
                                            "--steps", "30", "--dtype", "float64", "--seed", str(seed)])
        assert result.exit_code == 0, result.output
    return root


def checkpoint_loss(folder, rows):
    """Cross-entropy and accuracy of the checkpoint on train rows, computed from scratch."""
    model_state, state = read_checkpoint(str(folder))
    images, labels, meta = datasets.load("digits", "train")
    model = build_model(dict(state["config"]), tuple(meta["shape"]), len(meta["classes"]))
    model.load_state_dict(model_state)
    model.eval()
    x = images[rows].reshape(len(rows), -1).astype(F64)
    with mg.no_grad():
        logits = model(mg.tensor(x))
    loss = float(F.cross_entropy(logits, labels[rows]).item())
    return loss, float((logits.numpy().argmax(1) == labels[rows]).mean())


def read(path):
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        data = {k: f[k][()] for k in f if k != "parameters"}
        data.update({f"parameters/{k}": f["parameters"][k][()] for k in f["parameters"]})
    return attrs, data


def test_1d_center_is_the_checkpoints_loss_and_the_file_has_the_documented_layout(runs):
    out = ok(invoke(runs / "a", "--batch-size", 300, "--resolution", 7, "--span", 0.5)).output
    path = runs / "a" / "landscape-1d.h5"
    attrs, data = read(path)
    rows = np.random.default_rng(0).permutation(1437)[:300]
    np.testing.assert_array_equal(data["rows"], rows)
    loss, acc = checkpoint_loss(runs / "a", rows)
    assert attrs["center_loss"] == pytest.approx(loss, rel=1e-12)
    assert data["loss"][3] == attrs["center_loss"] and data["accuracy"][3] == acc
    for key, value in dict(kind="directions", dims=1, span=0.5, resolution=7, normalization="filter",
                           ignore="biasbn", seed=0, batch_size=300, split="train", dtype="float64",
                           metric="accuracy", step=30, run=str(runs / "a"), run_b="").items():
        assert attrs[key] == value, key
    for key in ("config", "minigrad_version", "loss_min", "loss_max", "center_metric"):
        assert key in attrs
    np.testing.assert_array_equal(data["x"], [-0.5, -1 / 3, -1 / 6, 0, 1 / 6, 1 / 3, 0.5])
    assert data["loss"].shape == data["accuracy"].shape == (7,) and "y" not in data
    names = [n.decode() for n in data["parameters/names"]]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert data["parameters/direction_norm"].shape == (1, 4)
    # filter normalization: each weight tensor's direction has the weights' norm, biases none
    np.testing.assert_allclose(data["parameters/direction_norm"][0, ::2],
                               data["parameters/weight_norm"][::2], rtol=1e-12)
    assert not np.any(data["parameters/direction_norm"][0, 1::2])
    assert attrs["loss_min"] == data["loss"].min() and attrs["loss_max"] == data["loss"].max()
    assert f"center loss {loss:.6f}, accuracy {acc:.4f}" in out
    assert "<- checkpoint" in out and "written to" in out
    png = runs / "a" / "landscape-1d.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_2d_layout_and_seeds(runs, tmp_path):
    paths = {}
    for name, seed in (("s0", 0), ("s0again", 0), ("s1", 1)):
        paths[name] = tmp_path / f"{name}.h5"
        out = ok(invoke(runs / "a", "--dims", 2, "--resolution", 5, "--batch-size", 200,
                        "--seed", seed, "--out", paths[name])).output
    assert "cos(d1, d2)" in out and out.count("|") == 10   # 5 rows of the character map
    attrs, data = read(paths["s0"])
    assert attrs["dims"] == 2 and data["loss"].shape == data["accuracy"].shape == (5, 5)
    np.testing.assert_array_equal(data["x"], data["y"])
    assert data["parameters/direction_norm"].shape == (2, 4)
    assert data["loss"][2, 2] == attrs["center_loss"]
    assert attrs["center_loss"] == pytest.approx(checkpoint_loss(runs / "a", data["rows"])[0],
                                                 rel=1e-12)
    assert abs(attrs["direction_cosine"]) < 0.5
    again, other = read(paths["s0again"])[1], read(paths["s1"])[1]
    np.testing.assert_array_equal(data["loss"], again["loss"])
    assert not np.array_equal(data["loss"], other["loss"])
    assert other["loss"][2, 2] == data["loss"][2, 2]       # same rows, same center
    assert (tmp_path / "s0.png").stat().st_size > 1000


def test_between_endpoints_are_each_runs_loss(runs):
    out = ok(invoke("--between", runs / "a", runs / "b", "--resolution", 5, "--batch-size", 250)).output
    attrs, data = read(runs / "a" / "between-b.h5")
    np.testing.assert_array_equal(data["x"], np.arange(-2, 7) / 4)   # span 0.5 beyond each end
    for run, i, key in (("a", 2, "center_loss"), ("b", 6, "loss_b")):
        loss, acc = checkpoint_loss(runs / run, data["rows"])
        assert data["loss"][i] == pytest.approx(loss, rel=1e-12)
        assert data["accuracy"][i] == acc
        assert attrs[key] == data["loss"][i]
    assert attrs["kind"] == "between" and attrs["run_b"] == str(runs / "b") and attrs["step_b"] == 30
    chord = (1 - data["x"][2:7]) * data["loss"][2] + data["x"][2:7] * data["loss"][6]
    assert attrs["barrier"] == pytest.approx(np.max(data["loss"][2:7] - chord), abs=1e-15)
    diff = [np.linalg.norm(read_checkpoint(str(runs / "b"))[0][k] - read_checkpoint(str(runs / "a"))[0][k])
            for k in ("0.weight", "0.bias")]
    np.testing.assert_allclose(data["parameters/direction_norm"][0, :2], diff, rtol=1e-12)
    assert "<- A" in out and "<- B" in out and "barrier" in out
    assert (runs / "a" / "between-b.png").stat().st_size > 1000


def test_without_matplotlib_the_file_the_summary_and_the_hint(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    path = tmp_path / "flat.h5"
    out = ok(invoke(runs / "a", "--resolution", 3, "--batch-size", 50, "--out", path)).output
    assert path.exists() and not (tmp_path / "flat.png").exists()
    assert "center loss" in out and "pip install" in out and "flat.png" in out


@pytest.mark.parametrize("args, code, message", [
    (["{root}/missing"], 1, "run folder"),
    (["{root}/a", "--between", "{root}/a", "{root}/b"], 2, "exactly one"),
    ([], 2, "exactly one"),
    (["--between", "{root}/a", "{root}/c"], 1, "differ in hidden: {root}/a has 16, {root}/c has 8"),
    (["--between", "{root}/a", "{root}/b", "--seed", "3"], 2, "--seed"),
    (["--between", "{root}/a", "{root}/b", "--dims", "2"], 2, "--dims 2"),
    (["{root}/a", "--resolution", "4"], 2, "odd"),
    (["{root}/a", "--step", "7"], 1, "no checkpoint of step 7"),
    (["{root}/a", "--batch-size", "5000"], 1, "--batch-size 5000"),
    (["{root}/a", "--out", "{root}/a/run.h5"], 1, "exists; pass --overwrite"),
    (["{root}/a", "--out", "{root}/nowhere/x.h5"], 1, "not found"),
])
def test_errors_are_one_line(runs, args, code, message):
    result = invoke(*[a.format(root=runs) for a in args])
    assert result.exit_code == code, result.output
    assert message.format(root=runs) in result.output
    assert "Traceback" not in result.output
    if code == 1:
        assert result.output.count("\n") == 1 and result.output.startswith("Error: ")


def test_overwrite_replaces_an_existing_file(runs, tmp_path):
    path = tmp_path / "x.h5"
    ok(invoke(runs / "a", "--resolution", 3, "--batch-size", 20, "--out", path))
    assert invoke(runs / "a", "--resolution", 3, "--batch-size", 20, "--out", path).exit_code == 1
    ok(invoke(runs / "a", "--resolution", 3, "--batch-size", 30, "--out", path, "--overwrite"))
    assert read(path)[0]["batch_size"] == 30
    assert sorted(os.listdir(tmp_path)) == ["x.h5", "x.png"]   # no temporary files left


def test_the_command_is_registered_in_the_cli():
    from minigrad.cli import main
    assert main.commands["landscape"] is landscape
    assert ok(invoke("--help")).output.startswith("Usage:")
