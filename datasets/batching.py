"""Mini-batches, reproducible and shardable for data parallelism."""
import numbers

import numpy as np


def batches(images, labels, batch_size, seed=None, shuffle=True, drop_last=False,
            rank=0, world_size=1):
    """Yield ``(images[idx], labels[idx])`` for one epoch.

    The epoch order is ``numpy.random.default_rng(seed).permutation(n)`` when ``shuffle``
    (``seed`` may be an int or a ``Generator``; the same int gives the same order), else
    ``0..n-1``. It is cut into global batches of ``batch_size`` examples; the last one is
    shorter unless ``drop_last``.

    Data parallelism: with ``world_size`` ranks, every rank must pass the same ``seed`` and
    gets, of each global batch, its contiguous slice
    ``[rank * batch_size // world_size, (rank + 1) * batch_size // world_size)``, so the ranks
    together see each global batch exactly once. ``batch_size`` must be divisible by
    ``world_size``. A short last batch is split as evenly as possible (``numpy.array_split``),
    so every rank yields the same number of batches (a rank's share may then be empty).
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"batches: images has {n} examples but labels has {len(labels)}")
    for arg, value in (("batch_size", batch_size), ("world_size", world_size), ("rank", rank)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"batches: {arg} must be an int, got {value!r}")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    if world_size < 1:
        raise ValueError(f"batches: world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"batches: rank must be in [0, {world_size}), got {rank}")
    if batch_size % world_size:
        raise ValueError(f"batches: batch_size={batch_size} is not divisible by "
                         f"world_size={world_size}")
    return _iterate(images, labels, int(batch_size), seed, shuffle, drop_last, int(rank),
                    int(world_size))


def _iterate(images, labels, batch_size, seed, shuffle, drop_last, rank, world_size):
    n = len(images)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    local = batch_size // world_size
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < batch_size:
            if drop_last:
                return
            idx = np.array_split(idx, world_size)[rank]
        else:
            idx = idx[rank * local:(rank + 1) * local]
        yield images[idx], labels[idx]


def num_batches(n, batch_size, drop_last=False):
    """How many batches ``batches`` yields per epoch for ``n`` examples."""
    return n // batch_size if drop_last else -(-n // batch_size)
