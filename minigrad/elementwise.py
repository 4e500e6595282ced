"""Elementwise math: powers, exp, log, sqrt, abs, the activations (tanh, sigmoid, relu,
leaky_relu, softplus), maximum/minimum, where, clip.

Each derivative rule sits in its op's `backward`, written in Tensor ops (so it can be
differentiated again); the gradient of a broadcast input is summed back by the tape. The
arithmetic operators and the dtype rules for mixed operands are in minigrad/arithmetic.py.
"""
import numpy as np

from .arithmetic import SCALARS, operands
from .function import Function
from .backend import get_default_dtype, xp_of
from .tensor import Tensor, const


# ------------------------------------------------------------------------------- powers
class PowScalar(Function):
    """d(x^p) = p x^(p-1) dx for a constant exponent p (0 for p = 0, even at x = 0)."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_inputs(0)
        return x ** exponent

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        p = ctx.params["exponent"]
        if p == 0:
            return (g * 0.0,)
        if p == 1:
            return (g,)
        if p == 2:
            return (g * x * 2.0,)
        return (g * pow(x, p - 1) * float(p),)


class Pow(Function):
    """d(a^b) = b a^(b-1) da + a^b log(a) db.

    At the edges, the limits that PyTorch also takes: the da part is 0 where b = 0 (even at
    a = 0, where a^(b-1) is inf), the db part 0 where a = 0 (a^b log a -> 0 for b > 0). Both
    use the "double where": the unsafe point is replaced inside the formula too, so that no
    inf * 0 appears in this derivative or any higher one.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_inputs(0, 1)
        out = a ** b
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            b_zero = b.data == 0
            if b_zero.any():
                ga = where(b_zero, 0.0, g * b * pow(where(b_zero, 1.0, a), b - 1.0))
            else:
                ga = g * b * pow(a, b - 1.0)
        if nb:
            a_zero = a.data == 0
            gb = g * ctx.output * log(where(a_zero, 1.0, a) if a_zero.any() else a)
        return ga, gb


def pow(a, b):  # noqa: A001 - mirrors the operator's name, like numpy.power
    """a ** b; a constant Python exponent takes the cheaper rule."""
    if isinstance(a, Tensor) and isinstance(b, SCALARS) and not isinstance(b, (bool, np.bool_)):
        return PowScalar.apply(a, exponent=b.item() if isinstance(b, np.generic) else b)
    return Pow.apply(*operands(a, b))


# ------------------------------------------------------------------------ math functions
class Exp(Function):
    """d exp(x) = exp(x) dx."""

    @staticmethod
    def forward(ctx, x):
        out = xp_of(x).exp(x)
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.output,)


class Log(Function):
    """d log(x) = dx / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_inputs(0)
        return xp_of(x).log(x)

    @staticmethod
    def backward(ctx, g):
        return (g / ctx.saved_tensors[0],)


class Sqrt(Function):
    """d sqrt(x) = dx / (2 sqrt(x))."""

    @staticmethod
    def forward(ctx, x):
        out = xp_of(x).sqrt(x)
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return ((g / ctx.output) * 0.5,)


class Abs(Function):
    """d |x| = sign(x) dx (0 at the kink)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_inputs(0)
        return xp_of(x).abs(x)

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0].data
        return (g * const(xp_of(x).sign(x)),)


class Tanh(Function):
    """d tanh(x) = (1 - tanh(x)^2) dx."""

    @staticmethod
    def forward(ctx, x):
        out = xp_of(x).tanh(x)
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        return (g * (1.0 - y * y),)


class Sigmoid(Function):
    """sigma(x) = 1 / (1 + e^-x);  d sigma = sigma (1 - sigma) dx.

    Computed from e = exp(-|x|) as 1/(1+e) for x >= 0 and e/(1+e) for x < 0, which keeps full
    relative precision in both tails (sigma(-40) = 4.2e-18, not 0).
    """

    @staticmethod
    def forward(ctx, x):
        xp = xp_of(x)
        e = xp.exp(-xp.abs(x))
        out = (xp.where(x >= 0, 1.0, e) / (1.0 + e)).astype(x.dtype, copy=False)
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        return (g * (y * (1.0 - y)),)


class Relu(Function):
    """d max(x, 0) = [x > 0] dx; the mask is a constant, so the second derivative is 0."""

    @staticmethod
    def forward(ctx, x):
        out = xp_of(x).maximum(x, 0)
        ctx.save_output(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return (g * const(ctx.out_data > 0),)


class LeakyRelu(Function):
    """f(x) = x for x > 0, slope * x otherwise."""

    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.save_inputs(0)
        return xp_of(x).where(x > 0, x, x * negative_slope)

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0].data
        slope = xp_of(x).where(x > 0, 1.0, ctx.params["negative_slope"]).astype(x.dtype)
        return (g * const(slope),)


