"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish, Kaplan, Amodei et al. 2018,
"An Empirical Model of Large-Batch Training", arXiv:1812.06162): the batch size around which
data parallelism stops paying, the large-batch study's prediction of the critical batch size.

Sigma is the covariance of one example's gradient, G the true (expected) gradient; the
estimators below are unbiased for each of the two parts (average the parts over steps before
dividing, as the paper does). `minigrad.nn.capture` feeds them exact per-example norms.
"""
import math
from collections import namedtuple

import numpy as np

from ..backend import to_device
from ..tensor import Tensor


NoiseScale = namedtuple("NoiseScale", ["b_simple", "trace_cov", "grad_sq_norm"])
NoiseScale.__doc__ = """B_simple = tr(Sigma) / |G|^2 with the two unbiased estimates it is made of
(average `trace_cov` and `grad_sq_norm` over steps before dividing, as McCandlish et al. do)."""


def gradient_noise_scale_two_batches(small_sq_norm, big_sq_norm, small_batch, big_batch):
    """B_simple from the squared norms of mean gradients over two batch sizes (McCandlish et al.
    2018, appendix A.1).

    With G_B the mean gradient over B examples, E|G_B|^2 = |G|^2 + tr(Sigma)/B, where G is the
    true gradient and Sigma the covariance of one example's gradient. Two batch sizes
    B_small < B_big give the unbiased estimates

        |G|^2     ~= (B_big |G_Bbig|^2 - B_small |G_Bsmall|^2) / (B_big - B_small)
        tr(Sigma) ~= (|G_Bsmall|^2 - |G_Bbig|^2) / (1/B_small - 1/B_big)

    and B_simple = tr(Sigma) / |G|^2. `small_sq_norm` may itself be an average of several
    |G_Bsmall|^2 (the estimates stay unbiased). Single-step estimates are noisy: the |G|^2
    estimate can be <= 0 when the batch sees more noise than signal, and then b_simple is
    negative or inf (read it as "larger than this batch can measure").
    """
    b_small, b_big = float(small_batch), float(big_batch)
    if not 0 < b_small < b_big:
        raise ValueError(f"gradient_noise_scale: need 0 < small_batch < big_batch, got "
                         f"small_batch={small_batch}, big_batch={big_batch}")
    small, big = float(small_sq_norm), float(big_sq_norm)
    grad_sq = (b_big * big - b_small * small) / (b_big - b_small)
    trace = (small - big) / (1.0 / b_small - 1.0 / b_big)
    b_simple = trace / grad_sq if grad_sq != 0 else math.inf
    return NoiseScale(b_simple, trace, grad_sq)


def gradient_noise_scale(per_example_sq_norms, mean_grad_sq_norm):
    """B_simple = tr(Sigma) / |G|^2 from B per-example gradients x_n (McCandlish et al. 2018).

    `per_example_sq_norms`: |x_n|^2 for n = 1..B (B >= 2); `mean_grad_sq_norm`: |x_bar|^2 for the
    mean x_bar = (1/B) sum_n x_n of those same gradients. This is the two-batch estimator with
    B_small = 1 (|G_1|^2 averaged over the B examples) and B_big = B, which works out to the
    usual unbiased per-example estimates

        tr(Sigma) ~= (1/(B-1)) sum_n |x_n - x_bar|^2 = (sum_n |x_n|^2 - B |x_bar|^2) / (B - 1)
        |G|^2     ~= |x_bar|^2 - tr(Sigma)/B          = (B |x_bar|^2 - mean_n |x_n|^2) / (B - 1)

    Returns a `NoiseScale` (b_simple, trace_cov, grad_sq_norm).
    """
    sq = np.asarray(to_host(per_example_sq_norms), dtype=np.float64).reshape(-1)
    if sq.size < 2:
        raise ValueError(f"gradient_noise_scale: need at least 2 per-example gradients, got {sq.size}")
    return gradient_noise_scale_two_batches(sq.mean(), mean_grad_sq_norm, 1, sq.size)


def to_host(x):
    """A Tensor, backend array or number, on the host."""
    x = x.data if isinstance(x, Tensor) else x   # (a CuPy array's .data is a MemoryPointer)
    return to_device(x, "cpu") if hasattr(x, "shape") else x
