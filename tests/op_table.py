"""The per-op test table: one entry per op (and per way of reaching it), from which
tests/test_ops.py generates the whole test matrix, in the spirit of Chainer's FunctionTestCase.

An entry says
- `name`:    what the test ids show, `op:way` (way = op, method, fn, scalar, ...);
- `fn`:      the minigrad call under test: Tensors in (one per input), a Tensor out;
- `ref`:     the NumPy reference on float64 arrays, the same inputs in the same order;
- `shapes`:  the cases to try, each a tuple of input shapes (a bare shape such as (2, 3) or ()
             is the case of a one-input op): broadcasting pairs, size-1 axes, 0-d where it
             makes sense; keep every case under ~30 elements so the full-Jacobian mode of
             gradcheck stays cheap;
- `domains`: where each input's values come from (the last domain repeats), including the
             points to keep away from: kinks (relu, abs at 0), clip bounds, the pole of 1/x,
             positive domains for log/sqrt/pow.

All float values of one case are drawn distinct from each other (at least STEP/2 apart), so
max/min/maximum/minimum never meet a tie and every derivative checked is the ordinary two-sided
one (ties and kinks have their own conventions, tested by hand in test_ops.py). A BOOL input is a constant condition or mask: it is passed as a bool Tensor and never
differentiated.

To add an op: append entries to OPS (or a helper below) and every test follows.
"""
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.special

import minigrad as mg

STEP = 0.02  # grid spacing of the value draws; jitter is at most STEP/4


@dataclass(frozen=True)
class Domain:
    lo: float = -2.0
    hi: float = 2.0
    avoid: tuple = ()  # points every value keeps at least `margin` away from
    margin: float = 0.1
    kind: str = "float"  # "float", or "bool" for a constant condition / mask input


REAL = Domain()
SMALL = Domain(-1.5, 1.5)
POSITIVE = Domain(0.5, 2.0)  # log, sqrt, fractional and negative powers, the base of a ** b
NONZERO = Domain(-2.0, 2.0, avoid=(0.0,), margin=0.3)  # kinks at 0 (relu, abs) and the pole of 1/x
BOOL = Domain(kind="bool")


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable
    ref: Callable
    shapes: tuple
    domains: tuple = (REAL,)
    xfail: Optional[str] = None  # a known engine bug: the tests are expected to fail (strict)

    def __post_init__(self):
        # A case written as one shape, (2, 3) or (), is the case of a one-input op.
        norm = tuple(c if c and all(isinstance(s, tuple) for s in c) else (tuple(c),)
                     for c in self.shapes)
        object.__setattr__(self, "shapes", norm)

    def domain(self, i):
        return self.domains[min(i, len(self.domains) - 1)]


def _values(rng, domain, n, used):
    """n floats in [lo, hi], distinct from each other and from `used` (grid indices), off `avoid`."""
    ks = np.arange(int(np.ceil(domain.lo / STEP)), int(np.floor(domain.hi / STEP)) + 1)
    centers = ks * STEP
    ok = np.array([k not in used for k in ks], dtype=bool)
    for p in domain.avoid:
        ok &= np.abs(centers - p) >= domain.margin + STEP
    pool = np.flatnonzero(ok)
    if n > pool.size:
        raise ValueError(f"op_table: cannot draw {n} distinct values from {domain}")
    pick = rng.choice(pool, size=n, replace=False)
    used.update(int(k) for k in ks[pick])
    return centers[pick] + rng.uniform(-STEP / 4, STEP / 4, size=n)


def case_seed(op, shapes):
    return zlib.crc32(f"{op.name}|{shapes}".encode())


def make_inputs(op, shapes, seed=None):
    """float64 (and bool) NumPy arrays for one case of `op`, reproducible from its name and shapes."""
    rng = np.random.default_rng(case_seed(op, shapes) if seed is None else seed)
    used, arrays = set(), []
    for i, shape in enumerate(shapes):
        d = op.domain(i)
        if d.kind == "bool":
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(_values(rng, d, int(np.prod(shape, dtype=int)), used).reshape(shape))
    return arrays


