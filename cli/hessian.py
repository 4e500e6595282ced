"""`minigrad hessian RUN`: the spectrum of the loss Hessian at a checkpoint of a training run.

At the parameters theta of one checkpoint and on B examples of the training split (the first B
rows of ``numpy.random.default_rng(--seed).permutation(n)``), with L(theta) the run's mean loss
on them (cross-entropy, or the autoencoder's binary cross-entropy) and H = d^2 L / dtheta^2
(or, with ``--curvature ggn``, the generalized Gauss-Newton G = J^T H_L J, which is PSD), all
from exact matrix-vector products (minigrad.curvature, double backward):

- extreme eigenvalues: implicitly restarted Lanczos (ARPACK's eigsh). The --top-k largest to
  machine precision; the --bottom-k smallest (algebraic) as lambda_max minus the largest
  eigenvalues of lambda_max I - H, each within about 1e-5 (lambda_max - lambda_min) of an
  eigenvalue (in a tight cluster possibly a neighbour of the smallest): the low end of a
  network's spectrum is a near-continuum around 0 (the GGN's always), where machine precision
  would cost thousands of products. Ritz values never pass the
  ends of the spectrum, so the reported lambda_min is never below the true one: a negative one
  (beyond rounding) proves that L is not convex around theta;
- trace: Hutchinson, tr(H) ~= (1/S) sum_s z_s^T H z_s over S = --trace-samples Rademacher
  probes z_s, with the standard error of that mean;
- density: stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019): m = --lanczos-steps
  Lanczos steps from each of --probes Rademacher probes give Gauss nodes theta_i and weights
  tau_i; phi(lambda) = mean over probes of sum_i tau_i N(lambda; theta_i, sigma^2)
  estimates (1/n) sum_j delta(lambda - lambda_j), n the number of parameters.

The model is in eval mode: BatchNorm uses its running statistics (the function differentiated
is the one the network computes at test time) and no dropout-like randomness enters. The
curvature is computed in --dtype (default float64, whatever the run trained in). The Lanczos
start vectors and the trace and SLQ probes come from independent streams of --seed
(``default_rng([seed, i])``, i = 1..4), so the same options give the same numbers bit for bit.

Output file (--out, default ``RUN/hessian-step{S:08d}.h5`` for checkpoint step S; written to a
temporary file and moved into place; an existing one is an error without --overwrite)::

    attrs     run (the RUN argument), step (the checkpoint's optimizer step), curvature
              ("hessian" or "ggn"), batch_size, seed, dtype, parameters (n), loss (L at theta),
              grad_norm (||dL/dtheta||), top_k, bottom_k, trace_samples, probes, lanczos_steps,
              sigma (the SLQ Gaussian width), matvecs (matrix-vector products taken),
              wall_time (seconds of curvature work), config (JSON of the run's options),
              minigrad_version, numpy_version, h5py_version, python_version
    top_eigenvalues     float64 (top_k,), decreasing
    bottom_eigenvalues  float64 (bottom_k,), increasing (bottom_eigenvalues[0] is lambda_min)
    trace               float64 scalar, Hutchinson's estimate of tr(H)
    trace_std           float64 scalar, its standard error (sample std / sqrt(samples))
    density/grid        float64 (points,), the lambda values
    density/values      float64 (points,), phi(lambda); integrates to ~1 over the grid
    density/nodes       float64 (probes, lanczos_steps), the Gauss nodes theta_i of each probe
    density/weights     float64 (probes, lanczos_steps), their weights tau_i (each row sums
                        to 1); a row is padded with nan where Lanczos stopped early (an
                        invariant subspace: its nodes are then exact)

Terminal output: a table of the top eigenvalues, the smallest, the trace +- its standard error,
lambda_max / |lambda_min|, the number of parameters, the products and the wall time. Picture:
the density on a log y axis with the top eigenvalues as vertical lines, next to the HDF5 file
with the suffix .png (needs matplotlib; without it the command says how to get it and still
succeeds).

Exit status 0 on success; 1 with a one-line ``Error: ...`` for a missing run folder or
checkpoint (the message lists the kept steps), --batch-size larger than the training split,
--top-k / --bottom-k / --lanczos-steps too large for the number of parameters, an existing
output without --overwrite; 2 for command-line misuse, as click reports it.
"""
import inspect
import json
import os
import time

