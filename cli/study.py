"""What the study commands (scaling, sensitivity, compare) share: their options, running trials,
reading a trial's outcome, picking the best trial, and the trial table in the study's HDF5.

A trial is one ordinary `minigrad train` run, in STUDY/trials/<optimizer>-b<B>-<hash>/, where
<hash> is the first 10 hex digits of the SHA-1 of the trial's options (JSON, sorted keys): the
same trial in any later study with the same folder is found again, and a changed option makes a
new trial instead of reusing an old one. Running a study again therefore resumes it:

    run.h5 says "finished" or "failed"   done, skipped (its results are read back)
    a checkpoint.npz, not done           continued with `minigrad train --resume`
    anything else                        started again from scratch (--overwrite)

A trial runs `minigrad train` in a worker process (a concurrent.futures pool of --jobs J
processes, "spawn" start method), with its output in the trial folder's train.log. Each worker
gets --threads-per-job BLAS threads (default 1, through OMP/OPENBLAS/MKL_NUM_THREADS): the thread
count changes the rounding of matrix products, so it is fixed whatever J is, and a trial is
deterministic given its options (the seed is one of them): --jobs changes wall times, never
results. (One thread per process is also the fast choice for small models on shared cores:
OpenBLAS threads that wait for a busy core make a step several times slower.) A trial that diverges ends with status
"failed" and counts as not reaching the target. Ctrl-C stops the running trials after their
current step (each writes its checkpoint) and ends the study with exit status 130; the same
command continues it.

What a trial is given. The study sets the data, model, optimizer, batch size, seed, budget
(--budget-epochs E, or per batch size B1=E1,B2=E2,...), the evaluation interval (--eval-every K
steps, or per batch size B1=K1,...; without it ceil(steps per epoch / --evals-per-epoch)) and the
targets, and the point of the search; TRIAL_DEFAULTS below; and any other `minigrad train`
option fixed for the whole study with --train-option [OPTIMIZER.]NAME=VALUE (repeatable; without
the prefix it goes to every studied optimizer it applies to), e.g. --train-option
kfac.damping_form=eigen --train-option kfac.factor_init=identity. A fixed option is checked by
`minigrad train`'s own option types before any trial starts.

Outcome of a trial (trial_result): `reached` = every given target (--target-accuracy on the test
split, --target-loss on the whole training split) was met at some evaluation; steps_to_target is
the first evaluated step at which the last of them was met (so its resolution is the evaluation
interval: --evals-per-epoch); epochs = steps / ceil(n / B); wall time (the optimizer steps'
own time, run.h5 steps/step_time: evaluations and file writes excluded) and cost (gradient
equivalents, cli/cost.py) are summed over the steps up to it.
"""
import concurrent.futures
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time
import traceback

import click
import numpy as np

from . import parallel, runlog, search
from .common import UserError
from .inspect import _table as table  # noqa: F401  (the study commands' tables)

TRIALS = "trials"
LOG_FILE = "train.log"
DONE = ("finished", "failed")
EXIT_INTERRUPTED = 130
# what a trial exits with when a stop signal ended it after a step, with a checkpoint (train's
# STOP_SIGNALS: 128 + SIGINT, SIGTERM, SIGUSR1)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
STOPPED = {128 + int(s) for s in STOP_SIGNALS}
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# `minigrad train` options every trial gets unless --train-option says otherwise: a run stuck at
# chance ends as diverged after 3 evaluations (train's --diverged-after rule) instead of using its
# whole budget, and no per-layer statistics (no study reads them; at large batches they cost as
# much as the training)
TRIAL_DEFAULTS = {"diverged_after": 3, "layer_stats": False}
# what the study itself sets: not for --train-option
STUDY_SET = ("dataset", "model", "hidden", "optimizer", "batch_size", "epochs", "steps", "seed",
             "dtype", "eval_every", "target_accuracy", "target_loss", "stop_at_target", "out",
             "overwrite", "resume", "config_file", "profile")


# -------------------------------------------------------------------------------- options
def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    return sorted(set(values))


