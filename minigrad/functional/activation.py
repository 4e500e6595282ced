"""Activations: the engine's elementwise ones, log_softmax/softmax, and dropout."""
import numpy as np

from ..backend import to_device
from ..elementwise import const, exp, leaky_relu, relu, sigmoid, softplus, tanh  # noqa: F401
from ..reduce_ops import logsumexp
from ..tensor import Tensor


def log_softmax(x, axis=-1):
    """log softmax(x)_i = x_i - log sum_j exp(x_j), stable for any size of x (logsumexp shifts by max)."""
    x = Tensor.wrap(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) = exp(log_softmax(x)_i)."""
    return exp(log_softmax(x, axis))


def dropout(x, p, training=True, rng=None):
    """Inverted dropout: y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p), so E[y] = x.

    The mask is drawn on the host from `rng`, a `numpy.random.Generator`; pass one made with
    a seed for a reproducible run. rng=None draws from a fresh, unseeded
    `numpy.random.default_rng()`, so every call differs. The mask is a constant: the
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
        rng = np.random.default_rng()
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    mask = (rng.random(x.shape) >= p).astype(dtype) * dtype.type(1.0 / (1.0 - p))
    return x * const(to_device(mask, x.device))
