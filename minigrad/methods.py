"""Operators and methods on Tensor, so ops are reached the way NumPy and PyTorch users reach
for them: `x @ w + b`, `x.tanh()`, `x.sum(axis=0)`, `x.T`, `x.reshape(2, 3)`, `x[mask]`."""
from . import arithmetic as ar, autograd
from . import elementwise as ew
from . import linalg, reduce_ops as red, shape_ops as sh
from .tensor import Tensor


def _reflected(fn):
    return lambda self, other: fn(other, self)


def _attach():
    T = Tensor
    T.__add__, T.__radd__ = ar.add, _reflected(ar.add)
    T.__sub__, T.__rsub__ = ar.sub, _reflected(ar.sub)
    T.__mul__, T.__rmul__ = ar.mul, _reflected(ar.mul)
    T.__truediv__, T.__rtruediv__ = ar.div, _reflected(ar.div)
    T.__pow__, T.__rpow__ = ew.pow, _reflected(ew.pow)
    T.__matmul__, T.__rmatmul__ = linalg.matmul, _reflected(linalg.matmul)
    T.__neg__ = ar.neg
    T.__pos__ = lambda self: self
    T.__abs__ = ew.abs
    T.__getitem__ = sh.getitem
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = ar.less, ar.less_equal, ar.greater, ar.greater_equal
    T.__eq__, T.__ne__ = ar.equal, ar.not_equal
    # Elementwise comparison replaces ==, so hash by identity (as PyTorch does).
    T.__hash__ = object.__hash__

    for name in ("exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "leaky_relu", "softplus",
                 "clip", "maximum", "minimum"):
        setattr(T, name, getattr(ew, name))
    for name in ("sum", "mean", "max", "min", "var", "logsumexp"):
        setattr(T, name, getattr(red, name))
    for name in ("flatten", "squeeze", "unsqueeze", "permute", "transpose", "swapaxes",
                 "broadcast_to", "pad"):
        setattr(T, name, getattr(sh, name))
    T.backward = autograd.backward
    T.reshape = sh.reshape
    T.to = sh.to
    T.astype = ar.astype
    T.matmul = linalg.matmul
    T.T = property(lambda self: sh.transpose(self))


_attach()