def _per_batch(ctx, param, value):
    """K or B1=K1,B2=K2,...: an int for every batch size, or one per batch size ({B: K})."""
    if value is None or isinstance(value, (int, dict)):
        return value
    text = str(value).strip()
    try:
        if "=" not in text:
            out = int(text)
            ok = out >= 1
        else:
            out = {}
            for part in text.split(","):
                b, _, k = part.partition("=")
                out[int(b)] = int(k)
            ok = all(b >= 1 and k >= 1 for b, k in out.items())
    except ValueError:
        ok = False
    if not ok:
        raise click.BadParameter(f"expected a positive int K, or B1=K1,B2=K2,... with positive "
                                 f"ints (a value per batch size), got {value!r}")
    return out


def per_batch(options, name, batch_size):
    """The value of a _per_batch option at `batch_size`; UsageError if it gives none."""
    value = options[name]
    if not isinstance(value, dict):
        return value
    if batch_size not in value:
        raise click.UsageError(f"--{name.replace('_', '-')} gives no value for batch size "
                               f"{batch_size} (it has {', '.join(map(str, sorted(value)))})")
    return value[batch_size]


def per_batch_text(options, name):
    value = options[name]
    return str(value) if not isinstance(value, dict) else \
        ",".join(f"{b}={k}" for b, k in sorted(value.items()))


def fixed_train_options(entries, optimizers):
    """{optimizer: {name: value}} of the --train-option entries ("[OPT.]NAME=VALUE"), each value
    converted and checked by `minigrad train`'s own option; UsageError naming the entry."""
    from .train import APPLIES
    from .train import train as train_command

    params = {p.name: p for p in train_command.params if p.name}
    ctx = click.Context(train_command)
    out = {opt: dict(TRIAL_DEFAULTS) for opt in optimizers}
    for entry in entries:
        key, sep, text = entry.partition("=")
        scope, dot, name = key.strip().rpartition(".")
        name = name.replace("-", "_")
        if not sep or (dot and scope not in search.OPTIMIZERS):
            raise click.UsageError(f"--train-option {entry!r}: expected [OPTIMIZER.]NAME=VALUE, "
                                   "e.g. kfac.damping_form=eigen")
        if name not in params or name in STUDY_SET:
            why = "is set by the study" if name in STUDY_SET else "is not a `minigrad train` option"
            raise click.UsageError(f"--train-option {entry!r}: {name.replace('_', '-')} {why}")
        try:
            value = params[name].type_cast_value(ctx, text.strip())
        except click.BadParameter as e:
            raise click.UsageError(f"--train-option {entry!r}: {e.format_message()}")
        applies = APPLIES.get(name, search.OPTIMIZERS)
        if dot:
            if scope not in optimizers:
                raise click.UsageError(f"--train-option {entry!r}: {scope} is not in --optimizers")
            if scope not in applies:
                raise click.UsageError(f"--train-option {entry!r}: {name.replace('_', '-')} "
                                       f"applies to {', '.join(applies)} only, not {scope}")
            targets = [scope]
        else:
            targets = [o for o in optimizers if o in applies]
            if not targets:
                raise click.UsageError(f"--train-option {entry!r}: {name.replace('_', '-')} "
                                       f"applies to {', '.join(applies)} only, none of the "
                                       f"studied optimizers ({', '.join(optimizers)})")
        for opt in targets:
            if name in search.AXES[opt] + search.EXTRA_AXES[opt]:
                raise click.UsageError(f"--train-option {entry!r}: {name} is a search axis of "
                                       f"{opt}; fix it with --grid {opt}.{name}=VALUE")
            out[opt][name] = value
    return out


