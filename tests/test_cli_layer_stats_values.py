"""The per-layer statistics `minigrad train` logs under run.h5 layers/ (cli/train.py
`layer_statistics`, nn.capture `summary`) recomputed from first principles.

At every evaluation the CLI logs, for each Linear layer of the model, statistics of one forward
and backward pass of the FIRST --batch-size rows of the training split (in the split's stored
order, the same rows at every evaluation; cli/runlog.py) with the weights of that moment. Here
the weights come from the checkpoints kept at the evaluated steps (read with numpy.load), the
rows from the packaged digits file (read with h5py), and everything else is NumPy:

    MLP 64 -> 16 -> 8 -> 10, ReLU between:  a_0 = x,  s_l = a_l W_l^T + b_l,
                                            a_{l+1} = relu(s_l),  z = s_last
    L = (1/B) sum_n [logsumexp(z_n) - z_{n, y_n}]     (mean cross-entropy, TRUE labels y)
    dL/dz = (softmax(z) - onehot(y)) / B
    dL/ds_l = (dL/ds_{l+1} W_{l+1}) * [s_l > 0]       (backprop through the ReLU)
    dL/dW_l = (dL/ds_l)^T a_l,  dL/db_l = sum_n dL/ds_{l,n}

and the documented metrics of capture.summary, per layer l:
    input_mean, input_std       mean and population std (ddof 0) of every element of a_l
    input_zero_fraction         fraction of elements of a_l exactly 0
    input_saturated_fraction    fraction with |a_l| >= 0.99
    output_grad_norm            Frobenius norm of dL/ds_l
    grad_norm                   sqrt(||dL/dW_l||_F^2 + ||dL/db_l||^2)
compared in float64 (--dtype float64) to 1e-10 relative.
"""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import main
from support import digits_train

BATCH = 32
HIDDEN = (16, 8)
EVAL_STEPS = (3, 6)
LINEAR_NAMES = ("0", "2", "4")   # the Sequential indices of the Linear layers
METRICS = ("input_mean", "input_std", "input_zero_fraction", "input_saturated_fraction",
           "output_grad_norm", "grad_norm")


def load_weights(path):
    """[(W, b)] of the Linear layers, in order, from a checkpoint .npz (numpy only)."""
    with np.load(path, allow_pickle=False) as z:
        return [(z[f"model.{name}.weight"], z[f"model.{name}.bias"]) for name in LINEAR_NAMES]


def reference_statistics(weights, x, y):
    """{layer name: {metric: value}} by the formulas of the module docstring."""
    inputs, pre = [], []
    a = x
    for k, (W, b) in enumerate(weights):
        inputs.append(a)
        s = a @ W.T + b
        pre.append(s)
        a = np.maximum(s, 0.0) if k < len(weights) - 1 else s
    z = pre[-1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(z)
    onehot[np.arange(len(y)), y] = 1.0
    g = (p - onehot) / len(y)
    grads = [None] * len(weights)
    for k in range(len(weights) - 1, -1, -1):
        grads[k] = g
        if k:
            g = (g @ weights[k][0]) * (pre[k - 1] > 0)
    out = {}
    for name, a, g in zip(LINEAR_NAMES, inputs, grads):
        dW, db = g.T @ a, g.sum(axis=0)
        out[name] = {
            "input_mean": a.sum() / a.size,
            "input_std": np.sqrt(((a - a.sum() / a.size) ** 2).sum() / a.size),
            "input_zero_fraction": np.count_nonzero(a == 0) / a.size,
            "input_saturated_fraction": np.count_nonzero(np.abs(a) >= 0.99) / a.size,
            "output_grad_norm": np.sqrt((g ** 2).sum()),
            "grad_norm": np.sqrt((dW ** 2).sum() + (db ** 2).sum()),
        }
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("layerstats") / "run"
    result = CliRunner().invoke(main, [
        "train", "--hidden", ",".join(map(str, HIDDEN)), "--dtype", "float64", "--steps", "6",
        "--eval-every", "3", "--batch-size", str(BATCH), "--lr", "0.5",
        "--checkpoint-every", "3", "--keep-checkpoints", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_logged_layer_statistics_equal_a_numpy_forward_and_backward_with_the_true_labels(run):
    x_all, y_all = digits_train()
    x, y = x_all[:BATCH], y_all[:BATCH]
    with h5py.File(run / "run.h5", "r") as f:
        np.testing.assert_array_equal(f["evals/step"][()], EVAL_STEPS)
        assert sorted(f["layers"]) == sorted(LINEAR_NAMES)
        logged = {name: {m: f[f"layers/{name}/{m}"][()] for m in METRICS}
                  for name in LINEAR_NAMES}
    for name in LINEAR_NAMES:
        for m in METRICS:
            assert logged[name][m].shape == (len(EVAL_STEPS),), (name, m)
    for i, step in enumerate(EVAL_STEPS):
        want = reference_statistics(load_weights(run / "checkpoints" / f"step-{step:08d}.npz"),
                                    x, y)
        for name in LINEAR_NAMES:
            for m in METRICS:
                np.testing.assert_allclose(logged[name][m][i], want[name][m], rtol=1e-10,
                                           atol=1e-15, err_msg=f"step {step} layer {name} {m}")


def test_the_statistics_are_informative_so_the_comparison_can_fail(run):
    """Guards against a vacuous comparison: the reference is label-sensitive (another labelling
    of the same rows changes the gradient norms by far more than the tolerance), the weights
    move between the evaluations, and the pixel inputs have both zeros and saturated values."""
    x_all, y_all = digits_train()
    x, y = x_all[:BATCH], y_all[:BATCH]
    w3 = load_weights(run / "checkpoints" / f"step-{EVAL_STEPS[0]:08d}.npz")
    w6 = load_weights(run / "checkpoints" / f"step-{EVAL_STEPS[1]:08d}.npz")
    true = reference_statistics(w6, x, y)
    for wrong in ((y + 1) % 10, y_all[1:BATCH + 1]):
        other = reference_statistics(w6, x, wrong)
        for name in LINEAR_NAMES:
            for m in ("output_grad_norm", "grad_norm"):
                assert abs(other[name][m] - true[name][m]) > 1e-6 * true[name][m], (name, m)
    assert not np.array_equal(w3[0][0], w6[0][0])
    assert 0 < true["0"]["input_zero_fraction"] < 1
    assert 0 < true["0"]["input_saturated_fraction"] < 1
