"""The numbers of `minigrad hessian` and `minigrad landscape` against references written from
scratch in NumPy on a tiny digits run (64-8-10 ReLU MLP, float64, 610 parameters).

The references share nothing with the code under test: the weights are read from
checkpoint.npz with numpy.load, the images from the digits split, and the network, its
cross-entropy, its gradient and its exact Hessian-vector product (Pearlmutter's R-operator)
are written out below. The random parts are rebuilt from their documented recipes:

- hessian: the batch is the first B rows of default_rng(seed).permutation(n); the trace probes
  come from default_rng([seed, 3]) and the SLQ probes from default_rng([seed, 4]), each a
  Rademacher vector rng.integers(0, 2, n) * 2 - 1 over the flat parameters (model.parameters()
  order, each array in C order). Hutchinson's estimate is then an exact function of H and
  is compared tightly, and so is each SLQ probe's first moment sum_i tau_i theta_i, which is
  q^T H q for the unit probe q = z / sqrt(n) (Gauss quadrature is exact for degree 1).
- landscape: the directions are N(0, 1) draws of default_rng(seed), parameter by parameter in
  parameter order (d1, then d2 from the same generator), each weight row rescaled to the norm
  of the same row of the weights, biases zeroed (filter normalization, ignore biasbn); the
  rows are the first B of default_rng(0).permutation(n). The file records the coordinates,
  not the directions (only their norms), so the directions are rebuilt from the seed.
"""
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minigrad import datasets
from minigrad.cli import plotting
from minigrad.cli.hessian import hessian
from minigrad.cli.landscape import landscape
from minigrad.cli.train import train

HIDDEN = 8
NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]
N_PARAMS = 64 * HIDDEN + HIDDEN + HIDDEN * 10 + 10
N_TRAIN = 1437


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module", autouse=True)
def no_plots():
    """The pictures are tested elsewhere; here they would only take time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plotting, "pyplot", lambda: None)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 20-step float64 SGD run."""
    out = tmp_path_factory.mktemp("curvature") / "run"
    ok(CliRunner().invoke(train, ["--out", str(out), "--hidden", str(HIDDEN), "--steps", "20",
                                  "--dtype", "float64", "--seed", "1"]))
    return out


# ------------------------------------------------------------------ the NumPy reference
def weights(folder):
    """[W1, b1, W2, b2] of the checkpoint, float64, read with numpy alone."""
    with np.load(folder / "checkpoint.npz", allow_pickle=False) as z:
        return [np.array(z[f"model.{name}"], dtype=np.float64) for name in NAMES]


def digits(rows):
    images, labels, _ = datasets.load("digits", "train")
    return images[rows].reshape(len(rows), -1).astype(np.float64), labels[rows]


def forward(theta, x, y):
    """(mean cross-entropy, accuracy, intermediates) of the MLP x -> relu(x W1^T + b1) W2^T + b2."""
    w1, b1, w2, b2 = theta
    a1 = x @ w1.T + b1
    h = np.maximum(a1, 0.0)
    logits = h @ w2.T + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(log_p[np.arange(len(y)), y])
    accuracy = np.mean(logits.argmax(axis=1) == y)
    return loss, accuracy, (a1, h, np.exp(log_p))


def flat(arrays):
    return np.concatenate([a.reshape(-1) for a in arrays])


def unflat(v, like):
    out, at = [], 0
    for a in like:
        out.append(v[at:at + a.size].reshape(a.shape))
        at += a.size
    return out


def gradient(theta, x, y):
    w2 = theta[2]
    _, _, (a1, h, p) = forward(theta, x, y)
    d2 = p.copy()
    d2[np.arange(len(y)), y] -= 1
    d2 /= len(y)
    d1 = (d2 @ w2) * (a1 > 0)
    return flat([d1.T @ x, d1.sum(0), d2.T @ h, d2.sum(0)])


def hvp(theta, x, y, v):
    """H v, exactly: the R-operator (directional derivative along v) of `gradient`."""
    w2 = theta[2]
    v1, c1, v2, c2 = unflat(v, theta)
    _, _, (a1, h, p) = forward(theta, x, y)
    active = a1 > 0
    d2 = p.copy()
    d2[np.arange(len(y)), y] -= 1
    d2 /= len(y)
    r_a1 = x @ v1.T + c1
    r_h = r_a1 * active
    r_logits = r_h @ w2.T + h @ v2.T + c2
    r_d2 = p * (r_logits - np.sum(p * r_logits, axis=1, keepdims=True)) / len(y)
    r_d1 = (r_d2 @ w2 + d2 @ v2) * active
    return flat([r_d1.T @ x, r_d1.sum(0), r_d2.T @ h + d2.T @ r_h, r_d2.sum(0)])


def rademacher(rng, n):
    return rng.integers(0, 2, n).astype(np.float64) * 2 - 1


# -------------------------------------------------------------------------- hessian
SEED, BATCH, SAMPLES, PROBES, STEPS = 3, 200, 12, 3, 8