def _family(base, ways, ref, shapes, domains=(REAL,), alt_shapes=1, xfail=None):
    """One entry per way of reaching an op; the first way gets every shape, the others the first
    `alt_shapes` (the ways share one implementation, so one shape each proves the wiring)."""
    return [Op(f"{base}:{label}", fn, ref, tuple(shapes if i == 0 else shapes[:alt_shapes]),
               tuple(domains), xfail)
            for i, (label, fn) in enumerate(ways.items())]


# --------------------------------------------------------------------------- shapes
UNARY = [((2, 3),), ((),), ((3, 1, 2),)]
BINARY = [
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),          # trailing-axis broadcast
    ((3, 1), (1, 4)),        # size-1 axes on both sides
    ((2, 1, 3), (4, 1)),     # different ndim and size-1 axes -> (2, 4, 3)
    ((), (2, 3)),            # 0-d with a matrix
    ((2, 3), ()),
    ((), ()),
]


def _lse(x, axis=None, keepdims=False):
    return np.asarray(scipy.special.logsumexp(x, axis=axis, keepdims=keepdims))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


OPS = []

# ------------------------------------------------------------------------- arithmetic
OPS += _family("add", {"op": lambda a, b: a + b, "fn": mg.add}, np.add, BINARY)
OPS += _family("sub", {"op": lambda a, b: a - b, "fn": mg.sub}, np.subtract, BINARY)
OPS += _family("mul", {"op": lambda a, b: a * b, "fn": mg.mul}, np.multiply, BINARY)
OPS += _family("div", {"op": lambda a, b: a / b, "fn": mg.div}, np.divide, BINARY, (REAL, NONZERO))
OPS += [  # a Python number on either side keeps the tensor's dtype
    Op("add:scalar", lambda x: x + 2.5, lambda x: x + 2.5, ((2, 3),)),
    Op("add:rscalar", lambda x: 2 + x, lambda x: 2 + x, ((2, 3),)),
    Op("sub:scalar", lambda x: x - 1.5, lambda x: x - 1.5, ((2, 3),)),
    Op("sub:rscalar", lambda x: 1.5 - x, lambda x: 1.5 - x, ((2, 3),)),
    Op("mul:scalar", lambda x: x * 3, lambda x: x * 3, ((2, 3),)),
    Op("mul:rscalar", lambda x: 0.5 * x, lambda x: 0.5 * x, ((2, 3),)),
    Op("div:scalar", lambda x: x / 4.0, lambda x: x / 4.0, ((2, 3),)),
    Op("div:rscalar", lambda x: 2.0 / x, lambda x: 2.0 / x, ((2, 3), ()), (NONZERO,)),
    Op("sub:bool", lambda x: x - True, lambda x: x - 1.0, ((3,),)),
]
OPS += _family("neg", {"op": lambda x: -x, "fn": mg.neg}, np.negative, UNARY)
OPS += [Op("pos:op", lambda x: +x, lambda x: +x, ((2, 3),))]

# tensor ** number: p = 1 and p = 2 take their own rules, the rest the general one.
OPS += [
    Op("pow_scalar:op(p=2)", lambda x: x ** 2, lambda x: x ** 2, UNARY),
    Op("pow_scalar:op(p=3)", lambda x: x ** 3, lambda x: x ** 3, UNARY),
    Op("pow_scalar:op(p=1)", lambda x: x ** 1, lambda x: x ** 1, ((2, 3),)),
    Op("pow_scalar:op(p=0)", lambda x: x ** 0, lambda x: x ** 0, ((2, 3),), (NONZERO,)),
    Op("pow_scalar:op(p=2.5)", lambda x: x ** 2.5, lambda x: x ** 2.5, UNARY, (POSITIVE,)),
    Op("pow_scalar:op(p=0.5)", lambda x: x ** 0.5, lambda x: x ** 0.5, ((2, 3),), (POSITIVE,)),
    Op("pow_scalar:op(p=-1.5)", lambda x: x ** -1.5, lambda x: x ** -1.5, ((2, 3),), (POSITIVE,)),
    Op("pow_scalar:op(p=-2)", lambda x: x ** -2, lambda x: x ** -2.0, ((2, 3),), (NONZERO,)),
    Op("pow_scalar:fn(p=3.0)", lambda x: mg.pow(x, 3.0), lambda x: x ** 3.0, ((2, 3),)),
]
# tensor ** tensor (base > 0 so that d/db = a^b log a exists), and number ** tensor.
OPS += _family("pow", {"op": lambda a, b: a ** b, "fn": mg.pow}, np.power, BINARY, (POSITIVE, SMALL))
OPS += [Op("pow:rscalar", lambda x: 2.0 ** x, lambda x: 2.0 ** x, UNARY)]

