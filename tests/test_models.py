"""minigrad.nn.models: shapes, parameter counts against the architectures' formulas, seeds,
a few SGD steps that lower the loss, BatchNorm's train/eval behaviour in the ResNet, a
finite-difference check of a tiny ResNet, and the autoencoder's losses."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn.utils import parameters_replaced
import minigrad.functional as F
from minigrad import nn
from minigrad.nn import models as M
from minigrad.testing import gradcheck, gradgradcheck

F64 = np.float64


def images(n, c, h, w, seed=0, dtype=np.float32):
    return mg.tensor(np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype))


def count(model):
    return sum(p.size for p in model.parameters())


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def differs(a, b):
    return any(not np.array_equal(pa.numpy(), pb.numpy()) for pa, pb in zip(a.parameters(), b.parameters()))


def sgd_losses(model, x, loss_of, steps, lr):
    """Plain SGD, p.data -= lr * p.grad.data; returns the loss before each step and after the last."""
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = loss_of(model(x))
        loss.backward()
        losses.append(loss.item())
        for p in model.parameters():
            p.data -= lr * p.grad.data
    with mg.no_grad():
        losses.append(loss_of(model(x)).item())
    return losses


# ----------------------------------------------------------------------------------- MLP
def mlp_params(sizes):
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


@pytest.mark.parametrize("activation, layer", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid),
                                               ("softplus", nn.Softplus), ("leaky_relu", nn.LeakyReLU)])
def test_mlp_structure_shapes_and_count(activation, layer):
    sizes = (7, 5, 4, 3)
    model = M.mlp(sizes, activation, rng=0)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, layer, nn.Linear, layer, nn.Linear]  # none after the last
    assert count(model) == mlp_params(sizes) == 8 * 5 + 6 * 4 + 5 * 3
    x = mg.tensor(np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32))
    assert model(x).shape == (6, 3) and model(x).dtype == np.float32


def test_mlp_seeds_dtype_and_errors():
    a, b, c = M.mlp((784, 64, 10), rng=3), M.mlp((784, 64, 10), rng=3), M.mlp((784, 64, 10), rng=4)
    assert_same_weights(a, b)
    assert differs(a, c)
    x = mg.tensor(np.random.default_rng(0).standard_normal((4, 784)).astype(np.float32))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert differs(a[0], a[2]) if a[0].weight.shape == a[2].weight.shape else True
    assert M.mlp((3, 2), rng=0, dtype=F64)[0].weight.dtype == F64 and len(M.mlp((3, 2))) == 1
    mg.manual_seed(7)
    d = M.mlp((5, 4, 3))
    mg.manual_seed(7)
    assert_same_weights(d, M.mlp((5, 4, 3)))
    with pytest.raises(ValueError, match="activation must be one of"):
        M.mlp((3, 2, 1), "swish")
    with pytest.raises(ValueError, match="sizes"):
        M.mlp((3,))


def test_mlp_sgd_lowers_the_loss():
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((32, 10)).astype(np.float32))
    y = rng.integers(0, 3, 32)
    model = M.mlp((10, 32, 3), "tanh", rng=1)
    losses = sgd_losses(model, x, lambda z: F.cross_entropy(z, y), steps=10, lr=0.5)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.8 * losses[0], losses


# --------------------------------------------------------------------------------- LeNet
def test_lenet5_shapes_count_and_seeds():
    model = M.lenet5(rng=0)
    assert len(model) == 12
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [(c.weight.shape, c.padding) for c in convs] == [((6, 1, 5, 5), 2), ((16, 6, 5, 5), 0)]
    expected = (6 * 1 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count(model) == expected == 61706
    x = images(3, 1, 28, 28)
    h = model[:7](x)
    assert h.shape == (3, 400)  # 28 -conv(pad 2)-> 28 -pool-> 14 -conv-> 10 -pool-> 5; 16*5*5
    assert model(x).shape == (3, 10)
    other = M.lenet5(num_classes=7, in_channels=3, rng=0)
    assert other(images(2, 3, 28, 28)).shape == (2, 7)
    assert count(other) == expected + 2 * 6 * 25 - 3 * (84 + 1)
    twin = M.lenet5(rng=0)
    assert_same_weights(model, twin)
    np.testing.assert_array_equal(model(x).numpy(), twin(x).numpy())
    assert differs(model, M.lenet5(rng=1))
    with pytest.raises(ValueError, match="Linear"):  # a 32x32 image does not flatten to 400
        model(images(1, 1, 32, 32))


def test_lenet5_sgd_lowers_the_loss():
    x = images(16, 1, 28, 28, seed=1)
    y = np.random.default_rng(2).integers(0, 10, 16)
    model = M.lenet5(rng=3)
    losses = sgd_losses(model, x, lambda z: F.cross_entropy(z, y), steps=6, lr=0.3)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.95 * losses[0], losses


# -------------------------------------------------------------------------------- ResNet
def resnet_params(depth, width=16, in_channels=3, num_classes=10, shortcut="A"):
    """conv 3x3 + BN, 3 stages of n blocks (2 convs 3x3 + 2 BN each; option B adds a 1x1 conv
    + BN where the channels double), linear head."""
    n = (depth - 2) // 6
    total = in_channels * width * 9 + 2 * width
    c_in = width
    for c in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += 9 * c_in * c + 9 * c * c + 2 * 2 * c
            if shortcut == "B" and c_in != c:
                total += c_in * c + 2 * c
            c_in = c
    return total + c_in * num_classes + num_classes


def test_resnet_counts_match_the_formula_and_the_paper():
    assert count(M.resnet20(rng=0)) == resnet_params(20) == 269722  # "0.27M" in He et al. 2016
    assert count(M.resnet20(rng=0, shortcut="B")) == resnet_params(20, shortcut="B") == 272474
    for depth in (8, 14, 32, 56):
        assert count(M.resnet_cifar(depth, rng=0)) == resnet_params(depth)
    assert count(M.resnet_cifar(110, rng=0)) == 1727962  # "1.7M"
    assert count(M.resnet_cifar(14, num_classes=100, in_channels=1, width=8, rng=0)) == \
        resnet_params(14, 8, 1, 100)
    assert count(M.resnet_cifar(8, width=6, shortcut="B", rng=0)) == resnet_params(8, 6, shortcut="B")


def test_resnet_structure_and_init():
    model = M.resnet20(rng=0)
    assert [len(getattr(model, f"layer{s}")) for s in (1, 2, 3)] == [3, 3, 3]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.bias is None for c in convs)  # 19 convs + fc = 20 layers
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19
    assert [model.layer2[0].conv1.stride, model.layer3[0].conv1.stride, model.layer2[1].conv1.stride] == [2, 2, 1]
    # Kaiming normal, fan_out, relu: std sqrt(2 / (out * 9)) (layer3 convs: 64*64*9 draws each)
    w = np.concatenate([b.conv2.weight.numpy().ravel() for b in model.layer3])
    assert abs(w.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.02 and abs(w.mean()) < 0.005
    bn = model.layer1[0].bn1
    assert (bn.weight.numpy() == 1).all() and (bn.bias.numpy() == 0).all()
    with pytest.raises(ValueError, match="6n"):
        M.resnet_cifar(21)
    with pytest.raises(ValueError, match="shortcut"):
        M.resnet_cifar(8, shortcut="C")
    with pytest.raises(ValueError, match="even"):
        M.resnet_cifar(8, width=3)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_shapes_and_seeds(shortcut):
    x = images(2, 3, 32, 32)
    a = M.resnet_cifar(8, rng=5, shortcut=shortcut)
    b = M.resnet_cifar(8, rng=5, shortcut=shortcut)
    assert_same_weights(a, b)
    assert differs(a, M.resnet_cifar(8, rng=6, shortcut=shortcut))
    ya = a(x)
    assert ya.shape == (2, 10) and ya.dtype == np.float32
    np.testing.assert_array_equal(ya.numpy(), b(x).numpy())
    h = a.layer1(mg.tensor(np.zeros((2, 16, 32, 32), np.float32)))
    assert a.layer3(a.layer2(h)).shape == (2, 64, 8, 8)


def test_option_a_shortcut_is_strided_identity_with_zero_channels():
    block = M.BasicBlock(4, 8, stride=2, shortcut="A", rng=0)
    assert not [n for n, _ in block.named_parameters() if "shortcut" in n]
    x = images(2, 4, 6, 6)
    s = block._shortcut(x).numpy()
    assert s.shape == (2, 8, 3, 3)
    np.testing.assert_array_equal(s[:, 2:6], x.numpy()[:, :, ::2, ::2])
    assert not s[:, :2].any() and not s[:, 6:].any()
    block_b = M.BasicBlock(4, 8, stride=2, shortcut="B", rng=0)
    assert [n for n, _ in block_b.named_parameters() if "shortcut" in n] == [
        "shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"]
    assert block_b._shortcut(x).shape == (2, 8, 3, 3)


def test_resnet20_train_eval_and_sgd():
    model = M.resnet20(rng=0)
    x = images(4, 3, 32, 32, seed=1)
    y = np.array([0, 1, 2, 3])
    # training mode normalizes with batch statistics: an image's output depends on its batch-mates
    first = model(x).numpy()
    alone = model(x[:2]).numpy()
    assert np.abs(first[:2] - alone).max() > 1e-4
    assert np.abs(model.bn1.running_mean).max() > 0  # the running stats moved
    model.eval()
    ev = model(x).numpy()
    np.testing.assert_allclose(model(x[:2]).numpy(), ev[:2], rtol=1e-5, atol=1e-6)
    assert np.abs(ev - first).max() > 1e-3
    model.train()
    losses = sgd_losses(model, x, lambda z: F.cross_entropy(z, y), steps=4, lr=0.05)
    assert losses[-1] < losses[0], losses


def _tiny_resnet(shortcut):
    model = M.resnet_cifar(8, num_classes=3, width=2, shortcut=shortcut, rng=0, dtype=F64)
    rng = np.random.default_rng(1)
    for m in model.modules():  # BN weights and biases away from 1 and 0, to test them for real
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data = rng.normal(0, 0.5, m.bias.shape)
    return model


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_tiny_resnet_gradcheck(shortcut):
    model = _tiny_resnet(shortcut)
    names = ["conv1.weight", "layer2.0.conv1.weight", "layer3.0.bn2.weight", "fc.bias"]
    if shortcut == "B":
        names.append("layer3.0.shortcut.0.weight")
    params = dict(model.named_parameters())
    x = mg.tensor(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), requires_grad=True)
    labels = np.array([0, 2])

    def loss(x, *ps):
        with parameters_replaced(model, dict(zip(names, ps))):
            return F.cross_entropy(model(x), labels)

    inputs = [x] + [params[n] for n in names]
    grads = mg.grad(loss(*inputs), inputs)  # the tensors passed in are the ones used
    assert all(np.abs(g.numpy()).max() > 1e-4 for g in grads)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        assert gradcheck(loss, inputs, mode="random", directions=2)
    model.train()
    assert gradgradcheck(loss, inputs[:2], mode="random", directions=1)


# --------------------------------------------------------------------------- autoencoder
def test_autoencoder_structure_count_and_shapes():
    model = M.autoencoder(rng=0)
    sizes = (784, 1000, 500, 250, 30)
    enc = [m.weight.shape for m in model.encoder if isinstance(m, nn.Linear)]
    dec = [m.weight.shape for m in model.decoder if isinstance(m, nn.Linear)]
    assert enc == [(1000, 784), (500, 1000), (250, 500), (30, 250)]
    assert dec == [(250, 30), (500, 250), (1000, 500), (784, 1000)]
    # the code layer and the output layer are linear; a sigmoid follows every other layer
    assert [type(m).__name__ for m in model.encoder] == ["Linear", "Sigmoid"] * 3 + ["Linear"]
    assert [type(m).__name__ for m in model.decoder] == ["Linear", "Sigmoid"] * 3 + ["Linear"]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert count(model) == 2 * weights + sum(sizes[1:]) + sum(sizes[:-1]) == 2837314
    x = mg.tensor(np.random.default_rng(0).uniform(0, 1, (3, 784)).astype(np.float32))
    assert model.encode(x).shape == (3, 30) and model(x).shape == (3, 784)
    assert_same_weights(model, M.autoencoder(rng=0))
    assert [type(m).__name__ for m in M.autoencoder((6, 4, 2), "tanh", rng=0).decoder] == \
        ["Linear", "Tanh", "Linear"]


def test_autoencoder_sparse_init():
    model = M.autoencoder((40, 30, 20, 10), init_scheme="sparse", rng=0)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nonzero = (m.weight.numpy() != 0).sum(axis=1)
            assert (nonzero == min(M.SPARSE_FAN_IN, m.in_features)).all()
            assert not m.bias.numpy().any()
    assert_same_weights(model, M.autoencoder((40, 30, 20, 10), init_scheme="sparse", rng=0))
    with pytest.raises(ValueError, match="init_scheme"):
        M.autoencoder(init_scheme="orthogonal")


def test_autoencoder_sgd_lowers_the_loss():
    rng = np.random.default_rng(0)
    prototypes = (rng.uniform(0, 1, (2, 20)) > 0.5).astype(np.float32)
    x = mg.tensor(prototypes[rng.integers(0, 2, 32)])  # binary "images" of two kinds
    model = M.autoencoder((20, 16, 8, 4), rng=1)
    loss = lambda z: M.binary_cross_entropy_with_logits(z, x, reduction="batchmean")
    losses = sgd_losses(model, x, loss, steps=8, lr=0.5)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.6 * losses[0], losses


def test_autoencoder_losses_match_numpy_and_are_stable():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 5)) * 3
    y = rng.uniform(0, 1, (4, 5))
    s = 1 / (1 + np.exp(-z))
    bce = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    zt, yt = mg.tensor(z), mg.tensor(y)
    for red, ref in (("mean", bce.mean()), ("sum", bce.sum()), ("batchmean", bce.sum() / 4), ("none", bce)):
        np.testing.assert_allclose(M.binary_cross_entropy_with_logits(zt, yt, red).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(M.reconstruction_error(zt, yt).numpy(), ((s - y) ** 2).sum() / 4, rtol=1e-12)
    big = M.binary_cross_entropy_with_logits(mg.tensor([[1000.0, -1000.0]]), mg.tensor([[0.0, 1.0]]), "none")
    np.testing.assert_allclose(big.numpy(), [[1000.0, 1000.0]])
    with pytest.raises(ValueError, match="shape"):
        M.binary_cross_entropy_with_logits(zt, mg.tensor(y[:2]))
    with pytest.raises(ValueError, match="reduction"):
        M.reconstruction_error(zt, yt, "avg")
    fn = lambda a, b: M.binary_cross_entropy_with_logits(a, b, "batchmean")
    args = [mg.tensor(z, requires_grad=True), mg.tensor(y, requires_grad=True)]
    assert gradcheck(fn, args) and gradgradcheck(fn, args)
    assert gradgradcheck(lambda a: M.reconstruction_error(a, y), args[:1])
