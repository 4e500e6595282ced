"""The models the experiments train, each a function returning a Module.

Every builder takes `rng` (an int seed, a `numpy.random.Generator`, or None for the global
default that `minigrad.manual_seed` resets) and `dtype` (None: the default float dtype). All
layers draw from that one Generator in construction order, so the same seed gives the same
weights, bit for bit. Parameter counts below are for the default arguments and are checked
against the formulas in tests/test_models.py.

mlp(sizes, activation)            Linear(sizes[0], sizes[1]) - act - ... - Linear(sizes[-2], sizes[-1]);
                                  no activation after the last layer (its outputs are logits).
                                  Parameters: sum_i (sizes[i] + 1) * sizes[i + 1].

lenet5(num_classes=10)            LeNet-5 style CNN for 1 x 28 x 28 images (LeCun et al. 1998 with
                                  ReLU and max pooling): conv 5x5 1->6 (padding 2) - relu - maxpool 2
                                  - conv 5x5 6->16 - relu - maxpool 2 - flatten (16*5*5 = 400)
                                  - linear 400->120 - relu - 120->84 - relu - 84->10.
                                  Parameters: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.

resnet20(num_classes=10)          He et al. 2016's CIFAR ResNet (section 4.2), depth 6n+2 with n = 3:
resnet_cifar(depth, ...)          conv 3x3 3->16 - BN - relu, three stages of n basic blocks with
                                  16, 32, 64 channels (stride 2 at the first block of stages 2 and 3),
                                  global average pooling, linear 64->10. A basic block is
                                  conv3x3 - BN - relu - conv3x3 - BN, plus the shortcut, then relu.
                                  Convs have no bias (BN follows each). Shortcuts where the shape
                                  changes: option "A" (default, the paper's choice for CIFAR):
                                  x[:, :, ::2, ::2] zero-padded in channels, parameter-free; option "B":
                                  1x1 conv (stride 2) + BN. Convs start Kaiming-normal (fan_out, relu),
                                  BN at weight 1, bias 0, the head as nn.Linear does.
                                  Parameters of resnet20, option A: 269,722 (option B: 272,474);
                                  resnet32 464,154; resnet44 658,586; resnet56 853,018; resnet110
                                  1,727,962 (option A).

autoencoder()                     The deep autoencoder of Hinton & Salakhutdinov 2006, the standard
                                  test problem of Hessian-free (Martens 2010) and K-FAC (Martens &
                                  Grosse 2015): encoder 784-1000-500-250-30, decoder 30-250-500-1000-784,
                                  the nonlinearity (sigmoid by default) after every layer except
                                  the 30-unit code layer (linear, as in Martens 2010) and the output
                                  layer, which gives logits. Parameters: 2,837,314.
                                  Train it with `binary_cross_entropy_with_logits(logits, x)` (the
                                  K-FAC paper's logistic outputs with cross-entropy; reduction
                                  "batchmean" is its per-case sum over the 784 pixels, averaged over the
                                  batch); `reconstruction_error` is the squared error of
                                  sigmoid(logits) summed over pixels and averaged over the batch,
                                  the figure those papers report.

No builder mutates global state other than drawing from the global Generator when rng=None.
"""

import numpy as np

from .. import functional as F
from ..elementwise import sigmoid, softplus
from ..random import generator
from ..reduce_ops import mean
from ..reduce_ops import sum as _sum
from ..shape_ops import pad
from ..tensor import Tensor
from . import init
from .layers import (BatchNorm2d, Conv2d, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU, Sigmoid, Softplus,
                     Tanh)
from .module import Module, Sequential

__all__ = ["ACTIVATIONS", "Autoencoder", "BasicBlock", "ResNetCIFAR", "autoencoder",
           "binary_cross_entropy_with_logits", "lenet5", "mlp", "reconstruction_error", "resnet20",
           "resnet32", "resnet44", "resnet56", "resnet_cifar", "sparse_init_"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus,
               "leaky_relu": LeakyReLU}


