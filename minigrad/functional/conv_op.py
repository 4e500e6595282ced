"""The three convolution ops, each the others' backward, each a loop over cache-sized batch chunks.

    y  = Conv2d(x, W[, b])     y[n, o, p, q] = b[o] + sum_{c,i,j} W[o, c, i, j] xpad[n, c, p sh+i, q sw+j]
    dx = ConvInputGrad(g, W)   the adjoint of x -> conv(x, W), applied to g (shaped like x)
    dW = ConvWeightGrad(x, g)  the adjoint of W -> conv(x, W), applied to g (shaped like W)

All three are bilinear, and the backward of each is made of the three:

    op                   d/d(first input)             d/d(second input)
    Conv2d(x, W)         ConvInputGrad(g, W)          ConvWeightGrad(x, g)
    ConvInputGrad(g, W)  Conv2d(h, W)                 ConvWeightGrad(h, g)
    ConvWeightGrad(x, g) ConvInputGrad(g, H)          Conv2d(x, H)

(h, H: the gradient arriving at the op's output), so every order of derivative follows.

How. `_patches` copies the kernel-sized patches of a chunk of nb examples into an array, either
as columns (nb, C kh kw, OH OW), one per output pixel (Caffe's im2col, as `Unfold`), or as rows
(nb OH OW, kh kw C), from a channels-last copy of the chunk; rows where a channels-last patch
row, kw C values, is long enough to copy fast (`_rows_layout`). With W2 = W flattened to match:
- forward: y_n = W2 cols_n, one batched matmul written straight into each example's (O, OH OW)
  slab of y (NCHW, no transposing copy), or y^T = rows W2^T, one product per chunk, transposed
  into it;
- weight gradient: dW2 = g rows, one product per chunk (or sum_n cols_n g_n^T with columns),
  summed chunk by chunk in a fixed order;
- input gradient: for stride 1 the transposed convolution, conv(g, W flipped in space with in
  and out swapped, padding k - 1 - p), when its patches are no larger than the forward's; else
  the column gradient W2^T g_n summed back into the image (`_fold_chunk`, col2im).

Why chunks. Patches are kh*kw times the image (ResNet-20's first stage: 75 MB for a batch of
128). Written to main memory and read back they cost more than the products, and so does the
page faulting of a fresh array that large on every call. A chunk's patches (`_CACHE_BYTES`)
are built, multiplied and dropped while they sit in a core's cache, nothing large is allocated,
and nothing is kept for the backward: the weight gradient rebuilds its chunk's patches from x,
which is cheaper than reading kept ones back. On a GPU the whole batch is one chunk.
"""
import math

from ..backend import device_of, xp_of
from ..function import Function
from ..reduce_ops import sum as _sum
from .malloc import keep_freed_memory

_CACHE_BYTES = 2 ** 20  # columns per chunk on the CPU: within one core's L2 cache

keep_freed_memory()  # fresh pages for every freed temporary cost more than the convolutions (malloc.py)


def out_size(size, kernel, stride, padding):
    """(OH, OW) = ((H + 2 ph - kh) // sh + 1, ...)."""
    return tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(size, kernel, stride, padding))


