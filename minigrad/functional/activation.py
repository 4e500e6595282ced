"""Activations: the engine's elementwise ones, log_softmax/softmax, and dropout."""
import numpy as np

from ..function import Function
from ..backend import to_device, xp_of
from ..elementwise import const, exp, leaky_relu, log, relu, sigmoid, softplus, tanh  # noqa: F401
from ..reduce_ops import exp_shift, normalize_axes, sum as _sum
from ..random import default_generator
from ..tensor import Tensor


def log_softmax(x, axis=-1):
    """log softmax(x)_i = x_i - logsumexp(x) = (x_i - m) - log sum_j exp(x_j - m), m = max_j x_j.

    m is a constant (the value does not depend on it, so no derivative does). Subtracting it
    first, rather than adding it into logsumexp and subtracting it again, keeps the result
    exact for huge logits: with x = (-1e4, -1e4) the answer is log(1/2), not a rounding of 1e4.
    """
    x = Tensor.wrap(x)
    axes = normalize_axes("log_softmax", axis, x.ndim)
    shifted = x - const(exp_shift("log_softmax", x.data, axes))
    return shifted - log(_sum(exp(shifted), axes, keepdims=True))


class Softmax(Function):
    """p = softmax(x) = exp(x - m) / sum exp(x - m);  d p = p * (dx - sum(p * dx)),
    so the vector-Jacobian product is p * (g - sum(g * p)).

    Mathematically exp(log_softmax(x)); a primitive because it takes half the array passes
    (cross_entropy's backward runs it on every step). Its backward uses the output p as a
    Tensor, so it is differentiable again.
    """

    @staticmethod
    def forward(ctx, x, axes):
        e = xp_of(x).exp(x - exp_shift("softmax", x, axes))
        e /= e.sum(axis=axes, keepdims=True)
        ctx.save_output(e)
        return e

    @staticmethod
    def backward(ctx, g):
        p = ctx.output
        gp = g * p
        return (gp - p * _sum(gp, ctx.params["axes"], keepdims=True),)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) = exp(log_softmax(x)_i), along `axis`."""
    x = Tensor.wrap(x)
    return Softmax.apply(x, axes=normalize_axes("softmax", axis, x.ndim))


def dropout(x, p, training=True, rng=None):
    """Inverted dropout: y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p), so E[y] = x.

    The mask is drawn on the host from `rng`, a `numpy.random.Generator`; rng=None draws from
    minigrad's global default generator, which `minigrad.manual_seed` resets. The mask is a constant: the
    derivative is dy/dx = m / (1 - p). training=False or p=0 returns x itself.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout: p must be a number in [0, 1), got {p!r}")
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got p={p}")
    x = Tensor.wrap(x)
    if not training or p == 0:
        return x
    if rng is None:
        rng = default_generator()
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    mask = (rng.random(x.shape) >= p).astype(dtype) * dtype.type(1.0 / (1.0 - p))
    return x * const(to_device(mask, x.device))
