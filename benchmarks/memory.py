"""Peak memory of one training step: minigrad (SGD, K-FAC) against PyTorch (SGD), CPU, float32.

    python benchmarks/memory.py                 # the table (PyTorch rows if torch imports)
    python benchmarks/memory.py --no-torch --top 8

Every measurement runs in a fresh subprocess (`--child`), so that one row's peak never hides in
another's. In the child:

1. import the library, build the model, the optimizer and a random batch, and read the resident
   set (VmRSS in /proc/self/status): the baseline;
2. one warm-up step (it creates the momentum buffers and, for K-FAC, the factors and eigenbases);
3. reset the high-water mark (writing 5 to /proc/self/clear_refs sets VmHWM to VmRSS), take the
   measured step, read VmHWM: the step's peak, over the baseline;
4. minigrad only: start tracemalloc (NumPy reports its data buffers to it), take one more step,
   and read tracemalloc's peak: the bytes allocated during a step and live at one time, with
   no allocator or page effects. For K-FAC, a snapshot at the end of each phase of the step
   (gradients, factors, eigenbases, preconditioning) names the largest allocation sites held.

Rows: "peak first" is the warm-up step's peak over the baseline, "peak step" the measured
step's, "held after" VmRSS after the measured step over the baseline (parameters' gradients,
optimizer state, and whatever the allocator keeps). minigrad rows run twice: with minigrad's
malloc policy (every block from the heap, freed ones kept there, up to 1 GiB free;
minigrad/functional/malloc.py) and with MINIGRAD_MALLOC=system (glibc's defaults).

K-FAC: factors every step, eigenbases refreshed every step (inv_update_every=1), so the
measured step does everything a K-FAC step can; fisher="true" (the default: a second, sampled
backward through the retained graph) unless --fisher empirical.
"""
import argparse
import json
import os
import subprocess
import sys
import time

MB = 2 ** 20
NUMPY_DOMAIN = 389047  # tracemalloc domain of NumPy's data buffers (numpy/core/include)

CASES = {  # name: (sizes or "lenet", batch)
    "MLP 784-1024-1024-10, B=1024": ((784, 1024, 1024, 10), 1024),
    "LeNet-5, B=256": ("lenet", 256),
    "MLP 784-256-256-10, B=16384": ((784, 256, 256, 10), 16384),
}


