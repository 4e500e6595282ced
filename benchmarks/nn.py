"""Training-step speed of the models in minigrad.nn.models against PyTorch on the CPU.

    python benchmarks/nn.py                    # LeNet-5 and ResNet-20 steps, minigrad and torch
    python benchmarks/nn.py --profile          # plus where minigrad's time goes (by op, cProfile)
    python benchmarks/nn.py --alternatives     # plus NumPy timings of cheaper conv/pool layouts
    python benchmarks/nn.py --no-torch --rounds 21 --resnet-rounds 7

A step is forward + softmax cross-entropy on integer labels + backward filling .grad of every
parameter, in float32, training mode (batch statistics in BatchNorm); no parameter update.

  LeNet-5   minigrad.nn.models.lenet5(): batch 256 x 1 x 28 x 28  (target: minigrad <= 1.5 x torch)
  ResNet-20 minigrad.nn.models.resnet20() (option-A shortcuts): batch 128 x 3 x 32 x 32

PyTorch runs the same architectures (its ResNet-20 with the same zero-padded strided shortcut)
with the same weights (copied from minigrad's state_dict) and the same number of threads as
numpy's BLAS. Before timing, the script checks (untimed) that both give the same loss and the
same gradients (relative error about 1e-6 in float32); exit status 1 if a check fails.

Timing follows benchmarks/engine.py: each round times every contender once in a rotating
order, after a short sleep (--gap) that lets the previous contender's BLAS threads stop
spinning; a ratio is the median over rounds of the two times taken in the same round.

glibc's malloc hands large arrays back to the kernel on free, so every step pays for fresh,
zeroed pages (the system CPU time --profile prints). To keep freed memory in the process, run
with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
(the first line of the output says which applies; it applies to both libraries).

--profile times every op call (Function.apply, forward and the ops the backward runs), grouped
by op and by op + input shapes, and prints cProfile's top functions. --alternatives times, in
plain NumPy on the shapes of these nets, the layouts suggested by the profile (see README.md).
"""
import argparse
import gc
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import interleaved, numpy_blas_threads, profile, ratio, rel_err

import minigrad as mg
import minigrad.functional as F
from minigrad import function as mg_function
from minigrad.nn import models

TARGET_LENET = 1.5  # minigrad LeNet-5 step <= 1.5 x torch
# Keep freed memory in the process (see README): the same environment applies to both libraries.
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


# ------------------------------------------------------------------------------- problems
def make_problem(name, batch, seed=0, dtype=np.float32):
    """(minigrad model, x array, labels array) for 'lenet5' or 'resnet20'."""
    rng = np.random.default_rng(seed)
    if name == "lenet5":
        model, shape = models.lenet5(rng=seed, dtype=dtype), (batch, 1, 28, 28)
    else:
        model, shape = models.resnet20(rng=seed, dtype=dtype), (batch, 3, 32, 32)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, 10, batch)
    return model, x, y


def minigrad_step_fn(model, x_np, y_np):
    x = mg.tensor(x_np)

    def step():
        model.zero_grad()
        loss = F.cross_entropy(model(x), y_np)
        loss.backward()
        return loss

    return step


# ---------------------------------------------------------------------------------- torch
def torch_model(name, state):
    """The same architecture in PyTorch, holding minigrad's weights (state: a state_dict)."""
    import torch
    tnn, tF = torch.nn, torch.nn.functional
    if name == "lenet5":
        net = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
            tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    else:
        class Block(tnn.Module):
            def __init__(self, c_in, c_out, stride):
                super().__init__()
                self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(c_out)
                self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(c_out)
                self.stride, self.extra = stride, c_out - c_in

            def forward(self, x):
                h = tF.relu(self.bn1(self.conv1(x)))
                h = self.bn2(self.conv2(h))
                s = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
                if self.extra:
                    s = tF.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
                return tF.relu(h + s)

        class ResNet(tnn.Module):
            def __init__(self, n=3, width=16):
                super().__init__()
                self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(width)
                c_in = width
                for stage, mult in enumerate((1, 2, 4), start=1):
                    blocks = []
                    for b in range(n):
                        blocks.append(Block(c_in, width * mult, 2 if stage > 1 and b == 0 else 1))
                        c_in = width * mult
                    setattr(self, f"layer{stage}", tnn.Sequential(*blocks))
                self.fc = tnn.Linear(c_in, 10)

            def forward(self, x):
                h = tF.relu(self.bn1(self.conv1(x)))
                h = self.layer3(self.layer2(self.layer1(h)))
                return self.fc(h.mean(dim=(2, 3)))

        net = ResNet()
    net = net.to(getattr(torch, str(next(iter(state.values())).dtype)))  # before loading: no rounding
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                              strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"torch {name}: state_dict mismatch: missing {missing}, unexpected {unexpected}")
    return net.train()


