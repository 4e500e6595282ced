"""cupy_double: a NumPy-backed test double of the part of CuPy that minigrad uses (a TEST TOOL).

Why it exists. No GPU runs minigrad's CI, so without it the CuPy paths of the engine, the
optimizers, capture, conv, the NCCL backend and `minigrad train --device cuda` never run. This
module stands in for `cupy` when real CuPy is not importable or sees no CUDA device, so that CI
runs those paths (tests/test_gpu.py). Where a GPU exists the tests run against real CuPy instead.

Selection (tests/conftest.py, the "GPU test double" block): real CuPy when `import cupy` works and
`cupy.cuda.runtime.getDeviceCount() > 0`, otherwise this double; MINIGRAD_TEST_CUPY=real|double
forces one. The choice is printed in pytest's header ("cupy backend: ...") and is the parameter
id of every test that uses the `cupy` fixture (test_x[cupy-double] / test_x[cupy-real]). The
fixture installs the double into sys.modules (as "cupy", "cupy.cuda", "cupy.cuda.runtime",
"cupy.cuda.nccl", "cupy.linalg", "cupy.random", "cupy.lib", "cupy.lib.stride_tricks") with
`installed()`, for one test at a time, so the rest of the suite sees the machine as it is (e.g.
the tests of the "CuPy is not installed" message). A subprocess (mpiexec ranks) calls `install()`.
It is a module of tests/, not of the minigrad package: it is a test tool and is not installed.

Host synchronizations per step (tests/test_gpu.py, measured with `count_syncs()` through the
CLI's own training step, the same for 1 and 4 hidden layers): SGD 3 (the loss value, the labels'
range check in cross_entropy, the gradients' finiteness check); K-FAC 5 with the empirical
Fisher (+ the factors' finiteness check, + the KL clip's <V, P> of all layers), 6 with the true
Fisher (+ the softmax probabilities to the host, to sample labels with the host Generator), and
1 more on the steps that refresh the eigenbases (every layer's eigh finiteness and traces at once).

What it emulates, where it matters for finding bugs:
- `cupy.ndarray` is NOT a numpy.ndarray (it wraps one). Implicit conversion to the host raises
  TypeError as CuPy's does: np.asarray(x), np.array(x), x.__array__(), a list of device arrays
  given to NumPy. NumPy functions that CuPy overrides (__array_ufunc__, __array_function__)
  dispatch to the double, as they dispatch to CuPy.
- A NumPy array as an operand of a device op raises TypeError ("Unsupported type <class
  'numpy.ndarray'>"), on either side of the operator and in every double function and ufunc
  (array/asarray/asanyarray are the way to the device). NumPy scalars and Python numbers are fine.
  Objects with __array_ufunc__ = None (minigrad's Tensor) get their reflected operator, as in CuPy.
- The only ways to the host are .get(), cupy.asnumpy(), .item(), .tolist(), float(), int(),
  complex(), bool(), repr()/str()/format(). Each is a host SYNCHRONIZATION and is counted
  (`count_syncs()`), with the caller's file:line; so are stream/device synchronize(), boolean-mask
  indexing and nonzero/argwhere/flatnonzero/unique (CuPy reads a count back for their shape).
  Host-to-device copies (asarray/array of host data, .set) are counted apart, as `h2d`.
- Reductions, indexing to one element and every ufunc return 0-d device arrays, never NumPy
  scalars (x.sum() is a cupy.ndarray, as on CuPy).
- ndarray.flags has only c_contiguous, f_contiguous and owndata (no `writeable`); `.base` is the
  root array of a view; `.data` is a MemoryPointer (`.data.ptr`), not the array's values;
  `x[...] = numpy_array` with a basic index raises "non-scalar numpy.ndarray cannot be used for
  fill"; `.set()` checks dtype and shape; ufunc.at exists only for add/subtract/maximum/minimum and
  only for the dtypes CuPy's atomics take (not int64); astype(casting=...) is a TypeError;
  `cupy.empty` (and ndarray(shape)) is filled with NaN (floats) or a 0x5A pattern (ints), so code
  that reads memory it never wrote fails loudly instead of seeing NumPy's usual zeros.
- linalg (eigh, eigvalsh, solve, inv, cholesky, qr, svd, norm, det, slogdet, pinv, lstsq):
  like CuPy by default (errors not raised), a failed decomposition returns NaN instead of raising
  LinAlgError.
- cupy.cuda: runtime.getDeviceCount/getDevice/setDevice/deviceSynchronize/getDeviceProperties,
  runtime.CUDARuntimeError, Device(i).use()/synchronize()/context manager, get_current_stream()
  (.ptr, .synchronize()), Stream.null, MemoryPointer, is_available(). `configure(device_count=,
  runtime_error=)` simulates machines with no or several GPUs, or a broken driver.
- cupy.cuda.nccl: get_unique_id(), NcclCommunicator(ndev, uid, rank) with allReduce, reduce,
  bcast, broadcast, allGather, destroy, abort, rank_id, size, device_id and the NCCL_* constants.
  Buffers are found by their .data.ptr (as NCCL gets them); the collective runs over mpi4py's
  COMM_WORLD (the processes of the same mpiexec, which is how minigrad bootstraps NCCL), or
  locally for a world of one. The dtype constant must match the buffer's dtype and the buffer
  must be contiguous and hold `count` elements, else an error.
- __cuda_array_interface__ (version 2, host pointer): lets mpi4py take a device buffer directly,
  so the CUDA-aware MPI path runs against an MPI that is not CUDA-aware.
- cupy.random (seed, rand, randn, random, standard_normal, normal, uniform, randint,
  permutation, shuffle, choice, default_rng, RandomState) and cupy.lib.stride_tricks.as_strided.

LIMITS (what a green run against the double does NOT tell you):
- It cannot find kernel or memory bugs: no CUDA kernels, no device memory, no out-of-memory, no
  race between streams, no asynchronous execution (every op finishes at once; a missing
  synchronize() before reading device memory from another library goes unnoticed, and timings
  mean nothing), no multi-GPU placement (arrays do not check that they are on the current device).
- Numerics are NumPy's: cuBLAS/cuSOLVER/cuRAND results differ in the last bits (reductions sum
  in another order; eigh may pick other signs of eigenvectors), random streams differ from
  CuPy's, and `cupy.random` here is not cuRAND.
- dtype promotion is the installed NumPy's (NEP 50 on NumPy 2); CuPy (before 14, and for some
  0-d and scalar mixes) may promote differently, e.g. a float32 array with a NumPy float64 scalar
  or with a 0-d float64 array.
- Out-of-bounds integer-array indices raise IndexError here, while CuPy wraps them around
  silently; integer-array assignment with repeated indices keeps the last value here (undefined
  on CuPy).
- Not emulated: cupy.fft (minigrad does not use it), cupyx, custom kernels (ElementwiseKernel,
  RawKernel), cupy.cuda.memory pools, pinned memory, events, graphs, DLPack, peer access, the
  ENABLE_SLICE_COPY mode, array priorities other than CuPy's 100, and most of CuPy's API beyond
  what NumPy forwards; a function that CuPy lacks may still work here (it is forwarded to NumPy).
- NCCL: the double checks the calls' arguments and moves the data with MPI; it does not model
  NCCL's own errors, streams or ordering rules, nor two ranks sharing one GPU (a real NCCL error).
- Host synchronizations are counted where CuPy makes them in Python (the conversions above); a
  library call that synchronizes inside CuPy (some cuSOLVER paths check info on the host when
  CuPy's linalg errors are set to raise) is not counted.
"""
import builtins as _b
import contextlib
import os
import sys
import types
import warnings
import weakref

