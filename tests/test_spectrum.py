"""minigrad.curvature.spectrum against the exact spectrum of dense float64 Hessians: eigenvalues
(Lanczos and power iteration), Hutchinson's trace, stochastic Lanczos quadrature."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.curvature import HessianOperator, density, eigenvalues, lanczos, trace


def mlp_hessian(loss="cross_entropy", weight_decay=0.0, seed=0):
    """The Hessian operator of a 3-4-3 tanh MLP (31 params) on 10 examples, float64."""
    rng = np.random.default_rng(seed)
    X = mg.tensor(rng.standard_normal((10, 3)))
    params = [mg.tensor(rng.standard_normal(s) * 0.7, requires_grad=True) for s in [(4, 3), (4,), (3, 4), (3,)]]
    out = F.linear(F.linear(X, params[0], params[1]).tanh(), params[2], params[3])
    value = F.cross_entropy(out, rng.integers(0, 3, 10)) if loss == "cross_entropy" \
        else F.mse_loss(out, mg.tensor(rng.standard_normal((10, 3))))
    if weight_decay:
        value = value + 0.5 * weight_decay * sum((p * p).sum() for p in params)
    return HessianOperator(value, params)


def quadratic(eigs, seed=0):
    """0.5 x^T A x with A = Q diag(eigs) Q^T: its Hessian operator is A, with known spectrum."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigs), len(eigs))))
    A = Q @ np.diag(eigs) @ Q.T
    x = mg.tensor(rng.standard_normal(len(eigs)), requires_grad=True)
    return HessianOperator(0.5 * (x @ mg.tensor(A) @ x), [x]), A, Q


@pytest.fixture(scope="module")
def hessian():
    op = mlp_hessian()
    return op, op.dense()


def expected(H, k, which):
    lam = np.linalg.eigvalsh(H)
    return {"LA": lam[::-1], "SA": lam, "LM": lam[np.argsort(-abs(lam))]}[which][:k]


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_eigenvalues_match_the_dense_spectrum(hessian, which):
    op, H = hessian
    got = eigenvalues(op, k=3, which=which)
    np.testing.assert_allclose(got, expected(H, 3, which), rtol=1e-6)
    np.testing.assert_array_equal(eigenvalues(op, k=3, which=which), got)  # seeded: reproducible


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_power_iteration_eigenvalues(which):
    eigs = np.array([4.0, 2.5, 1.2, 0.5, -0.3, -1.5, -3.0, 0.1])
    op, A, _ = quadratic(eigs, seed=1)
    got = eigenvalues(op, k=3, which=which, method="power", maxiter=2000)
    np.testing.assert_allclose(got, expected(A, 3, which), rtol=1e-6)


def test_power_iteration_on_a_network_hessian(hessian):
    op, H = hessian
    np.testing.assert_allclose(eigenvalues(op, k=1, method="power", maxiter=3000),
                               expected(H, 1, "LA"), rtol=1e-6)


def test_hutchinson_trace_and_its_standard_error():
    op = mlp_hessian("mse", weight_decay=1.0, seed=2)  # weight decay: the trace is far from 0
    H = op.dense()
    exact = np.trace(H)
    estimate, std = trace(op, samples=1000, return_std=True)
    assert abs(estimate - exact) < 0.05 * abs(exact)
    # Rademacher probes: Var(z^T H z) = 2 (|H|_F^2 - sum_i H_ii^2).
    predicted = np.sqrt(2 * ((H ** 2).sum() - (np.diag(H) ** 2).sum()) / 1000)
    assert 0.8 * predicted < std < 1.25 * predicted
    assert abs(estimate - exact) < 4 * predicted
    assert trace(op, samples=20, seed=1) == trace(op, samples=20, seed=1)  # seeded
    assert np.isnan(trace(op, samples=1, return_std=True)[1])


def test_slq_density_integrates_to_one_and_reproduces_the_moments(hessian):
    op, H = hessian
    n, probes = op.shape[0], 20
    slq = density(op, probes=probes, steps=10, seed=3)
    area = np.sum((slq.density[1:] + slq.density[:-1]) / 2 * np.diff(slq.grid))  # trapezoid rule
    assert abs(area - 1) < 1e-3
    assert all(abs(w.sum() - 1) < 1e-12 for w in slq.weights)
    # The first moment is Hutchinson's estimate with the same probes, which are exact moments
    # z^T H^p z / n for p <= 2 steps - 1; their mean is tr(H^p)/n up to the probe noise.
    rng = np.random.default_rng(3)
    Z = np.stack([rng.integers(0, 2, n) * 2.0 - 1 for _ in range(probes)])
    for p in (1, 2, 3):
        Hp = np.linalg.matrix_power(H, p)
        per_probe = np.einsum("si,ij,sj->s", Z, Hp, Z) / n
        np.testing.assert_allclose(slq.moment(p), per_probe.mean(), rtol=1e-10)
        noise = np.sqrt(2 * ((Hp ** 2).sum() - (np.diag(Hp) ** 2).sum()) / probes) / n
        assert abs(slq.moment(p) - np.trace(Hp) / n) < 4 * noise
    assert trace(op, samples=probes, seed=3) / n == pytest.approx(slq.moment(1), rel=1e-12)


