"""The GPU paths, on real CuPy where a CUDA device exists and on the NumPy-backed double
(tests/cupy_double.py) everywhere else, so that CI runs them: every op of the table on the device
against the CPU (forward and vector-Jacobian product), gradcheck/gradgradcheck on device tensors,
the functional layer, Hessian-vector products, models and curvature, the optimizers, capture,
`minigrad train --device cuda` for every optimizer, the communicators (NCCL over mpiexec), host
synchronizations per training step, and device errors. Which backend ran is in each test's id
([cupy-real] or [cupy-double]) and in pytest's header (tests/conftest.py selects it)."""
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.runlog import read_run
from minigrad.optim import KFAC, SGD, STRCG, TRCG

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.backend import device_of, to_device
from minigrad.nn import models
from minigrad.testing import gradcheck, gradgradcheck
from support import assert_same_params

try:
    from op_table import cases, make_inputs
except ImportError:  # tests/ became a package
    from tests.op_table import cases, make_inputs

pytestmark = pytest.mark.usefixtures("cupy")   # every test: [cupy-real] or [cupy-double]
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def double(cupy):
    """The CuPy test double (tests/cupy_double.py), for tests of the double itself and of what
    only a simulated machine can do (no GPU, a broken driver, counting synchronizations)."""
    if not getattr(cupy, "IS_DOUBLE", False):
        pytest.skip("needs the CuPy test double; real CuPy is the backend here")
    return cupy


CASES = cases()


def on(device, arrays):
    return [mg.tensor(a, device=device) if a.dtype == bool else
            mg.tensor(a, requires_grad=True, device=device) for a in arrays]


def vjp(op, arrays, device, u_seed=0):
    ts = on(device, arrays)
    out = op.fn(*ts)
    u = np.random.default_rng(u_seed).standard_normal(out.shape)
    wanted = [t for t in ts if t.requires_grad]
    grads = mg.grad(out, wanted, grad_outputs=mg.tensor(u, device=device), allow_unused=True)
    return out.numpy(), [None if g is None else g.numpy() for g in grads]


@pytest.mark.parametrize("op, shapes", CASES)
def test_op_on_gpu_matches_cpu(op, shapes):
    arrays = make_inputs(op, shapes)
    out_cpu, g_cpu = vjp(op, arrays, "cpu")
    out_gpu, g_gpu = vjp(op, arrays, "cuda")
    np.testing.assert_allclose(out_gpu, out_cpu, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_gpu, g_cpu):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op, shapes", CASES[::7])
def test_gradchecks_on_gpu(op, shapes):
    ts = on("cuda", make_inputs(op, shapes))
    assert gradcheck(op.fn, ts) and gradgradcheck(op.fn, ts)


