"""Loss landscapes: the loss on a line or a plane through a solution, or between two solutions.

A neural net's loss is a function on millions of dimensions; a landscape looks at it on a
1-D or 2-D slice through a point theta* (a checkpoint):

    f(a)    = L(theta* + a d1)                  (a line)
    f(a, b) = L(theta* + a d1 + b d2)           (a plane)

with random Gaussian directions d1, d2, or on the straight line between two solutions
(Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network optimization
problems", ICLR 2015, who use a in [-0.5, 1.5]):

    theta(a) = (1 - a) theta_A + a theta_B,     theta(0) = theta_A, theta(1) = theta_B.

Filter normalization (Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of
Neural Nets", NeurIPS 2018). A ReLU net is invariant to rescaling a filter by c > 0 and its
next layer's weights by 1/c, so the same function sits at very different weight scales; a
raw Gaussian step of length a is then large for a layer of small weights and negligible for
one of large weights, and "sharpness" read off such plots says more about the weight scale
than about the minimum. Li et al. rescale every filter of the direction to the norm of the
same filter of the weights,

    d_{l,i} <- d_{l,i} / ||d_{l,i}|| * ||theta_{l,i}||,

a filter being row i of a Linear weight (out, in) or output channel i of a Conv2d weight
(out, in, kh, kw): index i of the first axis. Then a = 1 moves every filter by its own norm,
and plots of differently scaled nets can be compared. Parameters with ndim <= 1 (biases,
BatchNorm's weight and bias) get a zero direction ("biasbn", as in the paper's experiments);
with ignore=None each of their entries is a filter of its own:
d_i <- d_i / |d_i| * |theta_i| = sign(d_i) |theta_i| (Li et al.'s code copies theta instead).
normalization="layer" rescales whole tensors, d_l <- d_l / ||d_l|| * ||theta_l||;
normalization=None keeps the raw Gaussian.

Evaluation sets the model's parameters to each grid point in turn, calls `loss_fn(model)`
(which returns the loss, or (loss, accuracy)), and puts the model's own parameter arrays,
buffers and train/eval flags back afterwards, however it ends (try/finally): the parameters
come back bit for bit, because the grid points are new arrays and the originals are never
written to.
"""
from contextlib import contextmanager

import numpy as np

from ..backend import device_of, to_device, xp_of
from ..random import generator
from ..tensor import Tensor

NORMALIZATIONS = ("filter", "layer", None)
IGNORES = ("biasbn", None)


def _array(x):
    """The backend array of a Tensor, or x itself."""
    return x.data if isinstance(x, Tensor) else x


def _norm(xp, a):
    return xp.sqrt(xp.sum(a * a))


def _check_choice(where, name, value, choices):
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")


def normalize_direction(direction, weights, normalization="filter", ignore="biasbn"):
    """The direction (a list of arrays shaped like `weights`) rescaled as the module docstring
    says; returns new arrays in the weights' dtype and device.

    filter: d_{l,i} <- d_{l,i} ||theta_{l,i}|| / ||d_{l,i}||, i over the first axis;
    layer:  d_l <- d_l ||theta_l|| / ||d_l||;  None: unchanged.
    ignore="biasbn": parameters with ndim <= 1 get d = 0.
    A zero filter of d stays zero (nothing to rescale).
    """
    _check_choice("normalize_direction", "normalization", normalization, NORMALIZATIONS)
    _check_choice("normalize_direction", "ignore", ignore, IGNORES)
    direction, weights = list(direction), list(weights)
    if len(direction) != len(weights):
        raise ValueError(f"normalize_direction: {len(direction)} direction arrays for "
                         f"{len(weights)} weight arrays")
    out = []
    for k, (d, w) in enumerate(zip(direction, weights)):
        w = _array(w)
        xp = xp_of(w)
        d = xp.asarray(to_device(_array(d), device_of(w)))
        if d.shape != w.shape:
            raise ValueError(f"normalize_direction: direction[{k}] has shape {d.shape}, "
                             f"weights[{k}] {w.shape}")
        # float64 for the norms: a float32 net's filters still get their norms to ~1e-7
        d64, w64 = d.astype(np.float64), w.astype(np.float64)
        if w.ndim <= 1 and ignore == "biasbn":
            d64 = xp.zeros_like(d64)
        elif normalization == "layer":
            scale = _norm(xp, w64) / _norm(xp, d64)
            d64 = d64 * (scale if xp.isfinite(scale) else 0.0)
        elif normalization == "filter":
            rows_d = d64.reshape(len(d64), -1) if d64.ndim else d64.reshape(1, 1)
            rows_w = w64.reshape(len(w64), -1) if w64.ndim else w64.reshape(1, 1)
            nd = xp.sqrt(xp.sum(rows_d * rows_d, axis=1, keepdims=True))
            nw = xp.sqrt(xp.sum(rows_w * rows_w, axis=1, keepdims=True))
            safe = xp.where(nd > 0, nd, 1.0)   # a zero filter of d stays zero
            d64 = (rows_d * (nw / safe)).reshape(d64.shape)
        out.append(d64.astype(w.dtype))
    return out


