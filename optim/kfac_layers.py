"""The layers K-FAC preconditions (optim/kfac.py): which modules, where their parameters sit in
the optimizer's parameter list, and their gradients as one (O, D+1) matrix each.

A Linear (O, D) or Conv2d (O, C, kh, kw) layer with weight W and bias b is one matrix
[W.reshape(O, -1), b] (bias column last, D = C kh kw for a convolution). Its K-FAC block is
G (x) A with A of size D+1 (D without a bias) over the layer's inputs and G of size O over its
output gradients.
"""
from typing import NamedTuple, Optional

from minigrad.backend import xp_of
from minigrad.nn import Conv2d, Linear


class Layer(NamedTuple):
    """A preconditioned layer: its name, the module, and the indices of its weight and bias
    (None without one) in the optimizer's parameter list. The weight's index keys the layer's
    state (factors, eigenbasis) in the optimizer."""

    label: str
    module: object
    weight: int
    bias: Optional[int]

    @property
    def factor_sizes(self):
        """(dim A, dim G) = (D + 1 with a bias else D, O)."""
        W = self.module.weight
        return W.data[0].size + (self.bias is not None), W.shape[0]

    def zero_factors(self):
        """Zero matrices of the factors' sizes (a rank without rows of the batch adds these)."""
        W = self.module.weight
        xp = xp_of(W.data)
        return tuple(xp.zeros((n, n), W.dtype) for n in self.factor_sizes)

    def split(self, P):
        """{parameter index: array} of an (O, D+1) matrix P (layer_matrix's inverse)."""
        shape = self.module.weight.shape
        if self.bias is None:
            return {self.weight: P.reshape(shape)}
        return {self.weight: P[:, :-1].reshape(shape), self.bias: P[:, -1]}


def find_layers(owner, model, params, chosen=None):
    """[Layer] for the Linear and Conv2d modules of `model` (`chosen`: a list of them or of their
    dotted names) whose parameters are all in `params`; frozen layers are left out (to SGD)."""
    index = {id(p): i for i, p in enumerate(params)}
    names = {id(m): n for n, m in model.named_modules()}
    if chosen is None:
        modules = [m for m in model.modules() if isinstance(m, (Linear, Conv2d))]
    else:
        by_name = dict(model.named_modules())
        modules = [by_name[x] if isinstance(x, str) and x in by_name else x for x in chosen]
        for m in modules:
            if not isinstance(m, (Linear, Conv2d)) or id(m) not in names:
                raise ValueError(f"{owner}: layers must be Linear or Conv2d modules of the "
                                 f"model (or their names), got {m!r}")
    layers = []
    for m in modules:
        if id(m.weight) in index and (m.bias is None or id(m.bias) in index):
            bias = index[id(m.bias)] if m.bias is not None else None
            layers.append(Layer(names[id(m)] or type(m).__name__, m, index[id(m.weight)], bias))
    if not layers:
        raise ValueError(f"{owner}: the model has no trainable Linear or Conv2d layer to "
                         "precondition; use SGD")
    return layers


def layer_matrix(weight_grad, bias_grad=None):
    """[weight_grad.reshape(O, -1), bias_grad] as an (O, D+1) matrix (bias column last)."""
    V = weight_grad.reshape(weight_grad.shape[0], -1)
    if bias_grad is None:
        return V
    return xp_of(V).concatenate([V, bias_grad[:, None]], axis=1)
