"""`minigrad hessian` (cli/hessian.py) on a tiny digits run (64-8-10 MLP, 610 parameters, so the
dense Hessian is cheap): the eigenvalues equal those of the dense float64 Hessian of the same
batch, the trace estimate is within a few standard errors of the exact trace, the SLQ density
integrates to 1, the GGN is PSD, --step picks a kept checkpoint, the HDF5 layout is the
documented one, the plot is optional, and user mistakes are one-line errors."""
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import plotting
from minigrad.cli.hessian import hessian
from minigrad.cli.loading import load_run
from minigrad.cli.train import train
from minigrad.cli.training.model import loss_of

import minigrad as mg
from minigrad.curvature import GGNOperator, HessianOperator

N_PARAMS = 64 * 8 + 8 + 8 * 10 + 10
N_TRAIN = 1437   # digits training split


def invoke(*args):
    return CliRunner().invoke(hessian, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 20-step run with kept checkpoints at steps 10 and 20."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(train, ["--out", str(out), "--hidden", "8", "--steps", "20",
                                        "--keep-checkpoints", "--checkpoint-every", "10",
                                        "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def default(run):
    """The command with its defaults (on the latest checkpoint) and --bottom-k 2."""
    result = ok(invoke(run, "--bottom-k", 2))
    return result, run / "hessian-step00000020.h5"


def exact(run, curvature="hessian", step=None, batch_size=1000, seed=0):
    """(dense curvature matrix, loss) on the rows the command uses, model in eval mode."""
    loaded = load_run(str(run), step=step, dtype="float64")
    loaded.model.eval()
    rows = np.random.default_rng(seed).permutation(N_TRAIN)[:batch_size]
    x, target = loaded.batch(rows)
    params = loaded.model.parameters()
    outputs = loaded.model(mg.tensor(x))
    loss = loss_of(loaded.model, outputs, target)
    op = HessianOperator(loss, params) if curvature == "hessian" \
        else GGNOperator(loss, outputs, params)
    return op.dense(), float(loss.data)


def read(path):
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        data = {}
        f.visititems(lambda name, obj: data.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return attrs, data


def integral(grid, values):
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)))


def test_eigenvalues_and_trace_match_the_dense_hessian(run, default):
    result, path = default
    attrs, data = read(path)
    H, loss = exact(run)
    lam = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(data["top_eigenvalues"], lam[::-1][:5], rtol=1e-6)
    spread = lam[-1] - lam[0]
    np.testing.assert_allclose(data["bottom_eigenvalues"], lam[:2], rtol=0, atol=1e-5 * spread)
    assert data["bottom_eigenvalues"][0] < 0   # a trained network's Hessian is indefinite
    assert attrs["loss"] == pytest.approx(loss, rel=1e-12)
    assert attrs["parameters"] == N_PARAMS
    # Hutchinson: within 4 standard errors of the exact trace
    assert abs(data["trace"] - np.trace(H)) < 4 * data["trace_std"]
    assert 0 < data["trace_std"] < 0.2 * abs(np.trace(H))
    # the table shows the same numbers
    out = result.stdout
    assert f"{data['top_eigenvalues'][0]:.6g}" in out
    assert f"lambda_{N_PARAMS} (min)" in out and f"{data['bottom_eigenvalues'][0]:.6g}" in out
    ratio = data["top_eigenvalues"][0] / abs(data["bottom_eigenvalues"][0])
    assert f"{ratio:.4g}" in out
    assert f"{data['trace']:.6g} ±" in out and "wall time" in out and str(N_PARAMS) in out


def test_density_integrates_to_one_and_holds_the_quadrature(default):
    _, data = read(default[1])
    grid, values = data["density/grid"], data["density/values"]
    assert grid.shape == values.shape and np.all(np.diff(grid) > 0) and np.all(values >= 0)
    assert integral(grid, values) == pytest.approx(1.0, abs=1e-3)
    nodes, weights = data["density/nodes"], data["density/weights"]
    assert nodes.shape == weights.shape == (10, 40)
    np.testing.assert_allclose(np.nansum(weights, axis=1), 1.0, rtol=1e-10)
    # Gauss nodes lie inside the spectrum; the first moment is tr(H)/n (Hutchinson's again)
    assert np.nanmax(nodes) <= data["top_eigenvalues"][0] * (1 + 1e-8)
    assert np.nanmin(nodes) >= data["bottom_eigenvalues"][0] - 1e-8
    moment = np.mean(np.nansum(weights * nodes, axis=1))
    assert moment * N_PARAMS == pytest.approx(data["trace"], rel=0.5)


def test_hdf5_layout_and_plot(run, default):
    attrs, data = read(default[1])
    assert set(data) == {"top_eigenvalues", "bottom_eigenvalues", "trace", "trace_std",
                         "density/grid", "density/values", "density/nodes", "density/weights"}
    assert data["top_eigenvalues"].shape == (5,) and np.all(np.diff(data["top_eigenvalues"]) < 0)
    assert data["bottom_eigenvalues"].shape == (2,) and np.all(np.diff(data["bottom_eigenvalues"]) > 0)
    assert np.shape(data["trace"]) == np.shape(data["trace_std"]) == ()
    assert {k: attrs[k] for k in ("run", "step", "curvature", "batch_size", "seed", "dtype",
                                  "top_k", "bottom_k", "probes", "lanczos_steps",
                                  "trace_samples")} == {
        "run": str(run), "step": 20, "curvature": "hessian", "batch_size": 1000, "seed": 0,
        "dtype": "float64", "top_k": 5, "bottom_k": 2, "probes": 10, "lanczos_steps": 40,
        "trace_samples": 100}
    assert attrs["grad_norm"] > 0 and attrs["sigma"] > 0 and attrs["wall_time"] > 0
    assert attrs["matvecs"] >= 100 + 10 * 40   # trace probes + SLQ steps, at least
    assert '"hidden": [8]' in attrs["config"] and "minigrad_version" in attrs
    png = run / "hessian-step00000020.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert f"plot written to {png}" in default[0].stdout