# ----------------------------------------------------------------------------- matmul
MATMUL = [
    ((2, 3), (3, 4)),              # 2-D
    ((2, 2, 3), (3, 2)),           # batched @ matrix
    ((2, 1, 2, 3), (3, 3, 2)),     # batch axes broadcast: (2, 1) with (3,) -> (2, 3)
    ((3,), (3, 4)),                # 1-D @ 2-D
    ((2, 3), (3,)),                # 2-D @ 1-D
    ((4,), (4,)),                  # 1-D @ 1-D -> 0-d
    ((3,), (2, 3, 2)),             # 1-D @ batched
    ((2, 2, 3), (3,)),             # batched @ 1-D
]
OPS += _family("matmul", {"op": lambda a, b: a @ b, "fn": mg.matmul,
                          "method": lambda a, b: a.matmul(b)},
               np.matmul, MATMUL, alt_shapes=2)
OPS += [Op("matmul:rop-list", lambda b: [[1.0, -2.0, 0.5]] @ b,  # list @ Tensor -> __rmatmul__
           lambda b: np.array([[1.0, -2.0, 0.5]]) @ b, (((3, 2),),))]

# ------------------------------------------------------------------------- math functions
OPS += _family("exp", {"fn": mg.exp, "method": lambda x: x.exp()}, np.exp, UNARY)
OPS += _family("log", {"fn": mg.log, "method": lambda x: x.log()}, np.log, UNARY,
               (Domain(0.3, 3.0),))
OPS += _family("sqrt", {"fn": mg.sqrt, "method": lambda x: x.sqrt()}, np.sqrt, UNARY,
               (Domain(0.3, 3.0),))
OPS += _family("abs", {"fn": mg.abs, "op": lambda x: abs(x), "method": lambda x: x.abs()},
               np.abs, UNARY, (NONZERO,))
OPS += _family("tanh", {"fn": mg.tanh, "method": lambda x: x.tanh()}, np.tanh, UNARY)
OPS += _family("sigmoid", {"fn": mg.sigmoid, "method": lambda x: x.sigmoid()}, _sigmoid,
               UNARY, (Domain(-4.0, 4.0),))
OPS += _family("relu", {"fn": mg.relu, "method": lambda x: x.relu()},
               lambda x: np.maximum(x, 0.0), UNARY, (NONZERO,))
OPS += _family("leaky_relu", {"fn": mg.leaky_relu, "method": lambda x: x.leaky_relu()},
               lambda x: np.where(x > 0, x, 0.01 * x), UNARY, (NONZERO,))
OPS += [Op("leaky_relu:fn(slope=0.2)", lambda x: mg.leaky_relu(x, negative_slope=0.2),
           lambda x: np.where(x > 0, x, 0.2 * x), ((2, 3),), (NONZERO,))]
OPS += _family("softplus", {"fn": mg.softplus, "method": lambda x: x.softplus()},
               lambda x: np.logaddexp(0.0, x), UNARY, (Domain(-4.0, 4.0),))
OPS += [Op("softplus:fn(beta=2)", lambda x: mg.softplus(x, beta=2.0),
           lambda x: np.logaddexp(0.0, 2.0 * x) / 2.0, ((2, 3),))]

# ------------------------------------------------------------- selections and clipping
OPS += _family("maximum", {"fn": mg.maximum, "method": lambda a, b: a.maximum(b)},
               np.maximum, BINARY)
OPS += _family("minimum", {"fn": mg.minimum, "method": lambda a, b: a.minimum(b)},
               np.minimum, BINARY)