def test_functional_on_gpu_matches_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    labels = rng.integers(0, 4, 2)
    results = {}
    for device in ("cpu", "cuda"):
        xt, wt, bt = (mg.tensor(a, requires_grad=True, device=device) for a in (x, w, b))
        h = F.relu(F.conv2d(xt, wt, bt, stride=1, padding=1))
        h = F.max_pool2d(h, 2).mean(axis=(2, 3))
        loss = F.cross_entropy(h, labels)
        results[device] = [loss.numpy()] + [g.numpy() for g in mg.grad(loss, [xt, wt, bt])]
    for a, c in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_hessian_vector_product_on_gpu_matches_cpu():
    rng = np.random.default_rng(1)
    X, W1, W2, V1, V2 = (rng.standard_normal(s) for s in ((16, 5), (7, 5), (3, 7), (7, 5), (3, 7)))
    labels = rng.integers(0, 3, 16)
    out = {}
    for device in ("cpu", "cuda"):
        w1, w2 = (mg.tensor(a, requires_grad=True, device=device) for a in (W1, W2))
        loss = F.cross_entropy((mg.tensor(X, device=device) @ w1.T).tanh() @ w2.T, labels)
        g1, g2 = mg.grad(loss, [w1, w2], create_graph=True)
        dot = (g1 * mg.tensor(V1, device=device)).sum() + (g2 * mg.tensor(V2, device=device)).sum()
        out[device] = [h.numpy() for h in mg.grad(dot, [w1, w2])]
    for a, c in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_moving_between_devices_is_differentiable_and_mixing_is_an_error(cupy):
    cp = cupy
    x = mg.tensor(np.arange(3.0), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and isinstance(y.data, cp.ndarray)
    (g,) = mg.grad((y * y).sum(), x)
    assert g.device == "cpu"
    np.testing.assert_allclose(g.numpy(), 2 * np.arange(3.0))
    with pytest.raises(ValueError, match="different devices"):
        x + y


@pytest.mark.filterwarnings("ignore:eigenvalues. power iteration did not reach:RuntimeWarning")
def test_models_and_curvature_on_gpu_match_cpu():
    """LeNet-5 (conv, max pooling) loss and gradients, and the curvature operators' spectra on
    a small network: the same power iterations (same start, same count) on both devices, Lanczos
    through SciPy (host copies of device vectors), Hutchinson's trace and SLQ."""
    from minigrad.curvature import (
        GGNOperator,
        HessianOperator,
        density,
        eigenvalues,
        trace,
    )

    rng = np.random.default_rng(2)
    x = rng.random((4, 1, 28, 28))
    labels = rng.integers(0, 10, 4)
    xs, ys = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    results = {}
    for device in ("cpu", "cuda"):
        model = models.lenet5(rng=0, dtype=np.float64).to(device)
        loss = F.cross_entropy(model(mg.tensor(x, device=device)), labels)
        grads = [g.numpy() for g in mg.grad(loss, model.parameters(), create_graph=True)]
        small = models.mlp([5, 7, 3], activation="tanh", rng=1, dtype=np.float64).to(device)
        logits = small(mg.tensor(xs, device=device))
        hess = HessianOperator(F.cross_entropy(logits, ys), small.parameters())
        ggn = GGNOperator(F.cross_entropy(logits, ys), logits, small.parameters())
        spectra = [eigenvalues(hess, k=2, method="power", tol=0, maxiter=25),
                   eigenvalues(hess, k=2, method="lanczos"), eigenvalues(ggn, k=1, maxiter=25),
                   trace(hess, samples=4), density(hess, probes=2, steps=5, points=50).density]
        results[device] = (loss.numpy(), grads, spectra)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-10)
    for a, c in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(a, c, rtol=1e-8, atol=1e-12)
    for a, c in zip(results["cuda"][2], results["cpu"][2]):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------ the backend itself
def test_device_arrays_reach_the_host_only_explicitly(cupy):
    """What the double emulates and the engine relies on, checked on whichever backend runs
    (on a GPU machine this checks the double's model of CuPy against CuPy)."""
    x = cupy.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError):
        np.asarray(x)
    with pytest.raises(TypeError):
        x + np.ones(3)
    with pytest.raises(TypeError):
        np.ones(3) * x
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        x[...] = np.zeros((2, 3))
    total = x.sum()
    assert isinstance(total, cupy.ndarray) and total.shape == ()   # never a NumPy scalar
    assert isinstance(np.sum(x), cupy.ndarray) and isinstance(np.exp(x), cupy.ndarray)
    assert float(total) == 15.0 and total.item() == 15.0 and int(x[1, 2]) == 5
    np.testing.assert_array_equal(x.get(), cupy.asnumpy(x))
    assert isinstance(x.get(), np.ndarray)
    assert not hasattr(x.flags, "writeable") and x.T.base is x
    assert not isinstance(x.data, np.ndarray) and isinstance(x.data.ptr, int)
    assert 2.0 * x is not NotImplemented and isinstance(np.float64(2.0) * x, cupy.ndarray)