import click
import h5py
import numpy as np

import minigrad as mg
from minigrad.curvature import GGNOperator, HessianOperator, density, trace

from . import plotting, runlog
from .atomic import atomic_write
from .common import UserError, one_line_errors
from .loading import load_run
from .training.model import loss_of

CURVATURES = ("hessian", "ggn")
# ARPACK's tolerance on the residual: machine precision in float64; float32 products carry
# errors of ~1e-7 relative, below which eigsh could never converge.
EIGSH_TOL = {"float64": 0.0, "float32": 1e-5}
# The smallest eigenvalues, relative to lambda_max - lambda_min: separating an eigenvalue from a
# continuum of others within delta costs ~ sqrt(spread / delta) products (see the docstring).
BOTTOM_TOL = 1e-5
BOTTOM_RESTARTS = 300


def curvature_operator(loaded, rows, curvature):
    """(operator, loss, gradient norm) of the mean loss of `rows` of the loaded run, model in
    eval mode."""
    model = loaded.model
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    x, target = loaded.batch(rows)
    outputs = model(mg.tensor(x))
    loss = loss_of(model, outputs, target)
    grads = mg.grad(loss, params, retain_graph=True, allow_unused=True)
    grad_norm = float(np.sqrt(sum(float((g.data ** 2).sum()) for g in grads if g is not None)))
    op = HessianOperator(loss, params) if curvature == "hessian" \
        else GGNOperator(loss, outputs, params)
    return op, float(loss.data), grad_norm


def spectrum(op, top_k, bottom_k, trace_samples, probes, steps, seed, dtype):
    """{"top", "bottom", "trace", "trace_std", "density"} of the operator (see the module
    docstring), each quantity from its own random stream of `seed`."""
    from scipy.sparse.linalg import ArpackNoConvergence

    def stream(i):
        return np.random.default_rng([seed, i])

    try:
        top = largest(op.to_scipy(), top_k, EIGSH_TOL[dtype], stream(1))
        bottom = smallest(op, bottom_k, top[0], stream(2))
    except ArpackNoConvergence as e:
        raise UserError(f"Lanczos (eigsh) did not converge ({' '.join(str(e).split())}); "
                        "try a smaller --top-k / --bottom-k")
    tr, tr_std = trace(op, samples=trace_samples, seed=stream(3), return_std=True)
    slq = density(op, probes=probes, steps=steps, seed=stream(4))
    return {"top": top, "bottom": bottom, "trace": tr, "trace_std": tr_std, "density": slq}


def largest(a, k, tol, rng, **options):
    """The k largest eigenvalues (decreasing) of the symmetric scipy LinearOperator `a` by eigsh,
    its start vector and its restarts drawn from `rng`. (minigrad.curvature.eigenvalues seeds
    only the start vector: scipy >= 1.15 draws a restart vector from a fresh generator unless
    given `rng`, and the results then differ from run to run in the last digits.)"""
    from scipy.sparse.linalg import eigsh
    n = a.shape[0]
    if "rng" in inspect.signature(eigsh).parameters:
        options["rng"] = rng
    values = eigsh(a, k=k, which="LA", tol=tol, v0=rng.standard_normal(n),
                   return_eigenvectors=False, **options)
    return np.sort(np.asarray(values, dtype=np.float64))[::-1]


def smallest(op, k, lam_max, rng):
    """The k smallest eigenvalues of A (increasing): lambda_max - mu for the k largest mu of the
    PSD B = lambda_max I - A, by eigsh with a tolerance relative to mu ~ lambda_max - lambda_min
    (on A itself ARPACK's test is relative to |lambda_min|, hopeless when lambda_min ~ 0)."""
    from scipy.sparse.linalg import LinearOperator
    a = op.to_scipy()
    n = op.shape[0]
    shifted = LinearOperator((n, n), matvec=lambda x: lam_max * x - a.matvec(x), dtype=np.float64)
    mu = largest(shifted, k, BOTTOM_TOL, rng, ncv=min(n, max(2 * k + 1, 40)),
                 maxiter=BOTTOM_RESTARTS)
    return np.sort(lam_max - mu)


