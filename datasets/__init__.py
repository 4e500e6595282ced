"""minigrad.datasets: data sets as NumPy arrays, and reproducible, shardable mini-batches.

    images, labels, meta = load("digits", split="train")   # float32 NCHW in [0, 1], int64
    for x, y in batches(images, labels, 64, seed=epoch, rank=r, world_size=w): ...

``digits`` is embedded in the package; ``mnist`` and ``fashion-mnist`` are read from local IDX
files (see ``storage`` for where they are looked for), verified by SHA-256 and cached as HDF5.
Imports nothing else of minigrad's (NumPy and h5py only).
"""
from .batching import batches, num_batches
from .loaders import load, names
from .storage import ChecksumError, DataNotFoundError, cache_dir, cache_path, search_dirs

__all__ = ["load", "batches", "num_batches", "names", "search_dirs", "cache_dir", "cache_path",
           "ChecksumError", "DataNotFoundError"]
