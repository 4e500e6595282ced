"""When a run ends before its last step: its targets are reached (--target-accuracy,
--target-loss with --stop-at-target), it is stuck at chance (--diverged-after), or it can no
longer beat a bound on the steps to its targets (--prune-file).

"At chance" is a test accuracy <= 1/C + CHANCE_ACCURACY_MARGIN together with a mean training
loss >= CHANCE_LOSS_SHARE ln C, C the number of classes (ln C is the loss of predicting 1/C for
every class): no better than guessing. An evaluation at chance counts towards divergence only
once the run has left its start: the mean training loss of an evaluation so far was outside
[CHANCE_LOSS_SHARE, LEFT_START_LOSS_SHARE] ln C, below it (the run learned something) or above
it, inf included (it went up). A run still on its starting plateau, its loss at ln C (a small
learning rate at a large batch: a handful of steps per epoch), is slow, not diverged; a study's
pruning, not this rule, stops it once it cannot win. (The training loss, not the test accuracy,
marks the start: a random initialisation can score above 1/C + 0.02 by luck.)
"""
import math
import signal

from .. import runlog

CHANCE_ACCURACY_MARGIN = 0.02
CHANCE_LOSS_SHARE = 0.99
LEFT_START_LOSS_SHARE = 1.02


class Diverged(FloatingPointError):
    """--diverged-after: the run has been at chance for that many evaluations (after a step)."""


class Pruned(Exception):
    """--prune-file: the run has done S steps (args[0]), evaluated at step S if an evaluation
    was due, and not reached its targets: it cannot reach them in S steps or fewer."""


def read_bound(path):
    """The step count S in the --prune-file `path` (one integer), None while there is none (no
    file, or not yet written whole: it is replaced atomically, so a partial read is rare)."""
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def read_stop_file(path):
    """The stop signal a stop file (--stop-file; a study's, cli/study/pool.py) asks for: the
    number it holds, SIGTERM if it is empty or not a number yet (written as it is read), and 0
    while there is no file."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else int(signal.SIGTERM)


def cannot_win(steps_done, total, bound, reached):
    """Whether a run that has done `steps_done` of `total` steps (and its evaluation at this step,
    if one was due) can stop as pruned by `bound`: it has not reached its targets and has done
    at least `bound` steps, so any step at which it would reach them is after `bound`. The last
    step is never pruned: its evaluation comes after this check (the run ends there anyway)."""
    return bound is not None and not reached and bound <= steps_done < total


def at_chance(accuracy, train_loss, classes):
    """Whether an evaluation is no better than guessing (--diverged-after): test accuracy at most
    1/C + 0.02 and the mean training loss at least 0.99 ln C (or not finite)."""
    return (accuracy <= 1.0 / classes + CHANCE_ACCURACY_MARGIN
            and not train_loss < CHANCE_LOSS_SHARE * math.log(classes))


def left_start(train_losses, classes):
    """Whether a run has left its starting point by the evaluations so far (--diverged-after):
    one had a mean training loss below 0.99 ln C (it learned), or above 1.02 ln C, inf included
    (guessing uniformly costs ln C: above it the run went up, not down). A nan, an evaluation
    with no training step before it, says nothing."""
    low, high = CHANCE_LOSS_SHARE * math.log(classes), LEFT_START_LOSS_SHARE * math.log(classes)
    return any(loss < low or loss > high for loss in train_losses)


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
