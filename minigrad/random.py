"""The global default random Generator, for code that is given no explicit seed.

Every random choice in minigrad (initialization, dropout masks, sampled labels) takes an
explicit `rng` (an int seed or a `numpy.random.Generator`); where none is given it draws
from this generator, which `manual_seed` resets. Same seed, same run, bit for bit.
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reset the global default Generator to `seed` (an int >= 0); returns it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: the seed must be an int >= 0, got {seed!r}")
    # Reseed in place: whoever holds default_generator() follows the new seed too.
    _generator.bit_generator.state = type(_generator.bit_generator)(int(seed)).state
    return _generator


def default_generator():
    return _generator


def generator(rng=None):
    """`rng` as a Generator: None -> the global default, an int -> a new Generator seeded with it."""
    if rng is None:
        return _generator
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed >= 0 or a numpy.random.Generator, got {rng!r}")
