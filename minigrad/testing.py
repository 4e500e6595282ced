"""Gradient checks: the analytic derivatives of an op against central differences, in float64.

`gradcheck(fn, inputs)` checks first derivatives: for output directions u and input
directions v it compares the analytic `u^T J v` (one vector-Jacobian product) with the
numerical `u^T (f(x + eps v) - f(x - eps v)) / (2 eps)`. For small inputs it also builds
the whole Jacobian both ways and compares it entry by entry.

`gradgradcheck(fn, inputs)` checks second derivatives by running `gradcheck` on the
vector-Jacobian product itself, `(x, u) -> u^T J(x)`, built with `create_graph=True`:
its derivative in x is the second derivative of fn, its derivative in u is J again.

Both return True or raise `GradcheckError` with a report naming the input, the index,
the analytic and numeric values and their absolute and relative errors.
"""
import numpy as np

from .autograd import grad
from .backend import to_device, xp_of
from .tensor import Tensor

FULL_JACOBIAN_LIMIT = 128  # inputs and outputs up to this many elements get the entry-wise check


class GradcheckError(AssertionError):
    """An analytic derivative disagrees with its finite-difference estimate."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _prepare(inputs):
    """float64 copies of the inputs, keeping each one's requires_grad."""
    out = []
    for x in _as_tuple(inputs):
        if not isinstance(x, Tensor):
            x = Tensor.wrap(x)
        data = x.data
        if data.dtype.kind == "f" and data.dtype != np.float64:
            data = data.astype(np.float64)
        out.append(Tensor(data.copy(), requires_grad=x.requires_grad))
    if not any(x.requires_grad for x in out):
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    return out


def _outputs(fn, inputs):
    outs = _as_tuple(fn(*inputs))
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: output {k} of fn is a {type(o).__name__}, not a Tensor")
        if o.dtype.kind != "f":
            raise TypeError(f"gradcheck: output {k} has dtype {o.dtype}; only float outputs can be checked")
    return outs


def _evaluate(fn, inputs, index, delta):
    """Flat float64 host values of all outputs at inputs[index] + delta."""
    shifted = [Tensor(x.data + delta if i == index else x.data, requires_grad=x.requires_grad)
               for i, x in enumerate(inputs)]
    return np.concatenate([np.asarray(to_device(o.data, "cpu"), dtype=np.float64).ravel()
                           for o in _outputs(fn, shifted)])


def _vjp(outs, inputs, wanted, flat_u):
    """Flat host arrays u^T J for each wanted input (zeros where an output does not reach it)."""
    xs = [inputs[i] for i in wanted]
    pairs, start = [], 0
    for o in outs:
        piece = flat_u[start:start + o.size].reshape(o.shape)
        start += o.size
        if o.requires_grad:
            pairs.append((o, Tensor(to_device(piece, o.device).astype(o.dtype))))
    if not pairs:
        grads = [None] * len(xs)
    else:
        grads = grad([p[0] for p in pairs], xs, grad_outputs=[p[1] for p in pairs],
                     retain_graph=True, allow_unused=True)
    return [np.zeros(x.size) if g is None else np.asarray(to_device(g.data, "cpu"), np.float64).ravel()
            for x, g in zip(xs, grads)]


