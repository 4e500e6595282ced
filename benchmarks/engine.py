"""Engine speed against its floors: one MLP step, its Hessian-vector product, and per-op overhead.

    python benchmarks/engine.py               # the table (PyTorch too, when it is importable)
    python benchmarks/engine.py --profile     # plus where minigrad's step and HVP spend time
    python benchmarks/engine.py --no-torch --rounds 21

The net is an MLP 784-1024-1024-10 (ReLU, softmax cross-entropy on integer labels), batch 512,
float32, weights stored (out, in) like nn.Linear, data from a seeded Generator. Side by side,
in one process, interleaved round by round:

  numpy grad   hand-written forward + backward: the minimal matmuls, relu masks and the stable
               softmax-CE gradient, no gradient for the input x (the BLAS floor);
  numpy HVP    hand-written Hessian-vector product (Pearlmutter's R-operator: forward-over-reverse),
               Hv only;
  numpy grad+HVP  the same plus the gradient, which a double backward always computes: the floor
               to hold minigrad's HVP against;
  minigrad step    forward + loss.backward() filling .grad of the 6 parameters;
  minigrad grad()  forward + minigrad.grad(loss, params);
  minigrad HVP     forward + g = grad(loss, params, create_graph=True) + grad(g, params, v);
  torch step / HVP the same with PyTorch (torch.set_num_threads = numpy's BLAS threads).

No parameter update is timed anywhere. Each round times every contender once, in a rotating
order, after a short sleep (--gap) so one contender's spinning BLAS threads do not slow the
next; a ratio is the median over rounds of the two times taken in the same round, so machine
noise that lasts longer than a round cancels out. Absolute times are medians too.

Exact HVP by double backward (or R-op) needs, in matmul FLOPs, (4 c1 + 9 C) against the
gradient's (2 c1 + 3 C), where c1 is the first layer's n*in*out (its input needs no gradient)
and C the sum over the other layers: 2.66x for this net. The table prints that bound.

Before timing, the script checks (untimed) that minigrad's gradient and HVP equal the NumPy
ones (relative error about 1e-7 in float32), so the comparison is apples to apples. Exit
status 1 if a check fails; a missed target does not change it.
"""
import argparse
import ctypes
import gc
import glob
import os
import statistics
import sys
import time

import numpy as np

import minigrad as mg

SIZES = (784, 1024, 1024, 10)
BATCH = 512
DTYPE = np.float32

TARGET_STEP = 1.10     # minigrad step <= 1.10 x numpy floor
TARGET_HVP = 2.5       # minigrad HVP <= 2.5 x minigrad's gradient time
TARGET_OP_US = 10.0    # per-op overhead on tiny tensors, microseconds


# ------------------------------------------------------------------------------ threads
def numpy_blas_threads():
    """Threads numpy's BLAS uses: threadpoolctl if present, else ask the bundled OpenBLAS."""
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"])
    except Exception:
        pass
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                     "openblas_get_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                return int(fn())
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


