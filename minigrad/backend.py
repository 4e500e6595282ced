"""The array module behind every tensor: NumPy on the CPU, CuPy on CUDA.

Engine code never imports numpy to work on tensor data; it asks `xp_of(array)`
for the module that owns the array, so the same op runs on either device.
CuPy is imported only when a CUDA device is asked for.
"""
import sys

import numpy as np

GPU_INSTALL_HINT = "pip install cupy-cuda12x"

_default_dtype = np.dtype(np.float32)


def set_default_dtype(dtype):
    """Set the dtype given to Python numbers and lists (float32 unless changed)."""
    global _default_dtype
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dt}")
    _default_dtype = dt


def get_default_dtype():
    return _default_dtype


def cupy_module():
    """Import CuPy, or say how to install it."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            f"device 'cuda' needs CuPy, which is not installed; install it with {GPU_INSTALL_HINT}"
        ) from exc
    return cupy


def xp_of(array):
    """The array module (numpy or cupy) that owns `array`."""
    if type(array) is np.ndarray:
        return np
    cp = sys.modules.get("cupy")
    if cp is not None and isinstance(array, cp.ndarray):
        return cp
    return np


def device_of(array):
    return "cpu" if xp_of(array) is np else "cuda"


def normalize_device(device):
    """'cpu', 'cuda' or 'cuda:N' -> 'cpu' or 'cuda'; anything else is a ValueError."""
    if device is None:
        return None
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def to_device(array, device):
    """Move a backend array to `device` ('cpu' or 'cuda'), copying only if it must."""
    device = normalize_device(device)
    if device == "cpu":
        if type(array) is np.ndarray or xp_of(array) is np:
            return np.asarray(array)
        return array.get()
    cp = cupy_module()
    return cp.asarray(array)


def writeable(array):
    """Whether `array` may be written in place: NumPy's `flags.writeable`; a CuPy array has no
    such flag (its flags are c_contiguous, f_contiguous, owndata), so there the test is that no
    two elements share memory (a broadcast view, stride 0 along an axis longer than 1, does)."""
    flag = getattr(array.flags, "writeable", None)
    if flag is not None:
        return bool(flag)
    return all(stride != 0 or n <= 1 for stride, n in zip(array.strides, array.shape))


def as_array(value):
    """Make a backend array of a forward's result (NumPy reductions may return scalars)."""
    cp = sys.modules.get("cupy")
    if cp is not None and isinstance(value, cp.ndarray):
        return value
    return np.asarray(value)
