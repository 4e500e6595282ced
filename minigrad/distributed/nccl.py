"""The NCCL backend: CuPy's binding of NCCL, one process per GPU, bootstrapped over MPI.

Rank r uses GPU r mod (visible GPUs). Rank 0 creates the NCCL unique id and MPI broadcasts it;
array collectives then run on the GPUs (ncclAllReduce / ncclBroadcast on the current stream,
which is synchronized before returning so that the results can be used at once from any
stream). Object collectives, barrier and abort go through MPI. Host (NumPy) buffers are copied
to the device and back.

Without GPUs the test suite runs it against the CuPy test double (tests/cupy_double.py: NCCL's
calls and buffers checked, the data moved over MPI) on 2 mpiexec ranks; see tests/test_gpu.py.
"""
import numpy as np

from ..backend import GPU_INSTALL_HINT
from .comm import Communicator
from .mpi import MPICommunicator

_NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8"}


class NCCLCommunicator(Communicator):
    backend = "nccl"

    def __init__(self):
        super().__init__()
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise ImportError(f"minigrad.distributed: the nccl backend needs CuPy with NCCL ({e}); "
                              f"install it with {GPU_INSTALL_HINT}") from None
        self.cupy, self.nccl = cupy, nccl
        self.mpi = MPICommunicator()
        self.rank, self.world_size = self.mpi.rank, self.mpi.world_size
        cupy.cuda.Device(self.rank % cupy.cuda.runtime.getDeviceCount()).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.mpi.broadcast_object(uid, root=0)
        self.comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)

    def _device(self, buffer):
        if isinstance(buffer, np.ndarray):
            return self.cupy.asarray(buffer), True
        return buffer, False

    def _run(self, buffer, call):
        device, copied = self._device(buffer)
        kind = getattr(self.nccl, _NCCL_TYPES[str(device.dtype)])
        stream = self.cupy.cuda.get_current_stream()
        call(device, kind, stream.ptr)
        stream.synchronize()
        if copied:
            buffer[...] = device.get()

    def _allreduce_sum(self, buffer):
        self._run(buffer, lambda d, t, s: self.comm.allReduce(d.data.ptr, d.data.ptr, d.size, t,
                                                              self.nccl.NCCL_SUM, s))

    def _allreduce_max(self, buffer):
        self._run(buffer, lambda d, t, s: self.comm.allReduce(d.data.ptr, d.data.ptr, d.size, t,
                                                              self.nccl.NCCL_MAX, s))

    def _broadcast(self, buffer, root):
        self._run(buffer, lambda d, t, s: self.comm.bcast(d.data.ptr, d.size, t, root, s))

    def broadcast_object(self, obj, root=0):
        return self.mpi.broadcast_object(obj, root)

    def allgather_object(self, obj):
        return self.mpi.allgather_object(obj)

    def barrier(self):
        self.mpi.barrier()

    def abort(self, code=1):
        self.mpi.abort(code)