import numpy as np

__version__ = "13.99.0+minigrad.double"   # what `cupy.__version__` says here
IS_DOUBLE = True
_HERE = os.path.abspath(__file__).rstrip("c")


# ============================================================================ accounting
class SyncRecord:
    """Host synchronizations (and host-to-device copies) seen while it was active."""

    def __init__(self):
        self.events = []     # (kind, "file:line" of the caller outside this module)
        self.h2d = 0

    @property
    def count(self):
        return len(self.events)

    def by_kind(self):
        out = {}
        for kind, _ in self.events:
            out[kind] = out.get(kind, 0) + 1
        return out

    def report(self):
        lines = [f"{len(self.events)} host synchronizations:"]
        lines += [f"  {kind:<12} at {where}" for kind, where in self.events]
        return "\n".join(lines)

    def __repr__(self):
        return f"SyncRecord(count={self.count}, by_kind={self.by_kind()}, h2d={self.h2d})"


_records = []
TOTAL = {"syncs": 0, "h2d": 0}


def _caller():
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename).rstrip("c") == _HERE:
        f = f.f_back
    if f is None:
        return "?"
    return f"{os.path.relpath(f.f_code.co_filename)}:{f.f_lineno}"


def _sync(kind):
    TOTAL["syncs"] += 1
    if _records:
        where = _caller()
        for r in _records:
            r.events.append((kind, where))


def _h2d():
    TOTAL["h2d"] += 1
    for r in _records:
        r.h2d += 1


@contextlib.contextmanager
def count_syncs():
    """with count_syncs() as rec: ...  -> rec.count, rec.events, rec.by_kind(), rec.report()."""
    rec = SyncRecord()
    _records.append(rec)
    try:
        yield rec
    finally:
        _records.remove(rec)


# ============================================================================ the machine
class _Machine:
    device_count = 1
    runtime_error = None     # a message: getDeviceCount() raises CUDARuntimeError with it
    current = 0


_machine = _Machine()


def configure(device_count=1, runtime_error=None):
    """Simulate a machine: `device_count` GPUs, or a driver whose calls fail with
    `runtime_error` (a message). Returns the previous (device_count, runtime_error)."""
    previous = (_machine.device_count, _machine.runtime_error)
    _machine.device_count, _machine.runtime_error = int(device_count), runtime_error
    _machine.current = 0
    return previous


# ============================================================================ arrays
_FILL_INT = 0x5A5A5A5A5A5A5A5A


def _garbage(shape, dtype, order="C"):
    a = np.empty(shape, dtype=dtype, order=order)
    if a.dtype.kind in "fc":
        a.fill(np.nan)
    elif a.dtype.kind in "iu":
        a.fill(_FILL_INT & ((1 << (8 * a.dtype.itemsize - (a.dtype.kind == "i"))) - 1))
    elif a.dtype.kind == "b":
        a.fill(True)
    return a


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


_SCALARS = (bool, int, float, complex, np.generic)


class Flags:
    """CuPy's ndarray.flags: c_contiguous, f_contiguous, owndata; nothing else."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, c, f, own):
        self.c_contiguous, self.f_contiguous, self.owndata = c, f, own

    @property
    def fnc(self):
        return self.f_contiguous and not self.c_contiguous

    @property
    def forc(self):
        return self.f_contiguous or self.c_contiguous

    def __getitem__(self, name):
        try:
            return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                    "OWNDATA": self.owndata}[name]
        except KeyError:
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags") from None

    def __repr__(self):
        return "\n".join(f"  {k} : {self[k]}" for k in ("C_CONTIGUOUS", "F_CONTIGUOUS", "OWNDATA"))


_POINTERS = {}   # ptr -> weakref to the ndarray whose .data was last asked for at that address


class MemoryPointer:
    """`ndarray.data`: the address of the array's first element (host memory here)."""

    __slots__ = ("device_id", "mem", "ptr")

    def __init__(self, ptr, device_id, owner=None):
        self.ptr, self.device_id, self.mem = int(ptr), device_id, owner

    @property
    def device(self):
        return cuda.Device(self.device_id)

    def __int__(self):
        return self.ptr

    def __add__(self, offset):
        return MemoryPointer(self.ptr + int(offset), self.device_id, self.mem)

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} device={self.device_id}>"