def _optimizer_list(ctx, param, value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in search.OPTIMIZERS]
    if not names or unknown:
        raise click.BadParameter(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {','.join(search.OPTIMIZERS)}")
    return list(dict.fromkeys(names))


def study_options(batch_option):
    """The options every study command takes; `batch_option` is the command's batch-size
    option (a list for scaling and sensitivity, one size for compare)."""
    from .train import DATASETS, MODELS, _parse_hidden

    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True),
        click.option("--model", type=click.Choice([m for m in MODELS if m != "autoencoder"]),
                     default="mlp", show_default=True),
        click.option("--hidden", callback=_parse_hidden, default="64,64", show_default=True,
                     help="Hidden sizes of the mlp."),
        click.option("--optimizers", callback=_optimizer_list, default="sgd,kfac,trcg,strcg",
                     show_default=True, help="Comma-separated optimizers to study."),
        batch_option,
        click.option("--target-accuracy", type=click.FloatRange(0, 1), default=None,
                     help="Target test accuracy."),
        click.option("--target-loss", type=click.FloatRange(min=0), default=None,
                     help="Target loss on the whole training split."),
        click.option("--budget-epochs", callback=_per_batch, default="20", show_default=True,
                     metavar="E|B=E,...",
                     help="Epochs a trial may use, or one value per batch size (128=10,256=20); a "
                          "trial that has not reached the target by then fails."),
        click.option("--search", "search_kind", type=click.Choice(search.SEARCHES),
                     default="grid", show_default=True,
                     help="grid: every point of each optimizer's grid; random: --trials points."),
        click.option("--trials", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Points per optimizer and batch size of --search random."),
        click.option("--grid", "grid_entries", multiple=True, metavar="OPT.NAME=V1,V2",
                     help="Replace one axis of a grid, e.g. --grid sgd.lr=0.05,0.1 (repeatable)."),
        click.option("--lr-scaling", type=click.Choice(search.SCALING_RULES), default="sqrt",
                     show_default=True, help="How lr grows with the batch size from the base one."),
        click.option("--base-batch-size", type=click.IntRange(min=1), default=None,
                     help="The batch size the grids' lr values are for (default: the smallest)."),
        click.option("--evals-per-epoch", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Evaluations per epoch: the resolution of steps to target."),
        click.option("--eval-every", callback=_per_batch, default=None, metavar="K|B=K,...",
                     help="Evaluate every K optimizer steps instead (or one K per batch size, "
                          "128=20,1024=5): the resolution of steps to target in steps."),
        click.option("--train-option", "train_options", multiple=True,
                     metavar="[OPT.]NAME=VALUE",
                     help="A `minigrad train` option fixed for every trial (of OPT only with the "
                          "prefix), e.g. kfac.damping_form=eigen; repeatable. Trials default to "
                          "diverged_after=3 and layer_stats=false."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Train every setting with seeds --seed, --seed+1, ...: a setting "
                          "reaches the target if every seed does; its figures are the means."),
        click.option("--dtype", type=click.Choice(("float32", "float64")), default="float32",
                     show_default=True),
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Trials run in parallel processes."),
        click.option("--threads-per-job", type=click.IntRange(min=1), default=1,
                     show_default=True,
                     help="BLAS threads of each trial process (results depend on it through "
                          "rounding; --jobs does not change them)."),
        click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="Study folder (default studies/<command>-<UTC time>)."),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def check_targets(options, need_target=True):
    if need_target and options["target_accuracy"] is None and options["target_loss"] is None:
        raise click.UsageError("give --target-accuracy and/or --target-loss: the study measures "
                               "the steps each optimizer needs to reach it")


def study_folder(out, command, jobs=1):
    """The study's folder, created; under mpiexec (P > 1) only rank 0 prints from here on, and
    --jobs must be 1 (each trial uses all the processes)."""
    comm = parallel.communicator()
    if comm.world_size > 1:
        if jobs != 1:
            raise click.UsageError(f"--jobs {jobs}: under mpiexec every trial is trained by all "
                                   f"{comm.world_size} processes, one trial at a time; use --jobs 1")
        if comm.rank != 0:
            sys.stdout = open(os.devnull, "w")   # noqa: SIM115 (for the life of the process)
    if out is None:
        out = os.path.join("studies", f"{command}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
        out = comm.broadcast_object(out)   # rank 0's clock decides
    if os.path.exists(out) and not os.path.isdir(out):
        raise click.UsageError(f"--out {out!r} is a file, not a study folder")
    os.makedirs(os.path.join(out, TRIALS), exist_ok=True)
    return out


# --------------------------------------------------------------------------------- trials
def trial_spec(options, optimizer, batch_size, point, steps_per_epoch, stop_at_target,
               fixed=None):
    """The `minigrad train` options of one trial, as {option name: value}; `fixed` are the
    optimizer's fixed train options (fixed_train_options)."""
    eval_every = per_batch(options, "eval_every", batch_size) if options.get("eval_every") else \
        max(1, math.ceil(steps_per_epoch / options["evals_per_epoch"]))
    spec = {"dataset": options["dataset"], "model": options["model"],
            "hidden": list(options["hidden"]) if options["model"] == "mlp" else None,
            "optimizer": optimizer, "batch_size": batch_size,
            "epochs": per_batch(options, "budget_epochs", batch_size), "seed": options["seed"],
            "dtype": options["dtype"], "eval_every": eval_every,
            "target_accuracy": options["target_accuracy"], "target_loss": options["target_loss"],
            "stop_at_target": bool(stop_at_target and (options["target_accuracy"] is not None
                                                       or options["target_loss"] is not None))}
    spec.update(fixed or {})
    spec.update(point)
    return spec


def trial_name(spec):
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{spec['optimizer']}-b{spec['batch_size']}-{digest}"


def train_args(spec, folder, mode):
    """The command line of a trial for `minigrad train` (mode: "new", "resume", "restart")."""
    args = ["--out", folder]
    if mode == "resume":
        return args + ["--resume"]
    args.append("--overwrite")   # "new" too: the folder already holds the trial's train.log
    for key, value in spec.items():
        flag = "--" + key.replace("_", "-")
        if value is False and key in NEGATABLE:
            args.append("--no-" + key.replace("_", "-"))
        elif value is None or value is False:
            continue
        elif value is True:
            args.append(flag)
        elif key == "hidden":
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    return args


NEGATABLE = ("layer_stats",)   # train's on/off flags that default to on


def trial_mode(folder):
    """"done", "resume", "restart" or "new" (see the module docstring); a checkpoint.npz that
    cannot be read (damaged, or of format 1: a pickle, refused unread) counts as none: "restart"."""
    if not os.path.isdir(folder) or not os.listdir(folder):
        return "new"
    try:
        status = runlog.read_run(folder)["attrs"].get("status")
    except Exception:   # missing or damaged run.h5: the trial did not get far
        status = None
    if status in DONE:
        return "done"
    if os.path.isfile(runlog.checkpoint_path(folder)):
        try:
            runlog.read_checkpoint(folder)
        except (OSError, ValueError):
            # damaged, or of an older format (a pickle, refused unread): `train --resume` would
            # stop on it, so the trial starts again instead (its options are the same)
            return "restart"
        return "resume"
    return "restart"


def execute(spec, folder, mode=None):
    """Run one trial (in this process) to its end; returns (exit code, message). The output of
    `minigrad train` goes to folder/train.log (on rank 0; the other ranks' to os.devnull)."""
    from .train import train

    mode = mode or trial_mode(folder)
    if mode == "done":
        return 0, "done earlier"
    stop = os.path.join(os.path.dirname(os.path.dirname(folder)), STOP_FILE)
    if os.path.exists(stop):   # the study was told to stop (_forward_stops)
        with open(stop) as fh:
            return 128 + int(fh.read().strip() or signal.SIGTERM), "not started: the study stopped"
    root = parallel.is_root()
    if root:
        os.makedirs(folder, exist_ok=True)
    args = train_args(spec, folder, mode)
    log_path = os.path.join(folder, LOG_FILE) if root else os.devnull
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        print("$ minigrad train " + " ".join(args), flush=True)
        try:
            train.main(args=args, prog_name="minigrad train", standalone_mode=False)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except click.ClickException as e:
            e.show()
            return 2, e.format_message()
        except click.Abort:
            code = EXIT_INTERRUPTED
        except Exception:   # a bug, not a user error: keep the traceback in the log
            traceback.print_exc()
            code = 1
    return code, ""


@contextlib.contextmanager
def _blas_threads(threads):
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: str(threads) for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init():
    # an idle worker ignores the stop signals; a training trial installs its own handlers
    # (checkpoint, then exit 128 + signal) and so stops cleanly after its current step
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


STOP_FILE = ".stop"   # in the study folder: trials not yet started return at once


@contextlib.contextmanager
def _forward_stops(pool, root):
    """While the pool runs: SIGTERM/SIGUSR1 sent to the study's process (a scheduler's stop or
    preemption warning) goes on to every worker, whose trial then checkpoints after its step,
    and STOP_FILE (holding the signal's number) makes the trials queued behind them return
    without starting. The handler raises nothing: the pool's bookkeeping is never cut short,
    and the study ends once every worker has returned. Ctrl-C at a terminal reaches the
    workers itself."""
    def handle(signum, frame):
        with open(os.path.join(root, STOP_FILE), "w") as fh:
            fh.write(str(int(signum)))
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signum)
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            previous[signum] = signal.signal(signum, handle)
    except ValueError:   # not the main thread
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _timed(spec, folder):
    started = time.perf_counter()
    code, message = execute(spec, folder)
    return code, message, time.perf_counter() - started


def run_trials(root, specs, jobs=1, threads=1):
    """Run every spec (skipping finished ones) in `jobs` worker processes with `threads` BLAS
    threads each, and return their results in order. Prints one line per trial; exits 130 if
    interrupted, raises UserError if a trial could not start (bad options)."""
    folders = [os.path.join(root, TRIALS, trial_name(s)) for s in specs]
    width = len(str(len(specs)))
    count = 0

    def report(i, code, message, seconds):
        nonlocal count
        count += 1
        if code == 2:
            raise UserError(f"trial {folders[i]} could not start: {message}")
        click.echo(f"[{count:>{width}}/{len(specs)}] {describe(specs[i])}: "
                   f"{outcome(trial_result(folders[i]))}"
                   + (f"  ({message})" if message else f"  {seconds:.1f}s"))

    comm = parallel.communicator()
    if comm.world_size > 1:
        return _run_trials_distributed(comm, root, specs, folders, report)
    todo = []
    for i, folder in enumerate(folders):
        if trial_mode(folder) == "done":
            report(i, 0, "done earlier", 0.0)
        else:
            todo.append(i)
    interrupted = 0   # the exit status to leave with, 0 while not interrupted
    if todo:
        # Workers are spawned when tasks are submitted and inherit the environment then. Every
        # trial runs in a worker, with the same BLAS thread count whatever --jobs is: a
        # different thread count changes the rounding of matrix products, and so the run.
        with _blas_threads(threads):
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(todo)), initializer=_worker_init,
                mp_context=multiprocessing.get_context("spawn"))
            with contextlib.suppress(FileNotFoundError):   # an earlier session's
                os.remove(os.path.join(root, STOP_FILE))
            try:
                with _forward_stops(pool, root):
                    futures = {pool.submit(_timed, specs[i], folders[i]): i for i in todo}
                    for future in concurrent.futures.as_completed(futures):
                        code, message, seconds = future.result()
                        if code in STOPPED:
                            interrupted = interrupted or code
                        else:
                            report(futures[future], code, message, seconds)
            except KeyboardInterrupt:
                interrupted = EXIT_INTERRUPTED
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    if interrupted:
        _interrupted(root, interrupted)
    return [trial_result(f) for f in folders]


