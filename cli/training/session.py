"""One session of a run, from loading its data to the summary line, and how each way of ending
is reported.

A session builds the model and the optimizer from the configuration, restores the checkpoint of
a resumed run (or prepares the folder of a new one), and lets the Trainer train. It ends

    finished                 the summary line; exit status 0
    a stop signal            checkpoint and run.h5 "interrupted", a line naming the signal and
                             how to resume; exit status 128 + the signal's number, all ranks
    a second Ctrl-C          run.h5 "interrupted", mid-step: the last checkpoint is kept;
                             exit status 130
    diverged or non-finite   run.h5 "failed", one line; exit status 1 (all ranks when agreed,
                             else this rank's failure aborts the job)
    pruned (--prune-file)    checkpoint and run.h5 "pruned" (with its bound, prune_bound), one
                             line; exit status 0. A --resume without the file trains on
    a failed write           one line naming the file and what is kept; exit status 1
"""
import os
import signal
import sys

import click

from minigrad import datasets
from minigrad.optim import KFAC

from .. import parallel
from ..atomic import WriteError
from ..checkpoint import CHECKPOINT_FILE
from . import progress
from .data import load_splits
from .model import build_model
from .optimizers import build_optimizer
from .run_folder import make_run_folder, write_process_file
from .signals import EXIT_INTERRUPTED, StopRequested
from .stopping import Diverged, Pruned, finished_before
from .trainer import Trainer


def run(config, out, saved, overwrite, prune_file=None, stop_file=None):
    """Train the run of `config` in the folder `out` to its end: from the checkpoint `saved`
    (read_checkpoint's (model_state, state)), or anew (with `overwrite`, replacing an old run's
    files); `prune_file`: --prune-file; `stop_file`: --stop-file. Adds to `config` what
    readers of run.h5 need (train_examples, steps_per_epoch, world_size; schedule_steps in the
    first session)."""
    comm = parallel.communicator()
    splits = load_splits(config, comm)
    model = build_model(config, splits.shape, splits.classes)
    n, bs = len(splits.labels), config["batch_size"]
    if bs > n:   # the same on every rank (the data were checked equal): rank 0 says it
        parallel.fail(f"--batch-size {bs} exceeds the {n} training examples of "
                      f"{config['dataset']}; a step would see fewer examples than recorded",
                      code=2, together=True)
    per_epoch = datasets.num_batches(n, bs)
    total = config["steps"] if config["steps"] is not None else config["epochs"] * per_epoch
    if saved is None:
        config["schedule_steps"] = total   # the lr schedule spans the first session's steps
    config["train_examples"], config["steps_per_epoch"] = n, per_epoch   # for readers of run.h5
    config["world_size"] = comm.world_size   # of the latest session
    model.to(config.get("device") or "cpu")
    optimizer = build_optimizer(config, model)
    if comm.world_size > 1:
        optimizer.distribute(comm)
    comm.stats.reset()
    trainer = Trainer(config, out, model, optimizer, splits, comm, total,
                      interactive=progress.stdout_is_terminal() and comm.rank == 0,
                      prune_file=prune_file, stop_file=stop_file)
    if not _begin(trainer, saved, overwrite):
        return
    ended = _train(trainer)
    if ended is None:   # pruned
        return
    train_loss, acc = ended
    parallel.echo(summary(trainer, train_loss, acc))
    if config.get("profile"):
        parallel.echo(_profile(trainer))


def _begin(trainer, saved, overwrite):
    """Restore `saved` into the trainer, or prepare the folder of a new run; write
    process.json and start the clock. False when a resumed run has nothing left to do."""
    out = trainer.out
    if saved is not None:
        trainer.restore(saved)
        step, total = trainer.steps_done, trainer.total
        if total < step:
            raise click.UsageError(f"--resume: the run has done {step} steps already, more than "
                                   f"the {total} asked for")
        if finished_before(out, step, total, trainer.config, trainer.target_step,
                           trainer.loss_step):
            parallel.echo(f"{out} finished at step {step} already; nothing to do (give a larger "
                          "--steps or --epochs to train on)")
            return False
        parallel.echo(f"resuming {out} at step {step} (epoch {trainer.epoch + 1}, batch "
                      f"{trainer.position + 1})")
    elif trainer.root:
        make_run_folder(out, overwrite)
    if trainer.root:
        write_process_file(out)
    trainer.start_clock()
    return True


