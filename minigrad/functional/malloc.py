"""Keep freed memory in the process: the glibc malloc policy minigrad sets when it is imported.

Why. NumPy takes every array from malloc. glibc serves a request above M_MMAP_THRESHOLD (128 KiB
at first, raised by itself as large blocks are freed, up to 32 MiB) with a fresh mmap and hands
it back to the kernel on free, and it gives the top of its heap back once more than
M_TRIM_THRESHOLD of it is free. Either way the next array of that size lands on fresh pages,
which the kernel faults in and zeroes one by one, as system CPU time. A training step frees and
allocates activation-sized temporaries (ResNet-20, batch 128: 8 MB each) by the hundred, so on
a machine where page faults are dear this costs a fifth of the step (benchmarks/README.md,
"Convolutions").

What. `keep_freed_memory()` sets M_MMAP_THRESHOLD to 32 MiB (glibc's largest), M_MMAP_MAX to
0 and M_TRIM_THRESHOLD to 1 GiB: every block comes from the heap, and freed ones stay there to
be reused by the next step. (The threshold alone leaves blocks above 32 MiB to mmap: at batch
8192 an MLP layer's activations are 8192 x 1024 float32 = 32.0 MiB plus the array header, and
each step faulted them in afresh, a tenth of a K-FAC step; benchmarks/README.md, "K-FAC at its
floor".) The cost: the process keeps its heap (up to 1 GiB of it free at the top, and freed
blocks below the top until they are reused) after a large step, instead of returning it to the
system.

Where it does not apply, it does nothing: other C libraries than glibc (macOS, musl), and a
process whose environment chose a policy itself (glibc's MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or MALLOC_MMAP_MAX_ variables). Opt out with
MINIGRAD_MALLOC=system in the environment before minigrad.functional is imported.
"""
import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD_BYTES = 32 * 2 ** 20
TRIM_THRESHOLD_BYTES = 2 ** 30
OPT_OUT = "MINIGRAD_MALLOC"
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

applied = False  # whether keep_freed_memory() set the policy in this process


def keep_freed_memory():
    """Set the policy above; True if it was set, False where it does not apply."""
    global applied
    if os.environ.get(OPT_OUT, "") == "system" or any(v in os.environ for v in GLIBC_VARIABLES):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):  # no confstr (Windows), no such name, no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                   and mallopt(M_MMAP_MAX, 0)
                   and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return applied