def test_the_double_counts_every_way_to_the_host(double):
    x = double.asarray(np.arange(4.0))
    with double.count_syncs() as rec:
        float(x.sum()), x[0].item(), x.get(), double.asnumpy(x), bool(x[1] > 0), x.tolist()
        x[x > 1]                                       # a boolean mask reads its count back
        double.cuda.get_current_stream().synchronize()
        y = x * 2 + 1                                  # stays on the device
        np.exp(y)
    assert rec.by_kind() == {"float": 1, "item": 1, "get": 2, "bool": 1, "tolist": 1,
                             "mask-index": 1, "synchronize": 1}, rec.report()
    assert all(where.startswith("tests") for _, where in rec.events), rec.report()


def test_the_double_refuses_what_cupy_refuses(double):
    x = double.zeros(3, dtype=np.int64)
    with pytest.raises(TypeError, match="scatter_add"):
        double.add.at(x, double.asarray([0, 0]), 1)    # CuPy's atomics take no int64
    with pytest.raises(TypeError, match="casting"):
        x.astype(np.float32, casting="unsafe")
    with pytest.raises(TypeError):
        double.concatenate([x, np.zeros(3, np.int64)])
    assert np.isnan(double.empty(3).get()).all()      # never-written memory is not zeros
    bad = double.linalg.eigh(double.asarray(np.full((2, 2), np.nan)))
    assert np.isnan(bad[0].get()).all()               # no LinAlgError: NaN, as CuPy by default
    with pytest.raises(TypeError):
        x.set(np.zeros(3, np.float32))


# ------------------------------------------------------------------------------- the engine
def test_backward_into_grad_on_gpu_matches_cpu_and_grads_are_owned(cupy):
    """loss.backward() fills .grad through autograd._owned, which asked NumPy's flags for
    `writeable` (CuPy's flags have no such field: every backward on a GPU failed)."""
    rng = np.random.default_rng(3)
    X, W, b = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    out = {}
    for device in ("cpu", "cuda"):
        w, bias = (mg.tensor(a, requires_grad=True, device=device) for a in (W, b))
        s = mg.tensor(np.ones(()), requires_grad=True, device=device)
        loss = ((mg.tensor(X, device=device) @ w.T + bias) * s).tanh().sum()
        loss.backward(retain_graph=True)
        (loss * 2).backward()                          # accumulates into .grad
        for t in (w, bias, s):
            t.grad.data[...] = t.grad.data * 1         # writable in place, not a broadcast view
        out[device] = [t.grad.numpy() for t in (w, bias, s)]
    for a, c in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-12)


def test_host_constants_follow_the_tensor_to_the_device(cupy):
    w = mg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True, device="cuda")
    for y in ([[1.0, -2.0, 0.5]] @ w, w * np.array([1.0, 2.0]), np.ones((2, 3)) @ w):
        assert y.device == "cuda"
    with pytest.raises(ValueError, match="different devices"):
        mg.tensor(np.ones(2)) + w.data[0]              # device data never moves to the host


