"""Maintainer script: export scikit-learn's copy of the UCI optdigits 8x8 images to
datasets/data/digits.h5.  Run once, by hand: ``python datasets/_export_digits.py``.

scikit-learn is needed only here, never at run time.  The file holds

    images       float32 (1797, 8, 8)  pixel counts 0..16 divided by 16, so in [0, 1]
    labels       int64   (1797,)       digit 0..9
    train_index  int64   (1437,)       sorted rows of the training split
    test_index   int64   (360,)        sorted rows of the test split

The split is the permutation ``numpy.random.default_rng(SPLIT_SEED).permutation(1797)``:
its first 360 entries are the test set, the rest the training set.  The attribute
``sha256`` is the array digest defined by ``minigrad.datasets._files.arrays_sha256``
(``DIGITS_SHA256`` in ``loaders.py``); the SHA-256 of the file itself, printed second, is
``DIGITS_FILE_SHA256`` there (the loader checks it before HDF5 reads the file).
"""
import hashlib
import os
import sys

import numpy as np

SPLIT_SEED = 20240601
N_TEST = 360


def main(path=None):
    from sklearn.datasets import load_digits  # maintainer-only dependency

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    from _files import arrays_sha256, write_h5_atomic

    path = path or os.path.join(here, "data", "digits.h5")
    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / np.float32(16.0)).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    arrays = {
        "images": images,
        "labels": labels,
        "train_index": np.sort(perm[N_TEST:]).astype(np.int64),
        "test_index": np.sort(perm[:N_TEST]).astype(np.int64),
    }
    attrs = {
        "name": "digits",
        "sha256": arrays_sha256(arrays),
        "split_seed": SPLIT_SEED,
        "source": "UCI optdigits (Alpaydin & Kaynak 1998) as shipped in scikit-learn "
                  "(sklearn.datasets.load_digits)",
        "license": "CC BY 4.0",
        "pixel_scale": "original counts 0..16 divided by 16",
    }
    write_h5_atomic(path, arrays, attrs, deterministic=True)
    with open(path, "rb") as f:
        print(path, attrs["sha256"], hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
    main(*sys.argv[1:])