def _is_view_of(result, sources):
    """The root array (a double ndarray) that `result` is a view of, or None."""
    if not isinstance(result, np.ndarray) or result.base is None or result.size == 0:
        return None
    for s in sources:
        if isinstance(s, ndarray) and s._a.size and np.may_share_memory(result, s._a):
            return s._base if s._base is not None else s
    return None


def _wrap(result, *sources):
    """A NumPy result as device arrays: ndarrays wrapped (views keep their root as .base),
    NumPy scalars as 0-d arrays, tuples and lists element by element; anything else as it is."""
    if isinstance(result, np.ndarray):
        for s in sources:
            if isinstance(s, ndarray) and result is s._a:
                return s          # NumPy handed the input back (no copy): so does CuPy
        return ndarray._make(result, _is_view_of(result, sources))
    if isinstance(result, np.generic):
        return ndarray._make(np.asarray(result), None)
    if isinstance(result, tuple):
        items = [_wrap(r, *sources) for r in result]
        return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
    if isinstance(result, list):
        return [_wrap(r, *sources) for r in result]
    return result


def _arg(x):
    """One argument of a device function: device arrays unwrapped, host arrays refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _unsupported(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_arg(v) for v in x)
    return x


def _args(args, kwargs):
    return [_arg(a) for a in args], {k: _arg(v) for k, v in kwargs.items()}


def _index(key):
    """An index for the wrapped array: device arrays unwrapped, host arrays and lists taken as
    CuPy takes them (copied to the device). Returns (index, advanced, boolean)."""
    items = key if isinstance(key, tuple) else (key,)
    out, advanced, boolean = [], False, False
    for k in items:
        if isinstance(k, ndarray):
            k = k._a
        elif isinstance(k, np.ndarray):
            _h2d()
        elif isinstance(k, list):
            _h2d()
            k = np.asarray(_arg(k))
            if k.size == 0:
                k = k.astype(np.int32)
        elif isinstance(k, (bool, np.bool_)):
            k = np.asarray(k)
        if isinstance(k, np.ndarray):
            advanced = True
            if k.dtype.kind == "b":
                boolean = True
            elif k.dtype.kind not in "iu":
                raise IndexError("arrays used as indices must be of integer or boolean type. "
                                 f"(actual: {k.dtype.type})")
        out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), advanced, boolean


def _should_use_rop(y):
    try:
        y_ufunc = y.__array_ufunc__
    except AttributeError:
        return 100 < getattr(y, "__array_priority__", 0)
    return y_ufunc is None


class ndarray:
    """cupy.ndarray of the double: a NumPy array held where the host cannot see it."""

    __slots__ = ("__weakref__", "_a", "_base", "_device")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy_double: ndarray(memptr=, strides=) is not emulated")
        self._a = _garbage(shape, dtype, order)
        self._base = None
        self._device = _machine.current

    @classmethod
    def _make(cls, a, base=None):
        self = object.__new__(cls)
        self._a, self._base, self._device = a, base, _machine.current
        return self

    # -- what it is ----------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    base = property(lambda self: self._base)

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def flags(self):
        return Flags(bool(self._a.flags.c_contiguous), bool(self._a.flags.f_contiguous),
                     self._base is None)

    @property
    def T(self):
        return self if self.ndim < 2 else _wrap(self._a.T, self)

    @property
    def data(self):
        ptr = self._a.__array_interface__["data"][0] if self._a.size else 0
        if ptr:
            _POINTERS[ptr] = weakref.ref(self)
        return MemoryPointer(ptr, self._device, self)

    @property
    def device(self):
        return cuda.Device(self._device)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "descr": self.dtype.descr,
                "strides": None if self._a.flags.c_contiguous else self.strides,
                "data": (self.data.ptr, False), "version": 2}

    # -- the host boundary ---------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync("get")
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if out.shape != self.shape or out.dtype != self.dtype:
                raise ValueError("Shape or dtype mismatch")
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if not (self._a.flags.c_contiguous or self._a.flags.f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        _h2d()
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        _sync("item")
        return self._a.item()

    def tolist(self):
        _sync("tolist")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _sync("tobytes")
        return self._a.tobytes(order)

    def __float__(self):
        _sync("float")
        return float(self._a)

    def __int__(self):
        _sync("int")
        return int(self._a)

    def __complex__(self):
        _sync("complex")
        return complex(self._a)

    def __bool__(self):
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous.", DeprecationWarning,
                          stacklevel=2)
            return False
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        _sync("bool")
        return bool(self._a.reshape(()))

    def __repr__(self):
        _sync("repr")
        return repr(self._a)

    def __str__(self):
        _sync("str")
        return str(self._a)

    def __format__(self, spec):
        _sync("format")
        return format(self._a if self.ndim else self._a[()], spec)

    def __reduce__(self):
        return array, (self.get(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # -- containers ----------------------------------------------------------------------------
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        idx, _, boolean = _index(key)
        if boolean:
            _sync("mask-index")
        return _wrap(self._a[idx], self)

    def __setitem__(self, key, value):
        idx, advanced, boolean = _index(key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, np.ndarray):
            if not advanced and value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            _h2d()
        elif not isinstance(value, _SCALARS):
            value = _arg(value)
        if boolean:
            _sync("mask-index")
        self._a[idx] = value

    # -- NumPy interoperation (as CuPy does it) ------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            return NotImplemented
        mine = _UFUNCS.get(ufunc.__name__)
        if mine is None:
            return NotImplemented
        for x in inputs + tuple(kwargs.get("out", ()) or ()):
            if not isinstance(x, (ndarray, np.ndarray)) and type(x) not in _SCALAR_TYPES:
                return NotImplemented
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        return mine(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        module = func.__module__ or ""
        where = (_THIS if module == "numpy" else linalg if module.endswith("linalg")
                 else random if module.endswith("random") else None)
        mine = getattr(where, func.__name__, None) if where is not None else None
        if mine is None or not callable(mine):
            return NotImplemented
        for t in types:
            if not issubclass(t, (ndarray, np.ndarray)):
                return NotImplemented
        return mine(*args, **kwargs)

    # -- methods -------------------------------------------------------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if casting is not None:
            raise TypeError("casting is not supported yet")
        if subok is not None:
            raise TypeError("subok is not supported yet")
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return ndarray._make(self._a.astype(dtype, order=order, copy=True))

    def copy(self, order="C"):
        return ndarray._make(np.array(self._a, order=order, copy=True))

    def fill(self, value):
        if isinstance(value, np.ndarray):
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        elif isinstance(value, ndarray):
            raise TypeError("fill takes a scalar")   # CuPy: the kernel gets no array
        self._a.fill(value)

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype), self)

    def nonzero(self):
        _sync("nonzero")
        return _wrap(self._a.nonzero())

    def dot(self, b, out=None):
        if not isinstance(b, ndarray):
            raise _unsupported(b)
        if out is not None:
            np.dot(self._a, b._a, out=out._a)
            return out
        return _wrap(np.dot(self._a, b._a))

    def __matmul__(self, other):
        if not isinstance(other, ndarray) and _should_use_rop(other):
            return NotImplemented
        return matmul(self, other)

    def __rmatmul__(self, other):
        if _should_use_rop(other):
            return NotImplemented
        return matmul(other, self)

    def __neg__(self):
        return _UFUNCS["negative"](self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _UFUNCS["absolute"](self)

    def __invert__(self):
        return _UFUNCS["invert"](self)

    __hash__ = None


_METHODS = ("all", "any", "argmax", "argmin", "argsort", "choose", "clip", "compress", "conj",
            "conjugate", "cumprod", "cumsum", "diagonal", "flatten", "max", "mean", "min", "prod",
            "put", "ravel", "repeat", "reshape", "round", "searchsorted", "sort",
            "squeeze", "std", "sum", "swapaxes", "take", "trace", "transpose", "var")


def _out(kwargs):
    """Pop `out=` (a device array, or None) from kwargs."""
    out = kwargs.pop("out", None)
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(out)}")
    return out


def _method(name):
    def method(self, *args, **kwargs):
        out = _out(kwargs)
        args, kwargs = _args(args, kwargs)
        if out is not None:
            kwargs["out"] = out._a
        result = getattr(self._a, name)(*args, **kwargs)
        return out if out is not None else _wrap(result, self)

    method.__name__ = name
    return method

for _name in _METHODS:
    setattr(ndarray, _name, _method(_name))


# ------------------------------------------------------------------------------- ufuncs
_SCALAR_TYPES = {bool, int, float, complex} | {np.dtype(c).type for c in "?bBhHiIlLqQefdgFDG"}
_ATOMIC_DTYPES = {"add": ("int32", "float16", "float32", "float64", "uint32", "uint64"),
                  "subtract": ("int32", "float16", "float32", "float64", "uint32", "uint64"),
                  "maximum": ("int32", "float32", "float64", "uint32", "uint64"),
                  "minimum": ("int32", "float32", "float64", "uint32", "uint64")}


class ufunc:
    """A CuPy ufunc: NumPy's, on device arrays only (host arrays are a TypeError)."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.name = "cupy_" + np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    @staticmethod
    def _operand(x):
        if isinstance(x, ndarray):
            return x._a
        if type(x) in _SCALAR_TYPES or isinstance(x, np.generic):
            return x
        raise _unsupported(x)

    def __call__(self, *args, out=None, dtype=None, casting="same_kind", **kwargs):
        if len(args) != self.nin:
            if len(args) == self.nin + self.nout and out is None:
                args, out = args[:self.nin], args[self.nin:]
                out = out[0] if len(out) == 1 else out
            else:
                raise TypeError(f"Wrong number of arguments for {self.name}")
        if kwargs.pop("where", None) is not None:
            raise NotImplementedError("cupy_double: ufunc(where=) is not emulated")
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        operands = [self._operand(x) for x in args]
        if not _b.any(isinstance(x, ndarray) for x in args) and out is None:
            operands = [np.asarray(x) for x in operands]   # scalars only: a 0-d device result
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            for o in outs:
                if not isinstance(o, ndarray):
                    raise TypeError("Output argument must be cupy.ndarray")
            np_out = tuple(o._a for o in outs)
            self._u(*operands, out=np_out if len(np_out) > 1 else np_out[0], dtype=dtype,
                    casting=casting)
            return out
        return _wrap(self._u(*operands, dtype=dtype, casting=casting))

    def at(self, a, indices, b=None):
        allowed = _ATOMIC_DTYPES.get(self.__name__)
        if allowed is None:
            raise NotImplementedError(f"`{self.name}.at` is not supported yet")
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        value_dtype = a.dtype
        if str(value_dtype) not in allowed:
            raise TypeError(f"scatter_{self.__name__.replace('imum', '').replace('tract', '')} "
                            f"only supports {', '.join(allowed)}, as data type")
        idx, _, boolean = _index(indices)
        if boolean:
            _sync("mask-index")
        self._u.at(a._a, idx, self._operand(b) if b is not None else None)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        if self.__name__ == "add":
            return array.sum(axis, dtype, out, keepdims)
        if self.__name__ == "multiply":
            return array.prod(axis, dtype, out, keepdims)
        raise NotImplementedError(f"`{self.name}.reduce` is not supported yet")

    def outer(self, A, B, **kwargs):
        A, B = asarray(A), asarray(B)
        return self(A.reshape(A.shape + (1,) * B.ndim), B.reshape((1,) * A.ndim + B.shape),
                    **kwargs)


