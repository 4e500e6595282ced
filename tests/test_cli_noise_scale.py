"""`minigrad train --noise-scale-examples N`: the logged gradient noise scale against a NumPy
computation of the per-example gradients of the same N examples, at the checkpointed weights.

For examples n = 1..N with gradients x_n of their own losses (McCandlish et al. 2018):
    tr(Sigma) = (sum_n |x_n|^2 - N |x_bar|^2) / (N - 1),   |G|^2 = (N |x_bar|^2 - mean_n |x_n|^2) / (N - 1),
    B_simple = tr(Sigma) / |G|^2.
"""
import numpy as np
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.checkpoint import read_checkpoint
from minigrad.cli.runlog import read_run

from minigrad import datasets

SEED, N_EXAMPLES = 2, 96


def per_example_grads(weights, x, y):
    """(N, P) per-example gradients of the cross-entropy of the ReLU MLP (W1, b1, W2, b2)."""
    W1, b1, W2, b2 = weights
    z1 = x @ W1.T + b1
    h = np.maximum(z1, 0)
    z2 = h @ W2.T + b2
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d2 = p - np.eye(z2.shape[1])[y]                  # dl_n/dz2
    d1 = (d2 @ W2) * (z1 > 0)                        # dl_n/dz1
    parts = [np.einsum("no,ni->noi", d1, x), d1, np.einsum("no,ni->noi", d2, h), d2]
    return np.concatenate([part.reshape(len(x), -1) for part in parts], axis=1)


def test_logged_noise_scale_is_the_per_example_estimate(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--hidden", "8", "--steps", "12", "--eval-every", "6",
                                       "--dtype", "float64", "--seed", str(SEED), "--keep-checkpoints",
                                       "--checkpoint-every", "6", "--noise-scale-examples",
                                       str(N_EXAMPLES), "--no-layer-stats", "--out", str(out)])
    assert result.exit_code == 0, result.output
    evals = read_run(str(out))["evals"]
    images, labels, _ = datasets.load("digits", "train")
    images = images.reshape(len(images), -1).astype(np.float64)
    np.testing.assert_array_equal(evals["step"], [6, 12])
    for k, step in enumerate(evals["step"]):
        state = read_checkpoint(str(out), step=int(step))[0]
        weights = [state[key] for key in state]      # Linear 0 weight, bias, Linear 2 weight, bias
        rows = np.sort(np.random.default_rng([SEED, 1, int(step)]).choice(
            len(labels), N_EXAMPLES, replace=False))
        g = per_example_grads(weights, images[rows], labels[rows])
        sq, mean_sq = (g * g).sum(1), float((g.mean(0) ** 2).sum())
        trace = (sq.sum() - N_EXAMPLES * mean_sq) / (N_EXAMPLES - 1)
        grad_sq = (N_EXAMPLES * mean_sq - sq.mean()) / (N_EXAMPLES - 1)
        np.testing.assert_allclose(evals["noise_trace_cov"][k], trace, rtol=1e-10)
        np.testing.assert_allclose(evals["noise_grad_sq_norm"][k], grad_sq, rtol=1e-10)
        np.testing.assert_allclose(evals["noise_scale"][k], trace / grad_sq, rtol=1e-10)
    assert evals["noise_scale"][0] != evals["noise_scale"][1]   # fresh examples, moved weights