def torch_step_fn(net, x_np, y_np):
    import torch
    x, y = torch.from_numpy(x_np.copy()), torch.from_numpy(y_np.copy())

    def step():
        net.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    return step


def check_same(name, batch, tol=1e-8):
    """Untimed: the same loss and gradients from minigrad and torch, in float64 so that they must
    agree to rounding (in float32 both are off the float64 gradients by about 1e-3 relative in
    the BatchNorm and conv parameters of ResNet-20: sums over 131,072 terms that cancel)."""
    model, x, y = make_problem(name, batch, dtype=np.float64)
    net = torch_model(name, model.state_dict())
    step_mg, step_torch = minigrad_step_fn(model, x, y), torch_step_fn(net, x, y)
    loss_mg = float(step_mg().item())
    loss_t = float(step_torch().item())
    grads_t = {k: p.grad.numpy() for k, p in net.named_parameters()}
    worst, where = 0.0, ""
    for k, p in model.named_parameters():
        e = rel_err(p.grad.data, grads_t[k])
        if e > worst:
            worst, where = e, k
    ok = worst <= tol and abs(loss_mg - loss_t) <= tol * max(1.0, abs(loss_t))
    print(f"  {name} (float64): loss minigrad {loss_mg:.12f} torch {loss_t:.12f}; max rel grad err {worst:.1e} "
          f"({where}) over {len(grads_t)} params  [{'ok' if ok else 'MISMATCH'}]")
    return ok