class Softplus(Function):
    """softplus(x) = log(1 + e^(beta x)) / beta, computed as max(x,0) + log1p(e^-|beta x|)/beta;
    d softplus = sigma(beta x) dx."""

    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_inputs(0)
        xp = xp_of(x)
        bx = x * beta
        return (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        beta = ctx.params["beta"]
        return (g * sigmoid(x * beta if beta != 1 else x),)


def _floating(x):
    """x as a Tensor of a float dtype: integers and bools go to the default float dtype."""
    x = Tensor.wrap(x)
    if x.data.dtype.kind != "f":
        x = const(x.data.astype(get_default_dtype()))
    return x


def exp(x):
    """e^x elementwise; d(e^x) = e^x dx."""
    return Exp.apply(_floating(x))


def log(x):
    """Natural logarithm elementwise; d(log x) = dx / x."""
    return Log.apply(_floating(x))


def sqrt(x):
    """Square root elementwise; d(sqrt x) = dx / (2 sqrt x)."""
    return Sqrt.apply(_floating(x))


def abs(x):  # noqa: A001 - numpy's name
    """|x| elementwise; d|x| = sign(x) dx (0 at x = 0)."""
    return Abs.apply(_floating(x))


def tanh(x):
    """tanh elementwise; d(tanh x) = (1 - tanh^2 x) dx."""
    return Tanh.apply(_floating(x))


def sigmoid(x):
    """1 / (1 + e^-x) elementwise; d(sigmoid x) = sigmoid(x) (1 - sigmoid(x)) dx."""
    return Sigmoid.apply(_floating(x))


def relu(x):
    """max(x, 0) elementwise; d(relu x) = [x > 0] dx."""
    return Relu.apply(_floating(x))


def leaky_relu(x, negative_slope=0.01):
    return LeakyRelu.apply(Tensor.wrap(x), negative_slope=float(negative_slope))


def softplus(x, beta=1.0):
    if beta <= 0:
        raise ValueError(f"softplus: beta must be > 0, got {beta}")
    return Softplus.apply(Tensor.wrap(x), beta=float(beta))


# --------------------------------------------------------------- selections and clipping
class _Extremum(Function):
    """maximum/minimum of a and b: the gradient goes to the chosen input, split evenly on ties."""

    pick = None  # pick(xp, a, b): the chosen values, elementwise

    @classmethod
    def forward(cls, ctx, a, b):
        ctx.save_inputs(0, 1)
        return cls.pick(xp_of(a), a, b)

    @classmethod
    def backward(cls, ctx, g):
        a, b = (t.data for t in ctx.saved_tensors)
        xp = xp_of(a)
        chosen = cls.pick(xp, a, b)
        dtype = g.dtype
        wa = (a == chosen).astype(dtype)
        wb = (b == chosen).astype(dtype)
        tie = wa * wb
        wa, wb = wa - 0.5 * tie, wb - 0.5 * tie
        na, nb = ctx.needs_input_grad
        return (g * const(wa) if na else None), (g * const(wb) if nb else None)


class Maximum(_Extremum):
    @staticmethod
    def pick(xp, a, b):
        return xp.maximum(a, b)


class Minimum(_Extremum):
    @staticmethod
    def pick(xp, a, b):
        return xp.minimum(a, b)


def maximum(a, b):
    return Maximum.apply(*operands(a, b))


def minimum(a, b):
    return Minimum.apply(*operands(a, b))


class Where(Function):
    """where(c, a, b): the gradient goes to a where c holds, to b elsewhere."""

    @staticmethod
    def forward(ctx, a, b, condition):
        return xp_of(a).where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        cond = ctx.params["condition"]
        zero = const(xp_of(g.data).zeros((), dtype=g.dtype))
        na, nb = ctx.needs_input_grad
        return (where(cond, g, zero) if na else None), (where(cond, zero, g) if nb else None)


def where(condition, a, b):
    """Elementwise `a if condition else b`; the condition is a constant bool array or tensor.

    The branch not taken gets a zero gradient, but zero times its own local derivative is
    still NaN where that derivative is inf or NaN: `where(x > 0, sqrt(x), 0)` at x = -1 has
    a NaN gradient, as in PyTorch and JAX. Make the unsafe branch safe inside as well
    (the "double where"): `where(x > 0, sqrt(where(x > 0, x, 1.0)), 0)`.
    """
    if isinstance(condition, Tensor):
        condition = condition.data
    a, b = operands(a, b)
    condition = xp_of(a.data).asarray(condition)
    if condition.dtype != bool:
        condition = condition.astype(bool)
    return Where.apply(a, b, condition=condition)


class Clip(Function):
    """clip(x, lo, hi); the gradient passes where lo <= x <= hi."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_inputs(0)
        return xp_of(x).clip(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0].data
        lo, hi = ctx.params["lo"], ctx.params["hi"]
        inside = xp_of(x).ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        return (g * const(inside),)


def clip(x, lo=None, hi=None):
    """Limit x to [lo, hi] (either bound may be None)."""
    if lo is None and hi is None:
        raise ValueError("clip: give at least one of lo and hi")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is greater than hi={hi}")
    return Clip.apply(Tensor.wrap(x), lo=lo, hi=hi)
