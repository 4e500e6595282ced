"""Training-step speed of the models in minigrad.nn.models against PyTorch on the CPU.

    python benchmarks/nn.py                    # LeNet-5 and ResNet-20 steps, minigrad and torch
    python benchmarks/nn.py --profile          # plus where minigrad's time goes (by op, cProfile)
    python benchmarks/nn.py --layers           # plus each conv layer: minigrad's ops, torch's, the products alone
    python benchmarks/nn.py --no-torch --rounds 21 --resnet-rounds 7
    OPENBLAS_NUM_THREADS=1 python benchmarks/nn.py   # both libraries on one thread

A step is forward + softmax cross-entropy on integer labels + backward filling .grad of every
parameter, in float32, training mode (batch statistics in BatchNorm); no parameter update.

  LeNet-5   minigrad.nn.models.lenet5(): batch 256 x 1 x 28 x 28    target: minigrad <= 1.2 x torch
  ResNet-20 minigrad.nn.models.resnet20() (option-A shortcuts): batch 128 x 3 x 32 x 32, <= 1.5 x torch

PyTorch runs the same architectures (its ResNet-20 with the same zero-padded strided shortcut)
with the same weights (copied from minigrad's state_dict) and the same number of threads as
numpy's BLAS. Before timing, the script checks (untimed) that both give the same loss and the
same gradients (relative error about 1e-6 in float32); exit status 1 if a check fails.

Timing: each round times every contender once in a rotating order, after a short sleep (--gap)
that lets the previous contender's BLAS threads stop spinning; a ratio is the median over rounds
of the two times taken in the same round, in wall time and in CPU time (the process's, all
threads). On a loaded machine read the CPU ratio at one thread: wall time there is mostly
waiting for a core, and at two threads both libraries' threads spin while they wait.

Memory: importing minigrad.functional keeps freed memory in the process (glibc mallopt,
minigrad/functional/malloc.py), which applies to torch in the same process too. Run with
MINIGRAD_MALLOC=system for glibc's defaults; the first lines of the output say which applies.

--profile times every op call (Function.apply, forward and the ops the backward runs), grouped
by op and by op + input shapes (CPU time at one BLAS thread, else wall time), and prints
cProfile's top functions. --layers times each conv layer's three products alone too, which
is the floor for an im2col convolution on numpy's BLAS (see README.md, "Convolutions").
"""
import argparse
import gc
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import numpy_blas_threads, profile, rel_err

import minigrad as mg
import minigrad.functional as F
from minigrad import function as mg_function
from minigrad.nn import models

