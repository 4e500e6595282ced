"""The errors a user sees from the ops: a ValueError/TypeError that names the op and the shapes
or values involved (docs/design.md, "Errors and files")."""
import re

import numpy as np
import pytest

import minigrad as mg


def t(shape, requires_grad=False):
    return mg.tensor(np.ones(shape), requires_grad=requires_grad)


def names(op, *things):
    """A check that the message names `op` (as a word) and every shape or value in `things`."""
    def check(msg):
        assert re.search(rf"(?<![\w.]){re.escape(op)}\b", msg), f"{op!r} not named in: {msg}"
        for x in things:
            assert str(x) in msg, f"{x!r} not named in: {msg}"
    return check


# ------------------------------------------------------------------ shape mismatches
BROADCAST_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "maximum": mg.maximum,
    "minimum": mg.minimum,
    "where": lambda a, b: mg.where(np.ones(a.shape, dtype=bool), a, b),
}


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("op", sorted(BROADCAST_OPS))
def test_broadcast_mismatch_names_op_and_both_shapes(op, requires_grad):
    with pytest.raises(ValueError) as info:
        BROADCAST_OPS[op](t((2, 3), requires_grad), t((4,)))
    names(op, (2, 3), (4,))(str(info.value))


@pytest.mark.parametrize("a, b", [
    ((2, 3), (4, 5)),          # 2-D
    ((3,), (4,)),              # 1-D @ 1-D
    ((3,), (4, 2)),            # 1-D @ 2-D
    ((2, 3), (4,)),            # 2-D @ 1-D
    ((2, 2, 3), (2, 4, 2)),    # batched, inner axes
    ((2, 3, 4), (5, 4, 2)),    # batched, batch axes do not broadcast
    ((), (2, 3)),              # a 0-d operand
])
def test_matmul_mismatch_names_op_and_both_shapes(a, b):
    with pytest.raises(ValueError) as info:
        t(a, True) @ t(b)
    names("matmul", a, b)(str(info.value))


@pytest.mark.parametrize("a, b", [((2, 3), (2, 4)), ((2, 3), (3,)), ((2, 3), (2, 3, 1))])
def test_concatenate_mismatch_names_op_and_both_shapes(a, b):
    with pytest.raises(ValueError) as info:
        mg.concatenate([t(a, True), t(b)], axis=0)
    names("concatenate", a, b)(str(info.value))


@pytest.mark.parametrize("a, b", [((2, 3), (3, 2)), ((2, 3), (2, 3, 1)), ((3,), ())])
def test_stack_mismatch_names_op_and_both_shapes(a, b):
    with pytest.raises(ValueError) as info:
        mg.stack([t(a, True), t(b)])
    names("stack", a, b)(str(info.value))


@pytest.mark.parametrize("new", [(4,), (4, -1), (-1, -1), (7, 0), (2, -2)])
def test_reshape_mismatch_names_op_and_both_shapes(new):
    with pytest.raises(ValueError) as info:
        t((2, 3), True).reshape(*new)
    names("reshape", (2, 3), new)(str(info.value))


def test_broadcast_to_mismatch_names_op_and_both_shapes():
    with pytest.raises(ValueError) as info:
        mg.broadcast_to(t((2, 3)), (4, 3))
    names("broadcast_to", (2, 3), (4, 3))(str(info.value))


# ------------------------------------------------------------------ out-of-range axes
X = t((2, 3))
AXIS_ERRORS = [
    pytest.param("sum", lambda: mg.sum(X, axis=2), id="sum"),
    pytest.param("sum", lambda: X.sum(axis=(0, -3)), id="sum-method-tuple"),
    pytest.param("mean", lambda: mg.mean(X, axis=-3), id="mean"),
    pytest.param("max", lambda: X.max(axis=2), id="max"),
    pytest.param("min", lambda: mg.min(X, axis=5), id="min"),
    pytest.param("var", lambda: mg.var(X, axis=-3), id="var"),
    pytest.param("logsumexp", lambda: mg.logsumexp(X, axis=2), id="logsumexp"),
    pytest.param("concatenate", lambda: mg.concatenate([X, X], axis=2), id="concatenate"),
    pytest.param("unsqueeze", lambda: mg.unsqueeze(X, 3), id="unsqueeze"),
    pytest.param("unsqueeze", lambda: X.unsqueeze(-4), id="unsqueeze-negative"),
    pytest.param("stack", lambda: mg.stack([X, X], axis=3), id="stack"),
    pytest.param("squeeze", lambda: mg.squeeze(t((1, 3)), 2), id="squeeze"),
    pytest.param("squeeze", lambda: mg.squeeze(t(()), 0), id="squeeze-0d"),
    pytest.param("flatten", lambda: mg.flatten(t((2, 3, 4)), 5), id="flatten"),
    pytest.param("permute", lambda: mg.permute(X, 1, 2), id="permute"),
    pytest.param("transpose", lambda: X.transpose(1, 2), id="transpose"),
    pytest.param("swapaxes", lambda: mg.swapaxes(X, 0, 2), id="swapaxes"),
]