def random_direction(model, rng=None, normalization="filter", ignore="biasbn"):
    """A random direction in parameter space: a list of arrays shaped like
    `model.parameters()`, Gaussian N(0, 1) entries drawn from `rng` (an int seed or a
    Generator) in parameter order, then normalize_direction(normalization, ignore).

    Every parameter gets its draw even when it is then zeroed, so a seed gives the same
    weight directions whatever `ignore` says; two models of the same architecture get the
    same Gaussian draws (each rescaled to its own weights)."""
    _check_choice("random_direction", "normalization", normalization, NORMALIZATIONS)
    _check_choice("random_direction", "ignore", ignore, IGNORES)
    rng = generator(rng)
    params = model.parameters()
    raw = [rng.standard_normal(p.shape) for p in params]
    return normalize_direction(raw, [p.data for p in params], normalization, ignore)


def current_parameters(model):
    """Copies of the model's parameter arrays, in model.parameters() order (a center)."""
    return [p.data.copy() for p in model.parameters()]


def symmetric_coordinates(span, resolution):
    """`resolution` (odd, >= 3) points from -span to span with 0 among them:
    a_k = k span / m, k = -m..m, m = (resolution - 1) / 2; a_{-k} = -a_k exactly."""
    resolution = int(resolution)
    if resolution < 3 or resolution % 2 == 0:
        raise ValueError(f"symmetric_coordinates: resolution must be odd and >= 3 so that 0 is "
                         f"on the grid, got {resolution}")
    if not span > 0:
        raise ValueError(f"symmetric_coordinates: span must be > 0, got {span!r}")
    m = (resolution - 1) // 2
    return np.arange(-m, m + 1, dtype=np.float64) * (float(span) / m)


def between_coordinates(span, resolution):
    """Coordinates for the line between two solutions: `resolution` (>= 2) points from 0 to 1
    (both included, spacing h = 1 / (resolution - 1)), continued at the same spacing for
    round(span / h) points beyond each end: a_k = k / (resolution - 1). So 0 and 1 are exactly
    on the grid and the span is rounded to a multiple of h (span 0.5, resolution 21: 41
    points from -0.5 to 1.5, as in Goodfellow et al.)."""
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"between_coordinates: resolution must be >= 2, got {resolution}")
    if not span >= 0:
        raise ValueError(f"between_coordinates: span must be >= 0, got {span!r}")
    n = resolution - 1
    extra = round(float(span) * n)
    return np.arange(-extra, n + extra + 1, dtype=np.float64) / n


@contextmanager
def parameters_restored(model):
    """Inside the block the model's parameters may be rebound to other arrays, its buffers
    (BatchNorm's running statistics) changed and its modes switched; on exit, however the
    block ends, every parameter gets its own array object back (never written to, so bit for
    bit), every buffer its saved values (in place), every module its train/eval flag."""
    params = model.parameters()
    arrays = [p.data for p in params]
    buffers = [(m, name, b, b.copy()) for m in model.modules() for name, b in m._buffers.items()
               if b is not None]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield params
    finally:
        for p, a in zip(params, arrays):
            p.data = a
        for m, name, b, saved in buffers:
            b[...] = saved
            m._buffers[name] = b
        for m, flag in modes:
            object.__setattr__(m, "training", flag)


def _split(result):
    """loss_fn's (loss, accuracy) or loss as two floats (accuracy None if not given)."""
    if isinstance(result, tuple):
        loss, acc = result
    else:
        loss, acc = result, None
    loss = float(loss.item() if hasattr(loss, "item") else loss)
    return loss, (None if acc is None else float(acc))


def _check_like(where, what, arrays, params):
    arrays = [_array(a) for a in arrays]
    if len(arrays) != len(params):
        raise ValueError(f"{where}: {what} has {len(arrays)} arrays, the model "
                         f"{len(params)} parameters")
    for k, (a, p) in enumerate(zip(arrays, params)):
        if tuple(a.shape) != tuple(p.shape):
            raise ValueError(f"{where}: {what}[{k}] has shape {tuple(a.shape)}, parameter {k} "
                             f"{tuple(p.shape)}")
    return [to_device(a, p.device) for a, p in zip(arrays, params)]