def _activation(fn, name):
    if name not in ACTIVATIONS:
        raise ValueError(f"{fn}: activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def _linear_stack(fn, sizes, activation, rng, dtype, last_activation=False):
    """Linear layers with `activation` between them; rng is one Generator shared by all."""
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype))
        if k < len(sizes) - 2 or last_activation:
            layers.append(_activation(fn, activation))
    return layers


def _check_sizes(fn, sizes, minimum=2):
    sizes = tuple(sizes)
    if len(sizes) < minimum or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                       and s >= 1 for s in sizes):
        raise ValueError(f"{fn}: sizes must be at least {minimum} positive ints, got {sizes!r}")
    return tuple(int(s) for s in sizes)


# ----------------------------------------------------------------------------------- MLP
def mlp(sizes, activation="relu", rng=None, dtype=None):
    """Multilayer perceptron: Linear(sizes[0], sizes[1]) - act - ... - Linear(sizes[-2], sizes[-1]).

    activation: "relu", "tanh", "sigmoid", "softplus" or "leaky_relu" (slope 0.01), placed
    between layers and not after the last. Returns a Sequential (`model[0]` is the first Linear).
    """
    sizes = _check_sizes("mlp", sizes)
    _activation("mlp", activation)
    return Sequential(*_linear_stack("mlp", sizes, activation, generator(rng), dtype))


# --------------------------------------------------------------------------------- LeNet
def lenet5(num_classes=10, in_channels=1, rng=None, dtype=None):
    """LeNet-5 style CNN for 28 x 28 images (see the module docstring); a Sequential of 12 layers."""
    rng = generator(rng)
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=2, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Flatten(),
        Linear(16 * 5 * 5, 120, rng=rng, dtype=dtype), ReLU(),
        Linear(120, 84, rng=rng, dtype=dtype), ReLU(),
        Linear(84, num_classes, rng=rng, dtype=dtype),
    )


# -------------------------------------------------------------------------------- ResNet
def _conv3x3(c_in, c_out, stride, rng, dtype):
    conv = Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype)
    init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", rng=rng)
    return conv


