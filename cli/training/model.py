"""The model of a run, built from its configuration, and the loss it is trained on.

The models come from minigrad.nn.models: an mlp on flattened images, LeNet-5 (28x28 images),
ResNet-20 (image sides divisible by 4) or an autoencoder that reconstructs flattened images.
The weights are drawn from the run's --seed, so a configuration always gives the same model.
"""
import contextlib

import click
import numpy as np

import minigrad.functional as F
from minigrad.nn import models

# --model autoencoder without --hidden: encoder sizes after the input (Hinton & Salakhutdinov 2006
# for 28x28 images)
AUTOENCODER_HIDDEN = {64: [32, 16, 8], 784: [1000, 500, 250, 30]}


def build_model(config, shape, classes):
    """The model of `config` for images of `shape` (C, H, W) in `classes` classes. For an
    autoencoder without hidden sizes, config["hidden"] is set to the ones chosen from the image
    size (AUTOENCODER_HIDDEN); a model that does not fit the images is a click.UsageError."""
    c, h, w = shape
    dtype = np.dtype(config["dtype"])
    if config["model"] == "mlp":
        sizes = [c * h * w] + list(config["hidden"]) + [classes]
        return models.mlp(sizes, activation="relu", rng=config["seed"], dtype=dtype)
    if config["model"] == "autoencoder":
        if config["hidden"] is None:
            config["hidden"] = AUTOENCODER_HIDDEN.get(c * h * w, [256, 64, 16])
        return models.autoencoder([c * h * w] + list(config["hidden"]), rng=config["seed"],
                                  dtype=dtype)
    if config["model"] == "lenet":
        if (h, w) != (28, 28):
            raise click.UsageError(f"--model lenet needs 28x28 images (mnist, fashion-mnist); "
                                   f"{config['dataset']} has {h}x{w}")
        return models.lenet5(classes, in_channels=c, rng=config["seed"], dtype=dtype)
    if h % 4 or w % 4:
        raise click.UsageError(f"--model resnet20 needs image sides divisible by 4, got {h}x{w}")
    return models.resnet20(classes, in_channels=c, rng=config["seed"], dtype=dtype)


def is_autoencoder(model):
    return isinstance(model, models.Autoencoder)


def loss_of(model, logits, y, reduction="mean"):
    """Cross-entropy of a classifier's logits against labels y; for the autoencoder the binary
    cross-entropy of the reconstruction logits against the images y, summed over pixels and
    averaged over the batch ("batchmean"; "sum" sums over the batch too)."""
    if is_autoencoder(model):
        return models.binary_cross_entropy_with_logits(
            logits, y, reduction="batchmean" if reduction == "mean" else reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode inside; every module's own mode (train or eval) restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)   # what Module.train sets, one by one
