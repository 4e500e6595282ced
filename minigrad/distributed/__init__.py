"""Data parallelism: a small communicator interface and its backends.

    comm = minigrad.distributed.get_communicator()     # "auto": MPI under mpiexec, else one process
    comm.rank, comm.world_size
    means = comm.allreduce_mean([grad_w, grad_b])       # fused into one buffer per dtype
    sums = comm.allreduce_sum(arrays)
    arrays = comm.broadcast(arrays, root=0)
    obj = comm.broadcast_object(obj, root=0); objs = comm.allgather_object(obj)
    comm.barrier(); comm.abort(code)

Backends:
- `SingleProcess` (the default when not launched by mpiexec): rank 0 of 1; every collective is
  the identity (no copy), so code written for P processes runs unchanged on one.
- `MPICommunicator` (mpi4py, `pip install mpi4py mpich`): COMM_WORLD. NumPy arrays go to
  MPI directly; CuPy arrays too when the MPI library is CUDA-aware (mpi4py passes device
  pointers through __cuda_array_interface__; set MINIGRAD_CUDA_AWARE_MPI=1 to say it is),
  otherwise they are staged through host memory.
- `NCCLCommunicator` (CuPy's NCCL binding, one process per GPU, bootstrapped over MPI): device
  arrays reduced on the GPUs.

Fusing: a list of arrays is packed into one contiguous buffer per dtype (in list order), reduced
with one call, and unpacked into new arrays of the original shapes: one message per dtype and
step instead of one per parameter. Every collective adds its bytes (the buffer's size, as seen by
this rank) and its seconds to `comm.stats`, which `minigrad train --profile` reports.

All ranks must call the same collectives in the same order with arrays of the same shapes and
dtypes; the results are the same on every rank.
"""
import os

from .comm import MPI_INSTALL_HINT, Communicator, SingleProcess, Stats, pack, unpack

BACKENDS = ("auto", "single", "mpi", "nccl")
# environment variables that MPI launchers (MPICH/Hydra, Open MPI, Intel MPI, Slurm's PMI) set
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE",
                  "MV2_COMM_WORLD_SIZE")

_current = None


def launched_by_mpi():
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun)."""
    return any(k in os.environ for k in _LAUNCHER_SIZE) or "PMI_RANK" in os.environ


def get_communicator(backend="auto"):
    """The process-wide communicator, created on first use.

    "auto": MPI when launched by an MPI launcher (an ImportError that names the extra if mpi4py
    is missing there), otherwise SingleProcess. "single", "mpi", "nccl": that backend.
    """
    global _current
    if backend not in BACKENDS:
        raise ValueError(f"get_communicator: backend must be one of {BACKENDS}, got {backend!r}")
    if _current is not None and backend in ("auto", _current.backend):
        return _current
    if backend == "auto":
        backend = "mpi" if launched_by_mpi() else "single"
    if backend == "single":
        comm = SingleProcess()
    elif backend == "mpi":
        from .mpi import MPICommunicator
        comm = MPICommunicator()
    else:
        from .nccl import NCCLCommunicator
        comm = NCCLCommunicator()
    _current = comm
    return comm


def set_communicator(comm):
    """Make `comm` the process-wide communicator (None: forget it); returns the previous one."""
    global _current
    previous, _current = _current, comm
    return previous


__all__ = ["Communicator", "SingleProcess", "Stats", "get_communicator", "set_communicator",
           "launched_by_mpi", "pack", "unpack", "BACKENDS", "MPI_INSTALL_HINT"]
