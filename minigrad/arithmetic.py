"""Arithmetic: + - * / and negation; how a tensor meets a number, a list or an array of another
dtype (`operands`); casts (`astype`); comparisons (constant bool tensors, no gradient).

Each derivative rule sits in its op's `backward`, written in Tensor ops (so it can be
differentiated again); the gradient of a broadcast input is summed back by the tape. Powers,
math functions and selections are in minigrad/elementwise.py.
"""
import numpy as np

from .function import Function
from .backend import get_default_dtype, to_device, xp_of
from .tensor import Tensor, const

# ------------------------------------------------------------------------------ operands
SCALARS = (int, float, np.generic)  # Python and NumPy numbers (bool is an int)


def _scalar_like(value, like):
    """A number as a 0-d constant of the dtype the result should have: the tensor's own, unless
    the number is of a higher kind (a float beside an integer tensor gives the default float
    dtype; an integer beside a bool tensor, int64). Like PyTorch, a number never widens a
    float tensor: float32 * 0.5 stays float32."""
    if isinstance(value, np.generic):
        value = value.item()
    dt = like.data.dtype
    if isinstance(value, complex):
        raise TypeError(f"complex number {value} in an op: minigrad tensors are real")
    if isinstance(value, float) and dt.kind not in "fc":
        dt = get_default_dtype()
    elif isinstance(value, int) and not isinstance(value, bool) and dt.kind == "b":
        dt = np.dtype(np.int64)
    try:
        return const(xp_of(like.data).asarray(value, dtype=dt))
    except OverflowError:
        raise ValueError(f"{value} does not fit in the tensor's dtype {dt}") from None


def _constant_like(value, like):
    """A non-Tensor operand (a list, a host array) as a constant on the device of `like`, as a
    number is: `[[1.0, 2.0]] @ w` works for w on the GPU too. Device data is never moved to the
    host implicitly (a device array beside a CPU tensor stays a device-mixing error)."""
    t = Tensor.wrap(value)
    if like.device != "cpu" and t.device == "cpu":
        t = const(to_device(t.data, like.device))
    return t


def operands(a, b):
    """Both operands as Tensors of agreeing dtypes.

    A number takes the tensor's dtype (see `_scalar_like`) and a list or host array the tensor's
    device (see `_constant_like`); an integer or bool tensor beside
    a float tensor is cast to that float dtype (it cannot require grad); arrays of two float
    dtypes promote as in NumPy (float32 with float64 gives float64).
    """
    if isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            b = _scalar_like(b, a) if isinstance(b, SCALARS) else _constant_like(b, a)
    elif isinstance(b, Tensor):
        a = _scalar_like(a, b) if isinstance(a, SCALARS) else _constant_like(a, b)
    else:
        a, b = Tensor.wrap(a), Tensor.wrap(b)
    da, db = a.data.dtype, b.data.dtype
    if da is not db and da != db:
        if da.kind == "f" and db.kind != "f":
            b = const(b.data.astype(da))
        elif db.kind == "f" and da.kind != "f":
            a = const(a.data.astype(db))
    return a, b


# --------------------------------------------------------------------------------- casts
class Cast(Function):
    """y = x in another dtype. The gradient needs no rule: the tape casts every gradient to
    its input's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return (g,)


def astype(x, dtype):
    """x in `dtype`; differentiable between float dtypes, a constant when cast to int or bool."""
    x = Tensor.wrap(x)
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype.kind != "f":
        return const(x.data.astype(dtype))
    return Cast.apply(x, dtype=dtype)


# --------------------------------------------------------------------------- arithmetic
class Add(Function):
    """d(a + b) = da + db."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """d(a - b) = da - db."""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """d(a b) = b da + a db."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_inputs(0, 1)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        return (g * b if na else None), (g * a if nb else None)


class Div(Function):
    """d(a / b) = da / b - a db / b^2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_inputs(0, 1)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = g / b
        return ga, (-(ga * a) / b if ctx.needs_input_grad[1] else None)


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return (-g,)


def add(a, b):
    return Add.apply(*operands(a, b))


def sub(a, b):
    return Sub.apply(*operands(a, b))


def mul(a, b):
    return Mul.apply(*operands(a, b))


def div(a, b):
    return Div.apply(*operands(a, b))


def neg(x):
    return Neg.apply(Tensor.wrap(x))


# ------------------------------------------------------- comparisons (no gradient, ever)
def _compare(name, a, b):
    """The comparison ufunc `name` (greater, equal, ...) on a and b: a constant bool tensor."""
    if a is None or b is None:
        return NotImplemented  # x == None is False, as for any other object
    a, b = operands(a, b)
    return const(getattr(xp_of(a.data), name)(a.data, b.data))


def less(a, b):
    """a < b elementwise."""
    return _compare("less", a, b)


def less_equal(a, b):
    """a <= b elementwise."""
    return _compare("less_equal", a, b)


def greater(a, b):
    """a > b elementwise."""
    return _compare("greater", a, b)


def greater_equal(a, b):
    """a >= b elementwise."""
    return _compare("greater_equal", a, b)


def equal(a, b):
    """a == b elementwise."""
    return _compare("equal", a, b)


def not_equal(a, b):
    """a != b elementwise."""
    return _compare("not_equal", a, b)
