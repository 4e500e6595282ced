"""The data of a run: its training and test splits (minigrad.datasets), in the run's dtype and
flattened for the models that take vectors (mlp, autoencoder).

Data order: epoch e visits the training split in the order of
``numpy.random.default_rng([seed, e]).permutation(n)`` (via ``minigrad.datasets.batches``),
in batches of --batch-size (the last one of an epoch shorter). A step is one batch; the
checkpoint stores (epoch, position), so a resumed run sees exactly the batches the
uninterrupted one would.
"""
import warnings

import numpy as np

from minigrad import datasets

from .. import parallel


class Splits:
    """images, labels (the training split), test_images, test_labels; shape (C, H, W) of one
    image and the number of classes; flatten: whether the images are rows of C*H*W values."""

    def __init__(self, images, labels, test_images, test_labels, shape, classes, flatten):
        self.images, self.labels = images, labels
        self.test_images, self.test_labels = test_images, test_labels
        self.shape, self.classes, self.flatten = shape, classes, flatten


def load_splits(config, comm):
    """The Splits of config["dataset"]; a warning of the loader (e.g. a stale cache rebuilt) is
    printed as one line, and every rank checks that it read the same data as rank 0."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, labels, meta = datasets.load(config["dataset"], "train")
        test_images, test_labels, _ = datasets.load(config["dataset"], "test")
    for warning in caught:
        parallel.echo(f"Warning: {' '.join(str(warning.message).split())}", err=True)
    parallel.check_same(comm, "data", {"train": parallel.data_fingerprint(images, labels),
                                       "test": parallel.data_fingerprint(test_images, test_labels)})
    dtype = np.dtype(config["dtype"])
    images, test_images = images.astype(dtype, copy=False), test_images.astype(dtype, copy=False)
    flatten = config["model"] in ("mlp", "autoencoder")
    if flatten:
        images = images.reshape(len(images), -1)
        test_images = test_images.reshape(len(test_images), -1)
    return Splits(images, labels, test_images, test_labels, tuple(meta["shape"]),
                  len(meta["classes"]), flatten)