# ------------------------------------------------------------------------------- profile
def op_breakdown(name, fn, n, top=25):
    """Time inside each op call, forward ('fwd') and inside backward ('bwd'), by op and by op +
    input shapes; the rest of the wall time is Python outside ops (module calls, graph walk)."""
    cls = mg_function.Function
    orig = cls.__dict__["apply"]
    rec = []
    clock = time.perf_counter

    def timed(c, *inputs, **kw):
        phase = "fwd" if mg.is_grad_enabled() else "bwd"
        t0 = clock()
        out = orig.__func__(c, *inputs, **kw)
        rec.append((c.__name__, phase, " ".join(str(tuple(t.shape)) for t in inputs), clock() - t0))
        return out

    fn()
    cls.apply = classmethod(timed)
    try:
        by_op, by_shape, wall = {}, {}, 0.0
        for _ in range(n):
            rec.clear()
            gc.collect()
            t0 = clock()
            fn()
            wall += clock() - t0
            for op, phase, shapes, dt in rec:
                for table, key in ((by_op, (op, phase)), (by_shape, (op, phase, shapes))):
                    a = table.setdefault(key, [0, 0.0])
                    a[0] += 1
                    a[1] += dt
    finally:
        cls.apply = orig
    in_ops = sum(a[1] for a in by_op.values()) / n
    wall /= n
    print(f"\n--- {name}: {wall * 1e3:.0f} ms per step (timed ops), {in_ops * 1e3:.0f} ms inside ops, "
          f"{(wall - in_ops) * 1e3:.0f} ms outside ({n} steps) ---")
    print(f"  {'op':<14s} {'phase':<5s} {'calls':>6s} {'ms':>8s} {'share':>6s}")
    for (op, phase), (c, t) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {op:<14s} {phase:<5s} {c / n:6.0f} {t / n * 1e3:8.1f} {t / n / wall:6.1%}")
    print(f"\n  top {top} by op and input shapes:")
    print(f"  {'op':<14s} {'phase':<5s} {'inputs':<44s} {'calls':>6s} {'ms':>8s}")
    for (op, phase, shapes), (c, t) in sorted(by_shape.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {op:<14s} {phase:<5s} {shapes[:44]:<44s} {c / n:6.0f} {t / n * 1e3:8.1f}")


def cpu_times(name, fn, n):
    """Wall, user and system CPU seconds per call; system time here is the kernel handing out
    (zeroing) fresh pages for large arrays that malloc got from mmap and returned on free."""
    fn()
    t0, w0 = os.times(), time.perf_counter()
    for _ in range(n):
        fn()
    t1, w1 = os.times(), time.perf_counter()
    print(f"\n--- {name}: per step {(w1 - w0) / n * 1e3:.0f} ms wall, {(t1.user - t0.user) / n * 1e3:.0f} ms "
          f"user CPU, {(t1.system - t0.system) / n * 1e3:.0f} ms system CPU ({n} steps) ---")


# -------------------------------------------------------------------------- alternatives
def best_of(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def unfold_np(x, k, stride, pad, layout):
    """im2col of x as (N, C, kh, kw, OH, OW) ('nchw', minigrad's) or (C, kh, kw, N, OH, OW) ('cnhw')."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    s0, s1, s2, s3 = x.strides
    view = np.lib.stride_tricks.as_strided(x, (n, c, k, k, oh, ow),
                                           (s0, s1, s2, s3, s2 * stride, s3 * stride))
    if layout == "cnhw":
        view = view.transpose(1, 2, 3, 0, 4, 5)
    return np.ascontiguousarray(view)


def fold_np(cols, size, k, stride, pad):
    """col2im, as minigrad's Fold: a zero image and one strided slab add per kernel offset."""
    n, c, _, _, oh, ow = cols.shape
    out = np.zeros((n, c, size + 2 * pad, size + 2 * pad), cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += cols[:, :, i, j]
    return out[:, :, pad:pad + size, pad:pad + size]


def conv_now(x, w, g, k, pad):
    """minigrad's scheme in NumPy: NCHW im2col, W @ cols broadcast over N, dW = sum_n g_n cols_n^T,
    column gradient W^T @ g broadcast over N, then Fold."""
    n, c, h, _ = x.shape
    o = w.shape[0]
    w2 = w.reshape(o, -1)
    cols = unfold_np(x, k, 1, pad, "nchw")
    c3 = cols.reshape(n, c * k * k, -1)
    y = np.matmul(w2, c3)
    g3 = g.reshape(n, o, -1)
    dw = np.matmul(g3, c3.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    dx = fold_np(np.matmul(w2.T, g3).reshape(cols.shape), h, k, 1, pad)
    return y.reshape(g.shape), dw, dx


def conv_alt(x, w, g, k, pad):
    """One GEMM per product: channel-major im2col (C k k, N OH OW); dW = g2 cols2^T in one GEMM
    (no per-example products to sum); dX as the transposed convolution, i.e. im2col of the
    gradient (padded by k - 1 - pad) times the flipped kernel, instead of a column gradient + Fold.
    Stride 1 only (a stride needs the gradient dilated with zeros first)."""
    n, c, h, _ = x.shape
    o = w.shape[0]
    cols2 = unfold_np(x, k, 1, pad, "cnhw").reshape(c * k * k, -1)
    y = np.ascontiguousarray((w.reshape(o, -1) @ cols2).reshape(o, n, -1).transpose(1, 0, 2))
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, -1)
    dw = (g2 @ cols2.T).reshape(w.shape)
    wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(c, -1)
    gcols = unfold_np(g, k, 1, k - 1 - pad, "cnhw").reshape(o * k * k, -1)
    dx = np.ascontiguousarray((wf @ gcols).reshape(c, n, h, -1).transpose(1, 0, 2, 3))
    return y.reshape(g.shape), dw, dx


def conv_alt_fold(x, w, g, k, pad):
    """As conv_alt, but dX as minigrad does it: the column gradient W^T g2 (one GEMM, channel-major)
    scatter-added back by Fold; better when out_channels * k * k is much larger than in_channels * k * k."""
    n, c, h, _ = x.shape
    o = w.shape[0]
    cols = unfold_np(x, k, 1, pad, "cnhw")
    cols2 = cols.reshape(c * k * k, -1)
    w2 = w.reshape(o, -1)
    y = np.ascontiguousarray((w2 @ cols2).reshape(o, n, -1).transpose(1, 0, 2))
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, -1)
    dw = (g2 @ cols2.T).reshape(w.shape)
    dx = fold_np((w2.T @ g2).reshape(cols.shape).transpose(3, 0, 1, 2, 4, 5), h, k, 1, pad)
    return y.reshape(g.shape), dw, dx


def batch_norm_fused(x, w, b, g, eps=1e-5):
    """Batch norm (training) forward and backward in closed form, 4-D input, per channel:
    y = xhat w + b;  dx = w / std (g - mean(g) - xhat mean(g xhat)), dw = sum g xhat, db = sum g."""
    axes = (0, 2, 3)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    inv = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    xhat = xc * inv
    y = xhat * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    db = g.sum(axis=axes)
    dw = (g * xhat).sum(axis=axes)
    m = xhat.size // xhat.shape[1]
    dx = (g - (db / m).reshape(1, -1, 1, 1) - xhat * (dw / m).reshape(1, -1, 1, 1)) * (
        inv * w.reshape(1, -1, 1, 1))
    return y, dx, dw, db


def alternatives(repeat):
    """NumPy timings (ms, median of `repeat`) of the conv, pool and batch-norm variants the
    profile suggests, each checked against minigrad's scheme (or minigrad itself) first."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    print(f"\n--- alternatives, timed in plain NumPy (ms, median of {repeat}) ---")
    print("\nconv layer forward + backward (y, dW, dX), stride 1:")
    print(f"  {'layer':<40s} {'minigrad scheme':>16s} {'1 GEMM, Fold dX':>16s} "
          f"{'1 GEMM, transposed-conv dX':>27s}")
    for name, n, c, h, o, k, p in (("ResNet stage 1: 16->16, 32x32, N=128", 128, 16, 32, 16, 3, 1),
                                   ("ResNet stage 2: 32->32, 16x16, N=128", 128, 32, 16, 32, 3, 1),
                                   ("ResNet stage 3: 64->64, 8x8, N=128", 128, 64, 8, 64, 3, 1),
                                   ("LeNet conv2: 6->16, 14x14, k=5, N=256", 256, 6, 14, 16, 5, 0)):
        x = rng.standard_normal((n, c, h, h)).astype(f32)
        w = (rng.standard_normal((o, c, k, k)) * 0.1).astype(f32)
        oh = h + 2 * p - k + 1
        g = rng.standard_normal((n, o, oh, oh)).astype(f32)
        ref = conv_now(x, w, g, k, p)
        for alt in (conv_alt_fold, conv_alt):
            for a, b_ in zip(ref, alt(x, w, g, k, p)):
                np.testing.assert_allclose(a, b_, rtol=2e-3, atol=2e-3 * np.abs(a).max())
        t_now = best_of(lambda: conv_now(x, w, g, k, p), repeat)
        t_fold = best_of(lambda: conv_alt_fold(x, w, g, k, p), repeat)
        t_alt = best_of(lambda: conv_alt(x, w, g, k, p), repeat)
        print(f"  {name:<40s} {t_now:16.1f} {t_fold:16.1f} {t_alt:27.1f}")

    print("\nmax_pool2d 2x2 stride 2, forward + backward:")
    print(f"  {'input':<40s} {'Unfold + max + Fold':>20s} {'reshaped view':>14s} {'4 strided slices':>17s}")
    for name, shape in (("LeNet pool1 (256, 6, 28, 28)", (256, 6, 28, 28)),
                        ("LeNet pool2 (256, 16, 10, 10)", (256, 16, 10, 10))):
        x = rng.standard_normal(shape).astype(f32)
        n, c, h, w = shape
        g = rng.standard_normal((n, c, h // 2, w // 2)).astype(f32)

        def via_unfold():
            cols = unfold_np(x, 2, 2, 0, "nchw")
            m = cols.max(axis=(2, 3), keepdims=True)
            hit = (cols == m).astype(f32)
            hit /= hit.sum(axis=(2, 3), keepdims=True)
            return m, fold_np(g[:, :, None, None] * hit, h, 2, 2, 0)

        def via_reshape():
            v = x.reshape(n, c, h // 2, 2, w // 2, 2)
            m = v.max(axis=(3, 5), keepdims=True)
            hit = (v == m).astype(f32)
            hit /= hit.sum(axis=(3, 5), keepdims=True)
            return m, (g[:, :, :, None, :, None] * hit).reshape(shape)

        def via_slices():  # max of the four window positions, the gradient to the (first) winner
            s = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
            m = np.maximum(np.maximum(s[0], s[1]), np.maximum(s[2], s[3]))
            dx = np.empty_like(x)
            taken = np.zeros(m.shape, bool)
            for (i, j), v in zip(((0, 0), (0, 1), (1, 0), (1, 1)), s):
                hit = (v == m) & ~taken
                taken |= hit
                dx[:, :, i::2, j::2] = g * hit
            return m, dx

        np.testing.assert_allclose(via_unfold()[1], via_reshape()[1])
        np.testing.assert_allclose(via_unfold()[1], via_slices()[1])
        print(f"  {name:<40s} {best_of(via_unfold, repeat):20.2f} {best_of(via_reshape, repeat):14.2f} "
              f"{best_of(via_slices, repeat):17.2f}")

    print("\nbatch norm (training), forward + backward in x, weight, bias:")
    print(f"  {'input':<40s} {'minigrad F.batch_norm':>22s} {'fused closed form':>18s}")
    for shape in ((128, 16, 32, 32), (128, 64, 8, 8)):
        x = rng.standard_normal(shape).astype(f32)
        c = shape[1]
        w, b = rng.standard_normal(c).astype(f32), rng.standard_normal(c).astype(f32)
        g = rng.standard_normal(shape).astype(f32)
        xt, wt, bt, gt = mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True), \
            mg.tensor(b, requires_grad=True), mg.tensor(g)

        def minigrad_bn():
            y = F.batch_norm(xt, None, None, wt, bt, training=True)
            return mg.grad(y, [xt, wt, bt], grad_outputs=gt)

        ref = minigrad_bn()
        fused = batch_norm_fused(x, w, b, g)[1:]
        for a, b_ in zip(ref, fused):
            np.testing.assert_allclose(a.data, b_, rtol=1e-3, atol=1e-3 * np.abs(b_).max())
        print(f"  {str(shape):<40s} {best_of(minigrad_bn, repeat):22.1f} "
              f"{best_of(lambda: batch_norm_fused(x, w, b, g), repeat):18.1f}")


# ---------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds for LeNet-5 (15)")
    ap.add_argument("--resnet-rounds", type=int, default=5, help="interleaved rounds for ResNet-20 (5)")
    ap.add_argument("--lenet-batch", type=int, default=256)
    ap.add_argument("--resnet-batch", type=int, default=128)
    ap.add_argument("--gap", type=float, default=0.2, help="sleep before each timed step (0.2 s)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if importable")
    ap.add_argument("--no-resnet", action="store_true", help="LeNet-5 only")
    ap.add_argument("--profile", action="store_true", help="op breakdown and cProfile of minigrad's steps")
    ap.add_argument("--alternatives", action="store_true", help="NumPy timings of other conv/pool layouts")
    args = ap.parse_args(argv)

    threads = numpy_blas_threads()
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    print(f"float32 training steps (forward + cross-entropy + backward); numpy {np.__version__}, "
          f"BLAS threads {threads}"
          + (f"; torch {torch.__version__} threads {torch.get_num_threads()}" if torch else "; torch: not used"))
    tuned = {k: os.environ[k] for k in MALLOC_ENV if k in os.environ}
    print(f"glibc malloc: {tuned if tuned else 'defaults (large arrays are mmapped and unmapped on free)'}")

    problems = [("lenet5", args.lenet_batch, args.rounds)]
    if not args.no_resnet:
        problems.append(("resnet20", args.resnet_batch, args.resnet_rounds))
    ok, steps = True, {}
    print("\nchecks (untimed):")
    for name, batch, _ in problems:
        model, x, y = make_problem(name, batch)
        cases = {"minigrad": minigrad_step_fn(model, x, y)}
        if torch:
            cases["torch"] = torch_step_fn(torch_model(name, model.state_dict()), x, y)
            ok &= check_same(name, batch)
        steps[name] = cases

    results = {}
    for name, batch, rounds in problems:
        times = interleaved(steps[name], rounds, warmup=1, gap=args.gap)
        results[name] = times
        shape = "1x28x28" if name == "lenet5" else "3x32x32"
        print(f"\n{name}, batch {batch}x{shape}: median of {rounds} interleaved rounds")
        for k, t in times.items():
            print(f"  {k:<9s} {statistics.median(t) * 1e3:9.1f} ms   (min {min(t) * 1e3:.1f})")
        if "torch" in times:
            r = ratio(times, "minigrad", "torch")
            tgt = ""
            if name == "lenet5":
                tgt = f"   target <= {TARGET_LENET} x torch: {'PASS' if r <= TARGET_LENET else 'FAIL'}"
            print(f"  minigrad / torch (median of same-round ratios): {r:.2f}x{tgt}")

    if args.profile:
        for name, batch, _ in problems:
            n = 5 if name == "lenet5" else 2
            cpu_times(f"minigrad {name} step, batch {batch}", steps[name]["minigrad"], n)
            if "torch" in steps[name]:
                cpu_times(f"torch {name} step, batch {batch}", steps[name]["torch"], n)
            op_breakdown(f"minigrad {name} step, batch {batch}", steps[name]["minigrad"], n)
            profile(f"minigrad {name} step", steps[name]["minigrad"], n, 20, unit="steps", note="")
    if args.alternatives:
        alternatives(repeat=7)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