_UFUNCS = {}
for _name in dir(np):
    _u = getattr(np, _name)
    if isinstance(_u, np.ufunc) and _name not in ("matmul", "isnat", "vecdot", "matvec",
                                                   "vecmat", "bitwise_count"):
        _UFUNCS[_u.__name__] = ufunc(_u)
        globals()[_name] = _UFUNCS[_u.__name__]
del _name, _u


def _binary(name, reflected=False):
    uf = _UFUNCS[getattr(np, name).__name__]

    def op(self, other):
        if not isinstance(other, ndarray) and _should_use_rop(other):
            return NotImplemented
        return uf(other, self) if reflected else uf(self, other)

    return op


def _inplace(name):
    uf = _UFUNCS[getattr(np, name).__name__]

    def op(self, other):
        uf(self, other, out=self)
        return self

    return op


for _op, _uf in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                 ("truediv", "true_divide"), ("floordiv", "floor_divide"), ("mod", "remainder"),
                 ("pow", "power"), ("and", "bitwise_and"), ("or", "bitwise_or"),
                 ("xor", "bitwise_xor"), ("lshift", "left_shift"), ("rshift", "right_shift")):
    setattr(ndarray, f"__{_op}__", _binary(_uf))
    setattr(ndarray, f"__r{_op}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_op}__", _inplace(_uf))
