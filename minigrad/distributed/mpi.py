"""The MPI backend (mpi4py, COMM_WORLD)."""
import os

import numpy as np

from .comm import MPI_INSTALL_HINT, Communicator


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"minigrad.distributed: this process was started by an MPI launcher "
                          f"but mpi4py is not installed ({e}); install it with "
                          f"{MPI_INSTALL_HINT}") from None
    return MPI


def cuda_aware():
    """Whether device buffers may go to MPI directly: MINIGRAD_CUDA_AWARE_MPI=1/0 decides; else
    MPI 4.1's MPIX_Query_cuda_support through mpi4py when it has it; else no."""
    flag = os.environ.get("MINIGRAD_CUDA_AWARE_MPI")
    if flag is not None:
        return flag.strip() not in ("", "0", "false", "no")
    MPI = _import_mpi()
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:   # the library does not implement the extension
        return False


class MPICommunicator(Communicator):
    """COMM_WORLD of mpi4py. Device (CuPy) buffers go through host memory unless cuda_aware()."""

    backend = "mpi"

    def __init__(self):
        super().__init__()
        self.MPI = _import_mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self._cuda_aware = None

    def _host_or_device(self, buffer, fn):
        """Run fn(buf) on a buffer MPI can read and write, copying device data through the host
        unless the MPI library is CUDA-aware."""
        if isinstance(buffer, np.ndarray):
            return fn(buffer)
        if self._cuda_aware is None:
            self._cuda_aware = cuda_aware()
        if self._cuda_aware:
            import cupy
            cupy.cuda.get_current_stream().synchronize()   # MPI reads the buffer right away
            return fn(buffer)
        host = buffer.get()
        fn(host)
        buffer.set(host)

    def _allreduce_sum(self, buffer):
        self._host_or_device(buffer, lambda b: self.comm.Allreduce(self.MPI.IN_PLACE, b,
                                                                   op=self.MPI.SUM))

    def _allreduce_max(self, buffer):
        self._host_or_device(buffer, lambda b: self.comm.Allreduce(self.MPI.IN_PLACE, b,
                                                                   op=self.MPI.MAX))

    def _broadcast(self, buffer, root):
        self._host_or_device(buffer, lambda b: self.comm.Bcast(b, root=root))

    def broadcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        """End every process of the job (MPI_Abort): a rank that fails must not leave the others
        waiting forever in a collective."""
        self.comm.Abort(code)
