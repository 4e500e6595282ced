"""Layers: Linear, Conv2d, pooling, Flatten, activations, Dropout and batch normalization.

Each is a thin Module around `minigrad.functional`, so its derivatives of every order come
from the engine. Linear and Conv2d start as PyTorch's do: weight and bias uniform in
+-1/sqrt(fan_in) (Kaiming-uniform with a = sqrt(5)); pass `rng` (an int seed or a Generator)
for a reproducible draw, or re-initialize with minigrad.nn.init.
"""
import math

import numpy as np

from .. import functional as F
from ..backend import get_default_dtype
from ..random import generator
from . import init
from .module import Module, Parameter


def _check_input(layer, x, ndim, axis, size, what):
    """The error a layer raises for an input of the wrong shape: layer, expected, actual."""
    if x.ndim not in ndim or x.shape[axis] != size:
        dims = " or ".join(f"{n}-d" for n in ndim)
        raise ValueError(f"{layer!r}: expected a {dims} input with {size} {what} on axis {axis}, "
                         f"got shape {x.shape}")


def _new_parameter(shape, dtype):
    return Parameter(np.zeros(shape, dtype=dtype or get_default_dtype()))


class Linear(Module):
    """y = x W^T + b;  W (out_features, in_features), b (out_features,)."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, got "
                             f"{in_features} and {out_features}")
        rng = generator(rng)
        self.weight = _new_parameter((self.out_features, self.in_features), dtype)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        self.bias = None
        if bias:
            self.bias = _new_parameter((self.out_features,), dtype)
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected an input of shape (..., {self.in_features}), "
                             f"got {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """y[n, o] = b[o] + sum_c W[o, c] * x[n, c] (cross-correlation, NCHW); W (out, in, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"Conv2d: in_channels and out_channels must be >= 1, got "
                             f"{in_channels} and {out_channels}")
        pair = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
        self.kernel_size = tuple(int(k) for k in pair)
        self.stride, self.padding = stride, padding
        rng = generator(rng)
        self.weight = _new_parameter((self.out_channels, self.in_channels) + self.kernel_size, dtype)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        self.bias = None
        if bias:
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            self.bias = _new_parameter((self.out_channels,), dtype)
            init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), rng=rng)

    def forward(self, x):
        _check_input(self, x, (4,), 1, self.in_channels, "channels")
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class _Pool2d(Module):
    pool = None

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return type(self).pool(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """The maximum over each kernel window (stride defaults to the kernel size)."""

    pool = staticmethod(F.max_pool2d)


class AvgPool2d(_Pool2d):
    """The mean over each kernel window (stride defaults to the kernel size)."""

    pool = staticmethod(F.avg_pool2d)


class Flatten(Module):
    """Merge axes start_axis..end_axis (by default all but the batch axis)."""

    def __init__(self, start_axis=1, end_axis=-1):
        super().__init__()
        self.start_axis, self.end_axis = start_axis, end_axis

    def forward(self, x):
        return x.flatten(self.start_axis, self.end_axis)


class _Activation(Module):
    fn = None

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Activation):
    fn = staticmethod(F.relu)


class Tanh(_Activation):
    fn = staticmethod(F.tanh)


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Softplus(Module):
    """log(1 + e^(beta x)) / beta elementwise (F.softplus)."""

    def __init__(self, beta=1.0):
        super().__init__()
        if not beta > 0:   # (also refuses nan) checked here, not at the first forward
            raise ValueError(f"Softplus: beta must be > 0, got beta={beta}")
        self.beta = beta

    def forward(self, x):
        return F.softplus(x, self.beta)

    def extra_repr(self):
        return f"beta={self.beta}"


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise (F.leaky_relu)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if not math.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be finite, got "
                             f"negative_slope={negative_slope}")
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Dropout(Module):
    """Inverted dropout while training, the identity in eval mode. Masks come from `rng` (a seed
    or a Generator, the layer's own stream) or, with rng=None, from the global default
    generator at each call, so that `minigrad.manual_seed` makes the masks reproducible."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got p={p}")
        self.p = p
        self.rng = None if rng is None else generator(rng)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training, rng=generator(self.rng))

    def extra_repr(self):
        return f"p={self.p}"


class _BatchNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1), with batch statistics
    in training mode (updating the running ones) and the running statistics in eval mode."""

    ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        dtype = dtype or get_default_dtype()
        self.weight = Parameter(np.ones(self.num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.num_features, dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
        self.register_buffer("running_var", np.ones(self.num_features, dtype))

    def forward(self, x):
        _check_input(self, x, self.ndims, 1, self.num_features, "features")
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"


class BatchNorm1d(_BatchNorm):
    ndims = (2,)


class BatchNorm2d(_BatchNorm):
    ndims = (4,)