def _name(fn):
    """A readable name: `Cube.apply` for a Function's apply, else the function's name."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{fn.__name__}"
    return getattr(fn, "__name__", repr(fn))


def _report(kind, fn_name, label, where, analytic, numeric, atol, rtol):
    err = abs(analytic - numeric)
    rel = err / max(abs(numeric), 1e-300)
    return (f"{kind} of {fn_name} is wrong for {label} {where}:\n"
            f"  analytic {analytic:.10g}\n  numeric  {numeric:.10g}\n"
            f"  abs error {err:.3g} (atol {atol:g}), rel error {rel:.3g} (rtol {rtol:g})")


def _close(a, n, atol, rtol):
    return abs(a - n) <= atol + rtol * abs(n)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, mode="auto", directions=3, seed=0,
              _kind="gradient", _labels=None):
    """Check the first derivatives of `fn` at `inputs` against central differences.

    fn: takes the inputs as Tensors, returns a Tensor or a tuple of Tensors.
    inputs: Tensors or arrays; those with requires_grad are checked (as float64 copies).
    mode: "random" (directional checks u^T J v only), "full" (entry-wise Jacobian too),
          or "auto" (full when every input and the output have <= 128 elements).
    Returns True, or raises GradcheckError.
    """
    if mode not in ("auto", "full", "random"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'random', got {mode!r}")
    if eps <= 0:
        raise ValueError(f"gradcheck: eps must be > 0, got {eps}")
    if not isinstance(directions, int) or directions < 0:
        raise ValueError(f"gradcheck: directions must be an int >= 0, got {directions!r}")
    inputs = _prepare(inputs)
    name = _name(fn)
    labels = _labels or [f"input {i}" for i in range(len(inputs))]
    outs = _outputs(fn, inputs)
    n_out = sum(o.size for o in outs)
    wanted = [i for i, x in enumerate(inputs) if x.requires_grad]
    rng = np.random.default_rng(seed)
    small = n_out <= FULL_JACOBIAN_LIMIT and all(inputs[i].size <= FULL_JACOBIAN_LIMIT for i in wanted)
    full = mode == "full" or (mode == "auto" and small)
    if directions == 0 and not full:
        raise ValueError("gradcheck: directions=0 without the full-Jacobian check would check nothing")

    # Directional checks: u^T J v, one direction v per input at a time.
    for _ in range(directions):
        u = rng.standard_normal(n_out)
        vjps = _vjp(outs, inputs, wanted, u)
        for i, vjp in zip(wanted, vjps):
            x = inputs[i]
            v = rng.standard_normal(x.size)
            dv = to_device(v.reshape(x.shape), x.device)
            numeric = u @ (_evaluate(fn, inputs, i, eps * dv) - _evaluate(fn, inputs, i, -eps * dv)) / (2 * eps)
            analytic = float(vjp @ v)
            if not _close(analytic, numeric, atol, rtol):
                raise GradcheckError(_report(f"directional {_kind} u^T J v", name, labels[i],
                                             f"(shape {x.shape}, random direction)",
                                             analytic, numeric, atol, rtol))

    if full:
        rows = [_vjp(outs, inputs, wanted, row) for row in np.eye(n_out)]
        for w, i in enumerate(wanted):
            x = inputs[i]
            analytic = np.stack([r[w] for r in rows]) if rows else np.zeros((0, x.size))
            for j in range(x.size):
                e = np.zeros(x.size)
                e[j] = eps
                de = to_device(e.reshape(x.shape), x.device)
                column = (_evaluate(fn, inputs, i, de) - _evaluate(fn, inputs, i, -de)) / (2 * eps)
                for k in range(n_out):
                    if not _close(analytic[k, j], column[k], atol, rtol):
                        idx = np.unravel_index(j, x.shape) if x.shape else ()
                        raise GradcheckError(_report(
                            f"Jacobian entry d out[{k}] / d x[{tuple(int(t) for t in idx)}] ({_kind})",
                            name, labels[i], f"(shape {x.shape})", analytic[k, j], column[k], atol, rtol))
    return True


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, *, mode="auto",
                  directions=3, seed=0):
    """Check the second derivatives of `fn`: gradcheck of (x, u) -> u^T J(x).

    grad_outputs: the u to start from (random normal when None). The check covers the
    derivative of the vector-Jacobian product both in the inputs and in u.
    """
    inputs = _prepare(inputs)
    outs = _outputs(fn, inputs)
    if not any(o.requires_grad for o in outs):
        raise GradcheckError(f"gradgradcheck: no output of {_name(fn)} requires grad: it is cut off from "
                             "the tape (or does not depend on the inputs), so there is no "
                             "vector-Jacobian product to differentiate")
    rng = np.random.default_rng(seed + 1)
    if grad_outputs is None:
        us = [Tensor(to_device(rng.standard_normal(o.shape), o.device), requires_grad=True) for o in outs]
    else:
        us = [Tensor(np.asarray(to_device(Tensor.wrap(u).data, "cpu"), np.float64).copy(),
                     requires_grad=True) for u in _as_tuple(grad_outputs)]
        us = [u.to(o.device) if o.device != "cpu" else u for u, o in zip(us, outs)]
        if [u.shape for u in us] != [o.shape for o in outs]:
            raise ValueError(f"gradgradcheck: grad_outputs shapes {[u.shape for u in us]} do not match "
                             f"the output shapes {[o.shape for o in outs]}")
    n_in = len(inputs)
    wanted = [i for i, x in enumerate(inputs) if x.requires_grad]

    def vjp_fn(*args):
        xs, u = args[:n_in], args[n_in:]
        o = _outputs(fn, xs)
        live = [(a, b) for a, b in zip(o, u) if a.requires_grad]
        if not live:
            return tuple(_zeros_like(xs[i]) for i in wanted)
        gs = grad([a for a, _ in live], [xs[i] for i in wanted], grad_outputs=[b for _, b in live],
                  create_graph=True, allow_unused=True)
        return tuple(_zeros_like(xs[i]) if g is None else g for i, g in zip(wanted, gs))

    vjp_fn.__name__ = f"the vector-Jacobian product of {_name(fn)}"
    labels = [f"input {i}" for i in range(n_in)] + [f"grad_output {k}" for k in range(len(us))]
    return gradcheck(vjp_fn, list(inputs) + us, eps, atol, rtol, mode=mode, directions=directions,
                     seed=seed, _kind="second derivative", _labels=labels)


def _zeros_like(x):
    return Tensor(xp_of(x.data).zeros(x.shape, dtype=x.dtype))