def _train(trainer):
    """trainer.train(), with every way it can end early reported (the module docstring); None
    when the run was pruned."""
    out = trainer.out
    try:
        return trainer.train()
    except WriteError as e:   # rank 0 alone writes: its exit aborts the job
        hint = "; free space, then resume with: minigrad train --out {out} --resume" \
            if e.resumable else ""
        parallel.fail(f"{e}{hint.format(out=out)}")
    except Pruned as pruned:   # agreed by all ranks (one bound, broadcast)
        trainer.pruned_bound = pruned.args[0]
        trainer.snapshot("pruned")
        parallel.echo(f"pruned at step {trainer.steps_done}: cannot beat step {pruned.args[0]} "
                      f"(--prune-file); checkpoint written  [{out}]")
        return None
    except StopRequested as stop:   # agreed by all ranks
        unwritten = trainer.safe_snapshot("interrupted")
        signum = stop.args[0]
        resume = f"minigrad train --out {out} --resume"
        if unwritten is None:
            saved = (f"checkpoint written to {os.path.join(out, CHECKPOINT_FILE)}. "
                     f"Resume with: {resume}")
        else:
            saved = f"and {unwritten}" + (f"; resume with: {resume}"
                                          if unwritten.resumable else "")
        parallel.echo(f"\n{signal.Signals(signum).name}: stopped at step {trainer.steps_done}; "
                      f"{saved}", err=True)
        parallel.exit_together(128 + signum)
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside the main thread): mid-step
        unwritten = trainer.safe_snapshot("interrupted", checkpoint=False)
        kept = (f"the checkpoint of step {trainer.last_checkpoint} is kept; resume with: "
                f"minigrad train --out {out} --resume" if trainer.last_checkpoint is not None
                else "no checkpoint was written")
        click.echo(f"\ninterrupted during step {trainer.steps_done + 1}; {kept}"
                   + (f"; and {unwritten}" if unwritten else ""), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except FloatingPointError as e:
        if trainer.comm.world_size > 1 and not getattr(e, "agreed", False):
            raise   # this rank's own failure: abort the job (parallel.abort_on_error)
        unwritten = trainer.safe_snapshot("failed", checkpoint=False)
        kept = (f"the checkpoint of step {trainer.last_checkpoint} is kept"
                if trainer.last_checkpoint is not None else "no checkpoint was written")
        # Diverged comes after its step, any other failure during the next one
        at = trainer.steps_done if isinstance(e, Diverged) else trainer.steps_done + 1
        parallel.fail(f"training stopped at step {at} ({kept}): {e}"
                      + (f"; and {unwritten}" if unwritten else ""), together=True)
    finally:
        if isinstance(trainer.optimizer, KFAC):
            trainer.optimizer.close()


def summary(trainer, train_loss, acc):
    """The last line of a session: steps, final figures, wall time, the targets, the folder."""
    config = trainer.config
    text = (f"done: {trainer.steps_done} steps, final train loss {train_loss:.4f}, "
            f"{'test reconstruction error' if trainer.autoencoder else 'test accuracy'} "
            f"{acc:.4f}, wall time {trainer.wall():.1f}s")
    for kind, target, at in (("target", config.get("target_accuracy"), trainer.target_step),
                             ("target loss", config.get("target_loss"), trainer.loss_step)):
        if target is not None:
            text += (f", {kind} {target:g} reached at step {at}" if at is not None
                     else f", {kind} {target:g} not reached")
    if trainer.stopped:
        text += " (stopped at target)"
    return text + f"  [{trainer.out}]"


def _profile(trainer):
    """The --profile lines of this session's steps (parallel.profile_report)."""
    done = trainer.steps_done - trainer.first_step
    steps = trainer.history["steps"]
    series = [steps[k][len(steps[k]) - done:] if done else []
              for k in ("comm_bytes", "comm_time", "step_time")]
    return parallel.profile_report(trainer.comm.stats, *series)