def _interrupted(root, code=EXIT_INTERRUPTED):
    parallel.echo(f"interrupted: finished trials are kept in {os.path.join(root, TRIALS)} "
                  "(stopped ones with their checkpoints); run the same command again to continue "
                  "the study", err=True)
    sys.exit(code)


def _run_trials_distributed(comm, root, specs, folders, report):
    """Under mpiexec: the trials one after the other, each trained by all P processes together
    (data parallelism inside a trial). Rank 0 decides what each trial needs (its files), reports
    and writes; the other ranks follow."""
    for i, (spec, folder) in enumerate(zip(specs, folders)):
        mode = comm.broadcast_object(trial_mode(folder) if comm.rank == 0 else None)
        started = time.perf_counter()
        code, message = execute(spec, folder, mode)
        if code in STOPPED:
            _interrupted(root, code)
        if code == 2:   # a usage error of train: the same on every rank
            raise UserError(f"trial {folder} could not start: {message}")
        if comm.rank == 0:
            report(i, code, message, time.perf_counter() - started)
        comm.barrier()   # rank 0 has read the trial's files before anyone moves on
    return [trial_result(f) if comm.rank == 0 else _crashed(f) for f in folders]


# -------------------------------------------------------------------------------- results
HYPERPARAMETERS = ("lr", "momentum", "damping", "kl_clip", "radius", "hessian_fraction")