OPS += [
    Op("maximum:scalar", lambda x: mg.maximum(x, 0.3), lambda x: np.maximum(x, 0.3), ((2, 3),),
       (Domain(avoid=(0.3,)),)),
    Op("minimum:rscalar", lambda x: mg.minimum(-0.2, x), lambda x: np.minimum(-0.2, x), ((2, 3),),
       (Domain(avoid=(-0.2,)),)),
]
WHERE = [  # (condition, a, b)
    ((2, 3), (2, 3), (2, 3)),
    ((2, 3), (3,), ()),            # a and b broadcast up to the condition
    ((2, 1), (1, 3), (2, 3)),
    ((2, 3), (3,), (1,)),          # the condition is larger than both branches
    ((), (2, 2), (2, 2)),          # a 0-d condition
]
OPS += _family("where", {"fn": mg.where}, np.where, WHERE, (BOOL, REAL))
OPS += [
    Op("where:scalar", lambda c, x: mg.where(c, x, 0.0), lambda c, x: np.where(c, x, 0.0),
       (((2, 3), (2, 3)),), (BOOL, REAL)),
    Op("where:compare", lambda x: mg.where(x > 0.0, x, x * x * 0.5),
       lambda x: np.where(x > 0, x, 0.5 * x * x), ((2, 3),), (NONZERO,)),
]
CLIP = Domain(avoid=(-0.5, 0.5))
OPS += _family("clip", {"fn": lambda x: mg.clip(x, -0.5, 0.5),
                        "method": lambda x: x.clip(-0.5, 0.5)},
               lambda x: np.clip(x, -0.5, 0.5), UNARY, (CLIP,))
OPS += [
    Op("clip:fn(lo only)", lambda x: mg.clip(x, lo=-0.5), lambda x: np.maximum(x, -0.5), ((2, 3),), (CLIP,)),
    Op("clip:fn(hi only)", lambda x: mg.clip(x, hi=0.5), lambda x: np.minimum(x, 0.5), ((2, 3),), (CLIP,)),
    Op("clip:fn(int bounds)", lambda x: mg.clip(x, -1, 1), lambda x: np.clip(x, -1, 1), ((2, 3),),
       (Domain(avoid=(-1.0, 1.0)),)),
]

# --------------------------------------------------------------------------- reductions
REDUCE_VARIANTS = [  # (axis, keepdims, shapes)
    (None, False, [((2, 3, 4),), ((),), ((3,),)]),
    (None, True, [((2, 3),)]),
    (0, False, [((2, 3, 4),), ((3,),)]),
    (-1, True, [((2, 3, 4),)]),
    (1, False, [((3, 1, 2),)]),     # reduce a size-1 axis
    ((0, 2), False, [((2, 3, 4),)]),
    ((-1, 0), True, [((2, 3, 4),)]),
]
REDUCTIONS = {
    "sum": (mg.sum, np.sum),
    "mean": (mg.mean, np.mean),
    "max": (mg.max, np.max),
    "min": (mg.min, np.min),
    "var": (mg.var, np.var),
    "logsumexp": (mg.logsumexp, _lse),
}


def _reduce(fn, axis, keepdims):
    return lambda x: fn(x, axis=axis, keepdims=keepdims)


def _reduce_ref(ref, axis, keepdims):
    return lambda x: np.asarray(ref(x, axis=axis, keepdims=keepdims))


for _name, (_fn, _ref) in REDUCTIONS.items():
    for _axis, _kd, _shapes in REDUCE_VARIANTS:
        OPS.append(Op(f"{_name}:fn(axis={_axis},keepdims={_kd})", _reduce(_fn, _axis, _kd),
                      _reduce_ref(_ref, _axis, _kd), tuple(_shapes)))
    OPS.append(Op(f"{_name}:method()", (lambda n: lambda x: getattr(x, n)())(_name),
                  _reduce_ref(_ref, None, False), ((2, 3),)))
    OPS.append(Op(f"{_name}:method(0)", (lambda n: lambda x: getattr(x, n)(0))(_name),
                  _reduce_ref(_ref, 0, False), ((2, 3),)))
    OPS.append(Op(f"{_name}:method(axis=-1,keepdims)",
                  (lambda n: lambda x: getattr(x, n)(axis=-1, keepdims=True))(_name),
                  _reduce_ref(_ref, -1, True), ((2, 3),)))
OPS += [
    Op("var:fn(axis=1,ddof=1)", lambda x: mg.var(x, axis=1, ddof=1),
       lambda x: np.var(x, axis=1, ddof=1), ((2, 3),)),
    Op("var:method(ddof=1)", lambda x: x.var(ddof=1), lambda x: np.asarray(np.var(x, ddof=1)), ((4,),)),
    Op("logsumexp:fn(large)", lambda x: mg.logsumexp(x * 200.0, axis=0),
       lambda x: _lse(x * 200.0, axis=0), ((3, 2),)),  # exp(400) overflows without the shift
]

