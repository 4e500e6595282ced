"""Operators and methods on Tensor, so ops are reached the way NumPy and PyTorch users reach
for them: `x @ w + b`, `x.tanh()`, `x.sum(axis=0)`, `x.T`, `x.reshape(2, 3)`, `x[mask]`."""
from . import autograd
from . import elementwise as ew
from . import linalg, reduce_ops as red, shape_ops as sh
from .tensor import Tensor


def _reflected(fn):
    return lambda self, other: fn(other, self)


def _attach():
    T = Tensor
    T.__add__, T.__radd__ = ew.add, _reflected(ew.add)
    T.__sub__, T.__rsub__ = ew.sub, _reflected(ew.sub)
    T.__mul__, T.__rmul__ = ew.mul, _reflected(ew.mul)
    T.__truediv__, T.__rtruediv__ = ew.div, _reflected(ew.div)
    T.__pow__, T.__rpow__ = ew.pow, _reflected(ew.pow)
    T.__matmul__, T.__rmatmul__ = linalg.matmul, _reflected(linalg.matmul)
    T.__neg__ = ew.neg
    T.__pos__ = lambda self: self
    T.__abs__ = ew.abs
    T.__getitem__ = sh.getitem
    for op, name in (("__lt__", "less"), ("__le__", "less_equal"), ("__gt__", "greater"),
                     ("__ge__", "greater_equal"), ("__eq__", "equal"), ("__ne__", "not_equal")):
        setattr(T, op, ew.compare(name))
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
    T.astype = ew.astype
    T.matmul = linalg.matmul
    T.T = property(lambda self: sh.transpose(self))


_attach()
