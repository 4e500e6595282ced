"""Reductions: sum, max and min are primitives; mean, var and logsumexp are built from them."""
from .broadcast import BroadcastTo
from .function import Function
from .backend import xp_of
from .elementwise import const, exp, log
from .shape_ops import Reshape, normalize_axis
from .tensor import Tensor


def normalize_axes(op, axis, ndim):
    """`axis` (None, int or tuple, negatives allowed) as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(normalize_axis(op, a, ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(axes))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _spread(g, shape, params):
    """The gradient of a reduction over `params["axes"]`, broadcast back to the input's shape."""
    if not params["keepdims"]:
        g = Reshape.apply(g, shape=_keepdims_shape(shape, params["axes"]))
    return g if g.shape == tuple(shape) else BroadcastTo.apply(g, shape=tuple(shape))


class Sum(Function):
    """d sum(x) / dx = 1: the output gradient is broadcast back over the summed axes."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (_spread(g, ctx.input_shapes[0], ctx.params),)


class _Extreme(Function):
    """max/min over axes; the gradient is shared evenly by the elements that attain it."""

    reducer = None

    @classmethod
    def forward(cls, ctx, x, axes, keepdims):
        if x.size == 0:
            raise ValueError(f"{cls.__name__.lower()} of an empty tensor")
        ctx.save_inputs(0)
        out = getattr(x, cls.reducer)(axis=axes, keepdims=True)
        ctx.save_output(out)
        return out if keepdims else out.reshape(tuple(
            n for i, n in enumerate(x.shape) if i not in axes))

    @classmethod
    def backward(cls, ctx, g):
        x = ctx.saved_tensors[0].data
        axes = ctx.params["axes"]
        hit = (x == ctx.out_data).astype(g.dtype)
        hit /= hit.sum(axis=axes, keepdims=True)
        return (_spread(g, x.shape, ctx.params) * const(hit),)


class Max(_Extreme):
    reducer = "max"


class Min(_Extreme):
    reducer = "min"


def sum(x, axis=None, keepdims=False):  # noqa: A001 - numpy's name
    """Sum over `axis` (None: all axes)."""
    x = Tensor.wrap(x)
    return Sum.apply(x, axes=normalize_axes("sum", axis, x.ndim), keepdims=bool(keepdims))


def max(x, axis=None, keepdims=False):  # noqa: A001
    x = Tensor.wrap(x)
    return Max.apply(x, axes=normalize_axes("max", axis, x.ndim), keepdims=bool(keepdims))


def min(x, axis=None, keepdims=False):  # noqa: A001
    x = Tensor.wrap(x)
    return Min.apply(x, axes=normalize_axes("min", axis, x.ndim), keepdims=bool(keepdims))


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def mean(x, axis=None, keepdims=False):
    """sum(x) / n over `axis`."""
    x = Tensor.wrap(x)
    axes = normalize_axes("mean", axis, x.ndim)
    n = _count(x.shape, axes)
    if n == 0:
        raise ValueError(f"mean: no elements to average over axis {axis} of shape {x.shape}")
    return sum(x, axes, keepdims) * (1.0 / n)


def var(x, axis=None, keepdims=False, ddof=0):
    """sum((x - mean(x))^2) / (n - ddof) over `axis`; ddof=0 (NumPy's default) is the biased estimate."""
    x = Tensor.wrap(x)
    axes = normalize_axes("var", axis, x.ndim)
    n = _count(x.shape, axes)
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements over axis {axis} leave no degrees of freedom for ddof={ddof}")
    centered = x - mean(x, axes, keepdims=True)
    return sum(centered * centered, axes, keepdims) * (1.0 / (n - ddof))


def exp_shift(op, x, axes):
    """m = max of the array x over `axes` (kept as size-1 axes), 0 where that max is not finite.

    Subtracting m before exp keeps exp(x - m) <= 1, and holding m constant is exact for
    logsumexp and softmax, whose values do not depend on it. A slice of all -inf gets 0,
    not -inf, so that x - m stays -inf instead of NaN.
    """
    if x.size == 0:
        raise ValueError(f"{op}: the tensor of shape {x.shape} is empty")
    xp = xp_of(x)
    m = x.max(axis=axes, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) = m + log(sum(exp(x - m))) with m = max(x) held constant.

    Holding m constant is exact: the value does not depend on m, so neither does any
    derivative; the gradient is softmax(x).
    """
    x = Tensor.wrap(x)
    axes = normalize_axes("logsumexp", axis, x.ndim)
    m = const(exp_shift("logsumexp", x.data, axes))
    out = log(sum(exp(x - m), axes, keepdims=True)) + m
    if not keepdims:
        out = out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))
    return out