def _examples_per_chunk(array, per_example_bytes):
    """How many examples' columns make about _CACHE_BYTES (the whole batch on a GPU)."""
    n = array.shape[0]
    if device_of(array) != "cpu":
        return max(n, 1)
    return max(1, _CACHE_BYTES // max(per_example_bytes, 1))


def _rows_layout(channels, kernel):
    """Whether patches are best copied as rows (from a channels-last image, in runs of kw C
    values) rather than columns (from the NCHW image, in runs of OW values); the row layout also
    makes the faster products (benchmarks/README.md, "Convolutions"), but not with 1 to 3
    channels, whose runs are a few values long."""
    return channels * kernel[1] >= 16


def _patches(x, kernel, stride, padding, rows):
    """Yield (chunk, patches) for cache-sized chunks of the batch: the kernel-sized patches of the
    chunk's zero-padded images, in one of two layouts,

        columns: cols[n, (c, i, j), (p, q)] = xpad[n, c, p sh + i, q sw + j]   (nb, C kh kw, OH OW)
        rows:    rows[(n, p, q), (i, j, c)] = xpad[n, c, p sh + i, q sw + j]   (nb OH OW, kh kw C)

    The patches are one buffer, overwritten by the next chunk. The padded (and for rows,
    channels-last) chunk is one buffer too, whose zero border is written once; columns of an
    unpadded image are copied straight from x."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = out_size((h, w), kernel, stride, padding)
    step = _examples_per_chunk(x, c * kh * kw * oh * ow * x.itemsize)
    size = min(step, n)
    if rows:  # (j, c) of a patch row are neighbours in a channels-last image
        image = xp.zeros((size, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
        s0, s2, s3, s1 = image.strides
        shape, strides = (oh, ow, kh, kw * c), (s2 * sh, s3 * sw, s2, s1)
        source, inside = x.transpose(0, 2, 3, 1), (slice(ph, ph + h), slice(pw, pw + w), slice(None))
    else:
        image = xp.zeros((size, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype) if ph or pw else x
        s0, s1, s2, s3 = image.strides
        shape, strides = (c, kh, kw, oh, ow), (s1, s2, s3, s2 * sh, s3 * sw)
        source, inside = x, (slice(None), slice(ph, ph + h), slice(pw, pw + w))
    windows = xp.lib.stride_tricks.as_strided(image, (image.shape[0],) + shape, (s0,) + strides)
    patches = xp.empty((size,) + shape, dtype=x.dtype)
    for start in range(0, n, step):
        chunk = slice(start, min(start + step, n))
        nb = chunk.stop - start
        if image is x:
            xp.copyto(patches[:nb], windows[chunk])
        else:
            image[(slice(0, nb),) + inside] = source[chunk]
            xp.copyto(patches[:nb], windows[:nb])
        yield chunk, patches[:nb].reshape((nb * oh * ow, -1) if rows else (nb, c * kh * kw, oh * ow))


def conv_forward(x, w, b, stride, padding):
    """y = conv(x, W) + b on raw arrays (b may be None), chunk by chunk: y_n = W2 cols_n with
    W2 = W as (O, C kh kw), or y^T = rows W2^T with W2 = W as (O, kh kw C)."""
    xp = xp_of(x)
    dtype = xp.result_type(x.dtype, w.dtype, *(() if b is None else (b.dtype,)))
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    out_ch = w.shape[0]
    oh, ow = out_size(x.shape[2:], w.shape[2:], stride, padding)
    y = xp.empty((x.shape[0], out_ch, oh, ow), dtype=dtype)
    rows = _rows_layout(x.shape[1], w.shape[2:])
    w2 = (w.transpose(0, 2, 3, 1) if rows else w).reshape(out_ch, -1)
    b3 = None if b is None else b.astype(dtype, copy=False).reshape(1, out_ch, 1)
    for chunk, patches in _patches(x, w.shape[2:], stride, padding, rows):
        y3 = y[chunk].reshape(-1, out_ch, oh * ow)
        if rows:  # one product for the chunk, transposed into y
            y3[...] = (patches @ w2.T).reshape(len(y3), oh * ow, out_ch).transpose(0, 2, 1)
        else:
            xp.matmul(w2, patches, out=y3)
        if b3 is not None:  # while the chunk is in cache
            y3 += b3
    return y


def conv_weight_grad(x, g, kernel, stride, padding):
    """dW[o, c, i, j] = sum_{n,p,q} g[n, o, p, q] xpad[n, c, p sh + i, q sw + j] on raw arrays,
    summed over the chunks in order: dW2 += g rows (g as (O, nb OH OW)), or
    dW2^T += sum_n cols_n g_n^T."""
    xp = xp_of(x)
    dtype = xp.result_type(x.dtype, g.dtype)
    x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
    in_ch, out_ch, (kh, kw) = x.shape[1], g.shape[1], kernel
    rows = _rows_layout(in_ch, kernel)
    dw2 = xp.zeros((out_ch, kh * kw * in_ch) if rows else (in_ch * kh * kw, out_ch), dtype=dtype)
    for chunk, patches in _patches(x, kernel, stride, padding, rows):
        g3 = g[chunk].reshape(-1, out_ch, g.shape[2] * g.shape[3])
        if rows:  # one product for the chunk, with g as (O, nb OH OW)
            dw2 += xp.ascontiguousarray(g3.transpose(1, 0, 2)).reshape(out_ch, -1) @ patches
        else:
            dw2 += xp.matmul(patches, g3.transpose(0, 2, 1)).sum(axis=0)
    if rows:  # (O, kh, kw, C) -> (O, C, kh, kw)
        return xp.ascontiguousarray(dw2.reshape(out_ch, kh, kw, in_ch).transpose(0, 3, 1, 2))
    return xp.ascontiguousarray(dw2.T).reshape(out_ch, in_ch, kh, kw)


def patch_moments(x, kernel, stride, padding):
    """(S, s) = (sum_{n,p,q} u u^T, sum_{n,p,q} u) over every patch u = xpad[n, :, p sh + i, q sw + j]
    of the batch, indexed (c, i, j) as W.reshape(O, -1): K-FAC's input factor of a convolution
    (nn/capture.py) without its (N, OH OW, C kh kw) patch array, chunk by chunk (S += rows^T rows,
    or sum_n cols_n cols_n^T), rows' (i, j, c) order permuted to (c, i, j) at the end."""
    xp = xp_of(x)
    c, (kh, kw) = x.shape[1], kernel
    d = c * kh * kw
    rows = _rows_layout(c, kernel)
    big, small = xp.zeros((d, d), dtype=x.dtype), xp.zeros(d, dtype=x.dtype)
    for _, patches in _patches(x, kernel, stride, padding, rows):
        if rows:
            big += patches.T @ patches
            small += patches.sum(axis=0)
        else:   # columns, (nb, d, OH OW)
            if patches.shape[2] >= d:   # the (nb, d, d) products are no larger than the patches
                big += xp.matmul(patches, patches.transpose(0, 2, 1)).sum(axis=0)
            else:   # no (nb, d, d) array (but 1.65x slower on LeNet-5's first convolution)
                big += xp.tensordot(patches, patches, axes=([0, 2], [0, 2]))
            small += patches.sum(axis=(0, 2))
    if rows:
        order = xp.arange(d).reshape(kh, kw, c).transpose(2, 0, 1).ravel()
        big, small = big[order][:, order], small[order]
    return big, small


def channel_moments(g):
    """sum_{n,p,q} g[n, :, p, q] g[n, :, p, q]^T (O x O) of an NCHW array, chunk by chunk (each chunk
    copied channel-major, (O, nb OH OW), for one product): K-FAC's output factor of a convolution."""
    xp = xp_of(g)
    n, o = g.shape[:2]
    pixels = math.prod(g.shape[2:])
    step = _examples_per_chunk(g, o * pixels * g.itemsize)
    total = xp.zeros((o, o), dtype=g.dtype)
    for start in range(0, n, step):
        part = xp.ascontiguousarray(g[start:start + step].reshape(-1, o, pixels)
                                    .transpose(1, 0, 2)).reshape(o, -1)
        total += part @ part.T
    return total


def _transposed_conv_fits(in_ch, out_ch, size, out, stride, padding, kernel):
    """Whether dx is best a transposed convolution: stride 1, padding < kernel (so that its padding
    k - 1 - p is >= 0), and its columns (O kh kw rows per input pixel) no larger than the column
    gradient's (C kh kw rows per output pixel)."""
    return (stride == (1, 1) and padding[0] < kernel[0] and padding[1] < kernel[1]
            and out_ch * size[0] * size[1] <= in_ch * out[0] * out[1])


def conv_input_grad(g, w, size, stride, padding):
    """dx[n, c, h, w] = sum over the (o, p, q, i, j) with h = p sh + i - ph, w = q sw + j - pw of
    g[n, o, p, q] W[o, c, i, j], on raw arrays; size = (H, W) of x."""
    xp = xp_of(g)
    dtype = xp.result_type(g.dtype, w.dtype)
    g, w = g.astype(dtype, copy=False), w.astype(dtype, copy=False)
    out_ch, in_ch, kh, kw = w.shape
    n, _, oh, ow = g.shape
    if _transposed_conv_fits(in_ch, out_ch, size, (oh, ow), stride, padding, (kh, kw)):
        flipped = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return conv_forward(g, flipped, None, (1, 1), (kh - 1 - padding[0], kw - 1 - padding[1]))
    dx = xp.empty((n, in_ch) + tuple(size), dtype=dtype)
    w2_t = w.reshape(out_ch, -1).T
    step = _examples_per_chunk(g, in_ch * kh * kw * oh * ow * dx.itemsize)
    for start in range(0, n, step):
        chunk = slice(start, start + step)
        _fold_chunk(dx[chunk], g[chunk], w2_t, (kh, kw), stride, padding)
    return dx


def _fold_chunk(dx, g, w2_t, kernel, stride, padding):
    """dx = col2im(W2^T g) for a chunk: the column gradient (C kh kw rows per output pixel) summed
    back at each patch's place in a zero-padded image, whose interior is then written to dx.

    The sums add OW values per image row, or OW nb values batch-last (images as (C, H, W, nb),
    one more copy in and out): the latter when rows are short (LeNet-5's second conv, OW = 10:
    0.7x the time)."""
    xp = xp_of(g)
    (nb, out_ch, oh, ow), (_, c, h, w), (kh, kw) = g.shape, dx.shape, kernel
    (sh, sw), (ph, pw) = stride, padding
    if ow <= 10:  # batch-last: (C, kh, kw, OH, OW, nb) columns into a (C, Hp, Wp, nb) image
        rows = xp.ascontiguousarray(g.transpose(1, 2, 3, 0)).reshape(out_ch, -1)
        cols = (w2_t @ rows).reshape(c, kh, kw, oh, ow, nb)
        image = xp.zeros((c, h + 2 * ph, w + 2 * pw, nb), dtype=dx.dtype)
        window = image
    else:  # the same loop on transposed views of (nb, C, kh, kw, OH, OW) and (nb, C, Hp, Wp)
        cols = xp.matmul(w2_t, g.reshape(nb, out_ch, oh * ow)).reshape(nb, c, kh, kw, oh, ow)
        cols = cols.transpose(1, 2, 3, 4, 5, 0)
        image = xp.zeros((nb, c, h + 2 * ph, w + 2 * pw), dtype=dx.dtype)
        window = image.transpose(1, 2, 3, 0)
    for i in range(kh):
        for j in range(kw):
            window[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, i, j]
    dx[...] = window[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)


class Conv2d(Function):
    """y = conv(x, W) (+ b): see the module docstring. dx = ConvInputGrad(g, W),
    dW = ConvWeightGrad(x, g), db[o] = sum_{n,p,q} g[n, o, p, q]."""

    @staticmethod
    def forward(ctx, x, w, b=None, *, stride, padding):
        ctx.save_inputs(0, 1)
        return conv_forward(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        conv = dict(stride=ctx.params["stride"], padding=ctx.params["padding"])
        gx = ConvInputGrad.apply(g, w, size=tuple(x.shape[2:]), **conv) if need[0] else None
        gw = ConvWeightGrad.apply(x, g, kernel=tuple(w.shape[2:]), **conv) if need[1] else None
        if len(need) == 2:
            return gx, gw
        return gx, gw, (_sum(g, axis=(0, 2, 3)) if need[2] else None)


class ConvInputGrad(Function):
    """dx = conv^T(g, W), the input gradient of y = conv(x, W) for the output gradient g; linear in
    g and in W. With h the gradient at dx: dg = conv(h, W), dW = ConvWeightGrad(h, g)."""

    @staticmethod
    def forward(ctx, g, w, *, size, stride, padding):
        ctx.save_inputs(0, 1)
        return conv_input_grad(g, w, size, stride, padding)

    @staticmethod
    def backward(ctx, h):
        g, w = ctx.saved_tensors
        need_g, need_w = ctx.needs_input_grad
        conv = dict(stride=ctx.params["stride"], padding=ctx.params["padding"])
        dg = Conv2d.apply(h, w, **conv) if need_g else None
        dw = ConvWeightGrad.apply(h, g, kernel=tuple(w.shape[2:]), **conv) if need_w else None
        return dg, dw


class ConvWeightGrad(Function):
    """dW = the weight gradient of y = conv(x, W) for the output gradient g; linear in x and in g.
    With H the gradient at dW: dx = ConvInputGrad(g, H), dg = conv(x, H)."""

    @staticmethod
    def forward(ctx, x, g, *, kernel, stride, padding):
        ctx.save_inputs(0, 1)
        return conv_weight_grad(x, g, kernel, stride, padding)

    @staticmethod
    def backward(ctx, hw):
        x, g = ctx.saved_tensors
        need_x, need_g = ctx.needs_input_grad
        conv = dict(stride=ctx.params["stride"], padding=ctx.params["padding"])
        dx = ConvInputGrad.apply(g, hw, size=tuple(x.shape[2:]), **conv) if need_x else None
        dg = Conv2d.apply(x, hw, **conv) if need_g else None
        return dx, dg
