"""Tensors made from a shape: zeros, ones, full, arange, and the *_like forms."""
import numpy as np

from .backend import cupy_module, get_default_dtype, normalize_device
from .tensor import Tensor


def _xp(device):
    return cupy_module() if normalize_device(device) == "cuda" else np


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def full(shape, value, dtype=None, device=None, requires_grad=False):
    dtype = get_default_dtype() if dtype is None else dtype
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    return Tensor(_xp(device).full(shape, value, dtype=dtype), requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return full(_shape(shape), 0, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return full(_shape(shape), 1, dtype, device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return full(t.shape, 0, dtype or t.dtype, t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return full(t.shape, 1, dtype or t.dtype, t.device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None):
    """Like numpy.arange; float ranges get the default dtype."""
    arr = _xp(device).arange(start, stop, step)
    if dtype is None and arr.dtype.kind == "f":
        dtype = get_default_dtype()
    return Tensor(arr if dtype is None else arr.astype(dtype))