def describe(spec):
    params = " ".join(f"{k}={spec[k]:.4g}" for k in HYPERPARAMETERS if spec.get(k) is not None)
    return f"{spec['optimizer']:<5} B={spec['batch_size']:<5} {params}"


def outcome(result):
    if result["status"] == "crashed":
        return f"crashed, see {os.path.join(result['folder'], LOG_FILE)}"
    if result["status"] == "failed":
        return "diverged"
    if result["reached"]:
        return (f"target at step {result['steps_to_target']} "
                f"(epoch {result['epochs_to_target']:.2f})")
    if result["targets"]:
        return f"target not reached, final test acc {result['final_test_accuracy']:.4f}"
    return f"final test acc {result['final_test_accuracy']:.4f}"


def _last(values):
    return float(values[-1]) if values is not None and len(values) else float("nan")


def _crashed(folder):
    """The outcome of a trial that left no readable run.h5 (see its train.log)."""
    nan = float("nan")
    return {"folder": folder, "status": "crashed", "targets": [], "reached": False,
            "steps_to_target": None, "epochs_to_target": nan, "wall_to_target": nan,
            "cost_to_target": nan, "steps": 0, "epochs": 0.0, "wall_time": nan, "cost": nan,
            "curvature_products": 0, "cg_iterations": 0, "final_train_loss": nan,
            "final_train_split_loss": nan, "final_test_loss": nan, "final_test_accuracy": nan}


