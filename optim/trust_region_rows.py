"""Which rows of the batch a trust-region step evaluates its curvature on, on one process or
split over the ranks of a data-parallel run.

One process. closure() covers the whole batch of N rows. The curvature is that of a uniform
sub-sample S of the batch, |S| = max(1, ceil(hessian_fraction * N)) rows drawn without
replacement from the optimizer's seeded Generator and sorted; closure(S) is its mean loss and
H_S its Hessian (or Gauss-Newton matrix). When S would be the whole batch (hessian_fraction = 1,
or a batch so small that ceil(...) >= N) nothing is drawn and the Generator is not touched: H
is that of closure()'s own loss, whose graph is re-used. Without a batch (batch_size None, a
test function) there is nothing to sample either.

Distributed. Rank r holds the rows [lo_r, hi_r) of the global batch of N rows (n_r of them, n_r
may be 0 for a short last batch); its closure(indices) takes indices relative to lo_r. The loss
f, the gradient g and the trial losses are sums over the ranks of n_r / N times the rank's mean
(`Optimizer.reduce`): the global batch's mean. Every rank draws S from its own copy of the same
seeded Generator, over all N rows, so S is the one a single process would draw and the
Generators stay in step. Rank r evaluates the part of S it holds, S_r = S & [lo_r, hi_r), as
the mean loss over S_r, and weighs its products by its share w_r = |S_r| / |S|; then

    H v = sum_r w_r H_{S_r} v

is the product with the curvature of the mean loss over the whole of S (one allreduce per
product; a rank holding no row of S contributes zeros). Without a sub-sample the weights are
the ranks' shares of the batch, w_r = n_r / N (`Optimizer.shard`). CG then runs identically on
every rank, and the product count is the same on all of them.
"""
import math
from dataclasses import dataclass

import numpy as np


def draw_sample(rng, fraction, batch_size):
    """The sorted rows (int64) of the curvature sub-sample S of a batch of batch_size rows, or
    None when S is the whole batch (or there is no batch): then rng is not used."""
    if batch_size is None or fraction == 1.0:
        return None
    size = max(1, math.ceil(fraction * batch_size))
    if size >= batch_size:
        return None
    return np.sort(rng.choice(batch_size, size=size, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class CurvatureRows:
    """The rows this process evaluates the curvature on.

    local: the argument of closure(local): this rank's rows of S, relative to its first row
    (S itself on one process), or None for the whole of closure()'s batch.
    holds_rows: this rank has rows to evaluate (if not, its share of every product is zero).
    weight: this rank's share w_r of the curvature (unused on one process).
    samples: |S| over all ranks (N for the whole batch, None without a batch).
    """

    local: object
    holds_rows: bool
    weight: float
    samples: object


def curvature_rows(rng, fraction, batch_size, rows=None, shard_weight=1.0):
    """Draw S (see draw_sample) and find this rank's part of it. rows: (lo, hi), this rank's
    rows of the global batch when distributed, None on one process; shard_weight: n_r / N."""
    sample = draw_sample(rng, fraction, batch_size)
    if sample is None:
        holds_rows = rows is None or rows[1] > rows[0]
        return CurvatureRows(None, holds_rows, shard_weight, batch_size)
    if rows is None:
        return CurvatureRows(sample, True, shard_weight, len(sample))
    lo, hi = rows
    local = sample[(sample >= lo) & (sample < hi)] - lo
    return CurvatureRows(local, len(local) > 0, len(local) / len(sample), len(sample))


class CurvatureProduct:
    """v -> H v on flat vectors, for CG. One process (comm None): the operator's own product.
    Distributed: sum_r w_r H_r v over the ranks of comm, one allreduce per product; operator is
    None on a rank without rows of S (its term is zero). `products`: the products taken."""

    def __init__(self, operator, weight=1.0, comm=None):
        self.operator, self.weight, self.comm = operator, weight, comm
        self._reduced = 0

    def __call__(self, v):
        if self.comm is None:
            return self.operator.matvec_flat(v)
        local = self.operator.matvec_flat(v) * self.weight if self.operator is not None else v * 0
        self._reduced += 1
        return self.comm.allreduce_sum([local])[0]

    @property
    def products(self):
        return self.operator.calls if self.comm is None else self._reduced