for _op, _uf in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                 ("eq", "equal"), ("ne", "not_equal")):
    def _cmp(self, other, _u=_UFUNCS[getattr(np, _uf).__name__]):
        if other is None or (not isinstance(other, ndarray) and _should_use_rop(other)):
            return NotImplemented
        if isinstance(other, np.ndarray) and other.ndim == 0:
            other = other.item()    # CuPy's workaround for numpy/numpy#12142
        return _u(self, other)
    setattr(ndarray, f"__{_op}__", _cmp)
del _op, _uf


# ============================================================================ module functions
def _host_to_device(obj, dtype=None, copy=True, order="K"):
    if isinstance(obj, ndarray):
        if dtype is None or np.dtype(dtype) == obj.dtype:
            return obj.copy() if copy else obj
        return obj.astype(dtype)
    if _contains_device(obj):      # a (nested) sequence of device arrays: stays on the device
        return ndarray._make(np.array(_arg(obj), dtype=dtype))
    if isinstance(obj, np.ndarray) or not isinstance(obj, _SCALARS):
        _h2d()
    # a new buffer: the device copy never aliases the host array
    return ndarray._make(np.array(obj, dtype=dtype, copy=True, order="C" if order == "K" else order))


def _contains_device(obj):
    if isinstance(obj, ndarray):
        return True
    if isinstance(obj, (list, tuple)):
        return _b.any(_contains_device(v) for v in obj)
    return False


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    out = _host_to_device(obj, dtype, copy=copy is not False, order=order)
    while out.ndim < ndmin:
        out = out.reshape((1,) + out.shape)
    return out


def asarray(a, dtype=None, order=None, blocking=False):
    return _host_to_device(a, dtype, copy=False, order=order or "K")


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    if out is not None:
        out[...] = a
        return out
    return np.asarray(a, order=order)


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[__name__]
    return np


def _alloc(np_fn):
    def fn(*args, **kwargs):
        args, kwargs = _args(args, kwargs)
        return _wrap(np_fn(*args, **kwargs))

    fn.__name__ = np_fn.__name__
    return fn


def empty(shape, dtype=float, order="C"):
    return ndarray._make(_garbage(shape, dtype, order))


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    if not isinstance(prototype, ndarray):
        raise _unsupported(prototype)
    return empty(prototype.shape if shape is None else shape,
                 prototype.dtype if dtype is None else dtype)


def _forward(np_fn, name=None, sync=None):
    def fn(*args, **kwargs):
        if sync:
            _sync(sync)
        sources = [a for a in args if isinstance(a, ndarray)]
        out = _out(kwargs)
        args, kwargs = _args(args, kwargs)
        if out is not None:
            kwargs["out"] = out._a
        result = np_fn(*args, **kwargs)
        return out if out is not None else _wrap(result, *sources)

    fn.__name__ = name or np_fn.__name__
    return fn


_CREATION = ("zeros", "ones", "full", "eye", "identity", "arange", "linspace", "logspace", "tri")
for _name in _CREATION:
    globals()[_name] = _alloc(getattr(np, _name))
for _name in ("zeros_like", "ones_like", "full_like"):
    def _like(a, *args, _np=getattr(np, _name), **kwargs):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        return ndarray._make(_np(a._a, *args, **kwargs))
    _like.__name__ = _name
    globals()[_name] = _like

