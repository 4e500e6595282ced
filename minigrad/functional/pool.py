"""Pooling over kh x kw windows (no padding).

General windows: a reduction over the window axes of im2col's columns, (N, C, kh, kw, OH, OW):
max pooling is `max` over axes (2, 3) and average pooling is `mean` over them, so both inherit
their derivatives (of any order) from `Unfold`/`Fold` and the reductions.

Non-overlapping windows (stride == kernel, the common case) skip the column copy: the windows'
sum is the sum of the kh*kw strided slices x[:, :, i::kh, j::kw] (`WindowSum`), whose adjoint
copies each output value back over its window (`Tile`); the two are each other's backward.
Max pooling there is `MaxPool`, the maximum of the strided slices, whose backward `ToMax` writes
each window's gradient straight to its maxima (split evenly on ties); its adjoint `FromMax`
gathers from them.
"""
from ..backend import xp_of
from ..function import Function
from ..reduce_ops import max as _max, mean as _mean
from ..tensor import Tensor
from .conv import Unfold, _out_size, _pair


def _windows(fn, x, kernel_size, stride):
    """(x, kernel, stride) checked; windows are read from x as it is."""
    x = Tensor.wrap(x)
    if x.ndim != 4:
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = _pair(fn, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(fn, "stride", stride, 1)
    _out_size(fn, x.shape, kernel, stride, (0, 0))
    return x, kernel, stride


def _slices(kernel, out):
    """The kh*kw strided slices that pick offset (i, j) of every window."""
    (kh, kw), (oh, ow) = kernel, out
    return [(Ellipsis, slice(i, i + kh * oh, kh), slice(j, j + kw * ow, kw))
            for i in range(kh) for j in range(kw)]


def _window_sum(x, kernel):
    kh, kw = kernel
    out = (x.shape[2] // kh, x.shape[3] // kw)
    slices = _slices(kernel, out)
    y = x[slices[0]].copy()
    for s in slices[1:]:
        y += x[s]
    return y


def _tile(g, kernel, size):
    xp = xp_of(g)
    (kh, kw), (n, c, oh, ow) = kernel, g.shape
    covered = tuple(size) == (kh * oh, kw * ow)  # (a 6-D broadcast + reshape is 4x slower)
    out = (xp.empty if covered else xp.zeros)((n, c) + tuple(size), dtype=g.dtype)
    for s in _slices(kernel, (oh, ow)):
        out[s] = g
    return out


class WindowSum(Function):
    """y[n, c, oh, ow] = sum_{i,j} x[n, c, oh*kh + i, ow*kw + j] (stride == kernel); adjoint: `Tile`."""

    @staticmethod
    def forward(ctx, x, kernel):
        return _window_sum(x, kernel)

    @staticmethod
    def backward(ctx, g):
        return (Tile.apply(g, kernel=ctx.params["kernel"], size=tuple(ctx.input_shapes[0][2:])),)


class Tile(Function):
    """x[n, c, oh*kh + i, ow*kw + j] = g[n, c, oh, ow] (0 outside the windows); adjoint: `WindowSum`."""

    @staticmethod
    def forward(ctx, g, kernel, size):
        return _tile(g, kernel, size)

    @staticmethod
    def backward(ctx, gg):
        return (WindowSum.apply(gg, kernel=ctx.params["kernel"]),)


class MaxPool(Function):
    """y = max of the kh*kw strided slices (stride == kernel).

    dx = ToMax(g): each window's gradient goes to its maxima, split evenly on ties, as `max`
    does. Which elements are the maxima is piecewise constant in x, so the backward is linear
    in g with constant weights, and differentiable (ToMax and FromMax are each other's adjoint).
    """

    @staticmethod
    def forward(ctx, x, kernel):
        xp = xp_of(x)
        kh, kw = kernel
        slices = _slices(kernel, (x.shape[2] // kh, x.shape[3] // kw))
        y = x[slices[0]].copy() if len(slices) == 1 else xp.maximum(x[slices[0]], x[slices[1]])
        for s in slices[2:]:
            xp.maximum(y, x[s], out=y)
        ctx.save_inputs(0)
        ctx.save_output(y)
        return y

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0].data
        kernel = ctx.params["kernel"]
        hits, share = _maxima(x, ctx.out_data, kernel)
        return (ToMax.apply(g, hits=hits, share=share, kernel=kernel, size=tuple(x.shape[2:])),)


def _maxima(x, y, kernel):
    """hits[s] = [x[s] == y] for each window offset s (bool, y's shape), and share = None when every
    window has exactly one maximum, else 1 / (the window's number of maxima), 0 for a window with
    none (a NaN). One host synchronization (on a GPU), to know which case it is."""
    xp = xp_of(x)
    hits = [x[s] == y for s in _slices(kernel, y.shape[2:])]
    if not bool(sum(xp.count_nonzero(h) for h in hits) != y.size):
        return hits, None
    count = sum(h.astype(y.dtype) for h in hits)
    return hits, xp.where(count > 0, 1 / xp.maximum(count, 1), 0).astype(y.dtype)


class ToMax(Function):
    """dx[s] = g * hits[s] * share: each window's g to its maxima (see `_maxima`); 0 in the rows
    and columns no window covers. Linear in g; adjoint: `FromMax`."""

    @staticmethod
    def forward(ctx, g, hits, share, kernel, size):
        xp = xp_of(g)
        (kh, kw), (n, c, oh, ow) = kernel, g.shape
        covered = tuple(size) == (kh * oh, kw * ow)
        dx = (xp.empty if covered else xp.zeros)((n, c) + tuple(size), dtype=g.dtype)
        part = g if share is None else g * share
        for s, hit in zip(_slices(kernel, (oh, ow)), hits):
            xp.multiply(part, hit, out=dx[s])
        return dx

    @staticmethod
    def backward(ctx, gg):
        return (FromMax.apply(gg, **ctx.params),)


class FromMax(Function):
    """y = sum_s gg[s] * hits[s] * share: each window's maxima gathered (see `_maxima`). Linear in
    gg; adjoint: `ToMax`."""

    @staticmethod
    def forward(ctx, gg, hits, share, kernel, size):
        slices = _slices(kernel, hits[0].shape[2:])
        y = gg[slices[0]] * hits[0]
        for s, hit in zip(slices[1:], hits[1:]):
            y += gg[s] * hit
        return y if share is None else y * share

    @staticmethod
    def backward(ctx, g):
        return (ToMax.apply(g, **ctx.params),)


def max_pool2d(x, kernel_size, stride=None):
    """y[n, c, oh, ow] = max_{i,j} x[n, c, oh*sh + i, ow*sw + j]; stride defaults to kernel_size.

    The gradient goes to the maximum of each window (split evenly on ties).
    """
    x, kernel, stride = _windows("max_pool2d", x, kernel_size, stride)
    if stride == kernel:
        return MaxPool.apply(x, kernel=kernel)
    return _max(Unfold.apply(x, kernel=kernel, stride=stride, padding=(0, 0)), axis=(2, 3))


def avg_pool2d(x, kernel_size, stride=None):
    """y[n, c, oh, ow] = mean_{i,j} x[n, c, oh*sh + i, ow*sw + j]; stride defaults to kernel_size."""
    x, kernel, stride = _windows("avg_pool2d", x, kernel_size, stride)
    if stride == kernel:
        return WindowSum.apply(x, kernel=kernel) * (1.0 / (kernel[0] * kernel[1]))
    return _mean(Unfold.apply(x, kernel=kernel, stride=stride, padding=(0, 0)), axis=(2, 3))
