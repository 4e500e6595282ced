"""TRCG / STRCG and the Steihaug-Toint CG solver, in float64 against exact references:
dense linear algebra for the subproblem, scipy's trust-ncg for logistic regression."""
import numpy as np
import pytest
from minigrad.optim.steihaug import steihaug_cg
from minigrad.optim.trust_region import STRCG, TRCG

import minigrad as mg
import minigrad.functional as F


# ------------------------------------------------------------------------ Steihaug-Toint CG
def spd(rng, n, cond=10.0):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def model(H, g, s):
    return g @ s + 0.5 * s @ H @ s


@pytest.mark.parametrize("seed", range(5))
def test_newton_step_inside_a_large_radius(seed):
    rng = np.random.default_rng(seed)
    H, g = spd(rng, 8), rng.standard_normal(8)
    newton = -np.linalg.solve(H, g)
    got = steihaug_cg(lambda x: H @ x, g, radius=1e3 * np.linalg.norm(newton), tol=1e-12)
    assert got.reason == "converged"
    np.testing.assert_allclose(got.step, newton, rtol=1e-9, atol=1e-12)
    assert got.model_value == pytest.approx(model(H, g, got.step), rel=1e-10)
    # a matrix works as well as a function
    np.testing.assert_allclose(steihaug_cg(H, g, 1e6, tol=1e-12).step, newton, rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_small_radius_lands_on_the_boundary(seed):
    rng = np.random.default_rng(seed)
    H, g = spd(rng, 8), rng.standard_normal(8)
    radius = 0.1 * np.linalg.norm(np.linalg.solve(H, g))
    got = steihaug_cg(H, g, radius)
    assert got.reason == "boundary"
    assert np.linalg.norm(got.step) == pytest.approx(radius, rel=1e-12)
    assert model(H, g, got.step) < 0


def test_negative_curvature_is_followed_to_the_boundary():
    H = np.diag([2.0, -1.0, 3.0])
    g = np.array([0.0, 1e-3, 0.0])   # the first CG direction -g is a negative-curvature one
    got = steihaug_cg(H, g, radius=2.5)
    assert got.reason == "negative_curvature" and got.iterations == 1
    np.testing.assert_allclose(got.step, [0.0, -2.5, 0.0], atol=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(5):   # random indefinite problems: on the boundary, with decrease
        q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
        H = (q * np.array([-3.0, -0.5, 0.5, 1.0, 2.0, 4.0])) @ q.T
        g = rng.standard_normal(6)
        got = steihaug_cg(H, g, radius=1.7)
        assert got.reason in ("negative_curvature", "boundary")
        assert np.linalg.norm(got.step) == pytest.approx(1.7, rel=1e-12)
        assert model(H, g, got.step) < 0


def test_never_increases_the_model():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 12))
        a = rng.standard_normal((n, n))
        H = (a + a.T) / 2 if trial % 2 else a @ a.T     # indefinite / PSD
        g = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 2)
        radius = 10.0 ** rng.uniform(-3, 3)
        got = steihaug_cg(H, g, radius, tol=1e-9, max_iters=int(rng.integers(1, 2 * n + 2)))
        assert np.linalg.norm(got.step) <= radius * (1 + 1e-12)
        assert model(H, g, got.step) <= 1e-14 * max(1.0, abs(got.model_value))
        assert got.model_value == pytest.approx(model(H, g, got.step), rel=1e-8, abs=1e-14)
    assert steihaug_cg(np.eye(3), np.zeros(3), 1.0).step.tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------ Rosenbrock
def rosenbrock_problem(start=(-1.2, 1.0)):
    x = mg.tensor(np.array(start, dtype=np.float64), requires_grad=True)

    def closure(indices=None):
        return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    return x, closure


def test_trcg_converges_on_rosenbrock():
    x, closure = rosenbrock_problem()
    opt = TRCG([x], hessian_fraction=1.0)
    for _ in range(100):
        opt.step(closure)
        if float(closure().item()) < 1e-20:
            break
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-9)
    assert opt.steps < 60


