"""`minigrad train`: train a classifier on digits / MNIST / Fashion-MNIST with one optimizer.

See `minigrad train --help`; files written are described in cli/runlog.py.

Data order: epoch e visits the training split in the order of
``numpy.random.default_rng([seed, e]).permutation(n)`` (via ``minigrad.datasets.batches``),
in batches of --batch-size (the last one of an epoch shorter). A step is one batch; the
checkpoint stores (epoch, position), so a resumed run sees exactly the batches the
uninterrupted one would.

--config FILE.toml: top-level keys are option names (dashes or underscores: `eval-every = 10`,
`hidden = [64, 64]` or "64,64", `resume = true`); an option given on the command line wins
(click's ParameterSource); unknown keys and bad values are usage errors (exit 2). Options from
the file count as given (e.g. for the --resume checks).

--schedule (sgd, kfac): the lr as a function of the optimizer step t over T steps, T the total
of the FIRST session (config "schedule_steps"; a resume with a new --steps keeps it): constant,
cosine (to 0 at T), step (x0.1 after each ceil(T/3) steps); --warmup-steps W multiplies it by
min(1, (t+1)/W). steps/lr in run.h5 is the lr each step used.

Output: one line per evaluation; when stdout is a terminal also a click progress bar over the
steps with the batch loss and the last test accuracy (or reconstruction error).

At every evaluation the per-layer statistics of nn.capture are logged (cli/runlog.py, layers/).
"""
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings

import click
import numpy as np
from click.core import ParameterSource
from minigrad.optim import KFAC, SGD, STRCG, TRCG, schedules
from minigrad.optim.optimizer import agreed

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import minigrad as mg
import minigrad.functional as F
from minigrad import datasets
from minigrad.backend import GPU_INSTALL_HINT, to_device
from minigrad.nn import capture, models

from . import cost, parallel, runlog
from .common import UserError, one_line_errors

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "svhn")
MODELS = ("mlp", "lenet", "resnet20", "autoencoder")
# --model autoencoder without --hidden: encoder sizes after the input (Hinton & Salakhutdinov 2006
# for 28x28 images)
AUTOENCODER_HIDDEN = {64: [32, 16, 8], 784: [1000, 500, 250, 30]}
OPTIMIZERS = ("sgd", "kfac", "trcg", "strcg")
DEFAULT_EPOCHS = 20
# per-optimizer defaults of the options that are None on the command line
DEFAULTS = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "kfac": {"lr": 0.05, "momentum": 0.9, "damping": 1e-2, "kl_clip": 1e-3, "fisher": "empirical",
             "cov_update_every": 1, "inv_update_every": 20, "damping_form": "factored",
             "factor_init": "batch"},
    "trcg": {"radius": 1.0, "hessian_fraction": 0.1},
    "strcg": {"radius": 1.0, "hessian_fraction": 0.1},
}
APPLIES = {"lr": ("sgd", "kfac"), "momentum": ("sgd", "kfac"), "damping": ("kfac",),
           "kl_clip": ("kfac",), "fisher": ("kfac",), "cov_update_every": ("kfac",),
           "inv_update_every": ("kfac",), "damping_form": ("kfac",), "factor_init": ("kfac",),
           "radius": ("trcg", "strcg"), "hessian_fraction": ("trcg", "strcg")}
# options that define the run: fixed at the first session, a resume may not change them
STRUCTURAL = ("dataset", "model", "hidden", "optimizer", "batch_size", "lr", "momentum", "damping",
              "kl_clip", "fisher", "cov_update_every", "inv_update_every", "damping_form",
              "factor_init", "radius", "hessian_fraction", "seed", "dtype", "schedule",
              "warmup_steps")
SCHEDULES = ("constant", "cosine", "step")
STEP_DECAY_GAMMA = 0.1   # --schedule step: lr * 0.1 after each third of the run
EVAL_BATCH = 1000
EXIT_INTERRUPTED = 130
# signals that stop a run after its current step, with a checkpoint; the exit status is
# 128 + the signal's number (SIGINT 130: Ctrl-C; SIGTERM 143: a batch scheduler's or a container's
# stop; SIGUSR1 138: a scheduler's preemption warning)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
DEFAULT_CHECKPOINT_SECONDS = 300
# an evaluation writes a checkpoint once this many seconds (or --checkpoint-seconds, if less) have
# passed since the last one: frequent evaluations (every step, at large batches) would otherwise
# spend more time writing K-FAC's factors than training
EVAL_CHECKPOINT_SPACING = 10.0
PROCESS_FILE = "process.json"   # the pid and host of the process writing the run
# --diverged-after: "at chance" is accuracy <= 1/C + CHANCE_ACCURACY_MARGIN and a training loss
# >= CHANCE_LOSS_SHARE ln C (the loss of predicting 1/C for every class is ln C)
CHANCE_ACCURACY_MARGIN = 0.02
CHANCE_LOSS_SHARE = 0.99


def _parse_hidden(ctx, param, value):
    if value is None:
        return None
    text = value.strip()
    if not text:
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive ints like 64,64, got {value!r}")
    if any(s < 1 for s in sizes):
        raise click.BadParameter(f"layer sizes must be positive, got {value!r}")
    return sizes


def _fail(message, code=1, together=False):
    """One line `Error: ...` and exit `code`. Distributed: with together=True (every rank fails
    alike) rank 0 prints and all ranks exit after a barrier; otherwise this rank prints, naming
    itself, and its exit aborts the job (cli/parallel.py)."""
    comm = parallel.communicator()
    if together:
        parallel.echo(f"Error: {message}", err=True)
        parallel.exit_together(code)
    where = f"rank {comm.rank}: " if comm.world_size > 1 else ""
    click.echo(f"Error: {where}{message}", err=True)
    sys.exit(code)


