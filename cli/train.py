"""`minigrad train`: train a classifier on digits / MNIST / Fashion-MNIST with one optimizer.

See `minigrad train --help`. This module reads the options and builds the run's configuration
(cli/training/config.py); the training is cli/training/ (session.py: one session of a run,
trainer.py: the loop), its files are described in cli/runlog.py and cli/checkpoint.py, its
data order in cli/training/data.py and its --schedule in cli/training/optimizers.py.

--config FILE.toml: top-level keys are option names (dashes or underscores: `eval-every = 10`,
`hidden = [64, 64]` or "64,64", `resume = true`); an option given on the command line wins
(click's ParameterSource); unknown keys and bad values are usage errors (exit 2). Options from
the file count as given (e.g. for the --resume checks).

Output: one line per evaluation; when stdout is a terminal also a click progress bar over the
steps with the batch loss and the last test accuracy (or reconstruction error).

At every evaluation the per-layer statistics of nn.capture are logged (cli/runlog.py, layers/).
"""
import math
import os
import time

import click
from click.core import ParameterSource

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from minigrad.backend import GPU_INSTALL_HINT

from . import parallel
from .checkpoint import CHECKPOINT_FILE, read_checkpoint
from .common import one_line_errors, parse_hidden
from .training.config import (APPLIES, CHANGEABLE_ON_RESUME, DATASETS, DEFAULT_EPOCHS, MODELS,
                              OPTIMIZERS, SCHEDULE_DEFAULTS, SCHEDULED, SCHEDULES, STRUCTURAL)
from .training.hyperparameters import default as option_default
from .training.hyperparameters import hyperparameter_options, run_values
from .training.run_folder import check_writable
from .training.session import run
from .training.trainer import DEFAULT_CHECKPOINT_SECONDS, EVAL_CHECKPOINT_SPACING
from .training.threads import limited_threads


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


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True,
              help="Training data. All but digits are read from local files: found in "
                   "$MINIGRAD_DATA or the system folders (datasets/README.md); their parsed "
                   "cache goes to $MINIGRAD_CACHE (default ~/.cache/minigrad).")
@click.option("--model", type=click.Choice(MODELS), default="mlp", show_default=True,
              help="mlp gets flattened images; lenet needs 28x28 images; autoencoder "
                   "reconstructs the flattened images (binary cross-entropy; evaluations report "
                   "the reconstruction error instead of an accuracy).")
@click.option("--hidden", callback=parse_hidden, default="64,64", show_default=True,
              help="Hidden layer sizes of the mlp, comma-separated (relu between layers); for the "
                   "autoencoder the encoder sizes after the input (default 32,16,8 on digits, "
                   "1000,500,250,30 on 28x28 images).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Epochs to train (default {DEFAULT_EPOCHS} unless --steps is given).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Total optimizer steps (instead of --epochs); with --resume, the new total.")
@hyperparameter_options
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule of sgd and kfac over the run's steps (default constant; "
                   "step: x0.1 after each third).")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Linear lr warmup over the first N steps (sgd, kfac; default 0).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None,
              help="Linear lr warmup over the first E epochs, ceil(E x steps per epoch) steps "
                   "(sgd, kfac; default 0): the same share of the data at every batch size, as "
                   "a study wants (Goyal et al. 2017 warm up over 5 epochs). Not with "
                   "--warmup-steps.")
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
                   ">= 0.99 ln C (C classes), i.e. no better than guessing. They count only once "
                   "the run has left its start (a training loss at an evaluation outside "
                   "[0.99, 1.02] ln C): a run still on its starting plateau is slow, not "
                   "diverged. 0: never.")
@click.option("--diverged-epochs", type=click.FloatRange(min=0), default=0, show_default=True,
              help="With --diverged-after K: end the run only once its K or more evaluations "
                   "at chance in a row also span E epochs or more (from the first of them), so "
                   "that frequent evaluations (a small --eval-every, a large batch) do not make "
                   "the rule short: a run at chance can recover.")
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
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of the BLAS and OpenMP libraries while training (default: theirs, "
                   "usually one per core, or OMP_NUM_THREADS). Fewer are often faster for small "
                   "models and on a busy machine; under mpiexec give each rank its share of the "
                   "cores. The same seed gives the same run bit for bit for the same count.")
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
@click.option("--prune-file", type=click.Path(dir_okay=False), default=None,
              help="A file holding a step count S, read at the start and at every evaluation "
                   "(it may shrink while the run trains): once the run has done S steps, and its "
                   "evaluation at step S, without reaching its targets, it stops with status "
                   "pruned (it cannot reach them in S steps or fewer; `minigrad scaling` uses "
                   "it). Not part of the run's configuration: give it to each session.")
@click.option("--stop-file", type=click.Path(dir_okay=False), default=None,
              help="Stop after the current step, as on a stop signal, once this file exists "
                   "(holding the signal's number; SIGTERM if empty): checked after every step. "
                   "A study's workers use it, so that a stop that comes before a trial's "
                   "signal handlers are set is not lost. Not part of the run's configuration.")
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
    from_file = _merge_config_file(ctx, options)
    out = options.pop("out")
    overwrite, resume = options.pop("overwrite"), options.pop("resume")
    prune_file, stop_file = options.pop("prune_file"), options.pop("stop_file")
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
        """Whether option `name` was given (on the command line or in --config)."""
        if name in from_file:
            return True
        source = ctx.get_parameter_source(name)
        return source is not None and source not in (ParameterSource.DEFAULT,
                                                     ParameterSource.DEFAULT_MAP)

    if resume:
        saved, config = _resumed_config(out, options, given)
    else:
        saved, config = None, _new_config(out, options, overwrite, given)
    comm = parallel.communicator()
    parallel.check_batch(comm, config["batch_size"])
    parallel.check_same(comm, "options", dict(config, out=out, resume=resume, overwrite=overwrite))
    config["profile"] = options["profile"]
    if config.get("device") == "cuda":
        check_cuda(comm)
    with parallel.abort_on_error(comm):
        if parallel.is_root(comm):
            check_writable(out)
        with limited_threads(config.get("threads")):
            run(config, out, saved, overwrite, prune_file, stop_file)