# --------------------------------------------------------------------------------- data
def make_problem(seed=0):
    """Parameters (W1, b1, W2, b2, W3, b3) like nn.Linear's init, a batch, labels, a direction v."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(DTYPE))
        params.append(rng.uniform(-bound, bound, (fan_out,)).astype(DTYPE))
    x = rng.standard_normal((BATCH, SIZES[0])).astype(DTYPE)
    y = rng.integers(0, SIZES[-1], BATCH)
    v = [rng.standard_normal(p.shape).astype(DTYPE) for p in params]
    return params, x, y, v


def matmul_flops(n=BATCH, sizes=SIZES):
    """Multiply-adds of (gradient, exact HVP) for the MLP; the input x needs no gradient."""
    c = [n * i * o for i, o in zip(sizes[:-1], sizes[1:])]
    c1, rest = c[0], sum(c[1:])
    return 2 * c1 + 3 * rest, 4 * c1 + 9 * rest


# ----------------------------------------------------------------- numpy floor (by hand)
def numpy_grad(params, x, y):
    """Loss and gradients by hand: 3 + 5 matmuls, relu masks, stable softmax-CE."""
    W1, b1, W2, b2, W3, b3 = params
    n = x.shape[0]
    rows = np.arange(n)
    h1 = x @ W1.T
    h1 += b1
    np.maximum(h1, 0, out=h1)
    h2 = h1 @ W2.T
    h2 += b2
    np.maximum(h2, 0, out=h2)
    z3 = h2 @ W3.T
    z3 += b3
    m = z3.max(axis=1, keepdims=True)
    p = z3 - m
    np.exp(p, out=p)
    s = p.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) + m[:, 0] - z3[rows, y]).mean()
    p /= s                      # softmax
    p[rows, y] -= 1.0
    p *= 1.0 / n                # d loss / d z3
    d3 = p
    gW3 = d3.T @ h2
    gb3 = d3.sum(axis=0)
    d2 = d3 @ W3
    d2 *= h2 > 0
    gW2 = d2.T @ h1
    gb2 = d2.sum(axis=0)
    d1 = d2 @ W2
    d1 *= h1 > 0
    gW1 = d1.T @ x
    gb1 = d1.sum(axis=0)
    return loss, [gW1, gb1, gW2, gb2, gW3, gb3]


def numpy_hvp(params, v, x, y, with_grad=False):
    """Exact H v by the R-operator (forward-over-reverse): the backward pass and its directional
    derivative along v. The relu masks are constant (their derivative is 0 almost everywhere).

    Hv alone skips the gradient's own products (dL/dW_i and the first layer's d1), which a
    double backward cannot skip; `with_grad=True` computes them too (returns (Hv, g)), the
    floor to hold `grad(create_graph=True)` + `grad(g, v)` against."""
    W1, b1, W2, b2, W3, b3 = params
    V1, c1, V2, c2, V3, c3 = v
    n = x.shape[0]
    rows = np.arange(n)
    # forward and its R-forward
    h1 = x @ W1.T
    h1 += b1
    np.maximum(h1, 0, out=h1)
    m1 = h1 > 0
    r1 = x @ V1.T
    r1 += c1
    r1 *= m1
    h2 = h1 @ W2.T
    h2 += b2
    np.maximum(h2, 0, out=h2)
    m2 = h2 > 0
    r2 = r1 @ W2.T
    r2 += h1 @ V2.T
    r2 += c2
    r2 *= m2
    z3 = h2 @ W3.T
    z3 += b3
    r3 = r2 @ W3.T
    r3 += h2 @ V3.T
    r3 += c3
    # softmax-CE: d3 = (p - onehot)/n;  R d3 = p * (r3 - <p, r3>) / n
    m = z3.max(axis=1, keepdims=True)
    p = z3 - m
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    rd3 = r3 - (p * r3).sum(axis=1, keepdims=True)
    rd3 *= p
    rd3 *= 1.0 / n
    d3 = p
    d3[rows, y] -= 1.0
    d3 *= 1.0 / n
    # backward and its R-backward: R(a^T b) = Ra^T b + a^T Rb, R(d W) = Rd W + d V
    hW3 = rd3.T @ h2
    hW3 += d3.T @ r2
    hb3 = rd3.sum(axis=0)
    d2 = d3 @ W3
    d2 *= m2
    rd2 = rd3 @ W3
    rd2 += d3 @ V3
    rd2 *= m2
    hW2 = rd2.T @ h1
    hW2 += d2.T @ r1
    hb2 = rd2.sum(axis=0)
    rd1 = rd2 @ W2
    rd1 += d2 @ V2
    rd1 *= m1
    hW1 = rd1.T @ x
    hb1 = rd1.sum(axis=0)
    hv = [hW1, hb1, hW2, hb2, hW3, hb3]
    if not with_grad:
        return hv
    d1 = d2 @ W2
    d1 *= m1
    return hv, [d1.T @ x, d1.sum(axis=0), d2.T @ h1, d2.sum(axis=0), d3.T @ h2, d3.sum(axis=0)]


# ------------------------------------------------------------------------------- minigrad
def minigrad_loss_fn(y_np, loss_value):
    """The loss function on logits: F.cross_entropy when it exists and agrees with the NumPy
    loss on these logits, else composed from engine ops. Returns (fn, description)."""
    n = y_np.shape[0]
    rows = np.arange(n)

    def composed(logits):
        return (logits.logsumexp(axis=1) - logits[rows, y_np]).mean()

    try:
        import minigrad.functional as F
        ce = getattr(F, "cross_entropy", None)
    except Exception as exc:  # functional is being written; a broken import must not stop us
        ce, why = None, f"minigrad.functional does not import ({type(exc).__name__}: {exc})"
    else:
        why = "minigrad.functional has no cross_entropy"
    if ce is not None:
        logits = loss_value["logits"]
        for label_form, labels in (("Tensor labels", mg.tensor(y_np)), ("ndarray labels", y_np)):
            try:
                out = ce(logits, labels)
                ok = out.shape == () and abs(float(out.item()) - loss_value["loss"]) <= \
                    1e-4 * max(1.0, abs(loss_value["loss"]))
            except Exception as exc:
                why = f"F.cross_entropy failed ({type(exc).__name__}: {exc})"
                continue
            if ok:
                return (lambda lg, ce=ce, labels=labels: ce(lg, labels)), \
                    f"minigrad.functional.cross_entropy ({label_form})"
            why = f"F.cross_entropy gave {float(out.item()):.6f}, NumPy {loss_value['loss']:.6f}"
    return composed, f"composed: (logits.logsumexp(1) - logits[arange(n), y]).mean()  [{why}]"


def minigrad_forward(params, x, loss_fn):
    W1, b1, W2, b2, W3, b3 = params
    h = (x @ W1.T + b1).relu()
    h = (h @ W2.T + b2).relu()
    return loss_fn(h @ W3.T + b3)


def minigrad_step(params, x, loss_fn):
    for p in params:
        p.grad = None
    loss = minigrad_forward(params, x, loss_fn)
    loss.backward()
    return loss


def minigrad_grad(params, x, loss_fn):
    return mg.grad(minigrad_forward(params, x, loss_fn), params)


def minigrad_hvp(params, v, x, loss_fn):
    loss = minigrad_forward(params, x, loss_fn)
    g = mg.grad(loss, params, create_graph=True)
    return mg.grad(g, params, grad_outputs=v)


# ---------------------------------------------------------------------------------- torch
def torch_setup(params_np, v_np, x_np, y_np, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    tF = torch.nn.functional
    params = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params_np]
    v = [torch.from_numpy(a.copy()) for a in v_np]
    x = torch.from_numpy(x_np.copy())
    y = torch.from_numpy(y_np.copy())

    def loss_of():
        W1, b1, W2, b2, W3, b3 = params
        h = tF.relu(tF.linear(x, W1, b1))
        h = tF.relu(tF.linear(h, W2, b2))
        return tF.cross_entropy(tF.linear(h, W3, b3), y)

    def step():
        for p in params:
            p.grad = None
        loss = loss_of()
        loss.backward()

    def hvp():
        g = torch.autograd.grad(loss_of(), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=v)

    def grads():
        step()
        return [p.grad.numpy() for p in params]

    def hvps():
        return [h.numpy() for h in hvp()]

    return dict(module=torch, step=step, hvp=hvp, grads=grads, hvps=hvps)


# ----------------------------------------------------------------------------- harness
def interleaved(cases, rounds, warmup=2, gap=0.0):
    """Time each case once per round, rotating the order; returns {name: [seconds per round]}.

    `gap` seconds of sleep before each timed call let the previous contender's idle BLAS
    threads stop spinning: OpenBLAS workers busy-wait about 2^28 cycles (~0.1 s) after a call,
    and on 2 cores that alone made torch's step 1.7x slower right after a NumPy call.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        gc.collect()
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = cases[name]
            if gap:
                time.sleep(gap)
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


