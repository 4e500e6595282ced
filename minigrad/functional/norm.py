"""Batch normalization, composed of differentiable ops (so its double backward works)."""
from ..function import no_grad
from ..backend import xp_of
from ..elementwise import const, sqrt
from ..reduce_ops import mean
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
    if training:
        n = x.size // c if c else 0
        if n < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input shape {x.shape}")
        batch_mean = mean(x, axes, keepdims=True)
        centered = x - batch_mean
        batch_var = mean(centered * centered, axes, keepdims=True)
        y = centered / sqrt(batch_var + eps)
        with no_grad():  # the running stats are bookkeeping, not part of the graph
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += (momentum * batch_mean.data.reshape(c)).astype(running_mean.dtype)
            if running_var is not None:
                unbiased = batch_var.data.reshape(c) * (n / (n - 1))
                running_var *= 1 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
        xp = xp_of(x.data)
        mu = xp.asarray(running_mean, dtype=x.dtype).reshape(shape)
        inv_std = (1 / xp.sqrt(xp.asarray(running_var, dtype=x.dtype) + eps)).reshape(shape)
        y = (x - const(mu)) * const(inv_std.astype(x.dtype))
    if weight is not None:
        y = y * reshape(weight, *shape)
    if bias is not None:
        y = y + reshape(bias, *shape)
    return y