@pytest.mark.parametrize("op, call", AXIS_ERRORS)
def test_out_of_range_axis_names_the_op(op, call):
    with pytest.raises(ValueError) as info:
        call()
    names(op)(str(info.value))


def test_repeated_axis_names_the_op():
    with pytest.raises(ValueError) as info:
        mg.sum(X, axis=(0, -2))
    names("sum", "repeated")(str(info.value))


def test_non_integer_axis_is_a_type_error_that_names_the_op():
    with pytest.raises(TypeError) as info:
        mg.sum(X, axis=1.0)
    names("sum")(str(info.value))


# -------------------------------------------------------------------- dtypes and values
@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1, 2, 3], requires_grad=True),
    lambda: mg.tensor(np.arange(3, dtype=np.int32), requires_grad=True),
    lambda: mg.tensor([True, False], requires_grad=True),
    lambda: mg.tensor([1, 2]).requires_grad_(),
    lambda: mg.arange(4).requires_grad_(True),
], ids=["list-int64", "int32", "bool", "requires_grad_", "arange"])
def test_integer_tensors_cannot_require_grad(make):
    with pytest.raises(TypeError) as info:
        make()
    msg = str(info.value)
    assert "float" in msg and re.search(r"int32|int64|bool", msg), msg


def test_integer_op_results_do_not_require_grad():
    # An integer result made from a float input carries no graph either (comparisons).
    x = t((2, 3), True)
    assert not (x > 0.5).requires_grad


@pytest.mark.parametrize("call", [lambda x: mg.clip(x, 1.0, 0.0), lambda x: x.clip(1.0, 0.0)],
                         ids=["fn", "method"])
def test_clip_lo_greater_than_hi(call):
    with pytest.raises(ValueError) as info:
        call(t((2, 3), True))
    names("clip", "1.0", "0.0")(str(info.value))


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="clip"):
        mg.clip(X)


@pytest.mark.parametrize("width", [-1, (1, -2), ((0, 1), (-2, 0))])
def test_pad_negative_width(width):
    with pytest.raises(ValueError) as info:
        mg.pad(t((2, 3), True), width)
    names("pad", (2, 3))(str(info.value))


# -------------------------------------------------------------------- other user errors
@pytest.mark.parametrize("call, op, things", [
    (lambda: X[5], "getitem", [(2, 3)]),
    (lambda: X[[0, 7]], "getitem", [(2, 3)]),
    (lambda: X[np.ones(3, dtype=bool)], "getitem", [(2, 3)]),
    (lambda: mg.squeeze(X, 0), "squeeze", [(2, 3)]),
    (lambda: X.permute(0), "permute", [(2, 3)]),
    (lambda: mg.softplus(X, beta=0.0), "softplus", []),
    (lambda: mg.max(t((0,))), "max", [(0,)]),
    (lambda: mg.mean(t((0, 2)), axis=0), "mean", [(0, 2)]),
    (lambda: mg.var(t((1, 3)), axis=0, ddof=1), "var", ["ddof=1"]),
    (lambda: mg.concatenate([]), "concatenate", []),
    (lambda: mg.stack([]), "stack", []),
    (lambda: mg.flatten(t((2, 3, 4)), 2, 1), "flatten", [(2, 3, 4)]),
], ids=["getitem-int", "getitem-array", "getitem-mask", "squeeze-size", "permute-length", "softplus-beta",
        "max-empty", "mean-empty", "var-ddof", "concatenate-none", "stack-none", "flatten-order"])
def test_other_value_errors_name_the_op(call, op, things):
    with pytest.raises(ValueError) as info:
        call()
    names(op, *things)(str(info.value))


def test_reshape_with_non_integer_shape_is_a_type_error():
    with pytest.raises(TypeError) as info:
        X.reshape(2.0, 3)
    names("reshape")(str(info.value))