def test_conv_batchnorm_pooling_and_dropout_on_gpu_match_cpu():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 8, 8))
    x[0, 0, :2, :2] = 1.0                              # a max-pooling window with ties
    labels = rng.integers(0, 5, 3)
    out = {}
    for device in ("cpu", "cuda"):
        model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=0, dtype=np.float64),
                              nn.BatchNorm2d(4, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Dropout(0.25, rng=np.random.default_rng(9)),
                              nn.Conv2d(4, 3, 3, stride=2, rng=1, dtype=np.float64),
                              nn.Flatten(), nn.Linear(3, 5, rng=2, dtype=np.float64)).to(device)
        xt = mg.tensor(x, device=device)
        loss = F.cross_entropy(model(xt), labels)
        grads = mg.grad(loss, model.parameters())
        h = F.avg_pool2d(xt, 2) + F.avg_pool2d(xt, 3, stride=1)[:, :, :4, :4]
        dropped = F.dropout(xt, 0.5, rng=np.random.default_rng(7))
        model.eval()
        evaluated = model(xt)
        state = model.state_dict()                     # host copies, running statistics too
        assert all(type(v) is np.ndarray for v in state.values())
        out[device] = [loss.numpy(), h.numpy(), dropped.numpy(), evaluated.numpy()] + \
            [g.numpy() for g in grads] + list(state.values())
    for a, c in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_loss_landscape_on_gpu_matches_cpu():
    from minigrad.nn import landscape

    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    out = {}
    for device in ("cpu", "cuda"):
        model = models.mlp([5, 6, 3], rng=0, dtype=np.float64).to(device)
        d1, d2 = (landscape.random_direction(model, rng=seed) for seed in (1, 2))
        center = landscape.current_parameters(model)

        def loss_fn(m, device=device):
            return F.cross_entropy(m(mg.tensor(X, device=device)), Y)

        grid = landscape.evaluate_grid(model, loss_fn, center, [d1, d2],
                                       [landscape.symmetric_coordinates(1.0, 3)] * 2)[0]
        line = landscape.interpolate(model, loss_fn, center, [c * 0.5 for c in center],
                                     landscape.between_coordinates(0.5, 4))[0]
        out[device] = [grid, line, landscape.direction_norms(d1),
                       np.array([landscape.cosine(d1, d2)])]
    for a, c in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-10)


# ------------------------------------------------------------------------------- optimizers
def _classification(n=24, d=6, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


def _optimizer(name, model):
    if name == "sgd":
        return SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    if name == "kfac-true":
        return KFAC(model, lr=0.1, damping=1e-2, fisher="true", rng=3, inv_update_every=2,
                    weight_decay=1e-3)
    if name == "kfac-adaptive":
        return KFAC(model, lr=0.1, damping=1e-2, fisher="empirical", damping_form="eigen",
                    factor_init="identity", adaptive_damping=True, adapt_every=2, kl_clip=None)
    cls = TRCG if name == "trcg" else STRCG
    return cls(model.parameters(), radius=1.0, hessian_fraction=0.5, seed=2)


@pytest.mark.parametrize("name", ["sgd", "kfac-true", "kfac-adaptive", "trcg", "strcg"])
def test_optimizer_steps_on_gpu_match_cpu_and_checkpoint_to_the_host(name, cupy):
    X, y = _classification()
    results = {}
    for device in ("cpu", "cuda"):
        model = models.mlp([6, 8, 4], activation="tanh", rng=0, dtype=np.float64).to(device)
        opt = _optimizer(name, model)
        x = mg.tensor(X, device=device)

        def closure(indices=None):
            rows = slice(None) if indices is None else indices
            logits = model(x[rows])
            return F.cross_entropy(logits, y[rows]), logits

        for step in range(4):
            if name == "sgd" and step % 2:             # .grad from loss.backward()
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
            elif name in ("trcg", "strcg"):
                opt.step(closure, batch_size=len(y))
            else:
                opt.step(closure)
        state = opt.state_dict()
        for s in state["state"]:
            for v in s.values():
                assert not isinstance(v, cupy.ndarray)   # checkpoints hold host arrays
        fresh = _optimizer(name, model)
        fresh.load_state_dict(state)
        for s in fresh.state:
            for v in s.values():
                if hasattr(v, "shape"):
                    assert device_of(v) == device
        if hasattr(opt, "close"):
            opt.close()
            fresh.close()
        results[device] = [p.numpy() for p in model.parameters()]
    for a, c in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-8, atol=1e-11)


