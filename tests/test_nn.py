"""minigrad.nn: every layer's first and second derivatives (in its input and all its parameters)
against finite differences in float64, the Module machinery (parameters, modules, modes,
Sequential, hooks, state dicts, error messages) and initialization (seeds and the formulas)."""
import math
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn.utils import parameters_replaced
from minigrad import nn
from minigrad.nn import init
from minigrad.testing import gradcheck, gradgradcheck

F64 = np.float64


# ------------------------------------------------------------------------------ helpers
def t64(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=F64), requires_grad=requires_grad)


def randn(*shape, seed=0, away_from_zero=0.0):
    """Standard normal float64 values; |v| >= away_from_zero keeps them off kinks like relu's."""
    v = np.random.default_rng(seed).standard_normal(shape)
    if away_from_zero:
        v = np.where(np.abs(v) < away_from_zero, np.sign(v + 1e-300) * away_from_zero + v, v)
    return t64(v, requires_grad=True)


def distinct(*shape, seed=0):
    """A shuffled grid 0.1, 0.2, ...: no two values within 0.1, so max pooling has no near-ties."""
    v = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0
    return t64(v, requires_grad=True)


def layer_fn(layer, before=None):
    """(fn, inputs): fn(x, *params) runs the layer with those parameters; inputs = [params]."""
    names = [n for n, _ in layer.named_parameters()]

    def fn(x, *params):
        if before is not None:
            before()
        with parameters_replaced(layer, dict(zip(names, params))):
            return layer(x)

    fn.__name__ = repr(layer).split("\n")[0]
    return fn, [p for _, p in layer.named_parameters()]


def _bn(cls, c, training, seed):
    layer = cls(c, dtype=F64)
    rng = np.random.default_rng(seed)
    init.normal_(layer.weight, 1.0, 0.5, rng=rng)
    init.normal_(layer.bias, 0.0, 0.5, rng=rng)
    layer.running_mean[:] = rng.standard_normal(c)
    layer.running_var[:] = rng.uniform(0.5, 2.0, c)
    return layer.train(training)


def _dropout(p, seed):
    layer = nn.Dropout(p, rng=seed)

    def reseed():  # the same mask on every evaluation, so the layer is a fixed linear map
        layer.rng = np.random.default_rng(seed)

    return layer, reseed


# ------------------------------------------------------- layer derivatives, from one table
def _layer_cases():
    d1, reseed = _dropout(0.3, 5)
    return {  # name: (layer, input, hook run before each forward)
        "Linear": (nn.Linear(3, 4, rng=1, dtype=F64), randn(2, 3), None),
        "Linear no bias": (nn.Linear(3, 4, bias=False, rng=2, dtype=F64), randn(2, 3), None),
        "Linear 3-D input": (nn.Linear(3, 2, rng=3, dtype=F64), randn(2, 2, 3), None),
        "Conv2d 3x3 stride 1 pad 1": (nn.Conv2d(2, 3, 3, padding=1, rng=4, dtype=F64), randn(1, 2, 4, 4), None),
        "Conv2d 2x3 stride (2,1) pad (1,0)": (
            nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0), rng=5, dtype=F64), randn(2, 2, 5, 4), None),
        "Conv2d no bias stride 2": (nn.Conv2d(2, 2, 3, stride=2, bias=False, rng=6, dtype=F64),
                                    randn(1, 2, 5, 5), None),
        "MaxPool2d 2": (nn.MaxPool2d(2), distinct(2, 2, 4, 4), None),
        "MaxPool2d 3 stride 2": (nn.MaxPool2d(3, stride=2), distinct(1, 2, 5, 5), None),
        "AvgPool2d 2": (nn.AvgPool2d(2), randn(2, 2, 4, 4), None),
        "AvgPool2d (2,3) stride 1": (nn.AvgPool2d((2, 3), stride=1), randn(1, 2, 4, 5), None),
        "Flatten": (nn.Flatten(), randn(2, 3, 2, 2), None),
        "Flatten 1..2": (nn.Flatten(1, 2), randn(2, 3, 2, 2), None),
        "ReLU": (nn.ReLU(), randn(3, 4, away_from_zero=1e-3), None),
        "Tanh": (nn.Tanh(), randn(3, 4), None),
        "Sigmoid": (nn.Sigmoid(), randn(3, 4), None),
        "Softplus": (nn.Softplus(), randn(3, 4), None),
        "Softplus beta 2": (nn.Softplus(beta=2.0), randn(3, 4), None),
        "LeakyReLU 0.1": (nn.LeakyReLU(0.1), randn(3, 4, away_from_zero=1e-3), None),
        "Dropout train": (d1, randn(3, 5), reseed),
        "Dropout eval": (nn.Dropout(0.5, rng=0).eval(), randn(3, 4), None),
        "BatchNorm1d train": (_bn(nn.BatchNorm1d, 3, True, 7), randn(5, 3, seed=1), None),
        "BatchNorm1d eval": (_bn(nn.BatchNorm1d, 3, False, 8), randn(5, 3, seed=2), None),
        "BatchNorm2d train": (_bn(nn.BatchNorm2d, 2, True, 9), randn(2, 2, 3, 3, seed=3), None),
        "BatchNorm2d eval": (_bn(nn.BatchNorm2d, 2, False, 10), randn(2, 2, 3, 3, seed=4), None),
    }


