"""Pooling: a reduction over the window axes of im2col's columns (no padding).

With cols = im2col(x) of shape (N, C, kh, kw, OH, OW), max pooling is `max` over axes (2, 3)
and average pooling is `mean` over them, so both inherit their derivatives (of any order)
from `Unfold`/`Fold` and the reductions.
"""
from ..reduce_ops import max as _max, mean as _mean
from ..tensor import Tensor
from .conv import Unfold, _out_size, _pair


def _windows(fn, x, kernel_size, stride):
    x = Tensor.wrap(x)
    if x.ndim != 4:
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = _pair(fn, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(fn, "stride", stride, 1)
    _out_size(fn, x.shape, kernel, stride, (0, 0))
    return Unfold.apply(x, kernel=kernel, stride=stride, padding=(0, 0))


def max_pool2d(x, kernel_size, stride=None):
    """y[n, c, oh, ow] = max_{i,j} x[n, c, oh*sh + i, ow*sw + j]; stride defaults to kernel_size.

    The gradient goes to the maximum of each window (split evenly on ties).
    """
    return _max(_windows("max_pool2d", x, kernel_size, stride), axis=(2, 3))


def avg_pool2d(x, kernel_size, stride=None):
    """y[n, c, oh, ow] = mean_{i,j} x[n, c, oh*sh + i, ow*sw + j]; stride defaults to kernel_size."""
    return _mean(_windows("avg_pool2d", x, kernel_size, stride), axis=(2, 3))