def test_capture_statistics_on_gpu_match_cpu():
    rng = np.random.default_rng(5)
    x, labels = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 3, 4)
    out = {}
    for device in ("cpu", "cuda"):
        # the second convolution's patches are copied as rows (C kw >= 16), the first's as columns
        model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1, rng=0, dtype=np.float64), nn.Tanh(),
                              nn.Conv2d(8, 3, (3, 2), rng=2, dtype=np.float64), nn.Tanh(),
                              nn.Flatten(), nn.Linear(60, 3, rng=1, dtype=np.float64)).to(device)
        with nn.capture(model) as stats:
            F.cross_entropy(model(mg.tensor(x, device=device)), labels).backward()
            factors = [f for k in (0, 2, 5) for f in stats.kfac_factors(model[k])]
            norms = stats.per_example_grad_norms()
            noise = stats.noise_scale()
            summary = stats.summary()
        arrays = [to_device(a, "cpu") for a in factors + [norms]]
        out[device] = arrays + [np.array([noise.b_simple, noise.trace_cov, noise.grad_sq_norm])] + \
            [np.array([v for v in info.values() if v is not None], dtype=float)
             for info in summary.values()]
    for a, c in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ minigrad train --device cuda
def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


TRAIN_OPTIONS = {
    "sgd": ["--layer-stats", "--noise-scale-examples", 32],
    "kfac": ["--fisher", "true", "--inv-update-every", 2, "--kl-clip", 0.01],
    "trcg": ["--hessian-fraction", 0.25],
    "strcg": ["--hessian-fraction", 0.25],
}


@pytest.mark.parametrize("optimizer", sorted(TRAIN_OPTIONS))
def test_minigrad_train_device_cuda_matches_cpu(optimizer, tmp_path, cupy):
    """Every optimizer through the CLI on the device (in process, with `cupy` as the fixture
    installed it), against the same run on the CPU."""
    common = ["--optimizer", optimizer, "--steps", 6, "--eval-every", 3, "--dtype", "float64",
              "--hidden", 32, "--batch-size", 48, *TRAIN_OPTIONS[optimizer]]
    for device in ("cpu", "cuda"):
        ok(train(*common, "--device", device, "--out", tmp_path / device))
    run, ref = read_run(str(tmp_path / "cuda")), read_run(str(tmp_path / "cpu"))
    assert run["attrs"]["device"] == "cuda" and run["attrs"]["status"] == "finished"
    np.testing.assert_allclose(run["steps"]["loss"], ref["steps"]["loss"], rtol=1e-7)
    assert_same_params(tmp_path / "cuda", tmp_path / "cpu", rtol=1e-6)


def test_a_device_run_resumes_exactly(tmp_path, cupy):
    common = ["--device", "cuda", "--optimizer", "kfac", "--fisher", "true", "--dtype", "float64",
              "--hidden", 16, "--inv-update-every", 2, "--eval-every", 2]
    ok(train(*common, "--steps", 5, "--out", tmp_path / "whole"))
    ok(train(*common, "--steps", 3, "--out", tmp_path / "part"))
    ok(train("--steps", 5, "--resume", "--out", tmp_path / "part"))
    assert_same_params(tmp_path / "part", tmp_path / "whole", rtol=0)


def test_device_cuda_errors_are_one_line(tmp_path, double):
    double.configure(device_count=0)
    result = train("--device", "cuda", "--steps", 2, "--out", tmp_path / "none")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "CUDA" in result.output and not (tmp_path / "none").exists()
    double.configure(runtime_error="cudaErrorInsufficientDriver: CUDA driver version is "
                                   "insufficient for CUDA runtime version")
    result = train("--device", "cuda", "--steps", 2, "--out", tmp_path / "driver")
    assert result.exit_code == 1 and "cudaErrorInsufficientDriver" in result.output
    assert result.output.count("\n") == 1
    double.configure(device_count=2)                   # rank 0 of 1 takes GPU 0 of 2
    ok(train("--device", "cuda", "--steps", 2, "--out", tmp_path / "two"))