_FORWARDED = (
    "ascontiguousarray", "asfortranarray", "copy", "diag", "diagflat", "tril", "triu",
    "meshgrid", "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "rollaxis",
    "expand_dims", "squeeze", "broadcast_to", "broadcast_arrays", "concatenate", "stack",
    "vstack", "hstack", "dstack", "column_stack", "split", "array_split", "tile", "repeat",
    "flip", "fliplr", "flipud", "roll", "rot90", "pad", "atleast_1d", "atleast_2d", "atleast_3d",
    "copyto", "take", "take_along_axis", "put", "choose", "searchsorted", "sort", "argsort",
    "clip", "cumsum", "cumprod", "diff", "einsum", "tensordot", "dot", "vdot", "inner", "outer",
    "kron", "trace", "diagonal", "sum", "prod", "mean", "var", "std", "max", "amax", "min",
    "amin", "argmax", "argmin", "all", "any", "count_nonzero", "average", "median",
    "percentile", "quantile", "nansum", "nanmean", "nanmax", "nanmin", "cov", "corrcoef",
    "isclose", "allclose", "array_equal", "around", "round", "real", "imag", "cross",
    "histogram", "bincount", "lexsort", "partition", "argpartition", "trapezoid",
)
for _name in _FORWARDED:
    if hasattr(np, _name):
        globals()[_name] = _forward(getattr(np, _name))
for _name in ("nonzero", "argwhere", "flatnonzero", "unique"):
    globals()[_name] = _forward(getattr(np, _name), sync=_name)


def where(condition, x=None, y=None):
    if x is None and y is None:
        return globals()["nonzero"](condition)
    if x is None or y is None:
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    for v in (condition, x, y):
        if isinstance(v, np.ndarray):
            raise _unsupported(v)
    return _wrap(np.where(_arg(condition), _arg(x), _arg(y)))


def matmul(a, b, out=None, **kwargs):
    for v in (a, b):
        if not isinstance(v, ndarray):
            raise _unsupported(v) if isinstance(v, np.ndarray) else \
                ValueError("Scalar operands are not allowed, use '*' instead")
    if out is not None:
        np.matmul(a._a, b._a, out=out._a, **kwargs)
        return out
    return _wrap(np.matmul(a._a, b._a, **kwargs))