# ------------------------------------------------------------------------ movement ops
OPS += [
    Op("reshape:method(3,2)", lambda x: x.reshape(3, 2), lambda x: x.reshape(3, 2), ((2, 3),)),
    Op("reshape:method((-1,2))", lambda x: x.reshape((-1, 2)), lambda x: x.reshape(-1, 2), ((2, 3),)),
    Op("reshape:fn(6)", lambda x: mg.reshape(x, 6), lambda x: x.reshape(6), ((2, 3),)),
    Op("reshape:fn(-1)", lambda x: mg.reshape(x, (-1,)), lambda x: x.reshape(-1), ((3, 1, 2),)),
    Op("reshape:fn(same shape)", lambda x: mg.reshape(x, (2, 3)), lambda x: x.reshape(2, 3), ((2, 3),)),
    Op("reshape:fn(0-d->(1,1))", lambda x: mg.reshape(x, (1, 1)), lambda x: x.reshape(1, 1), ((),)),
    Op("reshape:fn((1,1)->0-d)", lambda x: mg.reshape(x, ()), lambda x: x.reshape(()), ((1, 1),)),
    Op("transpose:.T", lambda x: x.T, lambda x: x.T, ((2, 3), (2, 3, 4), (3,), ())),
    Op("transpose:fn()", lambda x: mg.transpose(x), np.transpose, ((2, 3, 4),)),
    Op("transpose:fn(axes)", lambda x: mg.transpose(x, (1, 0, 2)), lambda x: np.transpose(x, (1, 0, 2)),
       ((2, 3, 4),)),
    Op("transpose:method(2,0,1)", lambda x: x.transpose(2, 0, 1), lambda x: x.transpose(2, 0, 1),
       ((2, 3, 4),)),
    Op("permute:method", lambda x: x.permute(2, 0, 1), lambda x: np.transpose(x, (2, 0, 1)), ((2, 3, 4),)),
    Op("permute:fn(negative axes)", lambda x: mg.permute(x, -1, 0, 1), lambda x: np.transpose(x, (2, 0, 1)),
       ((2, 1, 3),)),
    Op("swapaxes:method", lambda x: x.swapaxes(0, 2), lambda x: np.swapaxes(x, 0, 2), ((2, 3, 4),)),
    Op("swapaxes:fn(negative)", lambda x: mg.swapaxes(x, -1, 0), lambda x: np.swapaxes(x, -1, 0), ((2, 3),)),
    Op("broadcast_to:fn", lambda x: mg.broadcast_to(x, (2, 3)), lambda x: np.broadcast_to(x, (2, 3)),
       ((3,),)),
    Op("broadcast_to:fn(size-1 axes)", lambda x: mg.broadcast_to(x, (2, 3, 4)),
       lambda x: np.broadcast_to(x, (2, 3, 4)), ((3, 1),)),
    Op("broadcast_to:fn(0-d)", lambda x: mg.broadcast_to(x, (2, 3)), lambda x: np.broadcast_to(x, (2, 3)),
       ((),)),
    Op("broadcast_to:method", lambda x: x.broadcast_to((4, 1, 2)), lambda x: np.broadcast_to(x, (4, 1, 2)),
       ((1, 2),)),
    Op("squeeze:fn()", lambda x: mg.squeeze(x), np.squeeze, ((1, 3, 1),)),
    Op("squeeze:fn(0)", lambda x: mg.squeeze(x, 0), lambda x: np.squeeze(x, 0), ((1, 3, 1),)),
    Op("squeeze:fn(-1)", lambda x: mg.squeeze(x, -1), lambda x: np.squeeze(x, -1), ((1, 3, 1),)),
    Op("squeeze:method((0,2))", lambda x: x.squeeze((0, 2)), lambda x: np.squeeze(x, (0, 2)), ((1, 3, 1),)),
    Op("unsqueeze:fn(0)", lambda x: mg.unsqueeze(x, 0), lambda x: np.expand_dims(x, 0), ((2, 3), ())),
    Op("unsqueeze:fn(-1)", lambda x: mg.unsqueeze(x, -1), lambda x: np.expand_dims(x, -1), ((2, 3),)),
    Op("unsqueeze:method(1)", lambda x: x.unsqueeze(1), lambda x: np.expand_dims(x, 1), ((2, 3),)),
    Op("unsqueeze:expand_dims", lambda x: mg.expand_dims(x, 2), lambda x: np.expand_dims(x, 2), ((2, 3),)),
    Op("flatten:fn()", lambda x: mg.flatten(x), lambda x: x.reshape(-1), ((2, 3, 4),)),
    Op("flatten:fn(1)", lambda x: mg.flatten(x, 1), lambda x: x.reshape(2, -1), ((2, 3, 4),)),
    Op("flatten:fn(0,1)", lambda x: mg.flatten(x, 0, 1), lambda x: x.reshape(6, 4), ((2, 3, 4),)),
    Op("flatten:fn(0-d)", lambda x: mg.flatten(x), lambda x: x.reshape(1), ((),)),
    Op("flatten:method", lambda x: x.flatten(), lambda x: x.reshape(-1), ((3, 1, 2),)),
]
OPS += [
    Op("concatenate:fn(axis=0)", lambda *ts: mg.concatenate(ts, axis=0),
       lambda *xs: np.concatenate(xs, axis=0), (((2, 3), (1, 3)), ((2,), (3,)))),
    Op("concatenate:fn(axis=1, three)", lambda *ts: mg.concatenate(ts, axis=1),
       lambda *xs: np.concatenate(xs, axis=1), (((2, 3), (2, 2), (2, 1)),)),
    Op("concatenate:fn(axis=-1)", lambda *ts: mg.concatenate(list(ts), axis=-1),
       lambda *xs: np.concatenate(xs, axis=-1), (((2, 1, 2), (2, 1, 3)),)),
    Op("concatenate:fn(one)", lambda t: mg.concatenate([t]), lambda x: np.concatenate([x]), (((2, 3),),)),
    Op("stack:fn(axis=0)", lambda *ts: mg.stack(ts), lambda *xs: np.stack(xs),
       (((2, 3), (2, 3)), ((), ()), ((3,), (3,), (3,)))),
    Op("stack:fn(axis=1)", lambda *ts: mg.stack(ts, axis=1), lambda *xs: np.stack(xs, axis=1),
       (((2, 3), (2, 3)),)),
    Op("stack:fn(axis=-1)", lambda *ts: mg.stack(ts, axis=-1), lambda *xs: np.stack(xs, axis=-1),
       (((2, 3), (2, 3)),)),
]