def test_ggn_is_positive_semidefinite_and_matches_the_dense_ggn(run, tmp_path):
    out = tmp_path / "ggn.h5"
    ok(invoke(run, "--curvature", "ggn", "--batch-size", 100, "--trace-samples", 10, "--probes", 3,
              "--out", out))
    attrs, data = read(out)
    assert attrs["curvature"] == "ggn"
    G, _ = exact(run, "ggn", batch_size=100)
    np.testing.assert_allclose(data["top_eigenvalues"], np.linalg.eigvalsh(G)[::-1][:5], rtol=1e-6)
    assert data["bottom_eigenvalues"][0] >= -1e-8 * data["top_eigenvalues"][0]
    assert np.nanmin(data["density/nodes"]) >= -1e-8 * data["top_eigenvalues"][0]
    assert (tmp_path / "ggn.png").stat().st_size > 0


def test_step_picks_a_kept_checkpoint(run, default):
    result = ok(invoke(run, "--step", 10, "--batch-size", 200, "--trace-samples", 20))
    path = run / "hessian-step00000010.h5"
    assert "at step 10" in result.stdout and str(path) in result.stdout
    attrs, data = read(path)
    assert attrs["step"] == 10
    H, loss = exact(run, step=10, batch_size=200)
    assert attrs["loss"] == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(data["top_eigenvalues"], np.linalg.eigvalsh(H)[::-1][:5], rtol=1e-6)
    final = read(default[1])[1]["top_eigenvalues"]
    assert abs(data["top_eigenvalues"][0] - final[0]) > 1e-3 * final[0]


def test_without_matplotlib_the_file_and_table_still_appear(run, tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "pyplot", lambda: None)
    out = tmp_path / "h.h5"
    result = ok(invoke(run, "--batch-size", 100, "--trace-samples", 10, "--probes", 2,
                       "--out", out))
    assert out.is_file() and not (tmp_path / "h.png").exists()
    assert "lambda_1" in result.stdout and 'pip install matplotlib' in result.stdout
    assert "h.png" in result.stdout


def test_an_existing_output_needs_overwrite_and_the_seed_reproduces_it(run, tmp_path):
    out = tmp_path / "h.h5"
    args = (run, "--batch-size", 100, "--trace-samples", 10, "--probes", 2, "--out", out)
    ok(invoke(*args))
    first = out.read_bytes()
    result = invoke(*args)
    assert result.exit_code == 1 and "--overwrite" in result.stderr and str(out) in result.stderr
    assert out.read_bytes() == first
    ok(invoke(*args, "--overwrite"))
    a = read(out)[1]
    out.write_bytes(first)
    b = read(out)[1]
    for key in a:   # same seed, same numbers, bit for bit
        np.testing.assert_array_equal(a[key], b[key])
    ok(invoke(*args[:-2], "--seed", 1, "--out", tmp_path / "s1.h5"))
    assert read(tmp_path / "s1.h5")[1]["trace"] != a["trace"]   # another batch and probes


def test_float32_agrees_with_float64(run, tmp_path):
    ok(invoke(run, "--batch-size", 200, "--trace-samples", 10, "--probes", 2,
              "--out", tmp_path / "64.h5"))
    ok(invoke(run, "--batch-size", 200, "--trace-samples", 10, "--probes", 2, "--dtype", "float32",
              "--out", tmp_path / "32.h5"))
    a32, d32 = read(tmp_path / "32.h5")
    d64 = read(tmp_path / "64.h5")[1]
    assert a32["dtype"] == "float32"
    np.testing.assert_allclose(d32["top_eigenvalues"], d64["top_eigenvalues"], rtol=1e-4)


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "not found"),
    (["{empty}"], "no checkpoint.npz"),
    (["{run}", "--step", "15"], "no checkpoint of step 15 in"),
    (["{run}", "--batch-size", "5000"], "--batch-size 5000 is more than the 1437 examples"),
    (["{run}", "--top-k", str(N_PARAMS)], f"--top-k {N_PARAMS} must be less than the number of parameters ({N_PARAMS})"),
    (["{run}", "--bottom-k", "1000"], "--bottom-k 1000 must be less than"),
    (["{run}", "--lanczos-steps", str(N_PARAMS + 1)], "--lanczos-steps 611 must be at most"),
    (["{run}", "--out", "{missing}/h.h5"], "does not exist"),
    (["{run}", "--out", "{missing}.png"], "is the name of the plot"),
])
def test_user_errors_are_one_line(run, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    names = {"run": run, "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    result = invoke(*[a.format(**names) for a in args])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert "Traceback" not in result.output
    if "--step" in args:
        assert "kept steps: 10, 20" in lines[0]


@pytest.mark.parametrize("args", [["--top-k", "0"], ["--curvature", "fisher"],
                                  ["--dtype", "float16"], ["--trace-samples", "1"]])
def test_usage_errors_exit_2(run, args):
    result = invoke(run, *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