def fuse(*args, **kwargs):
    """cupy.fuse: the function itself (no kernel fusion here)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def is_available():
    return _machine.device_count > 0 and _machine.runtime_error is None


# dtypes and constants: NumPy's objects (CuPy exposes the same ones)
dtype, finfo, iinfo = np.dtype, np.finfo, np.iinfo
result_type, can_cast, promote_types, min_scalar_type = (np.result_type, np.can_cast,
                                                         np.promote_types, np.min_scalar_type)
isscalar, ndim, shape = np.isscalar, np.ndim, np.shape
for _name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128", "intp", "uintp",
              "byte", "ubyte", "short", "ushort", "intc", "uintc", "longlong", "ulonglong",
              "half", "single", "double", "csingle", "cdouble", "integer", "floating",
              "complexfloating", "number", "generic", "signedinteger", "unsignedinteger",
              "inexact", "newaxis", "inf", "nan", "pi", "e", "euler_gamma"):
    globals()[_name] = getattr(np, _name)
del _name


def _result_type_of(*arrays_and_dtypes):
    return np.result_type(*[a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes])


result_type = _result_type_of


# ============================================================================ submodules
def _submodule(name, doc):
    mod = types.ModuleType(f"cupy.{name}", doc)
    return mod


# -- linalg --------------------------------------------------------------------------------------
linalg = _submodule("linalg", "cupy.linalg of the double: NumPy's, NaN instead of LinAlgError.")


def _linalg(np_fn):
    def fn(*args, **kwargs):
        args, kwargs = _args(args, kwargs)
        try:
            result = np_fn(*args, **kwargs)
        except np.linalg.LinAlgError:
            # CuPy does not raise by default (cupyx.errstate(linalg='ignore')): the output
            # holds whatever cuSOLVER left, which we model as NaN of the right shapes
            with np.errstate(all="ignore"):
                shaped = np_fn(*[_benign(a) for a in args], **kwargs)
            result = _nan_like(shaped)
        return _wrap(result)

    fn.__name__ = np_fn.__name__
    return fn


def _benign(a):
    """An input of the same shape that every decomposition takes (identities, else zeros)."""
    if not isinstance(a, np.ndarray):
        return a
    if a.ndim >= 2 and a.shape[-1] == a.shape[-2]:
        return np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape).copy()
    return np.zeros_like(a)


def _nan_like(result):
    if isinstance(result, tuple):
        items = [_nan_like(r) for r in result]
        return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
    a = np.array(result)
    if a.dtype.kind in "fc":
        a.fill(np.nan)
    return a


for _name in ("eigh", "eigvalsh", "solve", "inv", "cholesky", "qr", "svd", "norm", "det",
              "slogdet", "pinv", "lstsq", "matrix_rank", "matrix_power", "tensorsolve",
              "tensorinv"):
    setattr(linalg, _name, _linalg(getattr(np.linalg, _name)))
linalg.LinAlgError = np.linalg.LinAlgError
del _name


# -- random --------------------------------------------------------------------------------------
random = _submodule("random", "cupy.random of the double: NumPy's generators, device results.")


class _RandomState:
    def __init__(self, seed=None):
        self._rs = np.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs.seed(seed)

    def __getattr__(self, name):
        target = getattr(self._rs, name)

        def draw(*args, **kwargs):
            args, kwargs = _args(args, kwargs)
            return _wrap(target(*args, **kwargs))

        return draw


class Generator:
    def __init__(self, bit_generator=None):
        self._g = np.random.default_rng(bit_generator)

    def __getattr__(self, name):
        target = getattr(self._g, name)

        def draw(*args, **kwargs):
            args, kwargs = _args(args, kwargs)
            return _wrap(target(*args, **kwargs))

        return draw


_global_rs = _RandomState()
random.RandomState = _RandomState
random.Generator = Generator
random.default_rng = lambda seed=None: Generator(seed)
random.seed = _global_rs.seed
random.get_random_state = lambda: _global_rs
for _name in ("rand", "randn", "random", "random_sample", "standard_normal", "normal",
              "uniform", "randint", "permutation", "choice", "binomial", "poisson",
              "exponential", "gamma", "beta", "multinomial", "standard_exponential"):
    setattr(random, _name, getattr(_global_rs, _name))


def _shuffle(a):
    if not isinstance(a, ndarray):
        raise TypeError("The array must be cupy.ndarray")
    _global_rs._rs.shuffle(a._a)


random.shuffle = _shuffle


# -- lib.stride_tricks ----------------------------------------------------------------------------
lib = _submodule("lib", "cupy.lib of the double.")
stride_tricks = _submodule("lib.stride_tricks", "cupy.lib.stride_tricks of the double.")
lib.stride_tricks = stride_tricks


def as_strided(x, shape=None, strides=None):
    if not isinstance(x, ndarray):
        raise _unsupported(x)
    return _wrap(np.lib.stride_tricks.as_strided(x._a, shape, strides), x)


stride_tricks.as_strided = as_strided


# -- cuda ----------------------------------------------------------------------------------------
cuda = _submodule("cuda", "cupy.cuda of the double: a simulated machine (see configure()).")
runtime = _submodule("cuda.runtime", "cupy.cuda.runtime of the double.")
cuda.runtime = runtime


class CUDARuntimeError(RuntimeError):
    def __init__(self, status_or_message):
        self.status = status_or_message if isinstance(status_or_message, int) else 100
        super().__init__(status_or_message if isinstance(status_or_message, str)
                         else f"cudaError {status_or_message}")


def _check_driver():
    if _machine.runtime_error is not None:
        raise CUDARuntimeError(_machine.runtime_error)


def getDeviceCount():
    _check_driver()
    if _machine.device_count == 0:
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    return _machine.device_count


def getDevice():
    _check_driver()
    return _machine.current


def setDevice(device):
    _check_driver()
    if not 0 <= int(device) < _machine.device_count:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
    _machine.current = int(device)


def deviceSynchronize():
    _check_driver()
    _sync("synchronize")


def getDeviceProperties(device):
    _check_driver()
    return {"name": b"cupy_double (NumPy on the host)", "totalGlobalMem": 0, "major": 9,
            "minor": 0, "warpSize": 32, "multiProcessorCount": 1}


def runtimeGetVersion():
    return 12000


for _fn in (getDeviceCount, getDevice, setDevice, deviceSynchronize, getDeviceProperties,
            runtimeGetVersion):
    setattr(runtime, _fn.__name__, _fn)
runtime.CUDARuntimeError = CUDARuntimeError
runtime.driverGetVersion = runtimeGetVersion


class Device:
    def __init__(self, device=None):
        self.id = _machine.current if device is None else int(device)
        self._previous = []

    def use(self):
        setDevice(self.id)

    def synchronize(self):
        _check_driver()
        _sync("synchronize")

    def __enter__(self):
        self._previous.append(_machine.current)
        setDevice(self.id)
        return self

    def __exit__(self, *exc):
        _machine.current = self._previous.pop()

    @property
    def compute_capability(self):
        return "90"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Stream:
    def __init__(self, null=False, non_blocking=False, ptr=0):
        self.ptr = 0 if null else (id(self) if not ptr else ptr)

    def synchronize(self):
        _check_driver()
        _sync("synchronize")

    def use(self):
        _current_stream[0] = self
        return self

    def __enter__(self):
        self._previous = _current_stream[0]
        _current_stream[0] = self
        return self

    def __exit__(self, *exc):
        _current_stream[0] = self._previous


Stream.null = Stream(null=True)
_current_stream = [Stream.null]


def get_current_stream(device_id=None):
    return _current_stream[0]


cuda.Device = Device
cuda.Stream = Stream
cuda.get_current_stream = get_current_stream
cuda.MemoryPointer = MemoryPointer
cuda.CUDARuntimeError = CUDARuntimeError
cuda.is_available = is_available
cuda.get_device_id = getDevice


# -- cuda.nccl -------------------------------------------------------------------------------------
nccl = _submodule("cuda.nccl", "cupy.cuda.nccl of the double: NCCL's calls checked, data "
                               "moved with mpi4py (COMM_WORLD) or locally for one rank.")
cuda.nccl = nccl
_NCCL_DTYPES = {0: "int8", 1: "uint8", 2: "int32", 3: "uint32", 4: "int64", 5: "uint64",
                6: "float16", 7: "float32", 8: "float64"}
for _code, _dt in _NCCL_DTYPES.items():
    setattr(nccl, f"NCCL_{_dt.upper()}", _code)
nccl.NCCL_CHAR, nccl.NCCL_INT, nccl.NCCL_HALF, nccl.NCCL_FLOAT, nccl.NCCL_DOUBLE = 0, 2, 6, 7, 8
nccl.NCCL_SUM, nccl.NCCL_PROD, nccl.NCCL_MAX, nccl.NCCL_MIN, nccl.NCCL_AVG = 0, 1, 2, 3, 4
del _code, _dt


class NcclError(RuntimeError):
    pass


nccl.NcclError = NcclError


def get_unique_id():
    return tuple(int(b) - 128 for b in os.urandom(128))


def get_version():
    return 21800


def _buffer(ptr, count, datatype, what):
    """The device array at address `ptr` as a flat NumPy view of `count` elements."""
    ref = _POINTERS.get(int(ptr))
    owner = ref() if ref is not None else None
    if owner is None:
        raise NcclError(f"NCCL double: {what}: no device array is known at address 0x{int(ptr):x} "
                        "(pass x.data.ptr of a live cupy.ndarray)")
    a = owner._a
    if not a.flags.c_contiguous:
        raise NcclError(f"NCCL double: {what}: the buffer at 0x{int(ptr):x} is not contiguous")
    want = np.dtype(_NCCL_DTYPES.get(datatype, "?")) if datatype in _NCCL_DTYPES else None
    if want is None:
        raise NcclError(f"NCCL double: {what}: unknown datatype {datatype!r}")
    if a.dtype != want:
        raise NcclError(f"NCCL double: {what}: datatype {want} but the buffer holds {a.dtype}")
    if not 0 <= int(count) <= a.size:
        raise NcclError(f"NCCL double: {what}: count {count} but the buffer holds {a.size} elements")
    return a.reshape(-1)[:int(count)]


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        self._ndev, self._rank = int(ndev), int(rank)
        if not 0 <= self._rank < self._ndev:
            raise NcclError(f"NCCL double: rank {rank} outside a world of {ndev}")
        if not (isinstance(commId, tuple) and len(commId) == 128):
            raise NcclError("NCCL double: commId must be the tuple of get_unique_id()")
        self._device = _machine.current
        self._mpi = None
        if self._ndev > 1:
            from mpi4py import MPI
            world = MPI.COMM_WORLD
            if world.Get_size() != self._ndev or world.Get_rank() != self._rank:
                raise NcclError(f"NCCL double: NcclCommunicator({ndev}, uid, {rank}) in MPI rank "
                                f"{world.Get_rank()} of {world.Get_size()}")
            ids = world.allgather(commId)
            if _b.any(i != commId for i in ids):
                raise NcclError("NCCL double: the ranks were given different unique ids")
            self._mpi, self._MPI = world, MPI
        self._live = True

    def _check(self, stream):
        if not self._live:
            raise NcclError("NCCL double: the communicator was destroyed")
        if not isinstance(stream, int):
            raise TypeError(f"NCCL double: stream must be an int pointer, got {type(stream)}")

    def _op(self, op):
        MPI = self._MPI
        return {0: MPI.SUM, 1: MPI.PROD, 2: MPI.MAX, 3: MPI.MIN}[op]

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        self._check(stream)
        recv = _buffer(recvbuf, count, datatype, "allReduce recvbuf")
        send = recv if sendbuf == recvbuf else _buffer(sendbuf, count, datatype, "allReduce sendbuf")
        if op not in (0, 1, 2, 3, 4):
            raise NcclError(f"NCCL double: unknown reduction {op!r}")
        if self._mpi is None:
            if send is not recv:
                recv[...] = send
            return
        if op == 4:   # NCCL_AVG
            self._mpi.Allreduce(send.copy(), recv, op=self._MPI.SUM)
            recv /= self._ndev
        else:
            self._mpi.Allreduce(self._MPI.IN_PLACE if send is recv else send, recv,
                                op=self._op(op))

    def reduce(self, sendbuf, recvbuf, count, datatype, op, root, stream):
        self._check(stream)
        send = _buffer(sendbuf, count, datatype, "reduce sendbuf")
        recv = _buffer(recvbuf, count, datatype, "reduce recvbuf") if self._rank == root else None
        if self._mpi is None:
            if recv is not send:
                recv[...] = send
            return
        self._mpi.Reduce(send.copy(), recv, op=self._op(op), root=root)

    def bcast(self, buff, count, datatype, root, stream):
        self._check(stream)
        if not 0 <= root < self._ndev:
            raise NcclError(f"NCCL double: root {root} outside a world of {self._ndev}")
        buf = _buffer(buff, count, datatype, "bcast buff")
        if self._mpi is not None:
            self._mpi.Bcast(buf, root=root)

    def broadcast(self, sendbuff, recvbuff, count, datatype, root, stream):
        self._check(stream)
        recv = _buffer(recvbuff, count, datatype, "broadcast recvbuff")
        if self._rank == root and sendbuff != recvbuff:
            recv[...] = _buffer(sendbuff, count, datatype, "broadcast sendbuff")
        if self._mpi is not None:
            self._mpi.Bcast(recv, root=root)

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        self._check(stream)
        send = _buffer(sendbuf, count, datatype, "allGather sendbuf")
        recv = _buffer(recvbuf, count * self._ndev, datatype, "allGather recvbuf")
        if self._mpi is None:
            recv[...] = send
            return
        self._mpi.Allgather(send.copy(), recv)

    def rank_id(self):
        return self._rank

    def size(self):
        return self._ndev

    def device_id(self):
        return self._device

    def destroy(self):
        self._live = False

    def abort(self):
        self._live = False


nccl.get_unique_id = get_unique_id
nccl.get_version = get_version
nccl.NcclCommunicator = NcclCommunicator


# ============================================================================ installing
_THIS = sys.modules[__name__]


def modules():
    """{module name: module} to put in sys.modules for `import cupy` to find the double."""
    return {"cupy": _THIS, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime,
            "cupy.cuda.nccl": nccl, "cupy.linalg": linalg, "cupy.random": random,
            "cupy.lib": lib, "cupy.lib.stride_tricks": stride_tricks}


def install():
    """Make `import cupy` give the double in this process, for good (subprocess scripts)."""
    sys.modules.update(modules())


@contextlib.contextmanager
def installed():
    """The double as `cupy` inside the block, on a fresh simulated machine (configure());
    sys.modules as it was afterwards."""
    saved = {name: sys.modules.get(name, None) for name in modules()}
    present = {name for name in modules() if name in sys.modules}
    install()
    configure()            # a fresh machine: one GPU, a working driver
    try:
        yield _THIS
    finally:
        configure()
        for name, mod in saved.items():
            if name in present:
                sys.modules[name] = mod
            else:
                sys.modules.pop(name, None)