LAYER_CASES = _layer_cases()


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_gradcheck_and_gradgradcheck(name):
    layer, x, before = LAYER_CASES[name]
    fn, params = layer_fn(layer, before)
    inputs = [x] + params
    if "Linear" in name or "Conv" in name or "BatchNorm" in name:
        assert len(params) == (1 if "no bias" in name else 2)
    assert all(a.dtype == F64 for a in inputs)
    if params:  # the parameters passed in are the ones used (else both sides would be zero)
        y = fn(*inputs)
        grads = mg.grad((y * t64(np.random.default_rng(0).standard_normal(y.shape))).sum(), params)
        assert all(np.abs(g.numpy()).max() > 1e-3 for g in grads)
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_dropout_train_mask_and_eval_identity():
    layer = nn.Dropout(0.5, rng=0)
    x = mg.ones(50, 40)
    y = layer(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    assert not np.array_equal(y, layer(x).numpy())  # the layer's stream moves on
    assert layer.eval()(x) is x  # the identity in eval mode, not a copy
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.0)


def test_batchnorm_layer_updates_running_stats_only_in_training():
    bn = nn.BatchNorm2d(3, momentum=0.5)
    x = mg.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32) * 3 + 2)
    bn(x)
    mu = x.numpy().mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean, 0.5 * mu, rtol=1e-5)
    before = bn.running_mean.copy(), bn.running_var.copy()
    y = bn.eval()(x)
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])
    ref = (x.numpy() - before[0].reshape(1, 3, 1, 1)) / np.sqrt(before[1].reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ Module machinery
class Net(nn.Module):
    """Nested modules, a module reused twice, and a parameter of its own."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU())
        self.head = nn.Linear(4, 2, rng=1)
        self.scale = nn.Parameter(np.ones(2, np.float32))
        self.again = self.head  # the same module under a second name

    def forward(self, x):
        return self.again(self.head(self.features(x))[:, :2].tanh() @ mg.ones(2, 4)) * self.scale


def test_parameters_names_order_and_sharing():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "head.weight", "head.bias"]
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert sum(p.size for p in net.parameters()) == 2 + 3 * 4 + 4 + 4 * 2 + 2
    # a parameter shared by two layers counts once, under its first name
    a, b = nn.Linear(3, 3, rng=0), nn.Linear(3, 3, rng=1)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert len(nn.Sequential(a, a).parameters()) == 2
    assert next(n for n, _ in seq.named_parameters(prefix="model")) == "model.0.weight"


def test_modules_children_and_plain_attributes():
    net = Net()
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Sequential", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in net.named_modules()] == ["", "features", "features.0", "features.1", "head"]
    assert [n for n, _ in net.named_children()] == ["features", "head", "again"]
    net.note = "plain"  # not a parameter or module: an ordinary attribute
    assert net.note == "plain" and "note" not in dict(net.named_parameters())
    with pytest.raises(AttributeError, match="Net has no attribute 'missing'"):
        _ = net.missing
    net.head.bias = None  # removing a parameter
    assert "head.bias" not in dict(net.named_parameters()) and net.head.bias is None


def test_backward_fills_grads_and_zero_grad_clears_them():
    net = Net()
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_train_eval_propagate():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(2)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net[1].eval()
    assert net.training and not net[1].training and not net[1][1].training


def test_sequential_indexing_len_slicing_append():
    layers = [nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 2, rng=1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[1] is layers[1]
    assert len(seq[::2]) == 2 and seq[::2][1] is layers[2]
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32))
    np.testing.assert_allclose(seq[2:](seq[:2](x)).numpy(), seq(x).numpy(), rtol=1e-6)
    with pytest.raises(IndexError, match="Sequential"):
        seq[3]
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.ReLU(), lambda t: t)
    seq.append(nn.ReLU())
    assert len(seq) == 4 and [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"]
    ml = nn.ModuleList([nn.ReLU(), nn.Linear(2, 2)])
    assert len(ml) == 2 and len(ml.parameters()) == 2 and isinstance(ml[1], nn.Linear)


def test_forward_hooks_called_replace_and_remove():
    lin = nn.Linear(3, 2, rng=0)
    seq = nn.Sequential(lin, nn.ReLU())
    x = mg.tensor(np.ones((1, 3), np.float32))
    seen = []
    handle = lin.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs, out)))
    y = seq(x)
    assert len(seen) == 1 and seen[0][0] is lin and seen[0][1][0] is x and seen[0][2].shape == (1, 2)
    replace = lin.register_forward_hook(lambda m, inputs, out: out * 0 - 1)
    np.testing.assert_array_equal(seq(x).numpy(), 0.0)  # relu(-1)
    assert len(seen) == 2  # hooks run in registration order, the first saw the original output
    replace.remove()
    handle.remove()
    handle.remove()  # removing twice is harmless
    np.testing.assert_array_equal(seq(x).numpy(), y.numpy())
    assert len(seen) == 2


def _bn_net(seed):
    return nn.Sequential(nn.Linear(4, 3, rng=seed), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2, rng=seed + 1))


def test_state_dict_roundtrip_with_batchnorm_buffers():
    a = _bn_net(0)
    x = mg.tensor(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    a(x)  # moves the running stats
    state = a.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias",
                           "1.running_mean", "1.running_var"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["0.weight"][:] = 0  # a copy: editing it does not touch the model
    assert np.abs(a[0].weight.numpy()).sum() > 0
    state = a.state_dict()
    b = _bn_net(5)
    assert b.load_state_dict(state) == ([], [])
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert b[0].weight.data is not state["0.weight"] and b[0].weight.dtype == np.float32
    b.load_state_dict({k: mg.tensor(v) for k, v in state.items()})  # Tensors are accepted too


def _unchanged(model, before):
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_errors_list_the_keys_and_change_nothing():
    model = _bn_net(0)
    good = _bn_net(1).state_dict()
    before = model.state_dict()

    missing = {k: v for k, v in good.items() if k not in ("1.running_var", "3.bias")}
    with pytest.raises(ValueError, match=r"missing keys \['1.running_var', '3.bias'\]"):
        model.load_state_dict(missing)
    _unchanged(model, before)

    extra = dict(good, **{"4.weight": np.zeros(2), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys \['4.weight', 'extra'\]"):
        model.load_state_dict(extra)
    _unchanged(model, before)

    shaped = dict(good, **{"0.weight": np.zeros((4, 3)), "1.running_mean": np.zeros(4)})
    with pytest.raises(ValueError) as err:
        model.load_state_dict(shaped)
    msg = str(err.value)
    assert "0.weight: expected (3, 4), got (4, 3)" in msg and "1.running_mean: expected (3,), got (4,)" in msg
    _unchanged(model, before)

    # strict=False: missing and unexpected keys are returned, what fits is loaded ...
    assert model.load_state_dict(dict(missing, extra=np.zeros(1)), strict=False) == (
        ["1.running_var", "3.bias"], ["extra"])
    np.testing.assert_array_equal(model[0].weight.numpy(), good["0.weight"])
    np.testing.assert_array_equal(model[3].bias.numpy(), before["3.bias"])
    # ... but a wrong shape is an error all the same
    with pytest.raises(ValueError, match="mis-shaped"):
        model.load_state_dict({"0.weight": np.zeros((1, 1))}, strict=False)


def test_wrong_input_shapes_name_the_layer_and_both_shapes():
    cases = [
        (nn.Linear(3, 4), np.zeros((2, 5)), ["Linear", "3", "(2, 5)"]),
        (nn.Conv2d(3, 4, 3), np.zeros((2, 2, 8, 8)), ["Conv2d", "3 channels", "(2, 2, 8, 8)"]),
        (nn.Conv2d(3, 4, 3), np.zeros((3, 8, 8)), ["Conv2d", "4-d", "(3, 8, 8)"]),
        (nn.Conv2d(1, 1, 5), np.zeros((1, 1, 3, 3)), ["conv2d", "(5, 5)", "(1, 1, 3, 3)"]),
        (nn.BatchNorm1d(3), np.zeros((2, 3, 4, 4)), ["BatchNorm1d", "2-d", "(2, 3, 4, 4)"]),
        (nn.BatchNorm2d(3), np.zeros((2, 4, 5, 5)), ["BatchNorm2d", "3 features", "(2, 4, 5, 5)"]),
        (nn.MaxPool2d(2), np.zeros((3, 4, 4)), ["max_pool2d", "4-D", "(3, 4, 4)"]),
        (nn.AvgPool2d(2), np.zeros((3, 4, 4)), ["avg_pool2d", "4-D", "(3, 4, 4)"]),
    ]
    for layer, x, words in cases:
        with pytest.raises(ValueError) as err:
            layer(mg.tensor(x.astype(np.float32)))
        for w in words:
            assert w in str(err.value), (w, str(err.value))


def test_deepcopy_and_to_cpu():
    import copy
    model = _bn_net(0)
    twin = copy.deepcopy(model)
    assert all(a is not b for a, b in zip(model.parameters(), twin.parameters()))
    x = mg.tensor(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    np.testing.assert_array_equal(model(x).numpy(), twin(x).numpy())
    twin[0].weight.data += 1  # independent storage
    assert not np.array_equal(model[0].weight.numpy(), twin[0].weight.numpy())
    assert model.to("cpu") is model and model[0].weight.device == "cpu"


def test_dtype_argument_and_repr():
    lin = nn.Linear(2, 3, dtype=F64)
    assert lin.weight.dtype == F64 and lin.bias.dtype == F64
    assert nn.Linear(2, 3).weight.dtype == mg.get_default_dtype()
    assert nn.BatchNorm2d(2, dtype=F64).running_var.dtype == F64
    assert "Linear(in_features=2, out_features=3, bias=True)" in repr(nn.Sequential(lin))
    assert repr(nn.Softplus(2.0)) == "Softplus(beta=2.0)"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"


@pytest.mark.parametrize("make, words", [
    (lambda: nn.Softplus(0.0), "Softplus: beta must be > 0, got beta=0.0"),
    (lambda: nn.Softplus(float("nan")), "Softplus: beta must be > 0, got beta=nan"),
    (lambda: nn.LeakyReLU(float("inf")), "LeakyReLU: negative_slope must be finite, got "
                                         "negative_slope=inf"),
])
def test_activation_layers_refuse_bad_parameters_when_built(make, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        make()


# ------------------------------------------------------------------------- initialization
def test_same_seed_same_weights_different_seed_different():
    for make in (lambda s: nn.Linear(20, 30, rng=s), lambda s: nn.Conv2d(3, 8, 3, rng=s)):
        a, b, c = make(0), make(0), make(1)
        for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
            np.testing.assert_array_equal(pa.numpy(), pb.numpy())
            assert not np.array_equal(pa.numpy(), pc.numpy())
    # a Generator is a stream: two layers from one Generator differ, and the sequence repeats
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    a1, a2 = nn.Linear(5, 5, rng=g1), nn.Linear(5, 5, rng=g1)
    b1 = nn.Linear(5, 5, rng=g2)
    np.testing.assert_array_equal(a1.weight.numpy(), b1.weight.numpy())
    assert not np.array_equal(a1.weight.numpy(), a2.weight.numpy())
    # float32 and float64 layers from one seed hold the same values up to rounding
    np.testing.assert_allclose(nn.Linear(5, 5, rng=4).weight.numpy(),
                               nn.Linear(5, 5, rng=4, dtype=F64).weight.numpy(), rtol=1e-7)


def test_manual_seed_makes_unseeded_layers_reproducible():
    def build():
        return nn.Linear(6, 4), nn.Dropout(0.5)

    x = mg.ones(10, 10)
    mg.manual_seed(123)
    lin1, drop1 = build()
    mask1 = drop1(x).numpy()
    mg.manual_seed(123)
    lin2, drop2 = build()
    mask2 = drop2(x).numpy()
    np.testing.assert_array_equal(lin1.weight.numpy(), lin2.weight.numpy())
    np.testing.assert_array_equal(mask1, mask2)  # masks come from the global stream at call time
    mg.manual_seed(7)
    again = drop1(x).numpy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(drop1(x).numpy(), again)  # also for a layer built before
    lin3, _ = build()  # the global stream moved on
    assert not np.array_equal(lin1.weight.numpy(), lin3.weight.numpy())
    with pytest.raises(ValueError, match="manual_seed"):
        mg.manual_seed(-1)
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(2, 2, rng="seed")


def _param(*shape):
    return nn.Parameter(np.zeros(shape, np.float64))


@pytest.mark.parametrize("shape", [(400, 600), (64, 32, 5, 5)])
def test_init_std_and_bounds_match_the_formulas(shape):
    fan_in, fan_out = init.fans(shape)
    rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    assert (fan_in, fan_out) == (shape[1] * rf, shape[0] * rf)
    n = int(np.prod(shape))  # >= 240,000 draws: the std estimate is good to about 0.3%
    tol = 6 / math.sqrt(2 * n) + 1e-3

    def check(p, std, bound=None, mean_tol=None):
        w = p.numpy()
        assert abs(w.mean()) < 6 * std / math.sqrt(n)
        assert abs(w.std() / std - 1) < tol, (w.std(), std)
        if bound is not None:
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound

    gain_relu, gain_tanh = math.sqrt(2), 5 / 3
    std = gain_relu / math.sqrt(fan_in)
    check(init.kaiming_uniform_(_param(*shape), nonlinearity="relu", rng=0), std, math.sqrt(3) * std)
    check(init.kaiming_normal_(_param(*shape), nonlinearity="relu", rng=1), std)
    std_out = gain_relu / math.sqrt(fan_out)
    check(init.kaiming_normal_(_param(*shape), mode="fan_out", nonlinearity="relu", rng=2), std_out)
    std_a = math.sqrt(2 / (1 + 5)) / math.sqrt(fan_in)  # a = sqrt(5): PyTorch's default layer init
    check(init.kaiming_uniform_(_param(*shape), a=math.sqrt(5), rng=3), std_a, 1 / math.sqrt(fan_in))
    std_x = gain_tanh * math.sqrt(2 / (fan_in + fan_out))
    check(init.xavier_uniform_(_param(*shape), gain=gain_tanh, rng=4), std_x, math.sqrt(3) * std_x)
    check(init.xavier_normal_(_param(*shape), gain=gain_tanh, rng=5), std_x)
    # the layers' default: weight and bias uniform in +-1/sqrt(fan_in)
    if len(shape) == 2:
        lin = nn.Linear(shape[1], shape[0], rng=6, dtype=F64)
    else:
        lin = nn.Conv2d(shape[1], shape[0], shape[2:], rng=6, dtype=F64)
    check(lin.weight, std_a, 1 / math.sqrt(fan_in))
    assert np.abs(lin.bias.numpy()).max() <= 1 / math.sqrt(fan_in)


def test_init_helpers():
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    p = _param(3, 4)
    assert (init.ones_(p).numpy() == 1).all() and (init.zeros_(p).numpy() == 0).all()
    assert (init.constant_(p, 2.5).numpy() == 2.5).all()
    with pytest.raises(ValueError, match="calculate_gain"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(p, mode="fan_avg")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(_param(5))


def test_assigning_a_new_array_to_a_buffer_keeps_it_a_buffer():
    bn = nn.BatchNorm1d(3)
    bn.running_mean = np.full(3, 2.0, np.float32)
    state = bn.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var"]
    np.testing.assert_array_equal(state["running_mean"], [2.0, 2.0, 2.0])


def test_module_registration_errors_and_atomic_loading():
    lin = nn.Linear(3, 2, rng=0)
    with pytest.raises(TypeError, match="'weight' is a parameter"):
        lin.weight = mg.tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    with pytest.raises(KeyError, match="'weight' already exists"):
        lin.register_buffer("weight", np.zeros((2, 3), np.float32))
    bn = nn.BatchNorm1d(3)
    with pytest.raises(TypeError, match="'running_mean' is a buffer"):
        bn.running_mean = nn.Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="in_features and out_features must be >= 1"):
        nn.Linear(0, 3)
    assert not isinstance(nn.AvgPool2d(2), nn.MaxPool2d)
    before = lin.weight.numpy().copy()
    view = lin.weight.data
    state = lin.state_dict()
    state["weight"] = np.full((2, 3), 7.0)
    state["bias"] = np.array(["a", "b"])
    with pytest.raises(ValueError, match="bias has dtype"):
        lin.load_state_dict(state)
    np.testing.assert_array_equal(lin.weight.numpy(), before)  # nothing changed
    state["bias"] = np.zeros(2)
    lin.load_state_dict(state)
    np.testing.assert_array_equal(view, np.full((2, 3), 7.0))  # copied into the same array
