"""One trial of a study: the `minigrad train` options fixed for every trial (TRIAL_DEFAULTS,
--train-option), its folder (trial_name), what is left to do in that folder (trial_mode) and
running it (execute). A trial's options as a whole come from trial_spec (cli/study/specs.py).

A trial runs the `minigrad train` command itself (cli/train.py) in this process, with its
output in the trial folder's train.log; how many trials run at once, and where, is
cli/study/pool.py's. A trial of a study that prunes (`minigrad scaling`) is given
`--prune-file` (cli/study/pruning.py); one that ended as pruned is done in such a study, and
continued from its checkpoint to its end in any other.
"""
import contextlib
import hashlib
import json
import os
import traceback

import click

from .. import parallel, runlog, search
from ..checkpoint import checkpoint_path, read_checkpoint
from ..train import train as train_command
from ..training.config import applies_to
from ..training.signals import EXIT_INTERRUPTED, STOP_SIGNALS
from ..training.stopping import read_stop_file

TRIALS = "trials"
LOG_FILE = "train.log"
DONE = ("finished", "failed")
DONE_EARLIER = "done earlier"   # execute's message for a trial whose folder is done
# what a trial exits with when a stop signal ended it after a step, with a checkpoint
STOPPED = {128 + int(s) for s in STOP_SIGNALS}
STOP_FILE = ".stop"   # in the study folder (+ this session's host and pid): no new trials
# `minigrad train` options every trial gets unless --train-option says otherwise: a run stuck at
# chance ends as diverged after 3 evaluations (train's --diverged-after rule) instead of using its
# whole budget, and no per-layer statistics (no study reads them; at large batches they cost as
# much as the training)
TRIAL_DEFAULTS = {"diverged_after": 3, "layer_stats": False}
# the key of a trial spec that holds the defaults of its optimizer's other options (trial_spec)
OPTIMIZER_DEFAULTS = "optimizer_defaults"
# what the study itself sets: not for --train-option
STUDY_SET = ("dataset", "model", "hidden", "optimizer", "batch_size", "epochs", "steps", "seed",
             "dtype", "eval_every", "target_accuracy", "target_loss", "stop_at_target", "out",
             "overwrite", "resume", "config_file", "profile", "prune_file")


def fixed_train_options(entries, optimizers):
    """{optimizer: {name: value}} of the --train-option entries ("[OPT.]NAME=VALUE"), each value
    converted and checked by `minigrad train`'s own option; UsageError naming the entry."""
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
        applies = applies_to(name)
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


def trial_name(spec):
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{spec['optimizer']}-b{spec['batch_size']}-{digest}"


def train_args(spec, folder, mode, prune_file=None, stop_file=None):
    """The command line of a trial for `minigrad train` (mode: "new", "resume", "restart")."""
    args = ["--out", folder] + (["--prune-file", prune_file] if prune_file else []) + \
        (["--stop-file", stop_file] if stop_file else [])
    if mode == "resume":
        return args + ["--resume"]
    args.append("--overwrite")   # "new" too: the folder already holds the trial's train.log
    options = {k: v for k, v in spec.items() if k != OPTIMIZER_DEFAULTS}
    for key, value in dict(options, **spec.get(OPTIMIZER_DEFAULTS, {})).items():
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


def trial_mode(folder, prune=False):
    """"done", "resume", "restart" or "new" (see the module docstring); a checkpoint.npz that
    cannot be read (damaged, or of format 1: a pickle, refused unread) counts as none: "restart".
    A pruned trial is done when the study prunes (`prune`), else it is continued."""
    if not os.path.isdir(folder) or not os.listdir(folder):
        return "new"
    try:
        status = runlog.read_run(folder)["attrs"].get("status")
    except Exception:   # missing or damaged run.h5: the trial did not get far
        status = None
    if status in DONE or (prune and status == "pruned"):
        return "done"
    if os.path.isfile(checkpoint_path(folder)):
        try:
            read_checkpoint(folder)
        except (OSError, ValueError):
            # damaged, or of an older format (a pickle, refused unread): `train --resume` would
            # stop on it, so the trial starts again instead (its options are the same)
            return "restart"
        return "resume"
    return "restart"


def execute(spec, folder, mode=None, stop=None, prune_file=None):
    """Run one trial (in this process) to its end; returns (exit code, message). The output of
    `minigrad train` goes to folder/train.log (on rank 0; the other ranks' to os.devnull).
    `stop`: the session's stop file (pool.py); `prune_file`: train's --prune-file."""
    mode = mode or trial_mode(folder, prune_file is not None)
    if mode == "done":
        return 0, DONE_EARLIER
    signum = read_stop_file(stop) if stop else 0
    if signum:   # the study was told to stop (pool.py, _forward_stops)
        return 128 + signum, "not started: the study stopped"
    root = parallel.is_root()
    if root:
        os.makedirs(folder, exist_ok=True)
    # the stop file too: a stop that comes before train's handlers are set is not lost
    args = train_args(spec, folder, mode, prune_file, stop)
    log_path = os.path.join(folder, LOG_FILE) if root else os.devnull
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        print("$ minigrad train " + " ".join(args), flush=True)
        try:
            train_command.main(args=args, prog_name="minigrad train", standalone_mode=False)
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