def evaluate_points(model, loss_fn, points, shape, callback=None):
    """(loss, accuracy) arrays of `shape` (float64; accuracy None if loss_fn gives none):
    entry k (in C order) is loss_fn(model) with the parameters set to the k-th item of the
    iterable `points` (each a list of arrays shaped like the parameters, cast to their
    dtype). callback(done, total) after each point. The model is restored afterwards
    (parameters_restored), also when loss_fn raises."""
    total = int(np.prod(shape))
    losses = np.full(total, np.nan)
    accuracies = np.full(total, np.nan)
    have_accuracy = False
    with parameters_restored(model) as params:
        done = 0
        for point in points:
            if done == total:
                raise ValueError(f"evaluate_points: more points than the {total} of shape {shape}")
            for p, value in zip(params, point):
                # a copy: a loss_fn that writes into p.data must not reach the caller's arrays
                p.data = xp_of(p.data).array(value, dtype=p.dtype, copy=True)
            losses[done], acc = _split(loss_fn(model))
            if acc is not None:
                accuracies[done], have_accuracy = acc, True
            done += 1
            if callback is not None:
                callback(done, total)
    if done != total:
        raise ValueError(f"evaluate_points: {done} points for a grid of shape {shape}")
    return losses.reshape(shape), (accuracies.reshape(shape) if have_accuracy else None)


def evaluate_grid(model, loss_fn, center, directions, coordinates, callback=None):
    """The loss on a line or a plane through `center`:

        1-D: loss[i]    = L(center + x[i] d1)
        2-D: loss[i, j] = L(center + x[i] d1 + y[j] d2)

    directions: [d1] or [d1, d2] (lists of arrays shaped like the parameters);
    coordinates: [x] or [x, y] (1-D arrays), one per direction. L is `loss_fn(model)`, the
    loss or (loss, accuracy). Returns (loss, accuracy) float64 arrays of shape (len(x),) or
    (len(x), len(y)); accuracy is None if loss_fn returns only a loss. A coordinate 0 gives
    exactly `center`. The model's parameters are restored afterwards, also on error."""
    params = model.parameters()
    directions = list(directions)
    coordinates = [np.asarray(c, dtype=np.float64).reshape(-1) for c in coordinates]
    if len(directions) not in (1, 2) or len(coordinates) != len(directions):
        raise ValueError(f"evaluate_grid: expected 1 or 2 directions with as many coordinate "
                         f"arrays, got {len(directions)} directions and {len(coordinates)} "
                         f"coordinate arrays")
    center = _check_like("evaluate_grid", "center", center, params)
    directions = [_check_like("evaluate_grid", f"directions[{k}]", d, params)
                  for k, d in enumerate(directions)]

    def points():
        if len(directions) == 1:
            for a in coordinates[0]:
                yield [c + a * d if a else c for c, d in zip(center, directions[0])]
            return
        for a in coordinates[0]:
            for b in coordinates[1]:
                yield [c + (a * d1 if a else 0) + (b * d2 if b else 0)
                       for c, d1, d2 in zip(center, *directions)]

    shape = tuple(len(c) for c in coordinates)
    return evaluate_points(model, loss_fn, points(), shape, callback)


def interpolate(model, loss_fn, theta_a, theta_b, coordinates, callback=None):
    """The loss on the line through two solutions,

        loss[i] = L((1 - a_i) theta_a + a_i theta_b),

    so a = 0 is theta_a and a = 1 is theta_b exactly; a < 0 and a > 1 extrapolate beyond
    them (between_coordinates makes a grid that contains 0 and 1). Returns (loss, accuracy)
    as evaluate_grid does; the model's parameters are restored afterwards, also on error."""
    params = model.parameters()
    theta_a = _check_like("interpolate", "theta_a", theta_a, params)
    theta_b = _check_like("interpolate", "theta_b", theta_b, params)
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1)

    def points():
        for a in coordinates:
            yield [(1 - a) * ta + a * tb for ta, tb in zip(theta_a, theta_b)]

    return evaluate_points(model, loss_fn, points(), (len(coordinates),), callback)


def direction_norms(directions):
    """||d_p|| of every array of one direction (float64, host)."""
    out = []
    for d in directions:
        d = _array(d)
        out.append(float(_norm(xp_of(d), d.astype(np.float64))))
    return np.array(out, dtype=np.float64)


def cosine(d1, d2):
    """<d1, d2> / (||d1|| ||d2||) over all parameters (nan if either is zero); random
    directions in many dimensions are nearly orthogonal, which is why a plane through two
    of them is a fair 2-D picture."""
    dot = n1 = n2 = 0.0
    for a, b in zip(d1, d2):
        a = np.asarray(to_device(_array(a), "cpu"), dtype=np.float64)
        b = np.asarray(to_device(_array(b), "cpu"), dtype=np.float64)
        dot, n1, n2 = dot + float(np.sum(a * b)), n1 + float(np.sum(a * a)), n2 + float(np.sum(b * b))
    return dot / np.sqrt(n1 * n2) if n1 > 0 and n2 > 0 else float("nan")
