"""SGD against hand-computed trajectories, schedules against their formulas, and the
Optimizer interface's guarantees (validation, finite checks, checkpoints)."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.optim import SGD, schedules


def quadratic_grad(A, b, w):
    """d/dw of 0.5 w^T A w - b^T w."""
    return A @ w - b


def run_sgd(steps=5, **kw):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((3, 3))
    A, b = M @ M.T + np.eye(3), rng.standard_normal(3)
    w0 = rng.standard_normal(3)
    w = mg.tensor(w0.copy(), requires_grad=True)
    opt = SGD([w], **kw)
    At, bt = mg.tensor(A), mg.tensor(b)
    path = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (w @ (At @ w)) - bt @ w).backward()
        opt.step()
        path.append(w.numpy().copy())
    return A, b, w0, path


@pytest.mark.parametrize("kw", [
    dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.5, weight_decay=0.01, dampening=0.2), dict(lr=0.1, weight_decay=0.1),
], ids=["plain", "momentum", "nesterov", "decay+dampening", "weight-decay"])
def test_sgd_trajectory_equals_the_framework_formulas(kw):
    A, b, w, path = run_sgd(**kw)
    lr, mom = kw["lr"], kw.get("momentum", 0.0)
    wd, damp, nest = kw.get("weight_decay", 0.0), kw.get("dampening", 0.0), kw.get("nesterov", False)
    buf = None
    for k in range(len(path)):
        g = quadratic_grad(A, b, w) + wd * w
        if mom:
            buf = g.copy() if buf is None else mom * buf + (1 - damp) * g
            g = g + mom * buf if nest else buf
        w = w - lr * g
        np.testing.assert_allclose(path[k], w, rtol=1e-13, atol=1e-14)


def test_sgd_with_a_closure_and_an_lr_schedule():
    w = mg.tensor(np.array([3.0]), requires_grad=True)
    opt = SGD([w], lr=schedules.step_decay(0.5, step_size=2, gamma=0.1))
    expected = 3.0
    for k in range(4):
        loss = opt.step(lambda: (w * w).sum())
        lr = 0.5 * 0.1 ** (k // 2)
        assert opt.info["lr"] == pytest.approx(lr)
        assert loss.item() == pytest.approx(expected ** 2)
        expected -= lr * 2 * expected
        np.testing.assert_allclose(w.numpy(), [expected], rtol=1e-14)


@pytest.mark.parametrize("kw, match", [
    (dict(lr=-0.1), "lr must be in"), (dict(lr=0.1, momentum=1.0), "momentum must be in"),
    (dict(lr=0.1, weight_decay=-1), "weight_decay"), (dict(lr=float("nan")), "lr must be a finite"),
    (dict(lr=0.1, nesterov=True), "nesterov needs momentum"),
])
def test_invalid_hyperparameters_name_the_parameter(kw, match):
    with pytest.raises(ValueError, match=match):
        SGD([mg.tensor([1.0], requires_grad=True)], **kw)


def test_a_non_finite_gradient_or_loss_never_reaches_the_parameters():
    w = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.9)
    (w * mg.tensor([np.nan, 1.0])).sum().backward()
    with pytest.raises(FloatingPointError, match="SGD step 1: non-finite gradient"):
        opt.step()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert opt.steps == 0 and not opt.state[0]
    with pytest.raises(FloatingPointError, match="non-finite loss nan"):
        opt.step(lambda: (w * np.nan).sum())
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])


def test_state_dict_resumes_bit_for_bit():
    def make():
        w = mg.tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True)
        return w, SGD([w], lr=0.05, momentum=0.9, nesterov=True)

    def steps(w, opt, n):
        for _ in range(n):
            opt.step(lambda: ((w ** 4).sum() + (w * w).sum()))

    w1, o1 = make()
    steps(w1, o1, 6)
    w2, o2 = make()
    steps(w2, o2, 3)
    saved, params = o2.state_dict(), w2.numpy().copy()
    w3, o3 = make()
    w3.data = params
    o3.load_state_dict(saved)
    steps(w3, o3, 3)
    np.testing.assert_array_equal(w3.numpy(), w1.numpy())
    assert o3.steps == 6


def test_schedules_follow_their_formulas():
    cos = schedules.cosine(1.0, total_steps=10, min_lr=0.1)
    assert cos(0) == pytest.approx(1.0) and cos(10) == pytest.approx(0.1) and cos(20) == pytest.approx(0.1)
    assert cos(5) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    warm = schedules.linear_warmup(schedules.constant(0.4), warmup_steps=4)
    assert [warm(k) for k in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])
    assert schedules.scaled_lr(0.1, 128, 1024) == pytest.approx(0.8)
    assert schedules.scaled_lr(0.1, 128, 512, rule="sqrt") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rule must be"):
        schedules.scaled_lr(0.1, 128, 512, rule="cubic")
    with pytest.raises(ValueError, match="step_size"):
        schedules.step_decay(0.1, step_size=0)


def test_closures_may_return_loss_and_outputs_and_schedules_want_whole_steps():
    w = mg.tensor(np.array([1.0]), requires_grad=True)
    opt = SGD([w], lr=0.25)
    opt.step(lambda: [(w * w).sum(), w * 2.0])  # (loss, outputs) as a list, as TRCG/KFAC accept
    np.testing.assert_allclose(w.numpy(), [0.5])
    with pytest.raises(ValueError, match="step_size must be a whole number"):
        schedules.step_decay(1.0, 2.5)


def test_a_checkpoint_with_invalid_hyperparameters_is_refused():
    w = mg.tensor(np.array([1.0]), requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.9)
    saved = opt.state_dict()
    saved["hyperparameters"]["momentum"] = 1.5
    with pytest.raises(ValueError, match="SGD.load_state_dict: momentum must be in"):
        opt.load_state_dict(saved)
    assert opt.momentum == 0.9