TARGETS = {"lenet5": 1.2, "resnet20": 1.5}  # minigrad step <= target x torch


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
def op_breakdown(name, fn, n, top=25, cpu=False):
    """Time inside each op call, forward ('fwd') and inside backward ('bwd'), by op and by op +
    input shapes; the rest is outside ops: Python (module calls, the graph walk) and the array
    work of backward methods that call no op (batch norm's and max pooling's first order).
    cpu: the process's CPU time instead of wall time."""
    cls = mg_function.Function
    orig = cls.__dict__["apply"]
    rec = []
    clock = time.process_time if cpu else time.perf_counter

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
    print(f"\n--- {name}: {wall * 1e3:.0f} ms {'CPU' if cpu else 'wall'} per step (timed ops), "
          f"{in_ops * 1e3:.0f} ms inside ops, {(wall - in_ops) * 1e3:.0f} ms outside ({n} steps) ---")
    print(f"  {'op':<14s} {'phase':<5s} {'calls':>6s} {'ms':>8s} {'share':>6s}")
    for (op, phase), (c, t) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {op:<14s} {phase:<5s} {c / n:6.0f} {t / n * 1e3:8.1f} {t / n / wall:6.1%}")
    print(f"\n  top {top} by op and input shapes:")
    print(f"  {'op':<14s} {'phase':<5s} {'inputs':<44s} {'calls':>6s} {'ms':>8s}")
    for (op, phase, shapes), (c, t) in sorted(by_shape.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {op:<14s} {phase:<5s} {shapes[:44]:<44s} {c / n:6.0f} {t / n * 1e3:8.1f}")


def cpu_times(name, fn, n):
    """Wall, user and system CPU seconds per call; system time is mostly the kernel handing out
    (zeroing) fresh pages for arrays that malloc got from mmap, or from a heap it had trimmed."""
    fn()
    t0, w0 = os.times(), time.perf_counter()
    for _ in range(n):
        fn()
    t1, w1 = os.times(), time.perf_counter()
    print(f"\n--- {name}: per step {(w1 - w0) / n * 1e3:.0f} ms wall, {(t1.user - t0.user) / n * 1e3:.0f} ms "
          f"user CPU, {(t1.system - t0.system) / n * 1e3:.0f} ms system CPU ({n} steps) ---")


# --------------------------------------------------------------------------------- layers
CONV_LAYERS = [  # name, batch, in channels, image size, out channels, kernel, stride, padding
    ("ResNet stem 3->16, 32x32", 128, 3, 32, 16, 3, 1, 1),
    ("ResNet stage 1 16->16, 32x32", 128, 16, 32, 16, 3, 1, 1),
    ("ResNet 16->32, stride 2", 128, 16, 32, 32, 3, 2, 1),
    ("ResNet stage 2 32->32, 16x16", 128, 32, 16, 32, 3, 1, 1),
    ("ResNet 32->64, stride 2", 128, 32, 16, 64, 3, 2, 1),
    ("ResNet stage 3 64->64, 8x8", 128, 64, 8, 64, 3, 1, 1),
    ("LeNet conv1 1->6, 28x28, k5 p2", 256, 1, 28, 6, 5, 1, 2),
    ("LeNet conv2 6->16, 14x14, k5", 256, 6, 14, 16, 5, 1, 0),
]


def cpu_ms(fn, repeat):
    """Median CPU milliseconds of `repeat` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def product_times(n, in_ch, out_ch, k, size, repeat):
    """CPU ms of the forward's and the weight gradient's products alone, in minigrad's layout for
    this conv (k x k kernel, `size` output pixels per example): the GEMMs of one cache-sized
    chunk, on patches already in place, times the number of chunks; and the column gradient's."""
    from minigrad.functional import conv_op as co
    depth = in_ch * k * k
    step = min(n, co._examples_per_chunk(np.zeros(1), depth * size * 4))
    rng = np.random.default_rng(1)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def per_chunk(product):
        return cpu_ms(lambda: [product() for _ in range(-(-n // step))], repeat)

    w2, g3 = rand(out_ch, depth), rand(step, out_ch, size)
    if co._rows_layout(in_ch, (k, k)):  # y^T = rows W2^T, dW2 = g rows, g as (O, nb OH OW)
        rows, g2 = rand(step * size, depth), rand(out_ch, step * size)
        fwd, dw = per_chunk(lambda: rows @ w2.T), per_chunk(lambda: g2 @ rows)
    else:  # y_n = W2 cols_n, dW2^T = sum_n cols_n g_n^T
        cols = rand(step, depth, size)
        fwd = per_chunk(lambda: np.matmul(w2, cols))
        dw = per_chunk(lambda: np.matmul(cols, g3.transpose(0, 2, 1)).sum(axis=0))
    return fwd, dw, per_chunk(lambda: np.matmul(w2.T, g3))


def conv_products(n, c, h, o, k, s, p, repeat):
    """The products alone of minigrad's forward, weight gradient and input gradient (the
    transposed convolution's forward products, or the column gradient of the col2im path)."""
    from minigrad.functional import conv_op as co
    oh = (h + 2 * p - k) // s + 1
    fwd, dw, column_grad = product_times(n, c, o, k, oh * oh, repeat)
    if co._transposed_conv_fits(c, o, (h, h), (oh, oh), (s, s), (p, p), (k, k)):
        return fwd, dw, product_times(n, o, c, k, h * h, repeat)[0]
    return fwd, dw, column_grad


def layers(repeat):
    """Each conv layer of the two nets, forward + weight gradient + input gradient: minigrad's
    ops (conv_op.py, on arrays), torch's conv2d and convolution_backward, and minigrad's products
    alone (`conv_products`); then batch norm and max pooling, forward + backward. CPU ms."""
    import torch
    from minigrad.functional import conv_op as co
    rng = np.random.default_rng(0)
    f32 = np.float32
    print(f"\n--- layers: CPU ms, median of {repeat}, forward + dW + dX "
          f"(LeNet conv1: no dX, as in training) ---")
    print(f"  {'conv layer':<32s} {'minigrad':>9s} {'torch':>7s} {'ratio':>6s} {'products':>9s}  "
          f"minigrad fwd / dW / dX")
    for name, n, c, h, o, k, s, p in CONV_LAYERS:
        x = rng.standard_normal((n, c, h, h)).astype(f32)
        w = (rng.standard_normal((o, c, k, k)) * 0.1).astype(f32)
        oh = (h + 2 * p - k) // s + 1
        g = rng.standard_normal((n, o, oh, oh)).astype(f32)
        need_dx = c > 1
        ours = [cpu_ms(lambda: co.conv_forward(x, w, None, (s, s), (p, p)), repeat),
                cpu_ms(lambda: co.conv_weight_grad(x, g, (k, k), (s, s), (p, p)), repeat),
                cpu_ms(lambda: co.conv_input_grad(g, w, (h, h), (s, s), (p, p)), repeat) if need_dx else 0.0]
        xt, wt, gt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)
        theirs = cpu_ms(lambda: torch.nn.functional.conv2d(xt, wt, None, s, p), repeat) + cpu_ms(
            lambda: torch.ops.aten.convolution_backward(gt, xt, wt, None, [s, s], [p, p], [1, 1], False,
                                                        [0, 0], 1, [need_dx, True, False]), repeat)
        floor = conv_products(n, c, h, o, k, s, p, repeat)
        floor = sum(floor if need_dx else floor[:2])
        print(f"  {name:<32s} {sum(ours):9.1f} {theirs:7.1f} {sum(ours) / theirs:6.2f} {floor:9.1f}  "
              f"{ours[0]:.1f} / {ours[1]:.1f} / {ours[2]:.1f}")

    print(f"\n  {'batch norm (training) / max pool 2x2':<40s} {'minigrad':>9s} {'torch':>7s}")
    for shape in ((128, 16, 32, 32), (128, 32, 16, 16), (128, 64, 8, 8)):
        x, g = rng.standard_normal(shape).astype(f32), rng.standard_normal(shape).astype(f32)
        c = shape[1]
        xm, wm, bm = (mg.tensor(a, requires_grad=True) for a in (x, np.ones(c, f32), np.zeros(c, f32)))
        xt = torch.from_numpy(x).requires_grad_()
        bn, gt = torch.nn.BatchNorm2d(c), torch.from_numpy(g)
        ours = cpu_ms(lambda: mg.grad(F.batch_norm(xm, None, None, wm, bm, training=True), [xm, wm, bm],
                                      grad_outputs=mg.tensor(g)), repeat)
        theirs = cpu_ms(lambda: torch.autograd.grad(bn(xt), [xt, bn.weight, bn.bias], gt), repeat)
        print(f"  {'batch norm ' + str(shape):<40s} {ours:9.1f} {theirs:7.1f}")
    for shape in ((256, 6, 28, 28), (256, 16, 10, 10)):
        x = rng.standard_normal(shape).astype(f32)
        g = rng.standard_normal(shape[:2] + (shape[2] // 2, shape[3] // 2)).astype(f32)
        xm, xt, gt = mg.tensor(x, requires_grad=True), torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
        ours = cpu_ms(lambda: mg.grad(F.max_pool2d(xm, 2), xm, grad_outputs=mg.tensor(g)), repeat)
        theirs = cpu_ms(lambda: torch.autograd.grad(torch.nn.functional.max_pool2d(xt, 2), xt, gt), repeat)
        print(f"  {'max pool ' + str(shape):<40s} {ours:9.1f} {theirs:7.1f}")


# ----------------------------------------------------------------------------------- timing
def interleaved_times(cases, rounds, gap):
    """{name: [(wall, cpu) seconds per round]}: each case once per round, in a rotating order,
    each after `gap` seconds of sleep (idle BLAS threads of the previous case stop spinning)."""
    names = list(cases)
    for name in names:  # warm-up
        cases[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        gc.collect()
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(gap)
            w0, c0 = time.perf_counter(), time.process_time()
            cases[name]()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    return times


def report(name, batch, times):
    """Medians per contender; with torch, the median same-round ratios and the target."""
    shape = "1x28x28" if name == "lenet5" else "3x32x32"
    print(f"\n{name}, batch {batch}x{shape}: median of {len(next(iter(times.values())))} interleaved rounds")
    for k, t in times.items():
        wall, cpu = zip(*t)
        print(f"  {k:<9s} {statistics.median(wall) * 1e3:9.1f} ms wall (min {min(wall) * 1e3:.1f})  "
              f"{statistics.median(cpu) * 1e3:9.1f} ms CPU (min {min(cpu) * 1e3:.1f})")
    if "torch" not in times:
        return
    ratios = [[a[i] / b[i] for a, b in zip(times["minigrad"], times["torch"])] for i in (0, 1)]
    wall, cpu = (statistics.median(r) for r in ratios)
    target = TARGETS[name]
    print(f"  minigrad / torch (median of same-round ratios): wall {wall:.2f}x (rounds "
          f"{min(ratios[0]):.2f}-{max(ratios[0]):.2f}), CPU {cpu:.2f}x (rounds {min(ratios[1]):.2f}-"
          f"{max(ratios[1]):.2f});  target <= {target}: {'PASS' if cpu <= target else 'FAIL'} (CPU)")


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
    ap.add_argument("--layers", action="store_true", help="each conv layer, batch norm and pooling vs torch")
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
    try:
        from minigrad.functional.malloc import applied as kept
    except ImportError:  # a minigrad from before the policy
        kept = False
    malloc_vars = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "MINIGRAD_MALLOC"}
    print("malloc: " + ("minigrad keeps freed memory (mallopt; torch too, one process)" if kept else
                        f"glibc defaults, or the environment's {malloc_vars}" if malloc_vars else "glibc defaults"))

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

    for name, batch, rounds in problems:
        report(name, batch, interleaved_times(steps[name], rounds, args.gap))

    if args.profile:
        for name, batch, _ in problems:
            n = 5 if name == "lenet5" else 2
            cpu_times(f"minigrad {name} step, batch {batch}", steps[name]["minigrad"], n)
            if "torch" in steps[name]:
                cpu_times(f"torch {name} step, batch {batch}", steps[name]["torch"], n)
            op_breakdown(f"minigrad {name} step, batch {batch}", steps[name]["minigrad"], n, cpu=threads == 1)
            profile(f"minigrad {name} step", steps[name]["minigrad"], n, 20, unit="steps", note="")
    if args.layers and torch:
        layers(repeat=7)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
