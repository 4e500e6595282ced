"""The same checks on CuPy: every op of the table on the GPU against the CPU (forward and
vector-Jacobian product), gradcheck/gradgradcheck on GPU tensors, the functional layer, a
Hessian-vector product, and device errors. Skipped where there is no CuPy or no GPU."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import gradcheck, gradgradcheck

cp = pytest.importorskip("cupy")
try:
    HAS_GPU = cp.cuda.runtime.getDeviceCount() > 0
except Exception:  # noqa: BLE001 - any CUDA driver error means no usable GPU
    HAS_GPU = False
pytestmark = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")

try:
    from op_table import cases, make_inputs
except ImportError:  # tests/ became a package
    from tests.op_table import cases, make_inputs

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


def test_moving_between_devices_is_differentiable_and_mixing_is_an_error():
    x = mg.tensor(np.arange(3.0), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and isinstance(y.data, cp.ndarray)
    (g,) = mg.grad((y * y).sum(), x)
    assert g.device == "cpu"
    np.testing.assert_allclose(g.numpy(), 2 * np.arange(3.0))
    with pytest.raises(ValueError, match="different devices"):
        x + y


def test_models_and_curvature_on_gpu_match_cpu():
    from minigrad.curvature import HessianOperator, eigenvalues
    from minigrad.nn import models

    rng = np.random.default_rng(2)
    x = rng.random((4, 1, 28, 28))
    labels = rng.integers(0, 10, 4)
    results = {}
    for device in ("cpu", "cuda"):
        model = models.lenet5(rng=0, dtype=np.float64).to(device)
        loss = F.cross_entropy(model(mg.tensor(x, device=device)), labels)
        grads = [g.numpy() for g in mg.grad(loss, model.parameters(), create_graph=True)]
        op = HessianOperator(F.cross_entropy(model(mg.tensor(x, device=device)), labels),
                             model.parameters())
        results[device] = (loss.numpy(), grads, eigenvalues(op, k=1, method="power", tol=1e-10))
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-10)
    for a, c in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(a, c, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(results["cuda"][2], results["cpu"][2], rtol=1e-6)
