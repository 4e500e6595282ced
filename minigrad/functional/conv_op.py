"""The fused conv2d op: im2col on channel-major columns + one GEMM, differentiable to any order.

`UnfoldCM`/`FoldCM` are `Unfold`/`Fold` (conv.py) with the axes as (C, kh, kw, N, OH, OW), or
batch-last (C, kh, kw, OH, OW, N), so that the forward and the weight gradient of `Conv2d` are
one GEMM each; its input gradient is a transposed convolution or a fold of the column gradient.
"""
from ..backend import xp_of
from ..elementwise import const
from ..function import Function, is_grad_enabled
from ..linalg import matmul
from ..shape_ops import getitem, permute, reshape, transpose

_WHOLE_BYTES = 24 * 2 ** 20
_CHUNK_BYTES = 4 * 2 ** 20


def batch_last_layout(out):
    """Which column layout a convolution uses: batch-last (C kh kw, OH OW N) when the output
    rows are short (<= 10), so that the copies and `FoldCM`'s adds run over long contiguous
    OW*N blocks (LeNet-5's conv2: 0.65x the step time of batch-first); else batch-first
    (C kh kw, N OH OW), whose im2col reads the image in order (ResNet's 32 and 16 wide
    stages: batch-last is 1.0x to 1.6x slower there, and about even at width 8)."""
    return out[1] <= 10