def _padded(arrays, width):
    """A (len(arrays), width) float64 array of the rows, padded with nan."""
    out = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


def write_result(path, attrs, result, steps):
    """The HDF5 file of the module docstring, written to a temp file and moved to `path`."""
    slq = result["density"]

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for key, value in {**attrs, **runlog.versions()}.items():
                f.attrs[key] = value
            f.create_dataset("top_eigenvalues", data=np.asarray(result["top"], dtype=np.float64))
            f.create_dataset("bottom_eigenvalues",
                             data=np.asarray(result["bottom"], dtype=np.float64))
            f.create_dataset("trace", data=np.float64(result["trace"]))
            f.create_dataset("trace_std", data=np.float64(result["trace_std"]))
            g = f.create_group("density")
            g.create_dataset("grid", data=slq.grid)
            g.create_dataset("values", data=slq.density)
            g.create_dataset("nodes", data=_padded(slq.nodes, steps))
            g.create_dataset("weights", data=_padded(slq.weights, steps))
    atomic_write(path, write)


def ratio(top, bottom):
    """lambda_max / |lambda_min| (inf when lambda_min is 0)."""
    lam_min = abs(float(bottom[0]))
    return float("inf") if lam_min == 0 else float(top[0]) / lam_min


def table(rows):
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def plot(path, result, title):
    """The SLQ density on a log y axis, top eigenvalues as vertical lines (Ghorbani et al. 2019)."""
    plt = plotting.pyplot()
    if plt is None:
        plotting.hint(path)
        return
    slq = result["density"]
    values = np.asarray(slq.density)
    positive = values[values > 0]
    # Far from every node the Gaussians underflow to 0; show 8 decades below the peak.
    floor = max(positive.min(), values.max() * 1e-8) if positive.size else 1e-300
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.semilogy(slq.grid, np.maximum(values, floor), color="C0", lw=1.2, label="SLQ density")
    for i, lam in enumerate(result["top"]):
        ax.axvline(lam, color="C3", lw=0.8, ls="--", alpha=0.8,
                   label=f"top {len(result['top'])} eigenvalues" if i == 0 else None)
    ax.axvline(result["bottom"][0], color="C2", lw=0.8, ls=":", label="smallest eigenvalue")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    plotting.save(fig, path, dpi=100)


@click.command("hessian", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path())
@click.option("--step", type=click.IntRange(min=0), default=None,
              help="A kept checkpoint (train --keep-checkpoints); default: the latest checkpoint.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Largest eigenvalues to compute.")
@click.option("--bottom-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Smallest (algebraic) eigenvalues to compute.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Training examples the loss is taken on (default: min(1000, split size)).")
@click.option("--curvature", type=click.Choice(CURVATURES), default="hessian", show_default=True,
              help="The Hessian, or the generalized Gauss-Newton matrix (PSD).")
@click.option("--probes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rademacher probes of the SLQ density.")
@click.option("--lanczos-steps", type=click.IntRange(min=1), default=None,
              help="Lanczos steps per SLQ probe (default: min(40, number of parameters)).")
@click.option("--trace-samples", type=click.IntRange(min=2), default=100, show_default=True,
              help="Rademacher probes of Hutchinson's trace estimate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the batch, the Lanczos start vector and the probes.")
@click.option("--dtype", type=click.Choice(("float64", "float32")), default="float64",
              show_default=True, help="Precision of the curvature products.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 file (default RUN/hessian-stepNNNNNNNN.h5); the plot goes next "
                   "to it with the suffix .png.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file and plot.")
