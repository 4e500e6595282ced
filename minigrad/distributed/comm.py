"""The communicator interface, the single-process backend, and the buffer fusing they share."""
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import xp_of

# what to install for the MPI backend (the wheels of the `mpi` extra)
MPI_INSTALL_HINT = "pip install mpi4py mpich"


@dataclass
class Stats:
    """What this rank's collectives moved: calls, bytes (buffer sizes as sent by this rank),
    seconds spent inside them, and per-kind totals {"allreduce": [calls, bytes, seconds], ...}."""
    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0
    kinds: dict = field(default_factory=dict)

    def add(self, kind, nbytes, seconds):
        self.calls += 1
        self.bytes += int(nbytes)
        self.seconds += seconds
        entry = self.kinds.setdefault(kind, [0, 0, 0.0])
        entry[0] += 1
        entry[1] += int(nbytes)
        entry[2] += seconds

    def reset(self):
        self.calls, self.bytes, self.seconds, self.kinds = 0, 0, 0.0, {}


def pack(arrays):
    """[(dtype, flat buffer, [indices into arrays])] : one contiguous 1-D buffer per dtype (and
    device: host and device arrays of one dtype cannot share a buffer), the arrays raveled into
    it in list order (the fusing of allreduce_mean/allreduce_sum)."""
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault((np.dtype(a.dtype), xp_of(a).__name__), []).append(i)
    out = []
    for (dtype, _), idx in groups.items():
        xp = xp_of(arrays[idx[0]])
        flat = xp.concatenate([arrays[i].reshape(-1) for i in idx]) if len(idx) > 1 \
            else arrays[idx[0]].reshape(-1).copy()
        out.append((dtype, flat, idx))
    return out


def unpack(packed, arrays):
    """New arrays of the shapes of `arrays` from the (reduced) buffers of pack(arrays)."""
    out = [None] * len(arrays)
    for _, flat, idx in packed:
        start = 0
        for i in idx:
            size = arrays[i].size
            out[i] = flat[start:start + size].reshape(arrays[i].shape)
            start += size
    return out


class Communicator:
    """The interface (see the package docstring). Subclasses implement _allreduce_sum(buffer)
    in place on a 1-D array, _broadcast(buffer, root) in place, and the object collectives."""

    backend = "abstract"
    rank = 0
    world_size = 1

    def __init__(self):
        self.stats = Stats()

    # -- arrays ---------------------------------------------------------------------------
    def allreduce_sum(self, arrays):
        """sum over ranks of each array, as new arrays (one fused call per dtype)."""
        arrays = list(arrays)
        if self.world_size == 1 or not arrays:
            return arrays
        packed = pack(arrays)
        for _, flat, _ in packed:
            self._timed("allreduce", flat.nbytes, self._allreduce_sum, flat)
        return unpack(packed, arrays)

    def allreduce_mean(self, arrays):
        """(1/P) sum over ranks of each array, as new arrays (one fused call per dtype)."""
        if self.world_size == 1:
            return list(arrays)
        return [s / self.world_size for s in self.allreduce_sum(arrays)]

    def broadcast(self, arrays, root=0):
        """Rank root's arrays on every rank (the others pass arrays of the same shapes and
        dtypes, whose values are ignored), as new arrays."""
        arrays = list(arrays)
        if self.world_size == 1 or not arrays:
            return arrays
        packed = pack(arrays)
        for _, flat, _ in packed:
            self._timed("broadcast", flat.nbytes, self._broadcast, flat, root)
        return unpack(packed, arrays)

    def allreduce_scalars(self, values, op="sum"):
        """A list of Python floats reduced over ranks ("sum" or "max"), as floats."""
        if self.world_size == 1:
            return [float(v) for v in values]
        buf = np.asarray(values, dtype=np.float64)
        if op == "max":
            self._timed("allreduce", buf.nbytes, self._allreduce_max, buf)
        else:
            self._timed("allreduce", buf.nbytes, self._allreduce_sum, buf)
        return [float(v) for v in buf]

    def _timed(self, kind, nbytes, fn, *args):
        t0 = time.perf_counter()
        fn(*args)
        self.stats.add(kind, nbytes, time.perf_counter() - t0)

    # -- to implement -----------------------------------------------------------------------
    def _allreduce_sum(self, buffer):  # pragma: no cover - interface
        raise NotImplementedError

    def _allreduce_max(self, buffer):  # pragma: no cover - interface
        raise NotImplementedError

    def _broadcast(self, buffer, root):  # pragma: no cover - interface
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def allgather_object(self, obj):  # pragma: no cover - interface
        raise NotImplementedError

    def barrier(self):  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self, code=1):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


class SingleProcess(Communicator):
    """One process: rank 0 of 1, every collective the identity."""

    backend = "single"

    def broadcast_object(self, obj, root=0):
        return obj

    def allgather_object(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)
