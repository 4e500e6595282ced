"""K-FAC's factors of LeNet-5's convolutions, run by hand (never in the tests):

    OPENBLAS_NUM_THREADS=1 python benchmarks/kfac_conv.py [--batches 1024,4096] [--rounds 5]

For each batch size: one forward and backward of LeNet-5 (float32, random 28x28 images) under
`capture`, then, per round and in turn, the factors (A, G) of both convolutions two ways:
- `chunked`: `CaptureStats.kfac_factors`, the patches' and output gradients' moments summed
  chunk by chunk (functional/conv_op.py: patch_moments, channel_moments);
- `dense`: the formula on the whole batch's arrays, as minigrad computed it before: im2col's
  (N, OH OW, C kh kw) patches with a column of ones, reshaped to (N T, D + 1) (a copy: the
  patches are a transposed view), A = a^T a / (N T); g as (N T, O) (a copy), G = N g^T g.
The two must agree to float32 rounding (exit status 1 otherwise). Prints the median time of
each and the median of the same-round ratios dense / chunked (the machine is shared and noisy:
the ratios, taken in one round, are what to read).
"""
import argparse
import sys
import time

import numpy as np

import minigrad.functional as F
from minigrad import Tensor, nn
from minigrad.nn import capture
from minigrad.nn.models import lenet5


def dense_factors(stats, conv):
    """The whole batch's (A, G) of `conv`, as arrays of every patch and every output pixel."""
    x, g = stats.inputs(conv)[0], stats.output_grads(conv)[0]
    cols = F.im2col(Tensor(x), conv.kernel_size, conv.stride, conv.padding).data
    n, c, kh, kw, oh, ow = cols.shape
    a = cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1)
    a = np.concatenate([a, np.ones(a.shape[:2] + (1,), dtype=a.dtype)], axis=2)
    a2 = a.reshape(n * oh * ow, -1)
    g2 = g.reshape(n, g.shape[1], -1).transpose(0, 2, 1).reshape(n * oh * ow, -1)
    return a2.T @ a2 / len(a2), (g2.T @ g2) * n


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'batch':>6} {'chunked ms':>11} {'dense ms':>9} {'dense/chunked':>14}")
    for batch in (int(b) for b in args.batches.split(",")):
        model = lenet5(rng=0, dtype=np.float32)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        labels = np.random.default_rng(1).integers(0, 10, batch)
        with capture(model) as stats:
            F.cross_entropy(model(Tensor(x)), labels).backward()
        for conv in convs:
            for ours, theirs in zip(stats.kfac_factors(conv), dense_factors(stats, conv)):
                scale = np.abs(theirs).max()
                if np.abs(ours - theirs).max() > 1e-4 * scale:
                    print(f"batch {batch}: the two factors of {conv} differ", file=sys.stderr)
                    return 1
        chunked, dense = [], []
        for _ in range(args.rounds):
            chunked.append(sum(timed(lambda: stats.kfac_factors(c))[0] for c in convs))
            dense.append(sum(timed(lambda: dense_factors(stats, c))[0] for c in convs))
        ratio = np.median(np.array(dense) / np.array(chunked))
        print(f"{batch:>6} {1e3 * np.median(chunked):>11.1f} {1e3 * np.median(dense):>9.1f} "
              f"{ratio:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
