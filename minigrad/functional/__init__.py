"""minigrad.functional (import as F): activations, losses, linear, conv2d, pooling, batch norm, dropout.

    import minigrad.functional as F
    h = F.relu(F.conv2d(x, w, b, padding=1))
    loss = F.cross_entropy(F.linear(F.max_pool2d(h, 2).flatten(1), w2, b2), labels)

Every function is composed of differentiable minigrad ops (or of Functions whose backward
is), so gradients of any order flow through all of them. Layouts follow PyTorch: images
NCHW, linear weight (out, in), conv weight (out_channels, in_channels, kh, kw).
"""
from .activation import dropout, leaky_relu, log_softmax, relu, sigmoid, softmax, softplus, tanh
from .conv import Fold, Unfold, col2im, conv2d, im2col, linear
from .loss import cross_entropy, mse_loss, nll_loss
from .norm import batch_norm
from .pool import avg_pool2d, max_pool2d

__all__ = ["relu", "tanh", "sigmoid", "softplus", "leaky_relu", "log_softmax", "softmax", "dropout",
           "linear", "conv2d", "im2col", "col2im", "Unfold", "Fold", "max_pool2d", "avg_pool2d",
           "cross_entropy", "nll_loss", "mse_loss", "batch_norm"]
