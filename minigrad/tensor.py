"""`Tensor`: a backend array, the gradient that flows into it, and its place on the tape.

A tensor made by the user is a leaf; a tensor made by an op while grad mode is on and
some input requires grad carries the `Node` that made it. Operators and methods
(`x + y`, `x.sum(axis=0)`, `x.T`) are attached in `minigrad.methods`.
"""
import numpy as np

from .backend import (get_default_dtype, normalize_device, to_device, xp_of, device_of,
                      cupy_module)


class Tensor:
    __slots__ = ("data", "grad", "_requires_grad", "_node", "_hooks", "__weakref__")
    # NumPy gives way to our reflected operators: array * tensor -> Tensor.__rmul__.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self.data = _to_array(data, dtype, device)
        self.grad = None
        self._node = None
        self._hooks = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _make(cls, data, node, requires_grad):
        t = object.__new__(cls)
        t.data = data
        t.grad = None
        t._requires_grad = requires_grad
        t._node = node
        t._hooks = None
        return t

    @staticmethod
    def wrap(value, dtype=None):
        """`value` if it is a Tensor, else a constant Tensor (no grad) holding it."""
        if isinstance(value, Tensor):
            return value
        return Tensor._make(_to_array(value, dtype, None), None, False)

    # -- what a tensor is -------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        flag = bool(flag)
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(f"only floating-point tensors can require grad; this one is {self.data.dtype} "
                            f"(shape {self.shape})")
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad can be turned off only on a leaf tensor; use .detach()")
        self._requires_grad = flag

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return device_of(self.data)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def numpy(self):
        """The data as a NumPy array on the host (shares memory on the CPU)."""
        return to_device(self.data, "cpu")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a tensor with one element converts to a number, "
                             f"this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use .any() or .all() on .data")
        return bool(self.item())

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn={self._node.fn.__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # -- the tape ---------------------------------------------------------------------
    def detach(self):
        """The same data, cut off from the tape (no grad)."""
        return Tensor._make(self.data, None, False)

    # to(device) is an op (minigrad/shape_ops.py), attached by minigrad.methods.
    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def register_hook(self, fn):
        """Call `fn(grad)` with the gradient flowing into this tensor during backward.

        `fn` may return a replacement gradient. Returns a handle whose `remove()` undoes it.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: the tensor does not require grad, so no gradient "
                               "will flow into it")
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self._node.hooks is None:
                self._node.hooks = []
            hooks = self._node.hooks
        hooks.append(fn)
        return _HookHandle(hooks, fn)

    # backward() lives with the graph walk (minigrad/autograd.py); minigrad.methods attaches it.


class _HookHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def _to_array(data, dtype, device):
    """The backend array for `tensor(data, dtype, device)`."""
    if isinstance(data, Tensor):
        data = data.data
    dt = None if dtype is None else np.dtype(dtype)
    xp = xp_of(data)
    if device is not None and normalize_device(device) == "cuda" and xp is np:
        xp = cupy_module()
    if hasattr(data, "dtype") and hasattr(data, "shape"):
        arr = data
        if dt is None and arr.dtype.kind not in "fiucb":
            raise TypeError(f"tensor: unsupported dtype {arr.dtype}")
    else:
        arr = np.asarray(data)
        if arr.dtype.kind == "O" or arr.dtype.kind in "US":
            raise TypeError(f"tensor: cannot make a tensor of {type(data).__name__} data "
                            f"(NumPy reads it as {arr.dtype})")
        if dt is None and arr.dtype.kind == "f":
            dt = get_default_dtype()
    if dt is not None and arr.dtype != dt:
        arr = arr.astype(dt)
    if device is not None:
        arr = to_device(arr, device)
    elif xp is not np or type(arr) is not np.ndarray:
        arr = xp.asarray(arr)
    return arr


def const(array):
    """A constant tensor (no grad) around a backend array, as it is (no copy, no conversion)."""
    return Tensor._make(array, None, False)


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor.

    A NumPy array keeps its dtype; Python numbers and lists get the default float dtype
    (`set_default_dtype`, float32 unless changed) when they hold floats, int64 when they
    hold integers. Only floating-point tensors may require grad. An array of the right
    dtype and device is used as it is, not copied (like `torch.as_tensor`).
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