# ----------------------------------------------------------------------------- indexing
def _index(name, index, shape):
    """x[index], reached through the operator; the NumPy reference indexes the same way."""
    def np_index(i):
        if isinstance(i, mg.Tensor):
            return i.numpy()
        if isinstance(i, tuple):
            return tuple(np_index(j) for j in i)
        return i
    return Op(f"getitem:{name}", lambda x: x[index], lambda x: np.asarray(x[np_index(index)]), ((shape,),))


MASK23 = np.array([[True, False, True], [False, True, True]])
OPS += [
    # basic: each element at most once
    _index("slice", np.s_[1:], (3, 2)),
    _index("negative step", np.s_[:, ::-1], (2, 3)),
    _index("negative step 2 + int", np.s_[::-2, 1], (4, 3)),
    _index("int", np.s_[-1], (2, 3)),
    _index("int int -> 0-d", np.s_[1, 2], (2, 3)),
    _index("ellipsis", np.s_[..., 0], (2, 3, 2)),
    _index("None and slice", np.s_[None, :, 1:3], (2, 3)),
    _index("int None ellipsis", np.s_[1, None, ...], (2, 3)),
    _index("0-d ()", (), ()),
    _index("0-d None", None, ()),
    # integer arrays: repeated indices must scatter-add in backward
    _index("int list repeated", [0, 0, 1], (2, 3)),
    _index("int array repeated", np.array([2, 0, 2, 2]), (4,)),
    _index("int pairs repeated", ([0, 1, 1, 0], [2, 2, 0, 2]), (2, 3)),
    _index("2-d int array", np.array([[0, 1], [1, 1]]), (2, 3)),
    _index("int Tensor", mg.tensor([1, 1, 0]), (3, 2)),
    _index("negative ints", np.array([-1, -1, 0]), (3,)),
    # boolean masks
    _index("bool mask full", MASK23, (2, 3)),
    _index("bool mask rows", np.array([True, False, True]), (3, 2)),
    _index("bool list", [False, True], (2, 3)),
    # mixed
    _index("ints + slice", np.s_[[0, 1, 1], 1:], (2, 3)),
    _index("slice + repeated ints", np.s_[1:, [0, 0, 2]], (3, 3)),
    _index("adjacent int arrays", np.s_[:, [0, 2], [1, 1]], (2, 3, 4)),
    _index("separated int arrays", np.s_[[0, 1], :, [1, 1]], (2, 3, 4)),
    _index("int + int array", np.s_[0, [0, 2, 0]], (2, 3, 4)),
    _index("ellipsis + int array", np.s_[..., [1, 1]], (2, 3)),
    _index("None + int array", np.s_[None, [0, 0]], (2, 3)),
    _index("mask + slice", np.s_[np.array([True, False, True]), ::-1], (3, 2)),
    Op("getitem:fn", lambda x: mg.getitem(x, (slice(None), [2, 2])), lambda x: x[:, [2, 2]], (((2, 3),),)),
    Op("getitem:mask from compare", lambda x: x[x > 0.0], lambda x: x[x > 0], (((2, 3),),), (NONZERO,)),
]