def trial_result(folder):
    """A trial's outcome (see the module docstring) as a dict of plain values; status
    "crashed" when the trial left no readable run.h5."""
    try:
        run = runlog.read_run(folder)
    except (OSError, KeyError, ValueError):
        return _crashed(folder)
    attrs, steps, evals = run["attrs"], run["steps"], run["evals"]
    config = json.loads(attrs["config"])
    at = []
    targets = []
    for target, key in (("target_accuracy", "target_step"), ("target_loss", "target_loss_step")):
        if config.get(target) is not None:
            targets.append(target)
            step = int(attrs.get(key, -1))
            at.append(step if step >= 0 else None)
    reached = bool(targets) and all(s is not None for s in at)
    step = max(at) if reached else None
    cost = np.cumsum(steps.get("grad_equivalents", np.zeros(0)))
    # training time only: evaluations and file writes would favour methods with fewer steps
    wall = np.cumsum(steps.get("step_time", np.zeros(0)))
    per_epoch = config.get("steps_per_epoch") or 1

    def upto(series, k):
        return float(series[k - 1]) if k and len(series) >= k else (0.0 if k == 0 else float("nan"))

    total_steps = int(attrs.get("steps", len(steps.get("loss", []))))
    return {
        "folder": folder, "status": str(attrs.get("status")), "targets": targets,
        "reached": reached, "steps_to_target": step,
        "epochs_to_target": step / per_epoch if reached else float("nan"),
        "wall_to_target": upto(wall, step) if reached else float("nan"),
        "cost_to_target": upto(cost, step) if reached else float("nan"),
        "steps": total_steps, "epochs": total_steps / per_epoch,
        "wall_time": float(wall[-1]) if len(wall) else float("nan"),
        "cost": float(cost[-1]) if len(cost) else float("nan"),
        "curvature_products": int(np.sum(steps.get("curvature_products", 0))),
        "cg_iterations": int(np.sum(steps.get("cg_iterations", 0))),
        "final_train_loss": _last(evals.get("train_loss")),
        "final_train_split_loss": _last(evals.get("train_split_loss")),
        "final_test_loss": _last(evals.get("test_loss")),
        "final_test_accuracy": _last(evals.get("test_accuracy")),
    }


SEED_MEANS = ("steps_to_target", "epochs_to_target", "wall_to_target", "cost_to_target", "steps",
              "epochs", "wall_time", "cost", "curvature_products", "cg_iterations",
              "final_train_loss", "final_train_split_loss", "final_test_loss",
              "final_test_accuracy")


def setting_key(spec):
    """What identifies a setting: a trial's options except its seed (a JSON string)."""
    return json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True)


def aggregate(specs, results):
    """(setting specs, setting results): the trials of one setting (the same options but the
    seed) combined. A setting reaches the target if every seed does; its figures are the means
    over its seeds (to-target ones only when it reached the target), with steps_min/steps_max
    the spread of steps to target, reached_fraction the share of seeds that reached it, status
    "failed" if any seed diverged, and trial/folder those of its first seed. One seed: the
    trial's own result, with trial, seeds=1 and the spread added."""
    groups = {}
    for i, spec in enumerate(specs):
        key = setting_key(spec)
        groups.setdefault(key, []).append(i)
    out_specs, out_results = [], []
    for idx in groups.values():
        rs = [results[i] for i in idx]
        r = dict(rs[0], trial=idx[0], seeds=len(idx))
        steps = [x["steps_to_target"] for x in rs if x["reached"]]
        r["reached"] = all(x["reached"] for x in rs)
        r["reached_fraction"] = len(steps) / len(rs)
        r["steps_min"], r["steps_max"] = (min(steps), max(steps)) if steps else (None, None)
        if any(x["status"] == "failed" for x in rs):
            r["status"] = "failed"
        if len(rs) > 1:
            for key in SEED_MEANS:
                if key.endswith("_to_target") and not r["reached"]:
                    r[key] = None if key == "steps_to_target" else float("nan")
                    continue
                values = [x[key] for x in rs]
                r[key] = float(np.mean([np.nan if v is None else v for v in values]))
        out_specs.append(specs[idx[0]])
        out_results.append(r)
    return out_specs, out_results