# ------------------------------------------------------------------ host synchronizations
# A host synchronization (float(), .item(), .get(), bool() of a device value ...) stalls the
# host until the GPU has finished everything queued; per step they must not grow with the
# model. Measured on the double through the CLI's own step (cli/training/steps.py one_step,
# labels on the device as the CLI puts them), for 1 and 4 hidden layers alike:
#   SGD: 3 = the loss value (logged, checked finite before backward)
#          + the labels' range check in cross_entropy (device labels go to the host for it)
#          + the gradients' finiteness check (one flag per parameter, read back together).
#   K-FAC, empirical Fisher: 5 = those 3 + the factors' finiteness check (all layers at once)
#          + the quadratic forms <V_l, P_l> of the KL clip (all layers at once).
#   K-FAC, true Fisher: 6 = 5 + the softmax probabilities, which go to the host to sample labels
#          with the optimizer's host Generator (the same labels on every device).
#   Steps that refresh the eigenbases (every inv_update_every): 1 more, the decompositions'
#          finiteness flags and the traces for pi of all layers in one transfer.
SYNC_BOUNDS = {"sgd": 3, "kfac-empirical": 5, "kfac-true": 6}


@pytest.mark.parametrize("hidden", [[16], [16, 16, 16, 16]], ids=["1-hidden", "4-hidden"])
@pytest.mark.parametrize("kind", sorted(SYNC_BOUNDS))
def test_host_synchronizations_per_training_step_are_bounded(kind, hidden, double):
    step_of = importlib.import_module("minigrad.cli.training.steps").one_step
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((32, 12)).astype(np.float32), rng.integers(0, 5, 32)
    model = models.mlp([12, *hidden, 5], activation="relu", rng=0).to("cuda")
    if kind == "sgd":
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = KFAC(model, lr=0.05, damping=1e-2, fisher=kind.split("-")[1], rng=0,
                   inv_update_every=3)
    counts = []
    for step in range(6):
        xb, yb = to_device(X, "cuda"), to_device(Y, "cuda")
        with double.count_syncs() as rec:
            step_of(kind.split("-")[0], model, opt, xb, yb, step)
        refresh = kind != "sgd" and step % 3 == 0
        bound = SYNC_BOUNDS[kind] + refresh
        assert rec.count <= bound, f"step {step} ({kind}, hidden {hidden}):\n{rec.report()}"
        counts.append(rec.count)
    if kind != "sgd":
        opt.close()
    assert counts == [SYNC_BOUNDS[kind] + (kind != "sgd" and s % 3 == 0) for s in range(6)], \
        f"fewer synchronizations than measured ({counts}): lower SYNC_BOUNDS"


# --------------------------------------------------------------------------- communicators
def _mpiexec():
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else shutil.which("mpiexec")


def _have_mpi():
    return importlib.util.find_spec("mpi4py") is not None and _mpiexec() is not None


needs_mpi = pytest.mark.skipif(
    not _have_mpi() and os.environ.get("MINIGRAD_REQUIRE_MPI") != "1",
    reason='needs mpi4py and mpiexec: pip install mpi4py mpich')