# ---------------------------------------------------------------------------------- pad
OPS += [
    Op("pad:method(1)", lambda x: x.pad(1), lambda x: np.pad(x, 1), ((2, 3),)),
    Op("pad:fn((1,2))", lambda x: mg.pad(x, (1, 2)), lambda x: np.pad(x, (1, 2)), ((2, 2), (3,))),
    Op("pad:fn(per axis)", lambda x: mg.pad(x, ((0, 1), (2, 0))), lambda x: np.pad(x, ((0, 1), (2, 0))),
       ((2, 3),)),
    Op("pad:fn(value)", lambda x: mg.pad(x, ((1, 1), (0, 0)), value=0.5),
       lambda x: np.pad(x, ((1, 1), (0, 0)), constant_values=0.5), ((2, 3),)),
    Op("pad:fn(one pair for all axes)", lambda x: mg.pad(x, ((1, 0),)), lambda x: np.pad(x, ((1, 0),)),
       ((2, 1, 2),)),
    Op("pad:fn(zero width)", lambda x: mg.pad(x, 0), lambda x: np.pad(x, 0), ((2, 3),)),
    Op("pad:fn(0-d)", lambda x: mg.pad(x, 1), lambda x: np.pad(x, 1), ((),)),
]

# ------------------------------------------------- one tensor reaching an op more than once
# The tape must add the gradients of every use (and of both operands of one op).
OPS += [
    Op("mul:x*x", lambda x: x * x, lambda x: x * x, ((2, 3),)),
    Op("matmul:x@x.T", lambda x: x @ x.T, lambda x: x @ x.T, ((2, 3),)),
    Op("div:x/(x*x+1)", lambda x: x / (x * x + 1.0), lambda x: x / (x * x + 1.0), ((2, 3),)),
    Op("concatenate:x twice", lambda x: mg.concatenate([x, x.exp()], axis=1),
       lambda x: np.concatenate([x, np.exp(x)], axis=1), ((2, 3),)),
    Op("getitem:two slices added", lambda x: x[0] * x[1] + x[:, 0].sum(),
       lambda x: x[0] * x[1] + x[:, 0].sum(), ((2, 3),)),
    Op("where:x both branches", lambda c, x: mg.where(c, x.tanh(), x * 2.0),
       lambda c, x: np.where(c, np.tanh(x), 2.0 * x), (((2, 3), (2, 3)),), (BOOL, REAL)),
]


def cases():
    """(op, shapes) pairs of the whole matrix, with readable ids."""
    import pytest

    out = []
    for op in OPS:
        for shapes in op.shapes:
            assert isinstance(shapes, tuple) and all(isinstance(s, tuple) for s in shapes), (op.name, shapes)
            sid = ",".join("x".join(map(str, s)) if s else "0d" for s in shapes)
            marks = [pytest.mark.xfail(strict=True, reason=op.xfail)] if op.xfail else []
            out.append(pytest.param(op, shapes, id=f"{op.name}-[{sid}]", marks=marks))
    return out