def _merge_config_file(ctx, options):
    """Put the values of --config FILE into `options` where the command line gave none; the
    names taken from the file."""
    from_file = set()
    config_file = options.pop("config_file")
    if config_file is not None:
        for name, value in read_config_file(ctx, config_file).items():
            source = ctx.get_parameter_source(name)
            if source in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
                options[name] = value
                from_file.add(name)
    return from_file


def _resumed_config(out, options, given):
    """(checkpoint, configuration) of the run in `out`: the run's own configuration with the
    options a resume may change (CHANGEABLE_ON_RESUME) as given; a structural option given with
    another value is a usage error."""
    if not os.path.isfile(os.path.join(out, CHECKPOINT_FILE)):
        raise click.UsageError(f"--resume: no checkpoint in {out!r} "
                               f"({CHECKPOINT_FILE} not found)")
    saved = read_checkpoint(out)
    old = saved[1]["config"]
    trained = dict(old, **run_values(old))   # LEGACY_VALUES for options newer than the run
    for key, default in SCHEDULE_DEFAULTS.items():   # a run older than the option had none
        trained.setdefault(key, default)
    for key in STRUCTURAL:
        if given(key) and options[key] != trained.get(key, options[key]):
            raise click.UsageError(f"--resume: --{key.replace('_', '-')} {options[key]!r} differs "
                                   f"from the run's {trained[key]!r}; it cannot change on resume")
    config = dict(old)
    for key in CHANGEABLE_ON_RESUME:
        if given(key):
            config[key] = options[key]
    _check_diverged_epochs(config)
    if given("epochs"):
        config["steps"] = None
    if given("steps"):
        config["epochs"] = None
    return saved, config


def _check_diverged_epochs(config):
    """--diverged-epochs: a finite number, and only with the rule it qualifies."""
    epochs = config.get("diverged_epochs") or 0
    if not math.isfinite(epochs):
        raise click.UsageError(f"--diverged-epochs must be a finite number of epochs, got "
                               f"{epochs}")
    if epochs and not config.get("diverged_after"):
        raise click.UsageError(f"--diverged-epochs {epochs:g} qualifies --diverged-after K, "
                               "which is 0 (the rule is off): give --diverged-after too")


def _new_config(out, options, overwrite, given):
    """The configuration of a new run in `out`: the options, with the defaults of the optimizer
    (cli/training/hyperparameters.py), the epochs and the schedule filled in; an option that
    does not apply to the model or the optimizer is a usage error."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        if not overwrite:
            raise click.UsageError(f"run folder {out!r} exists; pass --resume to continue it or "
                                   "--overwrite to replace its run.h5 and checkpoint")
        if not os.path.isdir(out):
            raise click.UsageError(f"--out {out!r} is a file, not a folder")
    config = dict(options)
    _check_model_options(config, given)
    name = config["optimizer"]
    for key, applies in APPLIES.items():
        if config[key] is not None and name not in applies:
            raise click.UsageError(f"--{key.replace('_', '-')} does not apply to --optimizer {name}")
        if config[key] is None and name in applies:
            config[key] = option_default(name, key, config["model"])
    if config["epochs"] is None and config["steps"] is None:
        config["epochs"] = DEFAULT_EPOCHS
    if config["stop_at_target"] and config["target_accuracy"] is None \
            and config["target_loss"] is None:
        raise click.UsageError("--stop-at-target needs --target-accuracy or --target-loss")
    if config["diverged_after"] and config["model"] == "autoencoder":
        raise click.UsageError("--diverged-after compares the accuracy with chance; --model "
                               "autoencoder has no accuracy")
    for key, default in SCHEDULE_DEFAULTS.items():
        if config.get(key) is None:
            config[key] = default
        elif name not in SCHEDULED and config[key] != default:
            raise click.UsageError(f"--{key.replace('_', '-')} applies to --optimizer "
                                   f"{' and '.join(SCHEDULED)} only, not {name}")
    _check_diverged_epochs(config)
    if not math.isfinite(config["warmup_epochs"]):
        raise click.UsageError(f"--warmup-epochs must be a finite number of epochs, got "
                               f"{config['warmup_epochs']}")
    if config["warmup_steps"] and config["warmup_epochs"]:
        raise click.UsageError(f"--warmup-steps {config['warmup_steps']} and --warmup-epochs "
                               f"{config['warmup_epochs']:g}: give one warmup length, not both")
    return config


def _check_model_options(config, given):
    """--hidden only for the mlp and the autoencoder; the autoencoder has no accuracy and no
    labels (its hidden sizes, when not given, come from the image size: build_model)."""
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


def check_cuda(comm):
    """A one-line error (exit 1) unless CuPy is installed and sees a GPU; with P processes,
    rank r uses GPU r mod (visible GPUs)."""
    try:
        import cupy
    except ImportError:
        parallel.fail(f"--device cuda needs CuPy, which is not installed; install it with "
                      f"{GPU_INSTALL_HINT}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver / runtime missing
        parallel.fail(f"--device cuda: CuPy cannot use CUDA ({' '.join(str(e).split())})")
    if count < 1:
        parallel.fail("--device cuda: no CUDA device found")
    cupy.cuda.Device(comm.rank % count).use()