def test_slq_with_n_steps_recovers_a_known_spectrum():
    eigs = np.array([3.0, 2.0, 1.0, 0.5, -0.25, -1.0, 0.05])
    op, A, Q = quadratic(eigs, seed=4)
    slq = density(op, probes=2, steps=len(eigs), seed=5)
    for theta, tau in zip(slq.nodes, slq.weights):
        np.testing.assert_allclose(theta, np.sort(eigs), rtol=1e-10, atol=1e-12)
        assert np.all(tau > 0)
    # The weights are the squared components of the unit probe along the eigenvectors.
    z = np.random.default_rng(5).integers(0, 2, len(eigs)) * 2.0 - 1
    order = np.argsort(eigs)
    np.testing.assert_allclose(slq.weights[0], (Q.T @ z / np.linalg.norm(z))[order] ** 2, rtol=1e-8)
    peaks = slq.grid[np.argmax(slq.density)]
    assert np.min(abs(peaks - eigs)) < 0.02


def test_lanczos_basis_is_orthonormal_and_tridiagonalizes(hessian):
    op, H = hessian
    v = np.random.default_rng(6).standard_normal(op.shape[0])
    result = lanczos(op, v, 15)
    Q = result.basis
    assert Q.shape == (15, op.shape[0]) and len(result.alphas) == 15 and len(result.betas) == 14
    np.testing.assert_allclose(Q @ Q.T, np.eye(15), atol=1e-12)
    np.testing.assert_allclose(Q[0], v / np.linalg.norm(v), rtol=1e-14)
    np.testing.assert_allclose(Q @ H @ Q.T, result.tridiagonal(), atol=1e-10)


def test_lanczos_stops_on_an_invariant_subspace():
    op, A, Q = quadratic(np.array([2.0, 1.0, -1.0, 0.5, 3.0]), seed=7)
    v = Q[:, 0] + Q[:, 1]  # lies in a 2-dimensional invariant subspace
    result = lanczos(op, v, 5)
    assert result.basis.shape[0] == 2
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(result.tridiagonal())), [1.0, 2.0], rtol=1e-12)


def test_bad_arguments_are_value_errors(hessian):
    op, _ = hessian
    with pytest.raises(ValueError, match=r"eigenvalues: k must be < n = 31"):
        eigenvalues(op, k=31)
    with pytest.raises(ValueError, match=r"eigenvalues: k must be an integer >= 1, got 0"):
        eigenvalues(op, k=0)
    with pytest.raises(ValueError, match=r"eigenvalues: which must be one of"):
        eigenvalues(op, which="BE")
    with pytest.raises(ValueError, match=r"trace: samples must be an integer >= 1, got 0"):
        trace(op, samples=0)
    with pytest.raises(ValueError, match=r"density: steps must be <= n = 31, got 32"):
        density(op, steps=32)
    with pytest.raises(ValueError, match=r"density: probes must be an integer >= 1"):
        density(op, probes=0)
    with pytest.raises(ValueError, match=r"lanczos: v must have 31 elements, got 3"):
        lanczos(op, np.ones(3), 2)


def test_power_iteration_warns_when_it_does_not_converge():
    op, _, _ = quadratic(np.array([1.0, 0.99, 0.5]), seed=8)
    with pytest.warns(RuntimeWarning, match="power iteration did not reach"):
        eigenvalues(op, k=1, method="power", maxiter=3)


def test_lanczos_eigenvalues_are_the_same_bit_for_bit_for_a_seed():
    """A rank-5 operator asked for 8 eigenvalues: Lanczos runs into invariant subspaces and ARPACK
    restarts from random vectors, which must come from the seed, not from a fresh generator
    (scipy >= 1.15), so that the products and the eigenvalues repeat exactly."""
    eigs = np.r_[np.arange(1.0, 6.0), np.zeros(55)]
    runs = []
    for _ in range(2):
        H, _, _ = quadratic(eigs)
        runs.append((eigenvalues(H, k=8, seed=3), H.calls))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] > 8
    np.testing.assert_allclose(runs[0][0][:5], [5, 4, 3, 2, 1], atol=1e-10)
