"""Values, not just consistency: the activation modules and the ResNet basic block against
NumPy formulas written from their definitions, in float64.

tests/test_nn.py and tests/test_models.py gradcheck these modules, which passes for any smooth
function; here the forward output and the first derivative must equal the documented math, at
non-default parameters, so that a module that ignores its parameter (or a block that loses its
shortcut or its final ReLU) fails.
"""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import init
from minigrad.nn import models as M
from minigrad.nn.layers import _Activation

F64 = np.float64
# 24 points in [-6.05, 6.05] (step 0.526) plus tails; none within 0.26 of 0, the kink of ReLU and LeakyReLU
X = np.concatenate([np.linspace(-6.05, 6.05, 24), [-30.0, -12.5, 12.5, 30.0]])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# name: (module, f(x), f'(x)), each formula the definition in PyTorch's documentation
ACTIVATIONS = {
    "ReLU": (lambda: nn.ReLU(), lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(F64)),
    "Tanh": (lambda: nn.Tanh(), np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "Sigmoid": (lambda: nn.Sigmoid(), _sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
    # LeakyReLU(x) = x for x >= 0, negative_slope * x otherwise; derivative 1 or negative_slope
    "LeakyReLU(negative_slope=0.3)": (lambda: nn.LeakyReLU(negative_slope=0.3),
                                      lambda x: np.where(x >= 0, x, 0.3 * x),
                                      lambda x: np.where(x >= 0, 1.0, 0.3)),
    "LeakyReLU(negative_slope=1.7)": (lambda: nn.LeakyReLU(negative_slope=1.7),
                                      lambda x: np.where(x >= 0, x, 1.7 * x),
                                      lambda x: np.where(x >= 0, 1.0, 1.7)),
    # Softplus(x) = log(1 + exp(beta x)) / beta; derivative sigmoid(beta x)
    "Softplus(beta=2.5)": (lambda: nn.Softplus(beta=2.5),
                           lambda x: np.log1p(np.exp(2.5 * x)) / 2.5,
                           lambda x: _sigmoid(2.5 * x)),
    "Softplus(beta=0.4)": (lambda: nn.Softplus(beta=0.4),
                           lambda x: np.log1p(np.exp(0.4 * x)) / 0.4,
                           lambda x: _sigmoid(0.4 * x)),
}


def test_the_table_covers_every_exported_activation():
    """A new activation in minigrad.nn (a subclass of layers._Activation, an entry of
    models.ACTIVATIONS, or one of PyTorch's activation names) must get a row above."""
    known = {"ReLU", "Tanh", "Sigmoid", "Softplus", "LeakyReLU", "ELU", "GELU", "SiLU", "Softsign",
             "Hardtanh", "PReLU", "SELU", "Mish", "ReLU6", "LogSigmoid", "Softmax", "LogSoftmax"}
    known |= {c.__name__ for c in _Activation.__subclasses__()}
    known |= {c.__name__ for c in M.ACTIVATIONS.values()}
    exported = {name for name in nn.__all__ if name in known}
    assert exported == {name.split("(")[0] for name in ACTIVATIONS}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_module_value_and_derivative_match_the_formula(name):
    """y = module(x) equals f(x) and dy/dx (by minigrad.grad of sum(y)) equals f'(x), elementwise.

    The derivative gets an absolute tolerance of 1e-15: like PyTorch, the engine forms tanh' as
    1 - y^2 and sigmoid' as y (1 - y) from the output y, which cancels in the tails
    (tanh'(30) comes out 0, not 3.5e-26)."""
    make, f, df = ACTIVATIONS[name]
    x = mg.tensor(X.copy(), requires_grad=True)
    y = make()(x)
    assert y.dtype == F64 and y.shape == X.shape
    np.testing.assert_allclose(y.numpy(), f(X), rtol=1e-12, atol=1e-300)
    (dx,) = mg.grad(y.sum(), [x])
    np.testing.assert_allclose(dx.numpy(), df(X), rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ ResNet basic block
def conv_ref(x, w, stride, padding):
    """y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] xpad[n, c, stride i + a, stride j + b]."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (xp.shape[2] - kh) // stride + 1
    wo = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, a, b])
    return y


def bn_ref(x, bn, training):
    """(x - mu) / sqrt(var + eps) * weight + bias per channel; batch mean and biased variance
    over (N, H, W) in training, the running statistics in eval."""
    if training:
        mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mu, var = bn.running_mean.copy(), bn.running_var.copy()
    c = (1, -1, 1, 1)
    return ((x - mu.reshape(c)) / np.sqrt(var.reshape(c) + bn.eps) * bn.weight.numpy().reshape(c)
            + bn.bias.numpy().reshape(c))


def block_ref(block, x, training, s, option):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 with stride s; option None is
    the identity shortcut. Returns (output, the sum before the final ReLU)."""
    h = np.maximum(bn_ref(conv_ref(x, block.conv1.weight.numpy(), s, 1), block.bn1, training), 0)
    h = bn_ref(conv_ref(h, block.conv2.weight.numpy(), 1, 1), block.bn2, training)
    if option is None:
        sc = x
    elif option == "A":  # x[:, :, ::s, ::s], zero channels (out - in) // 2 before, the rest after
        extra = block.conv1.weight.shape[0] - x.shape[1]
        sc = np.pad(x[:, :, ::s, ::s], ((0, 0), (extra // 2, extra - extra // 2), (0, 0), (0, 0)))
    else:  # "B": 1x1 conv with the stride, then BN
        conv, bn = block.shortcut[0], block.shortcut[1]
        sc = bn_ref(conv_ref(x, conv.weight.numpy(), s, 0), bn, training)
    pre = h + sc
    return np.maximum(pre, 0), pre


def _block(c_in, c_out, stride, shortcut, seed):
    """A BasicBlock with every BN's weight, bias and running statistics away from 1, 0, 0, 1."""
    block = M.BasicBlock(c_in, c_out, stride, shortcut=shortcut, rng=seed, dtype=F64)
    rng = np.random.default_rng(seed + 100)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, 0.3, rng=rng)
            init.normal_(m.bias, 0.0, 0.5, rng=rng)
            m.running_mean[:] = rng.normal(0.0, 0.5, m.num_features)
            m.running_var[:] = rng.uniform(0.5, 2.0, m.num_features)
    return block


BLOCKS = {  # name: (c_in, c_out, stride, shortcut option; None: the identity, shapes agree)
    "identity 4->4": (4, 4, 1, None),
    "option A 3->6 stride 2": (3, 6, 2, "A"),  # 1 zero channel before, 2 after
    "option B 3->4 stride 2": (3, 4, 2, "B"),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_basic_block_matches_numpy_forward(name, training):
    """BasicBlock(x) = relu(BN(conv3x3(relu(BN(conv3x3(x, stride))))) + shortcut(x)), from scratch."""
    c_in, c_out, stride, option = BLOCKS[name]
    block = _block(c_in, c_out, stride, option or "A", seed=list(BLOCKS).index(name)).train(training)
    x = np.random.default_rng(7).standard_normal((2, c_in, 5, 5))
    want, pre = block_ref(block, x, training, stride, option)
    # the final ReLU matters: the residual sum has clearly negative and positive entries
    assert (pre < -0.1).sum() >= 5 and (pre > 0.1).sum() >= 5
    assert want.shape == (2, c_out, 3 if stride == 2 else 5, 3 if stride == 2 else 5)
    got = block(mg.tensor(x))
    assert got.dtype == F64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