# ------------------------------------------------------------------- logistic regression
N, D, LAM = 200, 5, 1e-2


@pytest.fixture(scope="module")
def logistic():
    """L(w) = mean_i softplus(-y_i x_i^T w) + LAM/2 |w|^2, y in {-1, 1}, and scipy's minimum."""
    from scipy.optimize import minimize
    rng = np.random.default_rng(42)
    X = rng.standard_normal((N, D))
    y = np.where(X @ rng.standard_normal(D) + 0.5 * rng.standard_normal(N) > 0, 1.0, -1.0)

    def f(w):
        return np.logaddexp(0, -y * (X @ w)).mean() + LAM / 2 * w @ w

    def jac(w):
        return X.T @ (-y / (1 + np.exp(y * (X @ w)))) / N + LAM * w

    def hess(w):
        p = 1 / (1 + np.exp(-X @ w))
        return (X.T * (p * (1 - p))) @ X / N + LAM * np.eye(D)
    best = minimize(f, np.zeros(D), method="trust-ncg", jac=jac, hess=hess,
                    options={"gtol": 1e-12})
    return X, y, best.fun


def logistic_closure(X, y, w):
    def closure(indices=None):
        xs, ys = (X, y) if indices is None else (X[indices], y[indices])
        return F.softplus(-mg.tensor(ys) * (mg.tensor(xs) @ w)).mean() + LAM / 2 * (w * w).sum()
    return closure


def loss_at(X, y, w):
    return np.logaddexp(0, -y * (X @ w)).mean() + LAM / 2 * w @ w


def test_trcg_matches_scipy_trust_ncg(logistic):
    X, y, best = logistic
    w = mg.tensor(np.zeros(D), requires_grad=True)
    opt = TRCG([w], hessian_fraction=1.0)
    closure = logistic_closure(X, y, w)
    for _ in range(15):
        opt.step(closure, batch_size=N)
    assert loss_at(X, y, w.data) == pytest.approx(best, abs=1e-8)
    # converged: steps below rounding are taken without shrinking the radius
    assert opt.info["accepted"] and opt.info["cg_stop"] == "converged" and opt.radius == 20.0


def test_strcg_with_sub_sampled_hessian(logistic):
    """Full batch (200 rows) for gradient and ratio test, curvature on 10% of it (20 rows) drawn
    afresh each step, 30 steps: within 1e-3 of scipy's minimum. Then the stochastic setting, 60
    steps on fresh mini-batches of 100 rows (curvature on 10 of them): each step moves towards
    its own mini-batch's minimum, so the loss stalls at a noise floor (about 4e-3 above the
    minimum here) rather than converging; we check only that it gets within 1e-2."""
    X, y, best = logistic
    w = mg.tensor(np.zeros(D), requires_grad=True)
    opt = STRCG([w], hessian_fraction=0.1, seed=3)
    closure = logistic_closure(X, y, w)
    for _ in range(30):
        opt.step(closure, batch_size=N)
        assert opt.info["curvature_samples"] == 20
    assert loss_at(X, y, w.data) == pytest.approx(best, abs=1e-3)

    w2 = mg.tensor(np.zeros(D), requires_grad=True)
    opt = STRCG([w2], hessian_fraction=0.1, seed=4)
    rows = np.random.default_rng(5)
    for _ in range(60):
        batch = rows.choice(N, size=100, replace=False)
        opt.step(logistic_closure(X[batch], y[batch], w2), batch_size=100)
        assert opt.info["curvature_samples"] == 10
    assert loss_at(X, y, w2.data) == pytest.approx(best, abs=1e-2)