def best_index(results):
    """The best trial: among those that reached the target, the fewest steps, then the lowest
    cost, then the best final test accuracy; if none reached it, the best final test accuracy,
    then the lowest final train loss. Wall time never decides (it is noisy; the rest is
    deterministic). Ties left after that go to the first trial. None if there are no trials."""
    if not results:
        return None

    def worst_if_nan(value, sign=1.0):
        return np.inf if value is None or math.isnan(value) else sign * value

    reached = [i for i, r in enumerate(results) if r["reached"]]
    if reached:
        return min(reached, key=lambda i: (results[i]["steps_to_target"],
                                           worst_if_nan(results[i]["cost_to_target"]),
                                           worst_if_nan(results[i]["final_test_accuracy"], -1.0),
                                           i))
    return min(range(len(results)),
               key=lambda i: (worst_if_nan(results[i]["final_test_accuracy"], -1.0),
                              worst_if_nan(results[i]["final_train_loss"]), i))


def write_trials(group, specs, results):
    """The trial table as parallel 1-D datasets of `group` (an h5py group). For settings
    (aggregate() over several seeds) also trial, seeds, reached_fraction, steps_min, steps_max,
    and steps_to_target as float64 means (nan if not reached) instead of int64 (-1)."""
    string = lambda values: np.array([str(v) for v in values], dtype=object)  # noqa: E731
    group.create_dataset("folder", data=string(os.path.relpath(r["folder"], os.path.dirname(
        os.path.dirname(r["folder"]))) for r in results), dtype=_h5_str())
    group.create_dataset("optimizer", data=string(s["optimizer"] for s in specs), dtype=_h5_str())
    group.create_dataset("batch_size", data=np.array([s["batch_size"] for s in specs], np.int64))
    group.create_dataset("seed", data=np.array([s["seed"] for s in specs], np.int64))
    for name in HYPERPARAMETERS:
        group.create_dataset(name, data=np.array([np.nan if s.get(name) is None else s[name]
                                                  for s in specs], np.float64))
    group.create_dataset("status", data=string(r["status"] for r in results), dtype=_h5_str())
    group.create_dataset("reached", data=np.array([r["reached"] for r in results], bool))
    if any(r.get("seeds", 1) > 1 for r in results):
        group.create_dataset("steps_to_target", data=np.array(
            [np.nan if r["steps_to_target"] is None else r["steps_to_target"] for r in results],
            np.float64))
    else:
        group.create_dataset("steps_to_target", data=np.array(
            [-1 if r["steps_to_target"] is None else r["steps_to_target"] for r in results],
            np.int64))
    if results and "seeds" in results[0]:
        for name in ("trial", "seeds", "steps_min", "steps_max"):
            group.create_dataset(name, data=np.array(
                [-1 if r[name] is None else r[name] for r in results], np.int64))
        group.create_dataset("reached_fraction", data=np.array(
            [r["reached_fraction"] for r in results], np.float64))
    for name in ("epochs_to_target", "wall_to_target", "cost_to_target", "wall_time", "cost",
                 "final_train_loss", "final_train_split_loss", "final_test_loss",
                 "final_test_accuracy"):
        group.create_dataset(name, data=np.array([r[name] for r in results], np.float64))
    for name in ("steps", "curvature_products", "cg_iterations"):   # means over seeds: float
        values = np.array([r[name] for r in results], np.float64)
        integral = np.all(values == np.round(values))
        group.create_dataset(name, data=values.astype(np.int64) if integral else values)


def _h5_str():
    import h5py
    return h5py.string_dtype()


def write_study(path, attrs, fill):
    """Atomically write the study file `path` (on rank 0 only): attrs (JSON-able values) and
    fill(h5 file)."""
    import h5py

    if not parallel.is_root():
        return

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            for key, value in runlog.versions().items():
                f.attrs[key] = value
            fill(f)
    runlog._atomic(path, write)


def fmt(value, spec=".4g"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)