def ratio(times, num, den):
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check(label, got, want, tol):
    errs = [rel_err(g, w) for g, w in zip(got, want)]
    worst = max(errs)
    status = "ok" if worst <= tol else "MISMATCH"
    print(f"  {label:<42s} max rel err {worst:.1e} over 6 params  [{status}]")
    return worst <= tol


def verdict(value, target):
    return "PASS" if value <= target else "FAIL"


# ------------------------------------------------------------------------ per-op overhead
def per_op(rounds, n_ops, torch_mod, chain=64):
    """Microseconds per (2,2) float32 a+b, a and b requiring grad.

    numpy a+b; minigrad forward (recording, and under no_grad); forward + backward with one
    backward() call per op (pays the fixed cost of a graph walk each time); and a chain
    c = c + b of `chain` ops closed by one backward(), per op (the marginal cost of an op in a
    real graph, gradient accumulation into the reused b included). The same for torch.
    """
    rng = np.random.default_rng(1)
    an = rng.standard_normal((2, 2)).astype(DTYPE)
    bn = rng.standard_normal((2, 2)).astype(DTYPE)
    a = mg.tensor(an, requires_grad=True)
    b = mg.tensor(bn, requires_grad=True)
    gout = mg.ones(2, 2)
    loop = range(n_ops)
    chains = range(n_ops // chain)
    links = range(chain)

    def np_add():
        for _ in loop:
            an + bn

    def mg_fwd():
        for _ in loop:
            a + b

    def mg_fwd_nograd():
        with mg.no_grad():
            for _ in loop:
                a + b

    def mg_fwd_bwd():
        for _ in loop:
            a.grad = None
            b.grad = None
            (a + b).backward(gout)

    def mg_chain():
        for _ in chains:
            a.grad = None
            b.grad = None
            c = a
            for _ in links:
                c = c + b
            c.backward(gout)

    cases = {"numpy a+b": np_add,
             "minigrad fwd (recording)": mg_fwd,
             "minigrad fwd under no_grad": mg_fwd_nograd,
             "minigrad fwd+bwd, 1 op/backward": mg_fwd_bwd,
             f"minigrad fwd+bwd, {chain}-op chain": mg_chain}
    if torch_mod is not None:
        ta = torch_mod.from_numpy(an.copy()).requires_grad_(True)
        tb = torch_mod.from_numpy(bn.copy()).requires_grad_(True)
        tg = torch_mod.ones(2, 2)

        def t_fwd():
            for _ in loop:
                ta + tb

        def t_fwd_bwd():
            for _ in loop:
                ta.grad = None
                tb.grad = None
                (ta + tb).backward(tg)

        def t_chain():
            for _ in chains:
                ta.grad = None
                tb.grad = None
                c = ta
                for _ in links:
                    c = c + tb
                c.backward(tg)

        cases["torch fwd (recording)"] = t_fwd
        cases["torch fwd+bwd, 1 op/backward"] = t_fwd_bwd
        cases[f"torch fwd+bwd, {chain}-op chain"] = t_chain
    times = interleaved(cases, rounds, warmup=1)
    per = {k: n_ops if "chain" not in k else len(chains) * chain for k in cases}
    return {k: statistics.median(v) / per[k] * 1e6 for k, v in times.items()}


# ------------------------------------------------------------------------------ profile
def _layout(a):
    """C: C-contiguous; T: a transposed (Fortran-order) view; B: broadcast; S: other strides."""
    if a.ndim < 2 or a.flags.c_contiguous:
        return "C"
    if 0 in a.strides:
        return "B"
    return "T" if a.flags.f_contiguous else "S"


def op_breakdown(name, fn, n):
    """Time spent inside each op (Function.apply: forward ops and the ops backward runs), by op,
    input shapes and layouts; what is left of the wall time is Python in the graph walk."""
    from minigrad import function
    orig = function.Function.__dict__["apply"]
    rec = []
    clock = time.perf_counter

    def timed(cls, *inputs, **kw):
        t0 = clock()
        out = orig.__func__(cls, *inputs, **kw)
        rec.append((cls.__name__, " ".join(f"{tuple(t.shape)}{_layout(t.data)}" for t in inputs),
                    clock() - t0))
        return out

    fn()
    function.Function.apply = classmethod(timed)
    try:
        agg, wall = {}, 0.0
        for _ in range(n):
            rec.clear()
            t0 = clock()
            fn()
            wall += clock() - t0
            for op, key, dt in rec:
                a = agg.setdefault((op, key), [0, 0.0])
                a[0] += 1
                a[1] += dt
    finally:
        function.Function.apply = orig
    in_ops = sum(a[1] for a in agg.values()) / n * 1e3
    in_mm = sum(a[1] for (op, _), a in agg.items() if op == "MatMul") / n * 1e3
    print(f"\n--- {name}: per call {wall / n * 1e3:.1f} ms wall, {in_mm:.1f} ms in MatMul, "
          f"{in_ops - in_mm:.1f} ms in other ops, {wall / n * 1e3 - in_ops:.1f} ms outside ops "
          f"({n} calls; layout C contiguous, T transposed view, B broadcast) ---")
    print(f"  {'op':<13s} {'inputs':<46s} {'n/call':>6s} {'ms/call':>8s}")
    for (op, key), (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:22]:
        print(f"  {op:<13s} {key:<46s} {c / n:6.1f} {t / n * 1e3:8.3f}")


def profile(name, fn, n, top, unit="calls",
            note=" (MatMul.forward's own time is its BLAS call)"):
    """cProfile of n calls of fn after one warm-up call, the `top` functions by own time."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    fn()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    print(f"\n--- cProfile: {name}, {n} {unit}, top {top} by own time{note} ---")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# --------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds for the MLP (15)")
    ap.add_argument("--op-rounds", type=int, default=9, help="interleaved rounds per-op (9)")
    ap.add_argument("--ops", type=int, default=20000, help="tiny ops per per-op timing (20000)")
    ap.add_argument("--gap", type=float, default=0.2,
                    help="seconds of sleep before each timed MLP call, so idle BLAS threads of the "
                         "previous contender stop spinning (0.2)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if importable")
    ap.add_argument("--profile", action="store_true",
                    help="time by op/shape/layout and cProfile for minigrad's step and HVP")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    threads = numpy_blas_threads()
    params_np, x_np, y_np, v_np = make_problem(args.seed)
    params = [mg.tensor(p, requires_grad=True) for p in params_np]
    v = [mg.tensor(a) for a in v_np]
    x = mg.tensor(x_np)

    # NumPy reference loss, logits: decide how minigrad computes the loss
    loss_np, grads_np = numpy_grad(params_np, x_np, y_np)
    W1, b1, W2, b2, W3, b3 = params
    with mg.no_grad():
        h = (x @ W1.T + b1).relu()
        h = (h @ W2.T + b2).relu()
        logits = h @ W3.T + b3
    loss_fn, loss_desc = minigrad_loss_fn(y_np, {"logits": logits, "loss": float(loss_np)})

    torch = None if args.no_torch else torch_setup(params_np, v_np, x_np, y_np, threads)
    torch_threads = torch["module"].get_num_threads() if torch else None

    print(f"MLP {'-'.join(map(str, SIZES))}, ReLU, softmax-CE, batch {BATCH}, float32; "
          f"numpy {np.__version__} BLAS threads {threads}"
          + (f"; torch {torch['module'].__version__} threads {torch_threads}" if torch else
             "; torch: not used" + (" (--no-torch)" if args.no_torch else " (not importable)")))
    print(f"minigrad loss: {loss_desc}")

    # ------------------------------------------------------------ correctness (untimed)
    print("\nchecks (untimed):")
    hv_np, g_np2 = numpy_hvp(params_np, v_np, x_np, y_np, with_grad=True)
    ok = check("numpy R-op: its g vs numpy floor grad", g_np2, grads_np, 1e-5)
    ok &= check("numpy R-op: Hv alone vs with g", numpy_hvp(params_np, v_np, x_np, y_np), hv_np, 1e-6)
    mg_step_loss = minigrad_step(params, x, loss_fn)
    print(f"  loss: numpy {float(loss_np):.6f}  minigrad {float(mg_step_loss.item()):.6f}")
    ok &= check("minigrad step .grad vs numpy floor", [p.grad.data for p in params], grads_np, 1e-4)
    ok &= check("minigrad.grad() vs numpy floor",
                [g.data for g in minigrad_grad(params, x, loss_fn)], grads_np, 1e-4)
    ok &= check("minigrad HVP vs numpy R-op HVP",
                [h.data for h in minigrad_hvp(params, v, x, loss_fn)], hv_np, 1e-4)
    if torch:
        ok &= check("torch grad vs numpy floor", torch["grads"](), grads_np, 1e-4)
        ok &= check("torch HVP vs numpy R-op HVP", torch["hvps"](), hv_np, 1e-4)
    if not ok:
        print("  a check failed: the timings below compare different computations", file=sys.stderr)

    # ------------------------------------------------------------------ MLP timings
    cases = {
        "numpy grad": lambda: numpy_grad(params_np, x_np, y_np),
        "numpy HVP": lambda: numpy_hvp(params_np, v_np, x_np, y_np),
        "numpy grad+HVP": lambda: numpy_hvp(params_np, v_np, x_np, y_np, with_grad=True),
        "minigrad step": lambda: minigrad_step(params, x, loss_fn),
        "minigrad grad()": lambda: minigrad_grad(params, x, loss_fn),
        "minigrad HVP": lambda: minigrad_hvp(params, v, x, loss_fn),
    }
    if torch:
        cases["torch step"] = torch["step"]
        cases["torch HVP"] = torch["hvp"]
    times = interleaved(cases, args.rounds, gap=args.gap)
    med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
    g_flops, h_flops = matmul_flops()

    own = {"numpy HVP": "numpy grad", "numpy grad+HVP": "numpy grad",
           "minigrad HVP": "minigrad step", "torch HVP": "torch step"}
    rows = [
        ("numpy grad", "hand-written fwd+bwd (BLAS floor)", None),
        ("numpy HVP", "hand-written R-op, Hv only", None),
        ("numpy grad+HVP", "hand-written R-op, g and Hv (HVP floor)", None),
        ("minigrad step", "fwd + loss.backward()", ("step", TARGET_STEP)),
        ("minigrad grad()", "fwd + minigrad.grad(loss, params)", None),
        ("minigrad HVP", "fwd + grad(create_graph) + grad(g, v)", ("hvp", TARGET_HVP)),
        ("torch step", "fwd + loss.backward()", None),
        ("torch HVP", "fwd + autograd.grad x2", None),
    ]
    print(f"\nMLP timings: median of {args.rounds} interleaved rounds; ratios are medians of "
          "same-round ratios")
    head = f"  {'':<16s} {'what':<40s} {'ms':>8s} {'x numpy grad':>13s} {'x own grad':>11s}  target"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for name, what, target in rows:
        if name not in med:
            continue
        vs_floor = ratio(times, name, "numpy grad")
        own_den = own.get(name)
        vs_own = ratio(times, name, own_den) if own_den else None
        tgt = ""
        if target and target[0] == "step":
            tgt = f"<= {TARGET_STEP:.2f} x numpy grad: {verdict(vs_floor, TARGET_STEP)}"
        elif target and target[0] == "hvp":
            tgt = f"<= {TARGET_HVP:.2f} x minigrad step: {verdict(vs_own, TARGET_HVP)}"
        elif name == "torch HVP":
            tgt = "(reference, ~2.9x)"
        own_s = f"{vs_own:11.2f}" if vs_own is not None else f"{'':>11s}"
        print(f"  {name:<16s} {what:<40s} {med[name]:8.2f} {vs_floor:13.2f} {own_s}  {tgt}")
    print(f"  matmul FLOPs: gradient {g_flops * 2 / 1e9:.2f} GFLOP, g and Hv {h_flops * 2 / 1e9:.2f} "
          f"GFLOP: a double-backward HVP costs at least {h_flops / g_flops:.2f}x the gradient")
    print(f"  minigrad HVP / numpy grad+HVP floor: "
          f"{ratio(times, 'minigrad HVP', 'numpy grad+HVP'):.2f}x;  "
          f"minigrad grad() / minigrad step: {ratio(times, 'minigrad grad()', 'minigrad step'):.2f}x")

    # --------------------------------------------------------------------- per-op
    us = per_op(args.op_rounds, args.ops, torch["module"] if torch else None)
    base = us["numpy a+b"]
    print(f"\nper-op on (2,2) float32, a and b requiring grad: median of {args.op_rounds} rounds "
          f"of {args.ops} ops, microseconds")
    print(f"  {'':<34s} {'us/op':>8s} {'over numpy':>11s}  target")
    for name, val in us.items():
        tgt = ""
        if name.startswith("minigrad") and "no_grad" not in name:
            tgt = f"overhead <= {TARGET_OP_US:.0f} us: {verdict(val - base, TARGET_OP_US)}"
        over = f"{val - base:11.2f}" if name != "numpy a+b" else f"{'':>11s}"
        print(f"  {name:<34s} {val:8.2f} {over}  {tgt}")

    if args.profile:
        op_breakdown("minigrad step", lambda: minigrad_step(params, x, loss_fn), 10)
        op_breakdown("minigrad HVP", lambda: minigrad_hvp(params, v, x, loss_fn), 10)
        profile("minigrad step", lambda: minigrad_step(params, x, loss_fn), 10, 15)
        profile("minigrad HVP", lambda: minigrad_hvp(params, v, x, loss_fn), 10, 15)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