def test_ggn_curvature_on_least_squares():
    """For a linear model with MSE the Gauss-Newton matrix is the Hessian: one Newton step."""
    rng = np.random.default_rng(7)
    A, b = rng.standard_normal((40, 4)), rng.standard_normal(40)
    w = mg.tensor(np.zeros(4), requires_grad=True)

    def closure(indices=None):
        a, t = (A, b) if indices is None else (A[indices], b[indices])
        out = mg.tensor(a) @ w
        return F.mse_loss(out, mg.tensor(t)), out
    opt = TRCG([w], curvature="ggn", hessian_fraction=1.0, radius=100.0, max_radius=100.0)
    opt.step(closure, batch_size=40)
    np.testing.assert_allclose(w.data, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-9)
    with pytest.raises(ValueError, match="outputs"):
        TRCG([w], curvature="ggn").step(lambda indices=None: closure(indices)[0])


# ------------------------------------------------------------------------- the ratio test
def quartic_problem():
    """f(x) = -x^2 + x^4 at x = 0.1: negative curvature, so CG goes to the boundary, where the
    quartic term makes the step far worse than predicted for radius 5, 2.5 and 1.25."""
    x = mg.tensor(np.array([0.1]), requires_grad=True)

    def closure(indices=None):
        return (-(x * x) + x ** 4).sum()
    return x, closure


def test_rejection_halves_the_radius_and_keeps_the_parameters():
    x, closure = quartic_problem()
    opt = TRCG([x], radius=5.0, max_retries=0)
    loss = opt.step(closure)
    info = opt.info
    assert x.data.tolist() == [0.1]
    assert not info["accepted"] and info["rho"] < 0 and info["rejections"] == 1
    assert info["radius"] == 2.5 and opt.radius == 2.5 and info["step_radius"] == 5.0
    assert info["cg_stop"] == "negative_curvature" and info["cg_iterations"] == 1
    assert info["curvature_products"] == 1 and info["loss"] == pytest.approx(-0.0099)
    assert float(loss.item()) == pytest.approx(-0.0099)
    assert info["step_norm"] == pytest.approx(5.0)


def test_retries_then_accept_and_radius_updates():
    x, closure = quartic_problem()
    opt = TRCG([x], radius=5.0)
    opt.step(closure)
    info = opt.info
    # 5, 2.5, 1.25 rejected; 0.625 accepted with rho ~ 0.49 -> radius 1.2 * 0.625
    assert info["accepted"] and info["rejections"] == 3 and info["step_radius"] == 0.625
    assert 1e-4 <= info["rho"] < 0.8 and info["radius"] == pytest.approx(0.75)
    assert x.data[0] == pytest.approx(0.725)
    assert info["curvature_products"] == 4 and info["cg_iterations"] == 4
    # a very successful step doubles the radius, capped by max_radius
    y = mg.tensor(np.array([3.0, -1.0]), requires_grad=True)
    opt = TRCG([y], radius=1.0, max_radius=1.5, hessian_fraction=1.0)
    opt.step(lambda indices=None: (y * y).sum())
    assert opt.info["accepted"] and opt.info["rho"] == pytest.approx(1.0)
    assert opt.radius == 1.5 and opt.info["cg_stop"] == "boundary"


def test_non_finite_loss_raises_and_leaves_the_parameters():
    x, closure = rosenbrock_problem()
    opt = TRCG([x], hessian_fraction=1.0)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        opt.step(lambda indices=None: closure() * float("nan"))
    with np.errstate(divide="ignore", invalid="ignore"), \
            pytest.raises(FloatingPointError, match="non-finite gradient"):
        opt.step(lambda indices=None: closure() + mg.sqrt(x * 0.0).sum())   # d sqrt(0) = inf
    with pytest.raises(FloatingPointError, match="non-finite loss"):   # in the sub-sample only
        opt.hessian_fraction = 0.5
        opt.step(lambda indices=None: closure() * (1.0 if indices is None else float("nan")),
                 batch_size=4)
    assert x.data.tolist() == [-1.2, 1.0] and opt.steps == 0 and opt.radius == 5.0


