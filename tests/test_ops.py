"""Every op of the table (tests/op_table.py) at every shape: the forward against NumPy in float64
and float32, the gradient dtype and shape, and first and second derivatives by gradcheck /
gradgradcheck. Then the checks that gradcheck itself is not vacuous."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.elementwise import const
from minigrad.testing import GradcheckError, gradcheck, gradgradcheck

try:
    from op_table import NONZERO, OPS, Op, cases, make_inputs
except ImportError:  # tests/ became a package
    from tests.op_table import NONZERO, OPS, Op, cases, make_inputs

CASES = cases()


def tensors(arrays, dtype=None, requires_grad=True):
    """Tensors for one case: float inputs (cast to `dtype`) require grad; bool inputs are constants."""
    out = []
    for a in arrays:
        if a.dtype == bool:
            out.append(mg.tensor(a))
        else:
            out.append(mg.tensor(a if dtype is None else a.astype(dtype), requires_grad=requires_grad))
    return out


# ------------------------------------------------------------------------ the op matrix
@pytest.mark.parametrize("op, shapes", CASES)
def test_forward_matches_numpy_float64(op, shapes):
    arrays = make_inputs(op, shapes)
    out = op.fn(*tensors(arrays))
    expected = np.asarray(op.ref(*arrays))
    assert isinstance(out, mg.Tensor)
    assert out.shape == expected.shape
    assert out.dtype == np.float64
    assert out.requires_grad
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op, shapes", CASES)
def test_forward_float32_stays_float32(op, shapes):
    """float32 inputs (with any Python numbers the entry mixes in) give a float32 output."""
    arrays = [a if a.dtype == bool else a.astype(np.float32) for a in make_inputs(op, shapes)]
    out = op.fn(*tensors(arrays, requires_grad=False))
    assert out.dtype == np.float32
    assert not out.requires_grad
    expected = np.asarray(op.ref(*[a if a.dtype == bool else a.astype(np.float64) for a in arrays]))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op, shapes", CASES)
def test_gradient_float32_has_input_shape_and_dtype(op, shapes):
    ts = tensors(make_inputs(op, shapes), dtype=np.float32)
    out = op.fn(*ts)
    w = mg.tensor(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32))
    wanted = [t for t in ts if t.requires_grad]
    grads = mg.grad((out * w).sum(), wanted, allow_unused=True)
    for t, g in zip(wanted, grads):
        if g is not None:
            assert g.shape == t.shape
            assert g.dtype == np.float32


@pytest.mark.parametrize("op, shapes", CASES)
def test_gradcheck(op, shapes):
    assert gradcheck(op.fn, tensors(make_inputs(op, shapes)))


@pytest.mark.parametrize("op, shapes", CASES)
def test_gradgradcheck(op, shapes):
    assert gradgradcheck(op.fn, tensors(make_inputs(op, shapes)))


# ---------------------------------------------------------------------- the table itself
EVERY_OP = """add sub mul div neg pos pow pow_scalar matmul exp log sqrt abs tanh sigmoid relu
leaky_relu softplus maximum minimum where clip sum mean max min var logsumexp reshape transpose
permute swapaxes broadcast_to squeeze unsqueeze flatten concatenate stack getitem pad""".split()


def test_table_covers_every_op():
    names = {op.name.split(":")[0] for op in OPS}
    assert set(EVERY_OP) <= names, set(EVERY_OP) - names
    assert len({op.name for op in OPS}) == len(OPS), "duplicate entry names"


def test_table_inputs_respect_domains_and_are_distinct():
    op = Op("probe", None, None, (((5, 6), (30,)),), (NONZERO,))
    a, b = make_inputs(op, op.shapes[0])
    values = np.concatenate([a.ravel(), b.ravel()])
    assert np.all(np.abs(values) >= 0.3) and np.all(np.abs(values) <= 2.01)
    gaps = np.diff(np.sort(values))
    assert gaps.min() > 0.005  # no ties for max/min, far above gradcheck's eps
    again = make_inputs(op, op.shapes[0])
    np.testing.assert_array_equal(a, again[0])  # reproducible


# -------------------------------------------------- small things outside the table
def test_reductions_accept_numpy_integer_axis():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(x.sum(axis=np.int64(1)).numpy(), [3.0, 12.0])


def test_sigmoid_keeps_relative_precision_in_the_left_tail():
    x = np.array([-40.0, -30.0, -16.0, -5.0, 0.0, 5.0])
    expected = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(mg.sigmoid(mg.tensor(x)).numpy(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(mg.log(mg.sigmoid(mg.tensor(x))).numpy(), np.log(expected), rtol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(mg.sigmoid(mg.tensor(x32)).numpy(), expected, rtol=1e-5, atol=0)


def test_getitem_repeated_indices_scatter_add():
    x = mg.tensor(np.arange(4.0), requires_grad=True)
    (g,) = mg.grad((x[[1, 1, 3, 1]] * mg.tensor([1.0, 10.0, 100.0, 1000.0], dtype=np.float64)).sum(), x)
    np.testing.assert_array_equal(g.numpy(), [0.0, 1011.0, 0.0, 100.0])


def test_max_splits_gradient_evenly_on_ties():
    # Outside the table (which avoids ties): the documented convention at a tie.
    x = mg.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    (g,) = mg.grad(x.max(), x)
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.5, 0.5, 0.0])
    a = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = mg.tensor(np.array([1.0, 0.0]), requires_grad=True)
    ga, gb = mg.grad(mg.maximum(a, b).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), [0.5, 1.0])
    np.testing.assert_array_equal(gb.numpy(), [0.5, 0.0])


# ------------------------------------------------------------ gradcheck is not vacuous
class WrongSquare(mg.Function):
    """x^2 with the factor 2 forgotten in backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_inputs(0)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * x,)