def _unfold(x, kernel, stride, padding, batch_last):
    """Channel-major im2col of a raw array: cols[c, i, j, n, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j],
    stored as (C, kh, kw, N, OH, OW), or (C, kh, kw, OH, OW, N) if batch_last."""
    xp = xp_of(x)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    # pad straight into a (C, N, H, W) or (C, H, W, N) image: the copy below then reads it in order
    if batch_last:
        xpad = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype)
        xpad[:, ph:ph + h, pw:pw + w, :] = x.transpose(1, 2, 3, 0)
        s0, s2, s3, s1 = xpad.strides
        shape, strides = (c, kh, kw, oh, ow, n), (s0, s2, s3, s2 * sh, s3 * sw, s1)
    else:
        xpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        xpad[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
        s0, s1, s2, s3 = xpad.strides
        shape, strides = (c, kh, kw, n, oh, ow), (s0, s2, s3, s1, s2 * sh, s3 * sw)
    return xp.ascontiguousarray(xp.lib.stride_tricks.as_strided(xpad, shape, strides))


class UnfoldCM(Function):
    """Channel-major im2col: cols[c, i, j, n, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j], stored
    as (C, kh, kw, N, OH, OW), or (C, kh, kw, OH, OW, N) if batch_last.

    The same linear map as `Unfold` with the axes in another order; its adjoint is `FoldCM`.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, batch_last=False):
        return _unfold(x, kernel, stride, padding, batch_last)

    @staticmethod
    def backward(ctx, g):
        return (FoldCM.apply(g, size=ctx.input_shapes[0][2:], **ctx.params),)


class FoldCM(Function):
    """The adjoint of `UnfoldCM`: x[n, c, oh*sh + i, ow*sw + j] += cols[c, i, j, n, oh, ow]."""

    @staticmethod
    def forward(ctx, cols, size, kernel, stride, padding, batch_last=False):
        xp = xp_of(cols)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        if batch_last:
            c, _, _, oh, ow, n = cols.shape
            out = xp.zeros((c, size[0] + 2 * ph, size[1] + 2 * pw, n), dtype=cols.dtype)
            window = out
        else:
            c, _, _, n, oh, ow = cols.shape
            out = xp.zeros((c, n, size[0] + 2 * ph, size[1] + 2 * pw), dtype=cols.dtype)
            window = out.transpose(0, 2, 3, 1)  # (C, H, W, N) view, to share the loop below
            cols = cols.transpose(0, 1, 2, 4, 5, 3)
        for i in range(kh):
            for j in range(kw):
                window[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, i, j]
        out = window[:, ph:ph + size[0], pw:pw + size[1]]  # (C, H, W, N)
        return xp.ascontiguousarray(out.transpose(3, 0, 1, 2))

    @staticmethod
    def backward(ctx, g):
        p = dict(ctx.params)
        del p["size"]
        return (UnfoldCM.apply(g, **p),)


class Conv2d(Function):
    """y[n, o] = W[o] . cols[:, n]: one GEMM (O, C kh kw) @ (C kh kw, N OH OW) on channel-major columns
    (`UnfoldCM`; batch-first or batch-last, see `batch_last_layout`).

    dW = G cols^T, one GEMM, with G = g as (O, N OH OW). dx by one of two exact rules:
    - stride 1, padding < kernel, out_channels <= in_channels: the transposed convolution
      dx = conv2d(g, W flipped in space with in/out swapped, padding k - 1 - p), whose columns
      are no larger than the forward's;
    - otherwise the column gradient W^T G folded back into the image (`FoldCM`).
    Both are built from differentiable ops (conv2d itself, matmul, `UnfoldCM`/`FoldCM`), so
    every order of derivative follows. Without create_graph the weight gradient reuses the
    forward's columns (as constants, the same numbers) instead of recomputing them; large
    column arrays are built and multiplied in batch chunks (see `_CHUNK_BYTES`), and the weight
    gradient is then a sum of one GEMM per chunk.
    """

    @staticmethod
    def forward(ctx, x, w, stride, padding, batch_last):
        xp = xp_of(x)
        out_ch, in_ch, kh, kw = w.shape
        n = x.shape[0]
        oh, ow = (x.shape[2] + 2 * padding[0] - kh) // stride[0] + 1, (x.shape[3] + 2 * padding[1] - kw) // stride[1] + 1
        # Columns over _WHOLE_BYTES in batch chunks of about _CHUNK_BYTES: glibc's malloc reuses
        # blocks that small, while a fresh 75 MB array is mmapped and faulted in page by page on
        # every call (ResNet-20 step: 0.65x to 0.85x with default malloc settings, 1.0x without
        # page faults). Small column arrays stay whole: chunks cost GEMM efficiency (LeNet-5).
        per_example = max(in_ch * kh * kw * oh * ow * x.itemsize, 1)
        step = n if per_example * n <= _WHOLE_BYTES else max(1, _CHUNK_BYTES // per_example)
        ctx.save_inputs(0, 1)
        w2 = w.reshape(out_ch, -1)
        y = xp.empty((n, out_ch, oh, ow), dtype=xp.result_type(x.dtype, w.dtype))
        keep = is_grad_enabled()  # the columns serve the weight gradient only if this call is recorded
        ctx.cols, ctx.steps = ([] if keep else None), step
        for start in range(0, n, step):
            cols = _unfold(x[start:start + step], (kh, kw), stride, padding, batch_last)
            part = w2 @ cols.reshape(in_ch * kh * kw, -1)
            part = part.reshape((out_ch,) + cols.shape[3:])
            y[start:start + step] = part.transpose(3, 0, 1, 2) if batch_last else part.transpose(1, 0, 2, 3)
            if keep:
                ctx.cols.append(cols.reshape(in_ch * kh * kw, -1))
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        stride, padding, last = ctx.params["stride"], ctx.params["padding"], ctx.params["batch_last"]
        out_ch, in_ch, kh, kw = w.shape
        n, _, oh, ow = g.shape

        def as_rows(g):  # g as (O, N OH OW) in the columns' order
            return reshape(permute(g, 1, 2, 3, 0) if last else permute(g, 1, 0, 2, 3), out_ch, -1)

        gx = gw = None
        if need_w:
            if is_grad_enabled() or not getattr(ctx, "cols", None):
                cols = reshape(UnfoldCM.apply(x, kernel=(kh, kw), stride=stride, padding=padding,
                                              batch_last=last), in_ch * kh * kw, n * oh * ow)
                gw = matmul(as_rows(g), transpose(cols))
            else:  # first order: the forward's columns, as constants, chunk by chunk
                step = ctx.steps
                for k, cols in enumerate(ctx.cols):
                    part = matmul(as_rows(getitem(g, slice(k * step, (k + 1) * step))), transpose(const(cols)))
                    gw = part if gw is None else gw + part
            gw = reshape(gw, out_ch, in_ch, kh, kw)
        ctx.cols = None
        if need_x:
            if stride == (1, 1) and padding[0] < kh and padding[1] < kw and out_ch <= in_ch:
                wt = permute(getitem(w, (slice(None), slice(None), slice(None, None, -1),
                                         slice(None, None, -1))), 1, 0, 2, 3)
                gx = Conv2d.apply(g, wt, stride=(1, 1), padding=(kh - 1 - padding[0], kw - 1 - padding[1]),
                                  batch_last=batch_last_layout(x.shape[2:]))
            else:
                dcols = matmul(transpose(reshape(w, out_ch, in_ch * kh * kw)), as_rows(g))
                dcols = reshape(dcols, *((in_ch, kh, kw, oh, ow, n) if last else (in_ch, kh, kw, n, oh, ow)))
                gx = FoldCM.apply(dcols, size=x.shape[2:], kernel=(kh, kw), stride=stride, padding=padding,
                                  batch_last=last)
        return gx, gw