def test_nan_at_trial_point_is_a_rejection():
    x = mg.tensor(np.array([1.0]), requires_grad=True)

    def closure(indices=None):
        loss = (x * x).sum()
        return loss if abs(x.data[0] - 1.0) < 1e-12 else loss * float("nan")
    opt = TRCG([x], max_retries=2)
    opt.step(closure)
    assert not opt.info["accepted"] and opt.info["rejections"] == 3
    assert x.data.tolist() == [1.0] and opt.radius == 5.0 / 8


@pytest.mark.parametrize("name, value", [
    ("radius", 0.0), ("radius", -1.0), ("max_radius", 1.0), ("hessian_fraction", 0.0),
    ("hessian_fraction", 1.5), ("cg_max_iters", 0), ("cg_tol", -1e-3), ("curvature", "fisher"),
    ("reject_below", -0.1), ("reject_below", 1.0), ("expand_above", 1e-5), ("max_retries", -1),
    ("radius", float("nan")), ("cg_max_iters", 2.5)])
def test_hyperparameter_validation(name, value):
    x = mg.tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match=name):
        TRCG([x], **{name: value})


def test_batch_size_validation():
    x, closure = rosenbrock_problem()
    with pytest.raises(ValueError, match="batch_size"):
        TRCG([x]).step(closure, batch_size=0)


def test_state_dict_resumes_bit_for_bit(logistic):
    X, y, _ = logistic

    def run(opt, w, steps):
        closure = logistic_closure(X, y, w)
        for _ in range(steps):
            opt.step(closure, batch_size=N)
    w = mg.tensor(np.zeros(D), requires_grad=True)
    opt = STRCG([w], hessian_fraction=0.1, seed=11, radius=0.5)
    run(opt, w, 2)
    saved, at = opt.state_dict(), w.data.copy()
    run(opt, w, 3)

    w2 = mg.tensor(at, requires_grad=True)
    opt2 = STRCG([w2], hessian_fraction=0.5, seed=99)
    opt2.load_state_dict(saved)
    assert opt2.radius == saved["hyperparameters"]["radius"] and opt2.hessian_fraction == 0.1
    run(opt2, w2, 3)
    assert np.array_equal(w.data, w2.data) and opt2.radius == opt.radius
    with pytest.raises(ValueError, match="STRCG"):
        TRCG([w2]).load_state_dict(saved)


def test_curvature_subsample_comes_from_the_seeded_generator(logistic):
    """closure(indices) gets sorted distinct rows, ceil(fraction * N) of them, the same for the
    same seed; hessian_fraction=1.0 draws nothing. A (loss, outputs) closure works for "hessian"."""
    X, y, _ = logistic

    def draws(seed, fraction, steps=3):
        w = mg.tensor(np.zeros(D), requires_grad=True)
        inner, seen = logistic_closure(X, y, w), []

        def closure(indices=None):
            if indices is not None:
                seen.append(np.asarray(indices).copy())
            return inner(indices), None
        opt = TRCG([w], hessian_fraction=fraction, seed=seed)
        for _ in range(steps):
            opt.step(closure, batch_size=N)
        return seen, opt
    first, opt = draws(5, 0.05)
    assert len(first) == 3 and all(len(i) == 10 for i in first)
    assert all(np.array_equal(np.unique(i), i) and 0 <= i[0] and i[-1] < N for i in first)
    assert not np.array_equal(first[0], first[1])
    again, _ = draws(5, 0.05)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    none, opt = draws(5, 1.0)
    assert none == [] and opt.info["curvature_samples"] == N


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_curvature_raises_instead_of_stalling():
    with pytest.raises(FloatingPointError, match="non-finite curvature"):
        steihaug_cg(lambda x: np.full_like(x, np.nan), np.ones(3), 1.0)
    w = mg.tensor(np.array([1e-300]), requires_grad=True)
    opt = TRCG([w], radius=1.0, hessian_fraction=1.0)
    with pytest.raises(FloatingPointError, match="TRCG step 1: steihaug_cg: non-finite curvature"):
        opt.step(lambda indices=None: mg.exp(w * 1e200).sum())  # H = 1e400: inf
    np.testing.assert_array_equal(w.numpy(), [1e-300])
