"""Data-parallel K-FAC: which rank does which layer's linear algebra (KAISA's memory-optimal
layout, Pauloski et al. 2021).

Every rank holds the same factors A, G of every layer (the batch factors are allreduced, step 1
of optim/kfac.py). The expensive part of the step, the eigendecompositions (step 2) and the
preconditioning (step 4), is split by layer instead of repeated on every rank:

    owner    each layer has one owner rank. Layers go, largest first, to the rank with the
             least work so far (greedy), the work of a layer being its eigendecompositions'
             (d+1)^3 + o^3 (A is (d+1) x (d+1), G is o x o). The assignment depends only on the
             layers and the number of ranks, so every rank computes the same one, without
             communication.
    step 2   only the owner decomposes a layer's factors and keeps the Eigenbasis (about 1/P of
             the work and memory on each rank); the other ranks record None, "held by its
             owner", so the bookkeeping of when to refresh (which layers have an eigenbasis,
             which factors are stale) is the same on every rank.
    step 4   the owner preconditions the layer's gradient matrix V_l into P_l and forms
             <V_l, P_l>; the other ranks contribute zeros of the same shapes. One fused allreduce
             (gradient-sized) of all the P_l and the <V_l, P_l> gives every rank every layer's
             result. Each sum has one nonzero term, and x + 0 = x: every rank gets the owner's
             result bit for bit.

With one process (comm None) the process owns every layer and nothing is reduced.
"""
import numpy as np

from minigrad.backend import to_device, xp_of

from .kfac_factors import decompose_factors


def assign_owners(layers, world_size):
    """{weight index: rank} for `layers` (kfac_layers.Layer): largest first to the least
    loaded rank (ties: the lower rank; equal sizes: the earlier layer first)."""
    load, owners = [0] * world_size, {}
    largest_first = sorted((-work(layer), k, layer.weight) for k, layer in enumerate(layers))
    for minus_work, _, w in largest_first:
        rank = min(range(world_size), key=lambda q: (load[q], q))
        owners[w], load[rank] = rank, load[rank] - minus_work
    return owners


def work(layer):
    """(d+1)^3 + o^3: the cost of decomposing the layer's factors A and G."""
    dim_A, dim_G = layer.factor_sizes
    return dim_A ** 3 + dim_G ** 3


class LayerOwners:
    """The owner of each layer over the ranks of `comm` (None: one process owns them all)."""

    def __init__(self, layers, comm=None):
        self.comm = comm
        self.rank = comm.rank if comm is not None else 0
        self.of = assign_owners(layers, comm.world_size if comm is not None else 1)

    def owns(self, weight):
        """Whether this rank owns the layer whose weight has index `weight`."""
        return self.of[weight] == self.rank

    def decompose(self, jobs):
        """{w: Eigenbasis, or None where another rank owns the layer} for jobs
        [(w, label, A, G)]; this rank's layers are decomposed together (decompose_factors:
        one host synchronization)."""
        mine = [job for job in jobs if self.owns(job[0])]
        done = decompose_factors([(label, A, G) for _, label, A, G in mine])
        done = {job[0]: eig for job, eig in zip(mine, done)}
        return {w: done.get(w) for w, _, _, _ in jobs}

    def precondition(self, matrices, solve):
        """([P_l], [<V_l, P_l> as a float]) on every rank for the layers' gradient matrices
        [(w, V_l)], with P_l = solve(w, V_l) computed by the layer's owner."""
        out, quads = [], []
        for w, V in matrices:
            xp = xp_of(V)
            if self.owns(w):
                P = solve(w, V)
                out.append(P)
                quads.append((V * P).sum().astype(np.float64))
            else:
                out.append(xp.zeros_like(V))
                quads.append(xp.zeros((), dtype=np.float64))
        # the <V_l, P_l> stay on the device and come back together: one host synchronization
        quads = xp_of(out[0]).stack(quads)
        if self.comm is not None:
            *out, quads = self.comm.allreduce_sum(out + [quads])
        return out, [float(q) for q in to_device(quads, "cpu")]