@pytest.fixture(scope="module")
def spectrum(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("hessian") / "h.h5"
    ok(CliRunner().invoke(hessian, [str(run), "--batch-size", str(BATCH), "--seed", str(SEED),
                                    "--trace-samples", str(SAMPLES), "--probes", str(PROBES),
                                    "--lanczos-steps", str(STEPS), "--top-k", "2",
                                    "--out", str(path)]))
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        data = {name: f[name][()] for name in ("trace", "trace_std", "top_eigenvalues",
                                               "density/nodes", "density/weights")}
    return attrs, data


@pytest.fixture(scope="module")
def reference(run):
    """(theta, x, y, dense H) on the command's batch."""
    theta = weights(run)
    x, y = digits(np.random.default_rng(SEED).permutation(N_TRAIN)[:BATCH])
    H = np.stack([hvp(theta, x, y, e) for e in np.eye(N_PARAMS)], axis=1)
    return theta, x, y, H


def test_the_numpy_reference_is_the_derivative_of_the_numpy_loss(reference):
    """The reference's own check: gradient and Hessian against central differences."""
    theta, x, y, H = reference
    v = np.random.default_rng(0).standard_normal(N_PARAMS)
    t = flat(theta)
    h = 1e-5

    def loss(step):
        return forward(unflat(t + step * v, theta), x, y)[0]

    def grad(step):
        return gradient(unflat(t + step * v, theta), x, y)

    assert gradient(theta, x, y) @ v == pytest.approx((loss(h) - loss(-h)) / (2 * h), rel=1e-6)
    np.testing.assert_allclose(H @ v, (grad(h) - grad(-h)) / (2 * h), rtol=1e-5,
                               atol=1e-6 * np.abs(H @ v).max())
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-12 * np.abs(H).max())


def test_loss_and_gradient_norm_are_those_of_the_batch(spectrum, reference):
    attrs, _ = spectrum
    theta, x, y, _ = reference
    assert attrs["parameters"] == N_PARAMS and attrs["batch_size"] == BATCH
    assert attrs["loss"] == pytest.approx(forward(theta, x, y)[0], rel=1e-12)
    assert attrs["grad_norm"] == pytest.approx(np.linalg.norm(gradient(theta, x, y)), rel=1e-10)


def test_trace_is_hutchinsons_mean_over_the_seeded_probes(spectrum, reference):
    _, data = spectrum
    H = reference[3]
    rng = np.random.default_rng([SEED, 3])
    quads = np.array([z @ H @ z for z in (rademacher(rng, N_PARAMS) for _ in range(SAMPLES))])
    assert data["trace"] == pytest.approx(quads.mean(), rel=1e-8)
    assert data["trace_std"] == pytest.approx(quads.std(ddof=1) / np.sqrt(SAMPLES), rel=1e-8)
    # not the exact trace (an estimate from 12 probes), but an estimate of it
    assert data["trace"] != pytest.approx(np.trace(H), rel=1e-6)
    assert abs(data["trace"] - np.trace(H)) < 5 * data["trace_std"]


def test_each_slq_probes_first_moment_is_its_rayleigh_quotient(spectrum, reference):
    _, data = spectrum
    H = reference[3]
    nodes, w = data["density/nodes"], data["density/weights"]
    assert nodes.shape == (PROBES, STEPS) and not np.isnan(nodes).any()
    rng = np.random.default_rng([SEED, 4])
    quotients = np.array([z @ H @ z / N_PARAMS
                          for z in (rademacher(rng, N_PARAMS) for _ in range(PROBES))])
    lam = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(np.sum(w * nodes, axis=1), quotients, rtol=1e-8,
                               atol=1e-12 * lam[-1])
    np.testing.assert_allclose(data["top_eigenvalues"], lam[::-1][:2], rtol=1e-8)


# ------------------------------------------------------------------------ landscape
def directions(theta, seed, dims):
    """The filter-normalized directions of the documented recipe (biases get none)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(dims):
        d = []
        for w in theta:
            g = rng.standard_normal(w.shape)
            if w.ndim <= 1:
                d.append(np.zeros_like(w))
            else:
                scale = np.linalg.norm(w, axis=1) / np.linalg.norm(g, axis=1)
                d.append(g * scale[:, None])
        out.append(d)
    return out


def read_landscape(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("x", "loss", "accuracy", "rows")}
        data["y"] = f["y"][()] if "y" in f else None
        data["names"] = [n.decode() if isinstance(n, bytes) else n for n in f["parameters/names"]]
        data["direction_norm"] = f["parameters/direction_norm"][()]
    return data


@pytest.mark.parametrize("dims", [1, 2])
def test_landscape_values_are_the_loss_at_the_recorded_coordinates(run, tmp_path, dims):
    path = tmp_path / f"l{dims}.h5"
    seed = 4
    ok(CliRunner().invoke(landscape, [str(run), "--dims", str(dims), "--resolution", "5",
                                      "--span", "0.8", "--batch-size", "300",
                                      "--seed", str(seed), "--out", str(path)]))
    data = read_landscape(path)
    assert data["names"] == NAMES
    np.testing.assert_array_equal(data["rows"], np.random.default_rng(0).permutation(N_TRAIN)[:300])
    theta = weights(run)
    x, y = digits(data["rows"])
    ds = directions(theta, seed, dims)
    np.testing.assert_allclose(data["direction_norm"],
                               [[np.linalg.norm(a) for a in d] for d in ds], rtol=1e-12)
    a = data["x"]
    np.testing.assert_allclose(a, [-0.8, -0.4, 0, 0.4, 0.8], rtol=1e-15)
    if dims == 1:
        points = {(i,): [t + a[i] * d for t, d in zip(theta, ds[0])] for i in range(len(a))}
    else:
        b = data["y"]
        np.testing.assert_array_equal(b, a)
        points = {(i, j): [t + a[i] * d1 + b[j] * d2 for t, d1, d2 in zip(theta, *ds)]
                  for i in range(len(a)) for j in range(len(b))}
    assert data["loss"].shape == (len(a),) * dims
    center = forward(theta, x, y)[0]
    for index, point in points.items():
        loss, accuracy, _ = forward(point, x, y)
        assert data["loss"][index] == pytest.approx(loss, rel=1e-10), index
        assert data["accuracy"][index] == accuracy, index
        if any(k != 2 for k in index):   # off the centre the loss has moved
            assert abs(loss - center) > 1e-3 * center, index
