"""Weight initialization, in place and through an explicit random source.

For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out * prod(kernel).
- Kaiming/He (He et al. 2015): std = gain / sqrt(fan); uniform bound = sqrt(3) * std.
- Glorot/Xavier (Glorot & Bengio 2010): std = gain * sqrt(2 / (fan_in + fan_out)); bound = sqrt(3) * std.
gain: 1 (linear, sigmoid), 5/3 (tanh), sqrt(2) (relu), sqrt(2 / (1 + slope^2)) (leaky_relu).
`rng` is an int seed, a `numpy.random.Generator`, or None for the global default
(`minigrad.manual_seed`). Values are drawn in float64 on the host and cast, so a seed gives
the same weights on every device and dtype.
"""
import math

import numpy as np

from ..backend import to_device
from ..random import generator


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "identity", "sigmoid", "conv2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def fans(shape):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a weight of at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor, values):
    tensor.data = to_device(np.asarray(values, dtype=tensor.dtype), tensor.device)
    return tensor


def uniform_(tensor, low=0.0, high=1.0, rng=None):
    return _fill(tensor, generator(rng).uniform(low, high, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, rng=None):
    return _fill(tensor, generator(rng).normal(mean, std, tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def _fan(tensor, mode):
    fan_in, fan_out = fans(tensor.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, rng)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, rng)


def xavier_uniform_(tensor, gain=1.0, rng=None):
    fan_in, fan_out = fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, rng)


def xavier_normal_(tensor, gain=1.0, rng=None):
    fan_in, fan_out = fans(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)
