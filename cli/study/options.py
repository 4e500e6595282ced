"""The options every study command takes (study_options), and reading them: a value per batch
size (--budget-epochs, --eval-every), the targets. The --train-option entries are read by
cli/study/trials.py (fixed_train_options), with `minigrad train`'s own option types.
"""
import click

from .. import search
from ..common import parse_hidden
from ..training.config import DATASETS, MODELS


def int_list(ctx, param, value):
    """A comma-separated list of positive ints, sorted, each once (a click callback)."""
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    return sorted(set(values))


def per_batch_option(ctx, param, value):
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
    """The value at `batch_size` of an option read by per_batch_option; UsageError if it gives
    none."""
    value = options[name]
    if not isinstance(value, dict):
        return value
    if batch_size not in value:
        raise click.UsageError(f"--{name.replace('_', '-')} gives no value for batch size "
                               f"{batch_size} (it has {', '.join(map(str, sorted(value)))})")
    return value[batch_size]


def per_batch_text(options, name):
    """An option read by per_batch_option as it was written (K, or B1=K1,B2=K2,...)."""
    value = options[name]
    return str(value) if not isinstance(value, dict) else \
        ",".join(f"{b}={k}" for b, k in sorted(value.items()))


def _optimizer_list(ctx, param, value):
    """--optimizers "sgd,kfac": the names, each once, in the order given (a click callback)."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in search.OPTIMIZERS]
    if not names or unknown:
        raise click.BadParameter(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {','.join(search.OPTIMIZERS)}")
    return list(dict.fromkeys(names))


def study_options(batch_option):
    """The options every study command takes; `batch_option` is the command's batch-size
    option (a list for scaling and sensitivity, one size for compare)."""
    options = _problem_options() + [batch_option] + _search_options() + _trial_options()

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def _problem_options():
    """The data, the model and the optimizers studied."""
    return [
        click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True),
        click.option("--model", type=click.Choice([m for m in MODELS if m != "autoencoder"]),
                     default="mlp", show_default=True),
        click.option("--hidden", callback=parse_hidden, default="64,64", show_default=True,
                     help="Hidden sizes of the mlp."),
        click.option("--optimizers", callback=_optimizer_list, default="sgd,kfac,trcg,strcg",
                     show_default=True, help="Comma-separated optimizers to study."),
    ]


def _search_options():
    """The targets, the budget and the hyperparameter search."""
    return [
        click.option("--target-accuracy", type=click.FloatRange(0, 1), default=None,
                     help="Target test accuracy."),
        click.option("--target-loss", type=click.FloatRange(min=0), default=None,
                     help="Target loss on the whole training split."),
        click.option("--budget-epochs", callback=per_batch_option, default="20", show_default=True,
                     metavar="E|B=E,...",
                     help="Epochs a trial may use, or one value per batch size (128=10,256=20); a "
                          "trial that has not reached the target by then fails."),
        click.option("--search", "search_kind", type=click.Choice(search.SEARCHES),
                     default="grid", show_default=True,
                     help="grid: every point of each optimizer's grid; random: --trials points "
                          "(Optuna's RandomSampler); tpe: --trials points of Optuna's TPE, each "
                          "drawn from the results before it."),
        click.option("--trials", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Points per optimizer and batch size of --search random or tpe."),
        click.option("--grid", "grid_entries", multiple=True, metavar="OPT.NAME=V1,V2",
                     help="Replace one axis of a grid, e.g. --grid sgd.lr=0.05,0.1 (repeatable)."),
        click.option("--lr-scaling", type=click.Choice(search.SCALING_RULES), default="sqrt",
                     show_default=True, help="How lr grows with the batch size from the base one."),
        click.option("--base-batch-size", type=click.IntRange(min=1), default=None,
                     help="The batch size the grids' lr values are for (default: the smallest)."),
    ]


def _trial_options():
    """How each trial is trained and evaluated, and where the study goes."""
    return [
        click.option("--evals-per-epoch", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Evaluations per epoch: the resolution of steps to target."),
        click.option("--eval-every", callback=per_batch_option, default=None, metavar="K|B=K,...",
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
                     help="Worker processes on this machine, each taking the next trial nobody "
                          "has taken from the study's storage."),
        click.option("--storage", default=None, metavar="URL",
                     help="The database the study's workers share (any SQLAlchemy URL, e.g. "
                          "postgresql+psycopg://user@host/db): run the same command with it on "
                          "more machines, which see the same study folder, to add workers. "
                          "Default: SQLite in the study folder (optuna.db)."),
        click.option("--heartbeat", type=click.IntRange(min=1), default=30, show_default=True,
                     metavar="SECONDS",
                     help="A worker records a heartbeat for its trial this often; a trial "
                          "without one for 4 heartbeats is taken over by another worker, from "
                          "its checkpoint."),
        click.option("--threads-per-job", type=click.IntRange(min=1), default=1,
                     show_default=True,
                     help="BLAS threads of each trial process (results depend on it through "
                          "rounding; --jobs does not change them)."),
        click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="Study folder (default studies/<command>-<UTC time>)."),
    ]


def check_targets(options, need_target=True):
    if need_target and options["target_accuracy"] is None and options["target_loss"] is None:
        raise click.UsageError("give --target-accuracy and/or --target-loss: the study measures "
                               "the steps each optimizer needs to reach it")