@one_line_errors
def hessian(run, step, top_k, bottom_k, batch_size, curvature, probes, lanczos_steps,
            trace_samples, seed, dtype, out, overwrite):
    """Top eigenvalues, trace and eigenvalue density of the loss Hessian at a checkpoint of RUN.

    Lanczos (eigsh) for the extreme eigenvalues, Hutchinson for the trace, stochastic Lanczos
    quadrature for the density, all from exact Hessian-vector products on --batch-size
    training examples, model in eval mode (BatchNorm uses its running statistics). Writes
    RUN/hessian-stepNNNNNNNN.h5 (layout: see cli/hessian.py) and a .png of the density.
    """
    loaded = load_run(run, step=step, split="train", dtype=dtype)
    n_examples = len(loaded.labels)
    if batch_size is None:
        batch_size = min(1000, n_examples)
    if batch_size > n_examples:
        raise UserError(f"--batch-size {batch_size} is more than the {n_examples} examples of "
                        f"the {loaded.config['dataset']} training split")
    if out is None:
        out = os.path.join(run, f"hessian-step{loaded.step:08d}.h5")
    n_params = sum(p.size for p in loaded.model.parameters() if p.requires_grad)
    steps = min(40, n_params) if lanczos_steps is None else lanczos_steps
    for name, value in (("--top-k", top_k), ("--bottom-k", bottom_k)):
        if value >= n_params:   # eigsh needs k < n; the whole spectrum is a job for dense()
            raise UserError(f"{name} {value} must be less than the number of parameters "
                            f"({n_params})")
    if steps > n_params:
        raise UserError(f"--lanczos-steps {steps} must be at most the number of parameters "
                        f"({n_params})")
    png = _plot_path(out, overwrite)

    t0 = time.perf_counter()
    rows = np.random.default_rng(seed).permutation(n_examples)[:batch_size]
    op, loss, grad_norm = curvature_operator(loaded, rows, curvature)
    result = spectrum(op, top_k, bottom_k, trace_samples, probes, steps, seed, dtype)
    wall = time.perf_counter() - t0

    attrs = {"run": str(run), "step": loaded.step, "curvature": curvature,
             "batch_size": batch_size, "seed": seed, "dtype": dtype, "parameters": n_params,
             "loss": loss, "grad_norm": grad_norm, "top_k": top_k, "bottom_k": bottom_k,
             "trace_samples": trace_samples, "probes": probes, "lanczos_steps": steps,
             "sigma": result["density"].sigma, "matvecs": op.calls, "wall_time": wall,
             "config": json.dumps(loaded.config, sort_keys=True)}
    write_result(out, attrs, result, steps)

    name = "Hessian" if curvature == "hessian" else "Gauss-Newton"
    click.echo(f"{name} of {run} at step {loaded.step}: {batch_size} training examples, {dtype}")
    click.echo(table(_summary_rows(result, n_params, trace_samples, loss, grad_norm, op.calls,
                                   wall)))
    click.echo(f"written to {out}")
    plot(png, result, f"{name} spectrum, {os.path.basename(os.path.normpath(run))} step "
                      f"{loaded.step} ({batch_size} examples)")


def _plot_path(out, overwrite):
    """The .png next to --out, once --out is checked: an HDF5 file name, in a folder that
    exists, replacing nothing unless --overwrite."""
    png = os.path.splitext(out)[0] + ".png"
    if png == out:
        raise UserError(f"--out {out!r} is the name of the plot; give the HDF5 file (FILE.h5)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UserError(f"--out {out!r}: folder {folder!r} does not exist")
    for path in (out, png):
        if os.path.exists(path) and not overwrite:
            raise UserError(f"{path} exists; pass --overwrite to replace it")
    return png


def _summary_rows(result, n_params, trace_samples, loss, grad_norm, products, wall):
    """The (name, value) rows printed after the computation."""
    rows_out = [(f"lambda_{i + 1}", f"{lam:.6g}") for i, lam in enumerate(result["top"])]
    rows_out += [(f"lambda_{n_params - i}" + (" (min)" if i == 0 else ""), f"{lam:.6g}")
                 for i, lam in enumerate(result["bottom"])]
    trace_text = f"{result['trace']:.6g} ± {result['trace_std']:.2g} ({trace_samples} probes)"
    rows_out += [("trace", trace_text),
                 ("lambda_max/|lambda_min|", f"{ratio(result['top'], result['bottom']):.4g}"),
                 ("parameters", str(n_params)),
                 ("loss", f"{loss:.6g}"),
                 ("gradient norm", f"{grad_norm:.4g}"),
                 ("products", str(products)),
                 ("wall time", f"{wall:.1f} s")]
    return rows_out
