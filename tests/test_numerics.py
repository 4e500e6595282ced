"""Derivatives at the edges of their domains, and the gradient-check tools' own guards."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import GradcheckError, gradcheck, gradgradcheck


def t64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def test_powers_at_zero_take_the_limits():
    x = t64([0.0, 2.0])
    (g,) = mg.grad((x ** 0).sum(), x)
    np.testing.assert_array_equal(g.data, [0.0, 0.0])
    a, b = t64([0.0, 0.0, 2.0]), t64([2.0, 0.0, 3.0])
    ga, gb = mg.grad((a ** b).sum(), [a, b], create_graph=True)
    np.testing.assert_allclose(ga.data, [0.0, 0.0, 12.0])        # b a^(b-1); 0 where b = 0
    np.testing.assert_allclose(gb.data, [0.0, 0.0, 8 * np.log(2)])  # a^b log a; 0 where a = 0
    haa, hab = mg.grad(ga.sum(), [a, b])
    assert np.isfinite(haa.data).all() and np.isfinite(hab.data).all()
    np.testing.assert_allclose(haa.data[2], 3 * 2 * 2.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")
def test_double_where_from_the_docstring_is_finite():
    x = t64([-1.0, 4.0])
    naive = mg.where(x.data > 0, mg.sqrt(x), 0.0)
    (g,) = mg.grad(naive.sum(), x)
    assert np.isnan(g.data[0])  # the documented trap
    safe = mg.where(x.data > 0, mg.sqrt(mg.where(x.data > 0, x, 1.0)), 0.0)
    (g,) = mg.grad(safe.sum(), x)
    np.testing.assert_allclose(g.data, [0.0, 0.25])


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")
def test_logsumexp_and_softmax_with_minus_infinity():
    x = t64([[0.0, -np.inf], [-np.inf, -np.inf]])
    out = mg.logsumexp(x, axis=1)
    np.testing.assert_array_equal(out.data, [0.0, -np.inf])
    p = F.softmax(mg.tensor(np.array([[1.0, -np.inf]])), axis=1)
    np.testing.assert_array_equal(p.data, [[1.0, 0.0]])
    with pytest.raises(ValueError, match="logsumexp: the tensor of shape \\(0,\\) is empty"):
        mg.logsumexp(mg.tensor(np.zeros(0)))


def test_cross_entropy_of_an_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="cross_entropy: the batch is empty"):
        F.cross_entropy(mg.tensor(np.zeros((0, 3))), np.zeros(0, np.int64))


# ------------------------------------------------------------- the checkers' own guards
class Cut(mg.Function):
    """2x, then cut off the tape by the caller: nothing to differentiate twice."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return (g * 2.0,)


def test_gradgradcheck_refuses_an_output_cut_off_the_tape():
    with pytest.raises(GradcheckError, match="no output of <lambda> requires grad"):
        gradgradcheck(lambda x: Cut.apply(x).detach(), [t64([1.0, 2.0])])


def test_gradcheck_needs_something_to_check_and_names_function_applies():
    x = t64(np.ones(200))
    with pytest.raises(ValueError, match="would check nothing"):
        gradcheck(lambda x: x * 2.0, [x], directions=0, mode="random")

    class Wrong(mg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return (g * 3.0,)

    with pytest.raises(GradcheckError, match="of Wrong.apply is wrong for input 0"):
        gradcheck(Wrong.apply, [t64([1.0])])


def test_gradgradcheck_names_the_output_gradient_it_differentiates_in():
    class DetachesU(mg.Function):
        """y = 2x with the right vjp 2u, computed off the tape in u: its derivative in u is lost."""

        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return (g.detach() * 2.0,)

    assert gradcheck(DetachesU.apply, [t64([1.0, 2.0])])
    with pytest.raises(GradcheckError, match="wrong for grad_output 0"):
        gradgradcheck(DetachesU.apply, [t64([1.0, 2.0])])