# -- measuring (in the child) ---------------------------------------------------------------------
def status_kb(field):
    """A field of /proc/self/status in kB: VmRSS (resident now) or VmHWM (its peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Set VmHWM to the current VmRSS (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def random_batch(np, sizes, batch):
    rng = np.random.default_rng(0)
    shape = (batch, 1, 28, 28) if sizes == "lenet" else (batch, sizes[0])
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, batch)


def minigrad_setup(sizes, batch, optimizer, fisher):
    import numpy as np
    import minigrad as mg
    import minigrad.functional as F
    from minigrad.functional import malloc
    from minigrad.nn import models
    from minigrad.optim import KFAC, SGD

    model = models.lenet5(rng=0) if sizes == "lenet" else models.mlp(list(sizes), rng=0)
    x, y = random_batch(np, sizes, batch)
    x = mg.tensor(x)
    if optimizer == "sgd":
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    else:
        opt = KFAC(model, lr=0.01, damping=1e-2, cov_update_every=1, inv_update_every=1,
                   fisher=fisher)

        def step():
            opt.zero_grad()
            opt.step(lambda indices=None: (lambda z: (F.cross_entropy(z, y), z))(model(x)))
    return step, opt, {"malloc_policy": malloc.applied}


def torch_setup(sizes, batch):
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    if sizes == "lenet":
        model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                              nn.Linear(84, 10))
    else:
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
    x, y = random_batch(np, sizes, batch)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step, None, {"torch": torch.__version__, "threads": torch.get_num_threads()}


def watch_phases(opt, snapshots):
    """Wrap K-FAC's phases so that each takes a tracemalloc snapshot as it returns."""
    import tracemalloc

    for name in ("_loss_and_gradients", "_running_factors", "_refresh_eigenbases",
                 "_precondition_all", "_apply"):
        method = getattr(opt, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            result = _method(*args, **kwargs)
            snapshots.append((_name, tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()))
            return result
        setattr(opt, name, wrapped)


def top_sites(snapshot, count):
    """The `count` source lines holding the most NumPy buffer bytes in `snapshot`."""
    import tracemalloc

    numpy_only = snapshot.filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
    stats = numpy_only.statistics("lineno")[:count]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [f"{s.size / MB:8.1f} MB {s.count:4d} blocks  "
            f"{os.path.relpath(s.traceback[0].filename, root)}:{s.traceback[0].lineno}" for s in stats]


def traced_step(step, opt, top):
    """tracemalloc's peak over one more step, and (K-FAC) the largest snapshot among phases."""
    import tracemalloc

    snapshots = []
    if opt is not None and top:
        watch_phases(opt, snapshots)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    result = {"traced_peak_mb": peak / MB}
    if snapshots:
        name, held, snapshot = max(snapshots, key=lambda s: s[1])
        result["held_phases"] = {n: h / MB for n, h, _ in snapshots}
        result["top_phase"] = name
        result["top_sites"] = top_sites(snapshot, top)
    return result


def child(args):
    sizes, batch = CASES[args.case]
    if args.library == "torch":
        step, opt, info = torch_setup(sizes, batch)
    else:
        step, opt, info = minigrad_setup(sizes, batch, args.optimizer, args.fisher)
    baseline = status_kb("VmRSS")
    start = time.perf_counter()
    step()
    first = status_kb("VmHWM")
    seconds = time.perf_counter() - start
    reset_peak()
    step()
    result = dict(info, baseline_mb=baseline / 1024, first_peak_mb=(first - baseline) / 1024,
                  step_peak_mb=(status_kb("VmHWM") - baseline) / 1024,
                  held_mb=(status_kb("VmRSS") - baseline) / 1024, first_step_s=seconds)
    if args.library == "minigrad":
        result.update(traced_step(step, opt, args.top if args.optimizer == "kfac" else 0))
    print(json.dumps(result))


# -- the table (in the parent) --------------------------------------------------------------------
def measure(case, library, optimizer, fisher, malloc, top):
    env = dict(os.environ)
    env.pop("MINIGRAD_MALLOC", None)
    if malloc == "system":
        env["MINIGRAD_MALLOC"] = "system"
    command = [sys.executable, __file__, "--child", "--case", case, "--library", library,
               "--optimizer", optimizer, "--fisher", fisher, "--top", str(top)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} {library} {optimizer}: child failed\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows(with_torch):
    """(case, library, optimizer, malloc policy) of each row, in the table's order."""
    for case in list(CASES)[:2]:
        if with_torch:
            yield case, "torch", "sgd", "-"
        for optimizer in ("sgd", "kfac"):
            for malloc in ("kept", "system"):
                yield case, "minigrad", optimizer, malloc
    for malloc in ("kept", "system"):
        yield list(CASES)[2], "minigrad", "kfac", malloc


def cell(value):
    return "-" if value is None else f"{value:.0f}"


def table(args):
    print(f"Peak memory of one step, float32, CPU; MB over the baseline after imports, model and "
          f"data; K-FAC fisher={args.fisher}, factors and eigenbases every step")
    print("| model | library, step | malloc | peak first | peak step | held after | traced peak "
          "| step peak / torch |")
    print("| --- " * 8 + "|")
    torch_peak, details = {}, []
    for case, library, optimizer, malloc in rows(with_torch=not args.no_torch):
        r = measure(case, library, optimizer, args.fisher, malloc, args.top)
        if library == "torch":
            torch_peak[case] = r["step_peak_mb"]
        ratio = r["step_peak_mb"] / torch_peak[case] if case in torch_peak and library != "torch" else None
        label = f"{library} {'K-FAC' if optimizer == 'kfac' else 'SGD'}"
        print(f"| {case} | {label} | {malloc} | {cell(r['first_peak_mb'])} | {cell(r['step_peak_mb'])} "
              f"| {cell(r['held_mb'])} | {cell(r.get('traced_peak_mb'))} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'} |")
        sys.stdout.flush()
        if "top_sites" in r and malloc == "kept":
            details.append((case, r))
    for case, r in details:
        phases = ", ".join(f"{n.strip('_')} {h:.0f}" for n, h in r["held_phases"].items())
        print(f"\n{case}, K-FAC: MB held by NumPy at the end of each phase: {phases}; "
              f"largest sites at the end of {r['top_phase'].strip('_')}:")
        for line in r["top_sites"]:
            print("   ", line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    parser.add_argument("--fisher", default="true", choices=("true", "empirical"))
    parser.add_argument("--top", type=int, default=6, help="allocation sites to list per K-FAC case")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--library", choices=("minigrad", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", choices=("sgd", "kfac"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (only to learn whether the PyTorch rows can run)
        except ImportError:
            print("torch does not import: PyTorch rows skipped")
            args.no_torch = True
    table(args)


if __name__ == "__main__":
    main()
