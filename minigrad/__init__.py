"""minigrad: a tape-based autodiff engine on NumPy/CuPy arrays, exact to any order.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x ** 3).sum()
    (g,) = mg.grad(y, x, create_graph=True)   # 3 x^2
    (h,) = mg.grad(g, x, grad_outputs=mg.tensor([1.0, 0.0]))   # H v = 6 x * v
"""
import numpy as _np

from . import methods as _methods  # noqa: F401 - attaches operators and methods to Tensor
from .autograd import grad
from .derivative_order import backward_order, curvature_product
from .function import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import get_default_dtype, set_default_dtype
from .arithmetic import add, astype, div, mul, neg, sub
from .elementwise import (abs, clip, exp, leaky_relu, log, maximum, minimum, pow, relu, sigmoid,
                          softplus, sqrt, tanh, where)
from .factories import arange, full, ones, ones_like, zeros, zeros_like
from .linalg import matmul
from .reduce_ops import logsumexp, max, mean, min, sum, var
from .shape_ops import (broadcast_to, concatenate, expand_dims, flatten, getitem, pad, permute,
                        reshape, squeeze, stack, swapaxes, transpose, unsqueeze)
from .random import manual_seed
from .tensor import Tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "manual_seed", "grad", "no_grad", "enable_grad", "is_grad_enabled",
    "set_grad_enabled", "backward_order", "curvature_product", "get_default_dtype", "set_default_dtype",
    "zeros", "ones", "full", "zeros_like", "ones_like", "arange",
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "astype",
    "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "leaky_relu", "softplus",
    "maximum", "minimum", "where", "clip",
    "sum", "mean", "max", "min", "var", "logsumexp",
    "reshape", "transpose", "permute", "swapaxes", "broadcast_to", "squeeze", "unsqueeze",
    "expand_dims", "flatten", "concatenate", "stack", "getitem", "pad",
    "float16", "float32", "float64", "int32", "int64", "bool_",
]

float16, float32, float64 = _np.float16, _np.float32, _np.float64
int32, int64, bool_ = _np.int32, _np.int64, _np.bool_