# ------------------------------------------------------------------------------- building
def build_model(config, shape, classes):
    c, h, w = shape
    dtype = np.dtype(config["dtype"])
    if config["model"] == "mlp":
        sizes = [c * h * w] + list(config["hidden"]) + [classes]
        return models.mlp(sizes, activation="relu", rng=config["seed"], dtype=dtype)
    if config["model"] == "autoencoder":
        if config["hidden"] is None:
            config["hidden"] = AUTOENCODER_HIDDEN.get(c * h * w, [256, 64, 16])
        return models.autoencoder([c * h * w] + list(config["hidden"]), rng=config["seed"],
                                  dtype=dtype)
    if config["model"] == "lenet":
        if (h, w) != (28, 28):
            raise click.UsageError(f"--model lenet needs 28x28 images (mnist, fashion-mnist); "
                                   f"{config['dataset']} has {h}x{w}")
        return models.lenet5(classes, in_channels=c, rng=config["seed"], dtype=dtype)
    if h % 4 or w % 4:
        raise click.UsageError(f"--model resnet20 needs image sides divisible by 4, got {h}x{w}")
    return models.resnet20(classes, in_channels=c, rng=config["seed"], dtype=dtype)


def build_optimizer(config, model):
    name = config["optimizer"]
    if name == "sgd":
        return SGD(model.parameters(), lr=lr_schedule(config), momentum=config["momentum"])
    if name == "kfac":
        # runs written before --kl-clip existed used KFAC's default, 1e-3
        kl_clip = config.get("kl_clip", DEFAULTS["kfac"]["kl_clip"])
        # options added later than some runs: such a run was trained with what DEFAULTS say
        # (the empirical Fisher, factors every step, eigenbases every 20, factored damping, the
        # first batch's factors); fisher "true" samples its labels with the --seed Generator
        older = {key: config.get(key) or DEFAULTS["kfac"][key]
                 for key in ("fisher", "cov_update_every", "inv_update_every", "damping_form",
                             "factor_init")}
        return KFAC(model, lr=lr_schedule(config), damping=config["damping"],
                    momentum=config["momentum"], kl_clip=kl_clip or None, rng=config["seed"],
                    **older)
    cls = TRCG if name == "trcg" else STRCG
    return cls(model.parameters(), radius=config["radius"], max_radius=max(20.0, config["radius"]),
               hessian_fraction=config["hessian_fraction"], seed=config["seed"])


def is_autoencoder(model):
    return isinstance(model, models.Autoencoder)


def loss_of(model, logits, y, reduction="mean"):
    """Cross-entropy of a classifier's logits against labels y; for the autoencoder the binary
    cross-entropy of the reconstruction logits against the images y, summed over pixels and
    averaged over the batch ("batchmean"; "sum" sums over the batch too)."""
    if is_autoencoder(model):
        return models.binary_cross_entropy_with_logits(
            logits, y, reduction="batchmean" if reduction == "mean" else reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


def lr_schedule(config):
    """The lr (sgd, kfac) as a callable of the step: --schedule over config["schedule_steps"]
    steps (the total of the first session), with linear warmup over --warmup-steps."""
    lr, kind = config["lr"], config.get("schedule") or "constant"
    total = int(config.get("schedule_steps") or 1)
    if kind == "cosine":
        fn = schedules.cosine(lr, total)
    elif kind == "step":
        fn = schedules.step_decay(lr, max(1, math.ceil(total / 3)), STEP_DECAY_GAMMA)
    elif not config.get("warmup_steps"):
        return lr   # a plain number, as without a schedule
    else:
        fn = schedules.constant(lr)
    if config.get("warmup_steps"):
        fn = schedules.linear_warmup(fn, config["warmup_steps"])
    return fn


def _toml_type_error(name, param, value):
    """Why a TOML value does not have the type the command line would accept for `param`
    (None if it has): TOML's 64.7 is not an int, its true is not a number, its "0.1" not a
    float, as on the command line, where these would be refused or mean something else."""
    kind = param.type
    if name == "hidden":
        ok = isinstance(value, str) or (isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value))
        return None if ok else "expected a list of ints like [64, 64] or a string like \"64,64\""
    if getattr(param, "is_flag", False):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(kind, (click.types.IntParamType,)):
        return None if isinstance(value, int) and not isinstance(value, bool) else \
            f"expected an integer, got a {type(value).__name__}"
    if isinstance(kind, click.types.FloatParamType):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else \
            f"expected a number, got a {type(value).__name__}"
    if isinstance(kind, (click.Choice, click.types.StringParamType, click.Path)):
        return None if isinstance(value, str) else f"expected a string, got a {type(value).__name__}"
    return None