class BasicBlock(Module):
    """relu(BN(conv3x3(relu(BN(conv3x3(x, stride))))) + shortcut(x)), He et al. 2016.

    The shortcut is the identity when shapes agree. Otherwise, option "A":
    x[:, :, ::stride, ::stride] padded with zero channels ((out - in) // 2 before, the rest
    after), no parameters; option "B": 1x1 conv with the stride, then BN.
    """

    def __init__(self, in_channels, out_channels, stride=1, shortcut="A", rng=None, dtype=None):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"BasicBlock: shortcut must be 'A' or 'B', got {shortcut!r}")
        rng = generator(rng)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = _conv3x3(in_channels, out_channels, stride, rng, dtype)
        self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.conv2 = _conv3x3(out_channels, out_channels, 1, rng, dtype)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.option = None
        if stride != 1 or in_channels != out_channels:
            self.option = shortcut
            if shortcut == "B":
                conv = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype)
                init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", rng=rng)
                self.shortcut = Sequential(conv, BatchNorm2d(out_channels, dtype=dtype))
            elif out_channels < in_channels:
                raise ValueError(f"BasicBlock: option A pads channels, so it cannot go from "
                                 f"{in_channels} to {out_channels} channels")

    def _shortcut(self, x):
        if self.option is None:
            return x
        if self.option == "B":
            return self.shortcut(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = pad(x, ((0, 0), (extra // 2, extra - extra // 2), (0, 0), (0, 0)))
        return x

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self._shortcut(x))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
                + (f", shortcut={self.option}" if self.option else ""))


class ResNetCIFAR(Module):
    """He et al. 2016's CIFAR ResNet of depth 6n + 2; see `resnet_cifar`."""

    def __init__(self, depth=20, num_classes=10, in_channels=3, width=16, shortcut="A", rng=None,
                 dtype=None):
        super().__init__()
        if not isinstance(depth, (int, np.integer)) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"resnet_cifar: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, "
                             f"110, ...), got {depth!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"resnet_cifar: shortcut must be 'A' or 'B', got {shortcut!r}")
        if shortcut == "A" and width % 2:
            raise ValueError(f"resnet_cifar: option-A shortcuts pad channels evenly, so width must be "
                             f"even, got {width}")
        rng = generator(rng)
        n = (depth - 2) // 6
        self.depth, self.width, self.shortcut_option = int(depth), int(width), shortcut
        self.conv1 = _conv3x3(in_channels, width, 1, rng, dtype)
        self.bn1 = BatchNorm2d(width, dtype=dtype)
        c_in = width
        for stage, mult in enumerate((1, 2, 4), start=1):
            c_out = width * mult
            blocks = []
            for b in range(n):
                stride = 2 if (stage > 1 and b == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut, rng=rng, dtype=dtype))
                c_in = c_out
            setattr(self, f"layer{stage}", Sequential(*blocks))
        self.fc = Linear(c_in, num_classes, rng=rng, dtype=dtype)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(mean(h, axis=(2, 3)))  # global average pooling

    def extra_repr(self):
        return f"depth={self.depth}, width={self.width}, shortcut={self.shortcut_option}"


def resnet_cifar(depth=20, num_classes=10, in_channels=3, width=16, shortcut="A", rng=None, dtype=None):
    """CIFAR ResNet of depth 6n + 2 (He et al. 2016, section 4.2); see the module docstring.

    width: channels of the first stage (16 in the paper; the stages have width, 2 width, 4 width).
    shortcut: "A" (zero-padded strided identity, no parameters) or "B" (1x1 conv + BN) where the
    shape changes. Input (N, in_channels, H, W) with H, W divisible by 4 (32 x 32 for CIFAR).
    """
    return ResNetCIFAR(depth, num_classes, in_channels, width, shortcut, rng=rng, dtype=dtype)


def resnet20(num_classes=10, in_channels=3, rng=None, dtype=None, shortcut="A", width=16):
    """resnet_cifar(depth=20): 3 basic blocks per stage."""
    return resnet_cifar(20, num_classes, in_channels, width, shortcut, rng=rng, dtype=dtype)


def resnet32(num_classes=10, in_channels=3, rng=None, dtype=None, shortcut="A", width=16):
    """resnet_cifar(depth=32): 5 basic blocks per stage."""
    return resnet_cifar(32, num_classes, in_channels, width, shortcut, rng=rng, dtype=dtype)


def resnet44(num_classes=10, in_channels=3, rng=None, dtype=None, shortcut="A", width=16):
    """resnet_cifar(depth=44): 7 basic blocks per stage."""
    return resnet_cifar(44, num_classes, in_channels, width, shortcut, rng=rng, dtype=dtype)


def resnet56(num_classes=10, in_channels=3, rng=None, dtype=None, shortcut="A", width=16):
    """resnet_cifar(depth=56): 9 basic blocks per stage."""
    return resnet_cifar(56, num_classes, in_channels, width, shortcut, rng=rng, dtype=dtype)


# --------------------------------------------------------------------------- autoencoder
class Autoencoder(Module):
    """encoder: sizes[0] - ... - sizes[-1] (the code, linear); decoder: the mirror, ending in logits."""

    def __init__(self, sizes=(784, 1000, 500, 250, 30), activation="sigmoid", init_scheme="default",
                 rng=None, dtype=None):
        super().__init__()
        sizes = _check_sizes("autoencoder", sizes)
        _activation("autoencoder", activation)
        if init_scheme not in ("default", "sparse"):
            raise ValueError(f"autoencoder: init_scheme must be 'default' or 'sparse', got {init_scheme!r}")
        rng = generator(rng)
        self.sizes, self.activation = sizes, activation
        self.encoder = Sequential(*_linear_stack("autoencoder", sizes, activation, rng, dtype))
        self.decoder = Sequential(*_linear_stack("autoencoder", sizes[::-1], activation, rng, dtype))
        if init_scheme == "sparse":
            for m in self.modules():
                if isinstance(m, Linear):
                    sparse_init_(m, rng=rng)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        return self.decoder(code)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def extra_repr(self):
        return f"sizes={self.sizes}, activation={self.activation!r}"


def autoencoder(sizes=(784, 1000, 500, 250, 30), activation="sigmoid", rng=None, dtype=None,
                init_scheme="default"):
    """Deep autoencoder (Hinton & Salakhutdinov 2006): encoder `sizes`, decoder `sizes` reversed.

    The code layer (sizes[-1] units) is linear and the last decoder layer returns logits; the
    nonlinearity sits after every other layer. Forward returns the logits of the reconstruction.
    init_scheme: "default" (nn.Linear's uniform init) or "sparse" (Martens 2010: each unit gets
    `SPARSE_FAN_IN` = 15 nonzero incoming weights drawn from N(0, 1), biases 0).
    """
    return Autoencoder(sizes, activation, init_scheme, rng=rng, dtype=dtype)


SPARSE_FAN_IN = 15


def sparse_init_(linear, fan_in=SPARSE_FAN_IN, rng=None):
    """Martens 2010's sparse initialization of a Linear: in each row of W, min(fan_in, in_features)
    entries chosen at random get N(0, 1) values, all others 0; the bias is 0."""
    rng = generator(rng)
    out_f, in_f = linear.weight.shape
    k = min(fan_in, in_f)
    w = np.zeros((out_f, in_f))
    for row in range(out_f):
        cols = rng.choice(in_f, size=k, replace=False)
        w[row, cols] = rng.standard_normal(k)
    init._fill(linear.weight, w)
    if linear.bias is not None:
        init.zeros_(linear.bias)
    return linear


def _reduce(fn, losses, reduction):
    if reduction == "mean":
        return mean(losses)
    if reduction == "sum":
        return _sum(losses)
    if reduction == "batchmean":
        return _sum(losses) * (1.0 / losses.shape[0])
    if reduction == "none":
        return losses
    raise ValueError(f"{fn}: reduction must be 'mean', 'sum', 'batchmean' or 'none', got {reduction!r}")


def _targets(fn, logits, targets):
    logits = Tensor.wrap(logits)
    targets = Tensor.wrap(targets)
    if targets.shape != logits.shape:
        raise ValueError(f"{fn}: targets must have the logits' shape {logits.shape}, got {targets.shape}")
    if logits.ndim == 0:
        raise ValueError(f"{fn}: logits must have a batch axis, got a scalar")
    return logits, targets


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """l = -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))] = softplus(z) - y z, elementwise.

    Stable for any z (softplus is computed as max(z, 0) + log1p(exp(-|z|))); targets y in [0, 1]
    (pixel intensities), differentiable in both. reduction: "mean" over all elements, "sum",
    "batchmean" (sum / batch size: the per-example sum over outputs averaged over the batch,
    the K-FAC autoencoder objective), or "none". dl/dz = sigmoid(z) - y; d2l/dz2 = s (1 - s).
    """
    logits, targets = _targets("binary_cross_entropy_with_logits", logits, targets)
    return _reduce("binary_cross_entropy_with_logits", softplus(logits) - targets * logits, reduction)


def reconstruction_error(logits, targets, reduction="batchmean"):
    """Squared error of the reconstruction sigmoid(z) against y: sum over outputs of
    (sigmoid(z) - y)^2, averaged over the batch by default (the error Hinton & Salakhutdinov,
    Martens and K-FAC report for the autoencoders). Same reductions as the cross-entropy."""
    logits, targets = _targets("reconstruction_error", logits, targets)
    diff = sigmoid(logits) - targets
    return _reduce("reconstruction_error", diff * diff, reduction)
