"""Exact early stopping of `minigrad scaling`'s trials: a trial that can no longer be the best of
its search stops ("pruned: cannot beat step S"), and no reported figure changes.

The best trial of a search (results.py best_index) is, among those that reached the target,
the one with the fewest steps to target, ties broken by cost, final accuracy and the trial's
place in the search; a trial that did not reach it is chosen only when none did. Steps to target
is the step of an evaluation (the first at which every target is met). So once a trial of the
search has *finished* with S steps to target, a running trial that has done S steps, and its
evaluation at step S if one is due there, without reaching the target, would reach it (if ever)
at a later evaluation, with more than S steps: it can be neither the best nor tied with it, and
stopping it changes no best trial, no curve point, no table cell. A trial that reaches the target
exactly at step S still runs through that evaluation, and may win the tie.

How a running trial learns S. The workers keep one bound file per search, in
STUDY/.bounds/ (named after the search's Optuna study and its set of trials, so another set of
options never reads it): one integer, the fewest steps to target among the search's finished
trials known to the worker that wrote it, replaced atomically. A worker writes it before it
starts a trial (from the storage) and after a trial of the search reaches the target; the
trial (`minigrad train --prune-file FILE`) reads it at every evaluation (cli/training/
trainer.py). Any value written is some finished trial's steps to target, so a worker writing
an older, larger value only prunes later, never wrongly. A session starts by writing the
storage's own value (reset): a bound left by a trial whose folder was removed since (it is
queued again, and the storage no longer counts it) must not prune its rerun or the others.

Pruning is off for sensitivity (it needs every trial's whole budget), for --confirm-seeds'
trials, with --seeds K > 1 (a setting's figure is a mean over seeds, which a bound on one seed
says nothing about), with --search tpe (its draws depend on every trial's whole result), under
mpiexec (trials run one after the other there, without the storage) and with --no-prune; a pruned trial is continued from its checkpoint to its
end by a later session that does not prune.
"""
import contextlib
import hashlib
import os

from ..atomic import atomic_write
from ..training.stopping import read_bound

BOUNDS = ".bounds"   # in the study folder


def bound_file(root, study_name, names):
    """The bound file of the search `study_name` whose trials are the folders `names`."""
    digest = hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()[:10]
    return os.path.join(root, BOUNDS, f"{study_name.replace('/', '-')}-{digest}")


def reset(path, steps):
    """Make the bound file `path` hold `steps` (no file where it is None): what the storage
    knows now, whatever an earlier session left there."""
    if steps is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda tmp: _write(tmp, steps))


def _write(tmp, steps):
    with open(tmp, "w") as fh:
        fh.write(f"{int(steps)}\n")


def tighten(path, steps):
    """Write `steps` to the bound file `path` unless it holds a smaller bound already."""
    if steps is None:
        return
    now = read_bound(path)
    if now is not None and now <= steps:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda tmp: _write(tmp, steps))