def read_config_file(ctx, path):
    """{parameter name: value} from the TOML file `path` (keys with dashes or underscores)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise click.UsageError(f"--config {path}: not valid TOML: {e}")
    names = {p.name: p for p in ctx.command.params if p.name and p.name != "config_file"}
    values, unknown = {}, []
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in names:
            unknown.append(key)
        else:
            values[name] = value
    if unknown:
        raise click.UsageError(f"--config {path}: unknown option(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(sorted(n.replace('_', '-') for n in names))}")
    out = {}
    for name, value in values.items():
        param = names[name]
        wrong = _toml_type_error(name, param, value)
        if wrong:
            raise click.UsageError(f"--config {path}: {name.replace('_', '-')} = {value!r}: {wrong}")
        if name == "hidden" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        try:
            out[name] = param.process_value(ctx, value)
        except click.BadParameter as e:
            raise click.UsageError(f"--config {path}: {name.replace('_', '-')} = {value!r}: "
                                   f"{e.format_message()}")
    return out


@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode inside; every module's own mode (train or eval) restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)   # what Module.train sets, one by one


def evaluate(model, images, labels, flatten, device="cpu", batch_size=None):
    """(mean loss, accuracy) on a whole split, in eval mode, without a graph; for the
    autoencoder (mean loss per image, mean reconstruction error per image: the squared error of
    sigmoid(logits) summed over pixels). `batch_size` (default EVAL_BATCH) only bounds memory.
    The model's modes are left as they were."""
    step = batch_size or EVAL_BATCH
    auto = is_autoencoder(model)
    total, correct = 0.0, 0
    with eval_mode(model), mg.no_grad():
        for start in range(0, len(labels), step):
            x = images[start:start + step]
            y = labels[start:start + step]
            x = to_device(x.reshape(len(x), -1) if flatten else x, device)
            logits = model(mg.tensor(x))
            target = x if auto else to_device(y, device)
            total += float(loss_of(model, logits, target, reduction="sum").item())
            if auto:
                correct += float(models.reconstruction_error(logits, target, "sum").item())
            else:
                correct += int((logits.numpy().argmax(1) == y).sum())
    return total / len(labels), correct / len(labels)