COMMUNICATOR_PROBE = '''
import os, sys
if {double!r}:
    sys.path.insert(0, {tests!r})
    import cupy_double
    cupy_double.install()
import numpy as np
import cupy
import minigrad as mg
import minigrad.functional as F
from minigrad.distributed.mpi import MPICommunicator
from minigrad.distributed.nccl import NCCLCommunicator
from minigrad.nn import models
from minigrad.optim import KFAC


def check_collectives(comm, label):
    r, P = comm.rank, comm.world_size
    dev32 = cupy.arange(5, dtype=np.float32) * (r + 1)
    dev64 = cupy.asarray(np.linspace(0, 1, 3)) + r
    devint = cupy.arange(4, dtype=np.int64) + 10 * r
    host = np.full(2, float(r + 1))
    got = comm.allreduce_sum([dev32, dev64, devint, host])
    assert [type(g) for g in got] == [cupy.ndarray] * 3 + [np.ndarray], (label, got)
    np.testing.assert_allclose(cupy.asnumpy(got[0]), np.arange(5) * 3)
    np.testing.assert_allclose(cupy.asnumpy(got[1]), 2 * np.linspace(0, 1, 3) + 1)
    np.testing.assert_array_equal(cupy.asnumpy(got[2]), 2 * np.arange(4) + 10)
    np.testing.assert_allclose(got[3], [3.0, 3.0])
    np.testing.assert_allclose(cupy.asnumpy(comm.allreduce_mean([dev64])[0]),
                               np.linspace(0, 1, 3) + 0.5)
    np.testing.assert_allclose(cupy.asnumpy(comm.broadcast([dev32], root=1)[0]), np.arange(5) * 2)
    assert comm.allreduce_scalars([r + 1.0], op="max") == [2.0]
    assert comm.allreduce_scalars([r + 1.0]) == [3.0]
    assert comm.broadcast_object({{"r": r}}, root=1) == {{"r": 1}}
    assert comm.allgather_object(r) == [0, 1]
    comm.barrier()


nccl = NCCLCommunicator()
check_collectives(nccl, "nccl")
for aware in ("0", "1"):        # staged through host memory, and CUDA-aware
    os.environ["MINIGRAD_CUDA_AWARE_MPI"] = aware
    check_collectives(MPICommunicator(), "mpi, cuda-aware=" + aware)

# K-FAC on the global batch, sharded over the two ranks with NCCL, against one process
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
params = {{}}
for name, comm in (("nccl", nccl), ("one", None)):
    model = models.mlp([6, 8, 8, 3], activation="tanh", rng=0, dtype=np.float64).to("cuda")
    opt = KFAC(model, lr=0.1, damping=1e-2, fisher="true", rng=1, inv_update_every=2)
    lo, hi = (8 * nccl.rank, 8 * nccl.rank + 8) if comm else (0, 16)
    if comm:
        opt.distribute(comm)
    x = mg.tensor(X[lo:hi], device="cuda")
    for step in range(3):
        opt.shard(hi - lo, 16, lo)
        def closure(indices=None):
            logits = model(x)
            return F.cross_entropy(logits, Y[lo:hi]), logits
        opt.step(closure)
    params[name] = [p.numpy() for p in model.parameters()]
for a, b in zip(params["nccl"], params["one"]):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
with open(os.path.join({out!r}, "ok-%d" % nccl.rank), "w") as f:
    f.write("ok")
'''


@needs_mpi
def test_nccl_and_mpi_communicators_on_device_arrays(tmp_path, cupy):
    """NCCL (and MPI, staged through the host and CUDA-aware) collectives on device buffers,
    and a K-FAC step distributed over NCCL against one process, on 2 ranks of mpiexec. With the
    double, NCCL's calls are checked and their data moved by MPI (see tests/cupy_double.py)."""
    is_double = getattr(cupy, "IS_DOUBLE", False)
    if not is_double and cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("NCCL needs one GPU per rank: 2 CUDA devices")
    script = tmp_path / "probe.py"
    script.write_text(COMMUNICATOR_PROBE.format(
        double=is_double, tests=TESTS, out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    result = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(script)],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "ok-0").exists() and (tmp_path / "ok-1").exists(), result.stdout


LAUNCHER = '''
import sys
if {double!r}:
    sys.path.insert(0, {tests!r})
    import cupy_double
    cupy_double.install()
from minigrad.cli import main
sys.exit(main())
'''


@needs_mpi
def test_minigrad_train_device_cuda_on_two_ranks_matches_one_cpu_process(tmp_path, cupy):
    """`mpiexec -n 2 minigrad train --device cuda` (MPI; device buffers staged through the host)
    against one CPU process on the same global batch."""
    is_double = getattr(cupy, "IS_DOUBLE", False)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(double=is_double,
                                        tests=TESTS))
    common = ["train", "--optimizer", "kfac", "--fisher", "empirical", "--steps", 4,
              "--batch-size", 64, "--hidden", 32, "--dtype", "float64", "--eval-every", 2]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    result = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", str(launcher),
                             *map(str, common), "--device", "cuda", "--out", tmp_path / "two"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ok(train(*common[1:], "--device", "cpu", "--out", tmp_path / "one"))
    assert_same_params(tmp_path / "two", tmp_path / "one", rtol=1e-9)
