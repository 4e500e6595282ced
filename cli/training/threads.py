"""`minigrad train --threads N`: how many threads the BLAS libraries (OpenBLAS, MKL) and OpenMP
use in this process while it trains.

The limit is set in-process through threadpoolctl, which finds every BLAS and OpenMP library
loaded into the process (NumPy's and SciPy's OpenBLAS are separate copies) and sets each one's
thread count for the duration of a `with` block; setting OMP_NUM_THREADS would come too late,
since it is read when a library loads. SciPy's linear algebra is imported before the limit is
set, so that its BLAS is among the libraries limited (K-FAC's eigendecompositions run there).

Why a user wants it: BLAS spreads every matrix product over all cores by default. For the
small products of an MLP at moderate batch sizes, or on a machine other work keeps busy, the
threads spend more time waiting for each other than computing.
Under `mpiexec` each rank is a process of its own: P ranks on C cores want C / P threads each.

Results: matrix products may sum in another order with another thread count, so the same seed
gives the same run bit for bit for the same --threads (a resumed run may change it: the run
continues correctly, though not bit for bit as it would have with the old count).
"""
import contextlib

import scipy.linalg  # noqa: F401  (loads SciPy's BLAS before the limit, so it is limited too)
from threadpoolctl import threadpool_info, threadpool_limits


def limited_threads(threads):
    """A context manager: inside it every loaded BLAS and OpenMP library uses `threads`
    threads; None leaves them as they are (their defaults, or OMP_NUM_THREADS and the like)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def blas_threads():
    """{library file name: threads} of the BLAS libraries loaded now (what --threads set)."""
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas"}
