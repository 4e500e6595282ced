"""Linear maps on activations: `linear` and `conv2d`, with im2col (`Unfold`) and col2im (`Fold`).

`Unfold` copies every kernel-sized patch of the (zero-padded) image into a column tensor of
shape (N, C, kh, kw, OH, OW) -- the Caffe layout, which `im2col` returns and minigrad.nn.capture
relies on -- and `Fold` is its adjoint: it scatter-adds columns back into the image. Each is the
other's backward, and both are linear.

conv2d is the `Conv2d` op of conv_op.py (im2col and a matrix product over cache-sized batch
chunks, with its input and weight gradients as ops of their own), differentiable to any order.
"""
import numpy as np

from ..function import Function
from ..backend import xp_of
from ..linalg import matmul
from ..shape_ops import reshape, transpose
from ..tensor import Tensor
from .conv_op import Conv2d


def _pair(fn, name, value, minimum):
    """An int or a pair of ints as a pair, each >= minimum."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    pair = (value, value) if is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(is_int(v) for v in pair):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    pair = tuple(int(v) for v in pair)
    if any(v < minimum for v in pair):
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
    return tuple(pair)


def _out_size(fn, shape, kernel, stride, padding):
    """(OH, OW) = (H + 2 ph - kh) // sh + 1, ...; the kernel must fit in the padded input."""
    padded = (shape[2] + 2 * padding[0], shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{fn}: kernel {kernel} is larger than the padded input {padded} "
                         f"(input shape {tuple(shape)}, padding {padding})")
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, kernel, stride))


class Unfold(Function):
    """im2col: cols[n, c, i, j, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j].

    A linear map (a strided view of the padded image, copied once); its adjoint is `Fold`.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        xp = xp_of(x)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        if ph or pw:
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        n, c, h, w = x.shape
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        s0, s1, s2, s3 = x.strides
        view = xp.lib.stride_tricks.as_strided(
            x, (n, c, kh, kw, oh, ow), (s0, s1, s2, s3, s2 * sh, s3 * sw))
        return xp.ascontiguousarray(view)

    @staticmethod
    def backward(ctx, g):
        p = ctx.params
        return (Fold.apply(g, size=ctx.input_shapes[0][2:], kernel=p["kernel"], stride=p["stride"],
                           padding=p["padding"]),)


class Fold(Function):
    """col2im: the adjoint of `Unfold`, x[n, c, oh*sh + i, ow*sw + j] += cols[n, c, i, j, oh, ow].

    The loop runs over the kh*kw kernel offsets only; each step adds a whole strided slab.
    """

    @staticmethod
    def forward(ctx, cols, size, kernel, stride, padding):
        xp = xp_of(cols)
        n, c, kh, kw, oh, ow = cols.shape
        (sh, sw), (ph, pw) = stride, padding
        out = xp.zeros((n, c, size[0] + 2 * ph, size[1] + 2 * pw), dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
        return out[:, :, ph:ph + size[0], pw:pw + size[1]]

    @staticmethod
    def backward(ctx, g):
        p = ctx.params
        return (Unfold.apply(g, kernel=p["kernel"], stride=p["stride"], padding=p["padding"]),)


def im2col(x, kernel_size, stride=1, padding=0):
    """Patches of an NCHW image as a (N, C, kh, kw, OH, OW) tensor (differentiable, any order)."""
    x = Tensor.wrap(x)
    if x.ndim != 4:
        raise ValueError(f"im2col: input must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = _pair("im2col", "kernel_size", kernel_size, 1)
    stride = _pair("im2col", "stride", stride, 1)
    padding = _pair("im2col", "padding", padding, 0)
    _out_size("im2col", x.shape, kernel, stride, padding)
    return Unfold.apply(x, kernel=kernel, stride=stride, padding=padding)


def col2im(cols, size, kernel_size, stride=1, padding=0):
    """Sum (N, C, kh, kw, OH, OW) columns back into an (N, C, *size) image: the adjoint of im2col."""
    cols = Tensor.wrap(cols)
    kernel = _pair("col2im", "kernel_size", kernel_size, 1)
    stride = _pair("col2im", "stride", stride, 1)
    padding = _pair("col2im", "padding", padding, 0)
    size = _pair("col2im", "size", tuple(size), 1)
    if cols.ndim != 6 or cols.shape[2:4] != kernel:
        raise ValueError(f"col2im: columns must have shape (N, C, {kernel[0]}, {kernel[1]}, OH, OW), "
                         f"got {cols.shape}")
    expected = _out_size("col2im", cols.shape[:2] + size, kernel, stride, padding)
    if cols.shape[4:] != expected:
        raise ValueError(f"col2im: columns of shape {cols.shape} do not fit an image of size {size} "
                         f"(kernel {kernel}, stride {stride}, padding {padding} give {expected} windows)")
    return Fold.apply(cols, size=size, kernel=kernel, stride=stride, padding=padding)


def linear(x, weight, bias=None):
    """y = x W^T + b, with x (..., in), W (out, in), b (out,)."""
    x, weight = Tensor.wrap(x), Tensor.wrap(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1] if x.ndim else 'no'} features but weight "
                         f"expects {weight.shape[1]} (input shape {x.shape}, weight shape {weight.shape})")
    lead = x.shape[:-1]
    if x.ndim > 2:  # one 2-D matmul is faster than a stack of them
        x = reshape(x, -1, x.shape[-1])
    y = matmul(x, transpose(weight))
    if bias is not None:
        bias = Tensor.wrap(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape} "
                             f"(weight shape {weight.shape})")
        y = y + bias
    return reshape(y, *lead, weight.shape[0]) if len(lead) > 1 else y


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation, as PyTorch's conv2d:

        y[n, o, oh, ow] = b[o] + sum_{c,i,j} W[o, c, i, j] xpad[n, c, oh*sh + i, ow*sw + j]

    x (N, C, H, W), W (O, C, kh, kw), b (O,); OH = (H + 2 ph - kh) // sh + 1.
    Computed as im2col and one matrix product per example, over cache-sized batch chunks
    (conv_op.py).
    """
    x, weight = Tensor.wrap(x), Tensor.wrap(weight)
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), "
                         f"got shape {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight expects {weight.shape[1]} "
                         f"(input shape {x.shape}, weight shape {weight.shape})")
    out_ch, in_ch, kh, kw = weight.shape
    stride = _pair("conv2d", "stride", stride, 1)
    padding = _pair("conv2d", "padding", padding, 0)
    _out_size("conv2d", x.shape, (kh, kw), stride, padding)
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    bias = Tensor.wrap(bias)
    if bias.shape != (out_ch,):
        raise ValueError(f"conv2d: bias must have shape ({out_ch},), got {bias.shape} "
                         f"(weight shape {weight.shape})")
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)