def _stdout_is_terminal():
    """Whether to draw the progress bar (tests patch this)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n_steps, current_item=None):
        pass


def _progress(step, total, interactive):
    """A click progress bar over the remaining steps (loss and test accuracy as its item
    text) when stdout is a terminal; otherwise a no-op."""
    if not interactive:
        return _NoBar()
    bar = click.progressbar(length=max(total - step, 1), label=f"steps {step}->{total}",
                            show_pos=True, show_eta=True, item_show_func=lambda item: item,
                            file=sys.stdout)
    bar.is_hidden = False   # we decided ourselves (stdout is a terminal)
    return bar


def layer_statistics(model, images, labels, device="cpu"):
    """stats.summary() of one forward/backward of (images, labels) inside nn.capture(model):
    {layer: {metric: float or None}} for runlog.LAYER_METRICS. The model is in eval mode
    (BatchNorm uses and keeps its running statistics), the gradient comes from minigrad.grad
    (the parameters' .grad are left alone) and no random numbers are drawn, so training is
    not disturbed."""
    with eval_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        with capture(model) as stats:
            x = mg.tensor(to_device(images, device))
            target = x.data if is_autoencoder(model) else to_device(labels, device)
            loss = loss_of(model, model(x), target)
            mg.grad(loss, params, allow_unused=True)
        summary = stats.summary()
    return {name: {k: info.get(k) for k in runlog.LAYER_METRICS} for name, info in summary.items()}


def noise_scale(model, images, labels, rows, device="cpu"):
    """minigrad.nn.noise_scale.NoiseScale (b_simple, trace_cov, grad_sq_norm) of the rows `rows`
    of the training split: exact per-example gradients of every Linear/Conv2d layer from one
    forward and backward inside nn.capture, in eval mode, without touching .grad."""
    with eval_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        with capture(model) as stats:
            x = mg.tensor(to_device(images[rows], device))
            target = x.data if is_autoencoder(model) else to_device(labels[rows], device)
            mg.grad(loss_of(model, model(x), target), params, allow_unused=True)
            return stats.noise_scale()


class _StopRequested(Exception):
    """A stop signal (its number: args[0]) came; raised between steps, where the state is
    consistent."""


def agreed_signal(comm, signum):
    """The stop signal every rank acts on: 0 if no rank got one, else the one they got (with
    different ones, the most urgent: SIGTERM over SIGUSR1 over SIGINT)."""
    got = comm.allreduce_scalars([float(signum == s) for s in STOP_SIGNALS])
    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        if got[STOP_SIGNALS.index(s)] > 0:
            return int(s)
    return 0


def targets_met(config, target_step, loss_step):
    """Every given target is reached (False when none is given): the test accuracy target at
    target_step, the training-loss target at loss_step (None: not yet)."""
    wanted = [(config.get("target_accuracy"), target_step), (config.get("target_loss"), loss_step)]
    return any(t is not None for t, _ in wanted) and \
        all(at is not None for t, at in wanted if t is not None)


def finished_before(out, step, total, config, target_step, loss_step):
    """Whether a resumed run has nothing left to do: it ended as "finished" (run.h5) with
    `total` steps done, or it stopped at its targets with --stop-at-target."""
    try:
        status = runlog.read_run(out)["attrs"].get("status")
    except (OSError, KeyError, ValueError):
        return False
    stopped = bool(config.get("stop_at_target")) and targets_met(config, target_step, loss_step)
    return status == "finished" and (step >= total or stopped)


class _Diverged(FloatingPointError):
    """--diverged-after: the run has been at chance for that many evaluations (after a step)."""


def at_chance(accuracy, train_loss, classes):
    """Whether an evaluation is no better than guessing (--diverged-after): test accuracy at most
    1/C + 0.02 and the mean training loss at least 0.99 ln C (or not finite)."""
    return (accuracy <= 1.0 / classes + CHANCE_ACCURACY_MARGIN
            and not train_loss < CHANCE_LOSS_SHARE * math.log(classes))


class _DeferredInterrupt:
    """While active, the first of STOP_SIGNALS (Ctrl-C, SIGTERM, SIGUSR1) only records itself
    (checked between steps); a second one interrupts at once."""

    def __init__(self):
        self.signum = 0        # the first stop signal received, 0 while none
        self.previous = {}

    @property
    def requested(self):
        return self.signum != 0

    def __enter__(self):
        for signum in STOP_SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def agreed(self, comm):
        """The stop signal all ranks act on after this step (agreed_signal; with one process,
        the one received). The agreed value is returned, never stored in self.signum: a signal
        that arrives during the agreement sets self.signum, and is agreed on after the next
        step (assigning the agreed 0 to it would lose it, and the run would never stop)."""
        return agreed_signal(comm, self.signum) if comm.world_size > 1 else self.signum

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        return False


def check_writable(out):
    """Check, before any training, that files can be written in `out` (UserError naming the
    folder otherwise); folders made for the check are removed again (a usage error found
    later must leave nothing behind)."""
    made, path = [], os.path.abspath(out)
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise UserError(f"--out {out!r} is not writable: {e.strerror or e}") from None
    finally:
        for folder in made:   # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def write_process_file(out):
    """OUT/process.json: this process's pid and host, for `minigrad runs` to tell a live run
    from one that was killed (status "running" in run.h5, but no such process: "stale")."""
    record = {"pid": os.getpid(), "host": socket.gethostname()}

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(record, fh)
    runlog._atomic(os.path.join(out, PROCESS_FILE), write)


# ---------------------------------------------------------------------------------- command
@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True,
              help="Training data. All but digits are read from local files: found in "
                   "$MINIGRAD_DATA or the system folders (datasets/README.md); their parsed "
                   "cache goes to $MINIGRAD_CACHE (default ~/.cache/minigrad).")
@click.option("--model", type=click.Choice(MODELS), default="mlp", show_default=True,
              help="mlp gets flattened images; lenet needs 28x28 images; autoencoder "
                   "reconstructs the flattened images (binary cross-entropy; evaluations report "
                   "the reconstruction error instead of an accuracy).")
@click.option("--hidden", callback=_parse_hidden, default="64,64", show_default=True,
              help="Hidden layer sizes of the mlp, comma-separated (relu between layers); for the "
                   "autoencoder the encoder sizes after the input (default 32,16,8 on digits, "
                   "1000,500,250,30 on 28x28 images).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Epochs to train (default {DEFAULT_EPOCHS} unless --steps is given).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Total optimizer steps (instead of --epochs); with --resume, the new total.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (sgd 0.1, kfac 0.05).")
@click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Momentum (sgd, kfac; default 0.9).")
@click.option("--damping", type=click.FloatRange(min=0, min_open=True), default=None,
              help="K-FAC damping (default 0.01).")
@click.option("--fisher", type=click.Choice(("empirical", "true")), default=None,
              help="K-FAC's curvature: the empirical Fisher (the batch's own labels; default) or "
                   "the true Fisher (labels sampled from the model's predictions, one extra "
                   "backward pass on factor-update steps).")
@click.option("--cov-update-every", type=click.IntRange(min=1), default=None,
              help="K-FAC: update the factors every N steps (default 1).")
@click.option("--inv-update-every", type=click.IntRange(min=1), default=None,
              help="K-FAC: recompute the eigenbases every N steps (default 20).")
@click.option("--kl-clip", type=click.FloatRange(min=0), default=None,
              help="K-FAC KL clipping: the update v = (F + damping)^-1 g (F the Kronecker "
                   "factored curvature, damped as --damping-form says) is scaled by "
                   "nu = min(1, sqrt(C / (lr^2 g^T v))), so that lr^2 g^T (nu v) <= C (default "
                   "0.001; 0 turns it off). While it is active the lr has no effect.")
@click.option("--damping-form", type=click.Choice(("factored", "eigen")), default=None,
              help="K-FAC damping: factored, (G + sqrt(damping)/pi I) (x) (A + pi sqrt(damping) I) "
                   "(Martens & Grosse, the default); eigen, G (x) A + damping I exactly (in the "
                   "Kronecker eigenbasis).")
@click.option("--factor-init", type=click.Choice(("batch", "identity")), default=None,
              help="K-FAC's factors before their running average: batch, the first batch's "
                   "factors (the default); identity, A = G = I, averaged with decay 0.95 from "
                   "there (the early steps are then close to SGD's).")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Initial trust radius (trcg, strcg; default 1.0).")
@click.option("--hessian-fraction", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
              help="Share of the batch used for curvature (trcg, strcg; default 0.1).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule of sgd and kfac over the run's steps (default constant; "
                   "step: x0.1 after each third).")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Linear lr warmup over the first N steps (sgd, kfac; default 0).")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="Evaluate on the test split every K steps (default: once per epoch) and at the end.")
@click.option("--target-accuracy", type=click.FloatRange(min=0, max=1), default=None,
              help="Record the first evaluated step whose test accuracy reaches A.")
@click.option("--target-loss", type=click.FloatRange(min=0), default=None,
              help="Record the first evaluated step whose loss on the whole training split is <= L "
                   "(each evaluation then also evaluates the training split).")
@click.option("--stop-at-target", is_flag=True, default=False,
              help="End the run at the first evaluation where every given target is reached.")
@click.option("--diverged-after", type=click.IntRange(min=0), default=0, show_default=True,
              help="End the run as diverged (status failed, exit 1) after K consecutive "
                   "evaluations at chance, counted from the end of the first epoch: test "
                   "accuracy <= 1/C + 0.02 and mean training loss since the previous evaluation "
                   ">= 0.99 ln C (C classes), i.e. no better than guessing; 0: never.")
@click.option("--noise-scale-examples", type=click.IntRange(min=0), default=0, show_default=True,
              help="At each evaluation, log the gradient noise scale B_simple (McCandlish et al. "
                   "2018) from the exact per-example gradients of N training examples drawn "
                   "afresh (0: off; run.h5 evals/noise_*).")
@click.option("--layer-stats/--no-layer-stats", default=True, show_default=True,
              help="Log the per-layer statistics (one forward and backward on a batch) at each "
                   "evaluation.")
@click.option("--keep-checkpoints", is_flag=True, default=False,
              help="Also keep every checkpoint as OUT/checkpoints/step-NNNNNNNN.npz (for "
                   "`minigrad hessian RUN --step S`).")
@click.option("--profile", is_flag=True, default=False,
              help="Print the bytes communicated per step and the time in communication (data "
                   "parallelism under mpiexec; also logged per step in run.h5).")
@click.option("--device", type=click.Choice(("cpu", "cuda")), default="cpu", show_default=True,
              help=f"Where to train; cuda needs CuPy ({GPU_INSTALL_HINT}).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the weights, the data order and the optimizer.")
@click.option("--dtype", type=click.Choice(("float32", "float64")), default="float32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/<UTC time YYYYmmdd-HHMMSS>).")
@click.option("--overwrite", is_flag=True,
              help="Replace the run.h5 and checkpoints (also the kept ones) of an existing run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also write the checkpoint (and run.h5) every K steps.")
@click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=None,
              help=f"Write the checkpoint (and run.h5) after any step once S seconds have passed "
                   f"since the last one, and at an evaluation once min(S, "
                   f"{EVAL_CHECKPOINT_SPACING:g}) seconds have (default "
                   f"{DEFAULT_CHECKPOINT_SECONDS}; 0: at every evaluation); always at the end. A "
                   "killed run loses at most that. run.h5 is rewritten at every evaluation.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML file of options (same names, dashes or underscores); the command line wins.")
@click.pass_context
@one_line_errors
def train(ctx, **options):
    """Train a classifier (or an autoencoder) and log it to OUT/run.h5, with a resumable
    OUT/checkpoint.npz.

    Ctrl-C stops after the current step, writes the checkpoint and exits with status 130;
    continue with the same --out and --resume.
    """
    from_file = set()
    config_file = options.pop("config_file")
    if config_file is not None:
        for name, value in read_config_file(ctx, config_file).items():
            source = ctx.get_parameter_source(name)
            if source in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
                options[name] = value
                from_file.add(name)
    out = options.pop("out")
    overwrite, resume = options.pop("overwrite"), options.pop("resume")
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    if options["epochs"] is not None and options["steps"] is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    if out is None:
        if resume:
            raise click.UsageError("--resume needs --out, the run folder to continue")
        out = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        out = parallel.communicator().broadcast_object(out)   # rank 0's clock decides

    def given(name):
        if name in from_file:
            return True
        source = ctx.get_parameter_source(name)
        return source is not None and source not in (ParameterSource.DEFAULT,
                                                     ParameterSource.DEFAULT_MAP)

    saved = None
    if resume:
        if not os.path.isfile(os.path.join(out, runlog.CHECKPOINT_FILE)):
            raise click.UsageError(f"--resume: no checkpoint in {out!r} "
                                   f"({runlog.CHECKPOINT_FILE} not found)")
        saved = runlog.read_checkpoint(out)
        old = saved[1]["config"]
        for key in STRUCTURAL:
            if given(key) and options[key] != old.get(key, options[key]):
                raise click.UsageError(f"--resume: --{key.replace('_', '-')} {options[key]!r} differs "
                                       f"from the run's {old[key]!r}; it cannot change on resume")
        config = dict(old)
        for key in ("epochs", "steps", "eval_every", "checkpoint_every", "checkpoint_seconds",
                    "target_accuracy", "target_loss", "stop_at_target", "keep_checkpoints",
                    "device", "diverged_after", "layer_stats", "noise_scale_examples"):
            if given(key):
                config[key] = options[key]
        if given("epochs"):
            config["steps"] = None
        if given("steps"):
            config["epochs"] = None
    else:
        if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
            if not overwrite:
                raise click.UsageError(f"run folder {out!r} exists; pass --resume to continue it or "
                                       "--overwrite to replace its run.h5 and checkpoint")
            if not os.path.isdir(out):
                raise click.UsageError(f"--out {out!r} is a file, not a folder")
        config = dict(options)
        name = config["optimizer"]
        if given("hidden") and config["model"] not in ("mlp", "autoencoder"):
            raise click.UsageError(f"--hidden applies to --model mlp and autoencoder only, "
                                   f"not {config['model']}")
        if config["model"] == "autoencoder":
            if config["target_accuracy"] is not None:
                raise click.UsageError("--target-accuracy does not apply to --model autoencoder "
                                       "(no accuracy; its evaluations report the reconstruction error)")
            if not given("hidden"):
                config["hidden"] = None   # chosen from the image size (AUTOENCODER_HIDDEN)
            if config["fisher"] == "true":
                raise click.UsageError("--fisher true samples class labels; --model autoencoder "
                                       "has none (use the empirical Fisher)")
        for key, applies in APPLIES.items():
            if config[key] is not None and name not in applies:
                raise click.UsageError(f"--{key.replace('_', '-')} does not apply to --optimizer {name}")
            if config[key] is None and name in applies:
                config[key] = DEFAULTS[name][key]
        if config["epochs"] is None and config["steps"] is None:
            config["epochs"] = DEFAULT_EPOCHS
        if config["stop_at_target"] and config["target_accuracy"] is None \
                and config["target_loss"] is None:
            raise click.UsageError("--stop-at-target needs --target-accuracy or --target-loss")
        if config["diverged_after"] and config["model"] == "autoencoder":
            raise click.UsageError("--diverged-after compares the accuracy with chance; --model "
                                   "autoencoder has no accuracy")
        for key, default in (("schedule", "constant"), ("warmup_steps", 0)):
            if config[key] is None:
                config[key] = default
            elif name not in ("sgd", "kfac") and config[key] != default:
                raise click.UsageError(f"--{key.replace('_', '-')} applies to --optimizer sgd and "
                                       f"kfac only, not {name}")

    comm = parallel.communicator()
    parallel.check_batch(comm, config["batch_size"])
    parallel.check_same(comm, "options", dict(config, out=out, resume=resume, overwrite=overwrite))
    config["profile"] = options["profile"]
    if config.get("device") == "cuda":
        check_cuda(comm)
    with parallel.abort_on_error(comm):
        if parallel.is_root(comm):
            check_writable(out)
        run(config, out, saved, overwrite)


def check_cuda(comm):
    """A one-line error (exit 1) unless CuPy is installed and sees a GPU; with P processes,
    rank r uses GPU r mod (visible GPUs)."""
    try:
        import cupy
    except ImportError:
        _fail(f"--device cuda needs CuPy, which is not installed; install it with {GPU_INSTALL_HINT}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver / runtime missing
        _fail(f"--device cuda: CuPy cannot use CUDA ({' '.join(str(e).split())})")
    if count < 1:
        _fail("--device cuda: no CUDA device found")
    cupy.cuda.Device(comm.rank % count).use()


def run(config, out, saved, overwrite):
    comm = parallel.communicator()
    rank, world = comm.rank, comm.world_size
    root = rank == 0
    with warnings.catch_warnings(record=True) as caught:   # e.g. a stale cache rebuilt
        warnings.simplefilter("always")
        images, labels, meta = datasets.load(config["dataset"], "train")
        test_images, test_labels, _ = datasets.load(config["dataset"], "test")
    for warning in caught:
        parallel.echo(f"Warning: {' '.join(str(warning.message).split())}", err=True)
    parallel.check_same(comm, "data", {"train": parallel.data_fingerprint(images, labels),
                                       "test": parallel.data_fingerprint(test_images, test_labels)})
    dtype = np.dtype(config["dtype"])
    images, test_images = images.astype(dtype, copy=False), test_images.astype(dtype, copy=False)
    classes = len(meta["classes"])
    model = build_model(config, tuple(meta["shape"]), classes)
    flatten = config["model"] in ("mlp", "autoencoder")
    auto = config["model"] == "autoencoder"
    if flatten:
        images = images.reshape(len(images), -1)
        test_images = test_images.reshape(len(test_images), -1)
    n, bs = len(labels), config["batch_size"]
    if bs > n:   # the same on every rank (the data were checked equal): rank 0 says it
        _fail(f"--batch-size {bs} exceeds the {n} training examples of {config['dataset']}; a "
              "step would see fewer examples than recorded", code=2, together=True)
    per_epoch = datasets.num_batches(n, bs)
    total = config["steps"] if config["steps"] is not None else config["epochs"] * per_epoch
    if saved is None:
        config["schedule_steps"] = total   # the lr schedule spans the first session's steps
    config["train_examples"], config["steps_per_epoch"] = n, per_epoch   # for readers of run.h5
    config["world_size"] = world   # of the latest session
    device = config.get("device") or "cpu"
    model.to(device)
    optimizer = build_optimizer(config, model)
    if world > 1:
        optimizer.distribute(comm)
    comm.stats.reset()
    eval_every = config["eval_every"] or per_epoch
    ckpt_every = config["checkpoint_every"]
    ckpt_seconds = config.get("checkpoint_seconds")
    ckpt_seconds = DEFAULT_CHECKPOINT_SECONDS if ckpt_seconds is None else ckpt_seconds

    step, epoch, position, wall_before, target_step, loss_step = 0, 0, 0, 0.0, None, None
    since_eval = []
    stuck = 0   # consecutive evaluations at chance (--diverged-after)
    history = runlog.new_history()
    if saved is not None:
        model_state, state = saved
        model.load_state_dict(model_state)
        model.to(device)   # the checkpoint holds host arrays
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), state["history"]
        epoch, position = state["data"]["epoch"], state["data"]["position"]
        wall_before, target_step = float(state["wall_time"]), state["target_step"]
        loss_step = state.get("target_loss_step")
        since_eval = list(state.get("since_eval", []))
        stuck = int(state.get("evals_at_chance", 0))
        if total < step:
            raise click.UsageError(f"--resume: the run has done {step} steps already, more than "
                                   f"the {total} asked for")
        if finished_before(out, step, total, config, target_step, loss_step):
            parallel.echo(f"{out} finished at step {step} already; nothing to do (give a larger "
                          "--steps or --epochs to train on)")
            return
        parallel.echo(f"resuming {out} at step {step} (epoch {epoch + 1}, batch {position + 1})")
    elif root:
        os.makedirs(out, exist_ok=True)
        if overwrite:
            for fname in (runlog.RUN_FILE, runlog.CHECKPOINT_FILE):
                if os.path.exists(os.path.join(out, fname)):
                    os.remove(os.path.join(out, fname))
            if os.path.isdir(os.path.join(out, runlog.KEPT_FOLDER)):   # the old run's kept ones
                shutil.rmtree(os.path.join(out, runlog.KEPT_FOLDER))

    if root:
        write_process_file(out)
    first_step = step
    t0 = time.perf_counter()
    last_checkpoint_time = time.monotonic()

    def wall():
        return wall_before + time.perf_counter() - t0

    last_checkpoint = step if saved is not None else None
    ACC_KEY = "test_reconstruction_error" if auto else "test_accuracy"
    ACC_LABEL = "test recon err" if auto else "test acc"

    def snapshot(status, checkpoint=True):
        nonlocal last_checkpoint, last_checkpoint_time
        if checkpoint:
            last_checkpoint_time = time.monotonic()
        if not root:   # the other ranks hold the same state; rank 0 writes it
            if checkpoint:
                last_checkpoint = step
            return
        if checkpoint:
            last_checkpoint = step
            runlog.write_checkpoint(out, model, {
                "step": step, "optimizer": optimizer.state_dict(),
                "data": {"epoch": epoch, "position": position}, "history": history,
                "config": config, "wall_time": wall(), "target_step": target_step,
                "target_loss_step": loss_step, "since_eval": list(since_eval),
                "evals_at_chance": stuck},
                keep=config.get("keep_checkpoints", False))
        runlog.write_run(out, config, history, status, step, target_step, wall(),
                         target_loss_step=loss_step)

    def safe_snapshot(status, checkpoint=True):
        """snapshot() where the run is ending for another reason: a failed write is added to
        the message instead of hiding the reason."""
        try:
            snapshot(status, checkpoint)
        except runlog.WriteError as e:
            click.echo(f"Error: {e}", err=True)

    def targets_reached():
        return targets_met(config, target_step, loss_step)

    def do_eval():
        nonlocal target_step, loss_step, since_eval, stuck
        train_loss = float(np.mean(since_eval)) if since_eval else float("nan")
        test_loss, acc = parallel.evaluate(evaluate, comm, model, test_images, test_labels,
                                           flatten, device)
        ev = history["evals"]
        ev["step"].append(step)
        ev["train_loss"].append(train_loss)
        ev["test_loss"].append(test_loss)
        ev.setdefault(ACC_KEY, []).append(acc)
        if config.get("target_loss") is not None:
            split_loss = parallel.evaluate(evaluate, comm, model, images, labels, flatten,
                                           device)[0]
            ev.setdefault("train_split_loss", []).append(split_loss)
            if loss_step is None and split_loss <= config["target_loss"]:
                loss_step = step
        if root and config.get("layer_stats", True):   # no collectives inside: one process's model
            runlog.append_layers(history, len(ev["step"]),
                                 layer_statistics(model, images[:bs], labels[:bs], device))
        examples = config.get("noise_scale_examples") or 0
        if root and examples:
            rows = np.sort(np.random.default_rng([config["seed"], 1, step]).choice(
                n, min(examples, n), replace=False))
            found = noise_scale(model, images, labels, rows, device)
            for key, value in (("noise_scale", found.b_simple), ("noise_trace_cov", found.trace_cov),
                               ("noise_grad_sq_norm", found.grad_sq_norm)):
                ev.setdefault(key, []).append(float(value))
        since_eval = []
        if not auto:   # the same on every rank: the loss and accuracy are the global ones
            stuck = stuck + 1 if step >= per_epoch and at_chance(acc, train_loss, classes) else 0
        if target_step is None and config["target_accuracy"] is not None and not auto \
                and acc >= config["target_accuracy"]:
            target_step = step
        clear = "\r\x1b[K" if interactive else ""   # over the progress bar's line
        parallel.echo(f"{clear}step {step:>6}/{total}  epoch {epoch + position / per_epoch:6.2f}  "
                   f"train loss {train_loss:.4f}  test loss {test_loss:.4f}  "
                   f"{ACC_LABEL} {acc:.4f}  {wall():7.1f}s")
        return train_loss, acc

    name = config["optimizer"]
    interactive = _stdout_is_terminal() and root
    last_acc = (history["evals"].get(ACC_KEY) or [None])[-1]
    # --stop-at-target ended the run at an evaluation (a resumed run may have ended there)
    stopped = bool(config.get("stop_at_target")) and targets_reached()
    try:
        with _DeferredInterrupt() as interrupt, np.errstate(over="ignore", invalid="ignore"), \
                _progress(step, total, interactive) as bar:
            while step < total and not stopped:
                order_rng = np.random.default_rng([config["seed"], epoch])
                for k, (xb, yb) in enumerate(datasets.batches(images, labels, bs, seed=order_rng,
                                                              rank=rank, world_size=world)):
                    if k < position:
                        continue
                    if step >= total:
                        break
                    lr = float(optimizer.value("lr")) if name in ("sgd", "kfac") else None
                    if device != "cpu":
                        xb, yb = to_device(xb, device), to_device(yb, device)
                    if auto:
                        yb = xb   # reconstruct the input
                    global_rows = min(bs, n - k * bs)
                    rows = parallel.shard_rows(global_rows, rank, world)
                    optimizer.shard(rows[1] - rows[0], global_rows, rows[0])
                    sent, spent = comm.stats.bytes, comm.stats.seconds
                    started = time.perf_counter()
                    loss = _one_step(name, model, optimizer, xb, yb, step, global_rows, rows)
                    step_time = time.perf_counter() - started
                    step += 1
                    position = k + 1
                    if position == per_epoch:
                        epoch, position = epoch + 1, 0
                    st = history["steps"]
                    st["loss"].append(loss)
                    st["wall_time"].append(wall())
                    st.setdefault("step_time", []).append(step_time)
                    if world > 1 or config.get("profile") or "comm_bytes" in st:
                        for key, value in (("comm_bytes", comm.stats.bytes - sent),
                                           ("comm_time", comm.stats.seconds - spent)):
                            # aligned with the steps: nan for steps of sessions not measured
                            series = st.setdefault(key, [])
                            series.extend([float("nan")] * (len(st["loss"]) - 1 - len(series)))
                            series.append(value)
                    if name in ("sgd", "kfac"):
                        st["lr"].append(lr)
                    else:
                        st["radius"].append(float(optimizer.radius))
                    for key, value in cost.step_cost(name, optimizer.info, global_rows).items():
                        st.setdefault(key, []).append(value)
                    since_eval.append(loss)
                    evaluated = step % eval_every == 0 and step < total
                    if evaluated:
                        train_loss, last_acc = do_eval()
                        if stuck >= (config.get("diverged_after") or math.inf):
                            raise agreed(_Diverged(
                                f"diverged: {stuck} consecutive evaluations at chance (test "
                                f"accuracy {last_acc:.4f}, train loss {train_loss:.4f}; "
                                "--diverged-after)"))
                        if config.get("stop_at_target") and targets_reached():
                            stopped = True
                            break
                    bar.update(1, f"loss {loss:.4f}" + ("" if last_acc is None
                                                        else f"  {ACC_LABEL} {last_acc:.4f}"))
                    stop = interrupt.agreed(comm)   # every rank the same, after every step
                    if stop:
                        raise _StopRequested(stop)
                    since = time.monotonic() - last_checkpoint_time
                    due = ((ckpt_every and step % ckpt_every == 0) or since >= ckpt_seconds > 0
                           or (evaluated and since >= min(ckpt_seconds, EVAL_CHECKPOINT_SPACING)))
                    if step < total and (due or evaluated):   # the end writes its own
                        snapshot("running", checkpoint=bool(due))   # run.h5 current at evaluations
                    if position == 0:
                        break  # the epoch is over: a new order
        if stopped and history["evals"]["step"] and history["evals"]["step"][-1] == step:
            acc = last_acc
            train_loss = history["evals"]["train_loss"][-1]
        else:
            train_loss, acc = do_eval()
        snapshot("finished")
    except runlog.WriteError as e:   # rank 0 alone writes: its exit aborts the job
        hint = "; free space, then resume with: minigrad train --out {out} --resume" \
            if "is kept" in (e.kept or "") else ""
        _fail(f"{e}{hint.format(out=out)}")
    except _StopRequested as stop:   # agreed by all ranks
        safe_snapshot("interrupted")
        signum = stop.args[0]
        parallel.echo(f"\n{signal.Signals(signum).name}: stopped at step {step}; checkpoint "
                      f"written to {os.path.join(out, runlog.CHECKPOINT_FILE)}. Resume with: "
                      f"minigrad train --out {out} --resume", err=True)
        parallel.exit_together(128 + signum)
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside the main thread): mid-step
        safe_snapshot("interrupted", checkpoint=False)
        kept = (f"the checkpoint of step {last_checkpoint} is kept; resume with: minigrad train "
                f"--out {out} --resume" if last_checkpoint is not None
                else "no checkpoint was written")
        click.echo(f"\ninterrupted during step {step + 1}; {kept}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except FloatingPointError as e:
        if world > 1 and not getattr(e, "agreed", False):
            raise   # this rank's own failure: abort the job (parallel.abort_on_error)
        safe_snapshot("failed", checkpoint=False)
        kept = (f"the checkpoint of step {last_checkpoint} is kept" if last_checkpoint is not None
                else "no checkpoint was written")
        at = step if isinstance(e, _Diverged) else step + 1   # after the step, or during it
        _fail(f"training stopped at step {at} ({kept}): {e}", together=True)
    finally:
        if isinstance(optimizer, KFAC):
            optimizer.close()

    summary = (f"done: {step} steps, final train loss {train_loss:.4f}, "
               f"{'test reconstruction error' if auto else 'test accuracy'} {acc:.4f}, "
               f"wall time {wall():.1f}s")
    for kind, target, at in (("target", config.get("target_accuracy"), target_step),
                             ("target loss", config.get("target_loss"), loss_step)):
        if target is not None:
            summary += (f", {kind} {target:g} reached at step {at}" if at is not None
                        else f", {kind} {target:g} not reached")
    if stopped:
        summary += " (stopped at target)"
    parallel.echo(summary + f"  [{out}]")
    if config.get("profile"):
        done = step - first_step
        series = [history["steps"][k][len(history["steps"][k]) - done:] if done else []
                  for k in ("comm_bytes", "comm_time", "step_time")]
        parallel.echo(parallel.profile_report(comm.stats, *series))


def _one_step(name, model, optimizer, xb, yb, step, global_rows=None, rows=None):
    """One optimizer step on the batch (xb, yb), this rank's rows `rows` of a global batch of
    global_rows; returns the global batch's loss at the start of the step."""
    if name in ("sgd", "kfac"):
        optimizer.zero_grad()
        logits = model(mg.tensor(xb)) if len(yb) else None
        loss = loss_of(model, logits, yb) if len(yb) else None
        value = optimizer.reduce_value(float(loss.item()) if loss is not None else 0.0)
        if not math.isfinite(value):   # the global loss: every rank raises
            raise agreed(FloatingPointError(f"step {step + 1}: non-finite loss {value}"))
        true_fisher = name == "kfac" and optimizer.fisher == "true"
        if loss is not None:
            loss.backward(retain_graph=true_fisher)   # the sampled pass goes through the logits
        if true_fisher:
            optimizer.step(outputs=logits)
        else:
            optimizer.step()
        return value

    def closure(indices=None):
        x, y = (xb, yb) if indices is None else (xb[indices], yb[indices])
        logits = model(mg.tensor(x))
        return loss_of(model, logits, y), logits

    if optimizer.distributed:
        optimizer.step(closure, batch_size=global_rows, rows=rows)
    else:
        optimizer.step(closure, batch_size=len(yb))
    return float(optimizer.info["loss"])
