"""Helpers several test modules share: launching MPI, the dense damped Kronecker solve K-FAC is
checked against, and the digits training split read straight from its packaged file."""
import math
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest


def mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH, else None."""
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else shutil.which("mpiexec")


def have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return mpiexec() is not None


# MINIGRAD_REQUIRE_MPI=1 (CI): the tests run and fail rather than skip when MPI is missing
needs_mpi = pytest.mark.skipif(
    not have_mpi() and os.environ.get("MINIGRAD_REQUIRE_MPI") != "1",
    reason='needs mpi4py and mpiexec: pip install mpi4py mpich')


def assert_same_params(a, b, rtol):
    """The model arrays of the checkpoints of run folders a and b agree to rtol (relative to
    each array's largest entry; rtol=0: bit for bit)."""
    from minigrad.cli.checkpoint import read_checkpoint
    pa, pb = read_checkpoint(str(a))[0], read_checkpoint(str(b))[0]
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=rtol, atol=rtol * np.abs(pb[k]).max(),
                                   err_msg=k)


def dense_kfac_solve(A, G, V, damping, form):
    """mat(M^-1 vec_r(V)) as an (O, D+1) matrix, M the damped kron(G, A) (row-major vec):
    "eigen": kron(G, A) + damping I; "factored": kron(G + sqrt(damping)/pi I,
    A + pi sqrt(damping) I), pi = sqrt((tr A / dim A) / (tr G / dim G))."""
    if form == "eigen":
        M = np.kron(G, A) + damping * np.eye(G.shape[0] * A.shape[0])
    else:
        pi = math.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0]))
        r = math.sqrt(damping)
        M = np.kron(G + r / pi * np.eye(G.shape[0]), A + pi * r * np.eye(A.shape[0]))
    return np.linalg.solve(M, V.reshape(-1)).reshape(V.shape)


def digits_train():
    """(images (N, 64) float64, labels (N,) int64) of digits' training split in its stored
    order, straight from the packaged HDF5 file (not through minigrad.datasets)."""
    path = resources.files("minigrad.datasets") / "data" / "digits.h5"
    with h5py.File(str(path), "r") as f:
        rows = f["train_index"][()]
        images = f["images"][()][rows].reshape(len(rows), -1).astype(np.float64)
        labels = f["labels"][()][rows].astype(np.int64)
    return images, labels
