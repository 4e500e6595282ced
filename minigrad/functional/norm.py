"""Batch normalization. In training mode the normalization and the affine map are one fused op
(`BatchNormTrain`) whose backward is the closed form, written in differentiable ops (so its
double backward works); in evaluation mode it is composed of ops."""
from ..function import Function, is_grad_enabled
from ..backend import xp_of
from ..elementwise import const, sqrt
from ..reduce_ops import mean, sum  # noqa: A004 - minigrad's sum
from ..shape_ops import reshape
from ..tensor import Tensor


def _per_channel(name, value, c, x, array):
    """Check a per-channel argument has shape (C,); running stats must be arrays on x's device."""
    if value is None:
        return None
    if array:
        value = value.data if isinstance(value, Tensor) else value
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"batch_norm: {name} must be an array (it is updated in place), "
                            f"got {type(value).__name__}")
        if xp_of(value) is not xp_of(x.data):
            raise ValueError(f"batch_norm: {name} is on another device than the input ({x.device})")
    else:
        value = Tensor.wrap(value)
    if tuple(value.shape) != (c,):
        raise ValueError(f"batch_norm: {name} must have shape ({c},) for input shape {x.shape}, "
                         f"got {tuple(value.shape)}")
    return value


class BatchNormTrain(Function):
    """y = xhat * w + b with xhat = (x - mu) * r, where mu and sigma^2 are the batch mean and
    biased variance over `axes` (n values per channel) and r = 1 / sqrt(sigma^2 + eps); the
    centered x - mu and r come in as params (computed once by `_center`); w and b have shape
    (1, C, 1, ...).

    Closed-form backward, with sums over `axes`:
        db = sum(g),  dw = sum(g * xhat),  dx = r w (g - db / n - xhat dw / n)
    Without create_graph it runs on the arrays, with the forward's x - mu and r
    (`_backward_arrays`); under create_graph it rebuilds them from x with differentiable ops
    (the same numbers), so every order of derivative follows.
    """

    @staticmethod
    def forward(ctx, x, w, b, centered, r, axes, eps):
        ctx.save_inputs(0, 1)
        y = centered * (r * w)  # x - mu scaled once per channel: one pass instead of two
        y += b
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        p = ctx.params
        need_x, need_w, need_b = ctx.needs_input_grad
        if not is_grad_enabled():
            return _backward_arrays(g.data, p["centered"], p["r"], w.data, p["axes"], need_x)
        n = x.size // x.shape[1]
        centered = x - mean(x, p["axes"], keepdims=True)
        r = 1 / sqrt(mean(centered * centered, p["axes"], keepdims=True) + p["eps"])
        xhat = centered * r
        db = sum(g, p["axes"], keepdims=True)
        dw = sum(g * xhat, p["axes"], keepdims=True)
        dx = (g - db * (1.0 / n) - xhat * (dw * (1.0 / n))) * (r * w) if need_x else None
        return dx, (dw if need_w else None), (db if need_b else None)


def _channel_dot(a, b):
    """sum(a * b) over every axis but 1, kept as (1, C, 1, ...), without an array for a * b."""
    xp = xp_of(a)
    n, c = a.shape[:2]
    dot = xp.einsum("nci,nci->c", a.reshape(n, c, -1), b.reshape(n, c, -1))
    return dot.reshape((1, c) + (1,) * (a.ndim - 2))


def _center(x, axes, eps):
    """On arrays: x - mu, the batch mean mu, the biased variance sigma^2 and
    r = 1 / sqrt(sigma^2 + eps), per channel (kept dims)."""
    xp = xp_of(x)
    mu = x.mean(axis=axes, keepdims=True)
    centered = x - mu
    var = _channel_dot(centered, centered) / (x.size // x.shape[1])
    return centered, mu, var, (1 / xp.sqrt(var + eps)).astype(x.dtype)


def _backward_arrays(g, centered, r, w, axes, need_x):
    """BatchNormTrain's backward on arrays (first order), with xhat = centered * r folded into
    per-channel factors: db, dw, then dx in one buffer."""
    xp = xp_of(g)
    n = g.size // g.shape[1]
    db = g.sum(axis=axes, keepdims=True)
    dw = _channel_dot(g, centered) * r
    dx = None
    if need_x:
        buf = centered * (r * dw * (1.0 / n))
        buf += db * (1.0 / n)
        xp.subtract(g, buf, out=buf)  # g - db / n - xhat dw / n
        buf *= r * w
        dx = const(buf)
    return dx, const(dw), const(db)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """y = (x - mu) / sqrt(sigma^2 + eps) * weight + bias, per channel (axis 1 of (N, C) or (N, C, H, W)).

    training=True: mu and sigma^2 are the batch mean and biased variance over all axes but 1,
    and the running stats (arrays of shape (C,), or None to keep none) are updated in place,
    as PyTorch does, with the unbiased variance (n / (n - 1)) sigma^2:
        running = (1 - momentum) running + momentum batch_stat.
    training=False: mu and sigma^2 are the running stats, held constant.
    """
    x = Tensor.wrap(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, H, W), got shape {x.shape}")
    c = x.shape[1]
    running_mean = _per_channel("running_mean", running_mean, c, x, array=True)
    running_var = _per_channel("running_var", running_var, c, x, array=True)
    weight = _per_channel("weight", weight, c, x, array=False)
    bias = _per_channel("bias", bias, c, x, array=False)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, c) + (1,) * (x.ndim - 2)
    xp = xp_of(x.data)
    if training:
        n = x.size // c if c else 0
        if n < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input shape {x.shape}")
        # the batch statistics, once, on raw arrays (the op's backward rebuilds them when needed)
        centered, batch_mean, batch_var, r = _center(x.data, axes, eps)
        w = const(xp.ones(shape, dtype=x.dtype)) if weight is None else reshape(weight, *shape)
        b = const(xp.zeros(shape, dtype=x.dtype)) if bias is None else reshape(bias, *shape)
        y = BatchNormTrain.apply(x, w, b, centered=centered, r=r, axes=axes, eps=eps)
        if running_mean is not None:  # bookkeeping, not part of the graph
            running_mean *= 1 - momentum
            running_mean += (momentum * batch_mean.reshape(c)).astype(running_mean.dtype)
        if running_var is not None:
            unbiased = batch_var.reshape(c) * (n / (n - 1))
            running_var *= 1 - momentum
            running_var += (momentum * unbiased).astype(running_var.dtype)
        return y
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    mu = xp.asarray(running_mean, dtype=x.dtype).reshape(shape)
    inv_std = (1 / xp.sqrt(xp.asarray(running_var, dtype=x.dtype) + eps)).reshape(shape)
    y = (x - const(mu)) * const(inv_std.astype(x.dtype))
    if weight is not None:
        y = y * reshape(weight, *shape)
    if bias is not None:
        y = y + reshape(bias, *shape)
    return y