class MulWrongSecond(mg.Function):
    """a * b whose gradient for b is wrong (g b instead of g a)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_inputs(0, 1)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * b


class ScaleWrongEntry(mg.Function):
    """3 x, with the derivative of one element off by 0.1: only the entry-wise check sees where."""

    @staticmethod
    def forward(ctx, x):
        return 3.0 * x

    @staticmethod
    def backward(ctx, g):
        w = np.full(g.shape, 3.0)
        w[1] = 3.1
        return (g * const(w),)


class RawCube(mg.Function):
    """x^3 whose backward is right in value but computed on raw arrays: cut off the tape."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_inputs(0)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0].data
        return (g * const(3.0 * x ** 2),)


class Cube(mg.Function):
    """x^3 done right: backward in Tensor ops."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_inputs(0)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * x * x * 3.0,)


def _x(values):
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def _reported(msg, label):
    m = re.search(label + r"\s+(-?[0-9.eE+-]+)", msg)
    assert m, msg
    return float(m.group(1))


def test_correct_custom_function_passes_both_checks():
    x = _x([0.5, -1.2, 2.0])
    assert gradcheck(Cube.apply, [x])
    assert gradgradcheck(Cube.apply, [x])


@pytest.mark.parametrize("mode", ["auto", "random", "full"])
def test_gradcheck_catches_a_wrong_backward(mode):
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongSquare.apply, [_x([0.5, -1.2, 2.0])], mode=mode)
    msg = str(info.value)
    assert "input 0" in msg and "analytic" in msg and "numeric" in msg


def test_gradcheck_report_shows_analytic_and_numeric_values():
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongSquare.apply, [_x([1.5])], directions=0, mode="full")
    msg = str(info.value)
    assert "input 0" in msg and "x[(0,)]" in msg
    assert _reported(msg, "analytic") == pytest.approx(1.5)   # g x
    assert _reported(msg, "numeric") == pytest.approx(3.0, rel=1e-6)  # 2 x


def test_gradcheck_names_the_wrong_input():
    a, b = _x([[0.5, -1.0], [1.5, 2.0]]), _x([[1.0, 0.3], [-0.7, 1.1]])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(MulWrongSecond.apply, [a, b])
    # the index is the position among all inputs, also when input 0 is a constant
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(MulWrongSecond.apply, [a.detach(), b])
    # and the right gradient for input 0 alone passes
    assert gradcheck(MulWrongSecond.apply, [a, b.detach()])


def test_full_jacobian_mode_locates_the_wrong_entry():
    with pytest.raises(GradcheckError) as info:
        gradcheck(ScaleWrongEntry.apply, [_x([0.2, 0.4, 0.6])], directions=0)
    msg = str(info.value)
    assert "d out[1] / d x[(1,)]" in msg
    assert _reported(msg, "analytic") == pytest.approx(3.1)
    assert _reported(msg, "numeric") == pytest.approx(3.0, rel=1e-6)


def test_gradgradcheck_catches_a_backward_on_raw_arrays():
    x = _x([0.5, -1.2, 2.0])
    assert gradcheck(RawCube.apply, [x])  # first order is right
    with pytest.raises(GradcheckError) as info:
        gradgradcheck(RawCube.apply, [x])
    msg = str(info.value)
    assert "second derivative" in msg and "input 0" in msg
    assert "analytic" in msg and "numeric" in msg
