"""`minigrad evaluate RUN` (cli/inspect.py) against an independent NumPy evaluation.

The reference reads the checkpoint's weights with numpy.load and the digits split from the
packaged HDF5 file with h5py, and computes, for the MLP 64 -> 16 -> 10 (ReLU between) in
float64 over ALL N examples of the split:

    z_n      = W_2 relu(W_1 x_n + b_1) + b_2
    loss     = (1/N) sum_n [logsumexp(z_n) - z_{n, y_n}]       (a mean per EXAMPLE)
    correct  = #{n : argmax_c z_{n, c} == y_n}                 (argmax over the classes)
    accuracy = correct / N

`minigrad evaluate` prints the loss to 6 decimals and the count exactly, so they must agree to
rounding, for every --batch-size: one batch (1000), sizes that leave a short last batch
(100: 100+100+100+60 on the 360 test examples; 7: 51 x 7 + 3), where dropping that batch or
averaging the per-batch means instead of the per-example losses would show, and 10, where a
(10, 10) batch of logits lets an argmax over the wrong axis (the examples) run without an error.
"""
import re
from importlib import resources

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import main

LINEAR_NAMES = ("0", "2")
LINE = re.compile(r"step (\d+), (\w+) split \((\d+) examples\): loss ([\d.]+), "
                  r"accuracy ([\d.]+) \((\d+)/(\d+)\)")


def digits_split(split):
    path = resources.files("minigrad.datasets") / "data" / "digits.h5"
    with h5py.File(str(path), "r") as f:
        rows = f[f"{split}_index"][()]
        images = f["images"][()][rows].reshape(len(rows), -1).astype(np.float64)
        labels = f["labels"][()][rows].astype(np.int64)
    return images, labels


def reference(checkpoint, split):
    """(mean cross-entropy, correct count, N) by the formulas of the module docstring."""
    x, y = digits_split(split)
    with np.load(checkpoint, allow_pickle=False) as z:
        (W1, b1), (W2, b2) = [(z[f"model.{k}.weight"], z[f"model.{k}.bias"])
                              for k in LINEAR_NAMES]
    logits = np.maximum(x @ W1.T + b1, 0.0) @ W2.T + b2
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    losses = lse - logits[np.arange(len(y)), y]
    correct = int((logits.argmax(axis=1) == y).sum())
    return losses.mean(), correct, len(y), losses, logits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    result = CliRunner().invoke(main, ["train", "--hidden", "16", "--dtype", "float64",
                                       "--steps", "25", "--batch-size", "64", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def evaluate_line(run, *args):
    result = CliRunner().invoke(main, ["evaluate", str(run), *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    m = LINE.search(result.output)
    assert m, result.output
    return m


@pytest.mark.parametrize("split, batch_size", [("test", 1000), ("test", 100), ("test", 10),
                                               ("test", 7), ("train", 100)])
def test_evaluate_prints_the_numpy_loss_and_accuracy_of_the_checkpoint(run, split, batch_size):
    loss, correct, n, _, _ = reference(run / "checkpoint.npz", split)
    m = evaluate_line(run, "--split", split, "--batch-size", batch_size)
    assert int(m[1]) == 25 and m[2] == split and int(m[3]) == n
    assert (int(m[6]), int(m[7])) == (correct, n)
    assert float(m[5]) == pytest.approx(correct / n, abs=5e-7)
    assert float(m[4]) == pytest.approx(loss, abs=5e-7 + 1e-12)


def test_the_reference_can_tell_the_likely_errors_apart(run):
    """Guards against a vacuous comparison: on the test split with batches of 100 the loss
    without the last 60 examples, and the mean of the four per-batch means, each differ from
    the per-example mean by more than the printed precision; the model is neither always right
    nor always wrong, and without the last batch the count changes."""
    loss, correct, n, losses, logits = reference(run / "checkpoint.npz", "test")
    _, y = digits_split("test")
    assert n == 360 and 0 < correct < n
    assert abs(losses[:300].mean() - loss) > 1e-5
    per_batch = np.mean([losses[i:i + 100].mean() for i in range(0, n, 100)])
    assert abs(per_batch - loss) > 1e-5
    assert int((logits[:300].argmax(axis=1) == y[:300]).sum()) != correct
