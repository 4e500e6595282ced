"""Trainer: the training loop of one session of a run, with its evaluations and checkpoints.

The run's state lives on the Trainer and goes whole into every checkpoint (state()): the steps
done, the position in the data (epoch, batch), the history of run.h5, the wall time of earlier
sessions, the steps at which the targets were reached, the losses since the last evaluation and
the evaluations at chance in a row. A resumed run restores it (restore) and goes on as if it
had never stopped.

After every step (step):

- every --eval-every steps (default: once per epoch) an evaluation (evaluate): the test split,
  the training split too for --target-loss, the per-layer statistics and the noise scale, one
  printed line. It may end the run: --diverged-after K evaluations at chance raise Diverged,
  --stop-at-target ends the run once every target is reached;
- the ranks agree on whether a stop signal came (cli/training/signals.py);
- the checkpoint is written every --checkpoint-every steps, after any step once
  --checkpoint-seconds have passed since the last one, and at an evaluation once min(that,
  EVAL_CHECKPOINT_SPACING) seconds have; run.h5 at every evaluation (snapshot);
- with --prune-file, the bound S in that file (read again at every evaluation, by rank 0 for
  all ranks): a run that has done S steps without reaching its targets raises Pruned (its
  evaluation at step S, if one is due, comes first: reaching them exactly at S still counts).

The end of the run evaluates once more (unless it stopped at an evaluation) and writes both
files as "finished". How a session starts and how each way of ending is reported is
cli/training/session.py's.
"""
import math
import time

import click
import numpy as np

from minigrad import datasets
from minigrad.backend import to_device
from minigrad.optim.optimizer import agreed

from .. import cost, parallel, runlog
from ..atomic import WriteError
from ..checkpoint import write_checkpoint
from . import evaluation, steps
from .optimizers import restore_optimizer
from .progress import progress_bar
from .signals import DeferredInterrupt, StopRequested
from .stopping import (Diverged, Pruned, at_chance, cannot_win, left_start, read_bound,
                       read_stop_file, targets_met)

DEFAULT_CHECKPOINT_SECONDS = 300
# an evaluation writes a checkpoint once this many seconds (or --checkpoint-seconds, if less) have
# passed since the last one: frequent evaluations (every step, at large batches) would otherwise
# spend more time writing K-FAC's factors than training
EVAL_CHECKPOINT_SPACING = 10.0


class Trainer:
    """The training of one run in `out` with `model`, `optimizer` and the Splits `splits`, for
    `total` steps, on the ranks of `comm` (rank 0 alone prints and writes). `interactive`: a
    progress bar is drawn (stdout is a terminal); `prune_file`, `stop_file`: the --prune-file
    and --stop-file (a path or None)."""

    def __init__(self, config, out, model, optimizer, splits, comm, total, interactive=False,
                 prune_file=None, stop_file=None):
        self.config, self.out, self.comm = config, out, comm
        self.model, self.optimizer, self.splits = model, optimizer, splits
        self.root = comm.rank == 0
        self.name = config["optimizer"]
        self.autoencoder = config["model"] == "autoencoder"
        self.device = config.get("device") or "cpu"
        self.batch_size, self.n = config["batch_size"], len(splits.labels)
        self.per_epoch = datasets.num_batches(self.n, self.batch_size)
        self.total = total
        self.eval_every = config["eval_every"] or self.per_epoch
        self.checkpoint_every = config["checkpoint_every"]
        seconds = config.get("checkpoint_seconds")
        self.checkpoint_seconds = DEFAULT_CHECKPOINT_SECONDS if seconds is None else seconds
        self.interactive = interactive
        self.acc_key = "test_reconstruction_error" if self.autoencoder else "test_accuracy"
        self.acc_label = "test recon err" if self.autoencoder else "test acc"
        # the run's state (in its checkpoint)
        self.steps_done, self.epoch, self.position = 0, 0, 0
        self.wall_before = 0.0           # seconds of training in earlier sessions
        self.target_step = None          # first evaluated step at --target-accuracy
        self.loss_step = None            # first evaluated step at --target-loss
        self.since_eval = []             # batch losses since the last evaluation
        self.evals_at_chance = 0         # consecutive evaluations at chance (--diverged-after)
        self.history = runlog.new_history()
        # this session's bookkeeping
        self.last_checkpoint = None      # the step of the last checkpoint written
        self.first_step, self.started, self.last_checkpoint_time = 0, None, None
        self.last_acc, self.stopped = None, False
        self.prune_file, self.bound = prune_file, None   # --prune-file and its last value
        self.stop_file = stop_file
        self.pruned_bound = None         # the bound that pruned the run (run.h5 prune_bound)

    # ------------------------------------------------------------------ state and files
    def restore(self, saved):
        """Continue from the checkpoint `saved` (read_checkpoint's (model_state, state))."""
        model_state, state = saved
        self.model.load_state_dict(model_state)
        self.model.to(self.device)   # the checkpoint holds host arrays
        restore_optimizer(self.optimizer, state["optimizer"])
        self.steps_done, self.history = int(state["step"]), state["history"]
        self.epoch, self.position = state["data"]["epoch"], state["data"]["position"]
        self.wall_before, self.target_step = float(state["wall_time"]), state["target_step"]
        self.loss_step = state.get("target_loss_step")
        self.since_eval = list(state.get("since_eval", []))
        self.evals_at_chance = int(state.get("evals_at_chance", 0))
        self.last_checkpoint = self.steps_done

    def start_clock(self):
        """This session's training starts now (wall time, the checkpoint timer)."""
        self.first_step = self.steps_done
        self.started = time.perf_counter()
        self.last_checkpoint_time = time.monotonic()

    def wall(self):
        """Seconds of training of the run, earlier sessions included."""
        return self.wall_before + time.perf_counter() - self.started

    def state(self):
        """What the checkpoint holds besides the model's arrays."""
        return {"step": self.steps_done, "optimizer": self.optimizer.state_dict(),
                "data": {"epoch": self.epoch, "position": self.position},
                "history": self.history, "config": self.config, "wall_time": self.wall(),
                "target_step": self.target_step, "target_loss_step": self.loss_step,
                "since_eval": list(self.since_eval), "evals_at_chance": self.evals_at_chance}

    def snapshot(self, status, checkpoint=True):
        """Write run.h5 with `status`, and first the checkpoint (with checkpoint=True). The other
        ranks hold the same state; rank 0 alone writes it."""
        if checkpoint:
            self.last_checkpoint_time = time.monotonic()
            self.last_checkpoint = self.steps_done
        if not self.root:
            return
        if checkpoint:
            write_checkpoint(self.out, self.model, self.state(),
                             keep=self.config.get("keep_checkpoints", False))
        runlog.write_run(self.out, self.config, self.history, status, self.steps_done,
                         self.target_step, self.wall(), target_loss_step=self.loss_step,
                         prune_bound=self.pruned_bound)

    def safe_snapshot(self, status, checkpoint=True):
        """snapshot() where the run is ending for another reason: None if it was written, else
        the WriteError, for the caller to add to its one line about that reason (a failed write
        must not hide why the run ended, nor the reason the failed write)."""
        try:
            self.snapshot(status, checkpoint)
        except WriteError as e:
            return e
        return None

    def targets_reached(self):
        return targets_met(self.config, self.target_step, self.loss_step)

    # ----------------------------------------------------------------------- the loop
    def train(self):
        """Train from the current step to the last one (or to the targets, with
        --stop-at-target), then evaluate and write both files as "finished"; returns the final
        (train loss, test accuracy or reconstruction error). Stop signals raise StopRequested
        after a step; a run at chance too long raises Diverged."""
        self.last_acc = (self.history["evals"].get(self.acc_key) or [None])[-1]
        # --stop-at-target ended the run at an evaluation (a resumed run may have ended there)
        self.stopped = bool(self.config.get("stop_at_target")) and self.targets_reached()
        self._read_bound()
        with DeferredInterrupt() as interrupt, np.errstate(over="ignore", invalid="ignore"), \
                progress_bar(self.steps_done, self.total, self.interactive) as bar:
            while self.steps_done < self.total and not self.stopped:
                self._epoch(interrupt, bar)
        ev = self.history["evals"]
        if self.stopped and ev["step"] and ev["step"][-1] == self.steps_done:
            result = ev["train_loss"][-1], self.last_acc
        else:
            result = self.evaluate()
        self.snapshot("finished")
        return result

    def _epoch(self, interrupt, bar):
        """The steps of the current epoch from the current position (a resumed run starts
        mid-epoch) until the epoch ends, the last step is done or the run stops at its
        targets."""
        order_rng = np.random.default_rng([self.config["seed"], self.epoch])
        batches = datasets.batches(self.splits.images, self.splits.labels, self.batch_size,
                                   seed=order_rng, rank=self.comm.rank,
                                   world_size=self.comm.world_size)
        for k, (xb, yb) in enumerate(batches):
            if k < self.position:
                continue
            if self.steps_done >= self.total:
                break
            loss = self.step(k, xb, yb)
            if self._after_step(loss, interrupt, bar):
                break
            if self.position == 0:
                break  # the epoch is over: a new order

    def step(self, k, xb, yb):
        """One optimizer step on batch k of the epoch (xb, yb: this rank's rows of it), recorded
        in the history; returns the global batch's loss at the start of the step."""
        optimizer, comm = self.optimizer, self.comm
        lr = float(optimizer.value("lr")) if self.name in ("sgd", "kfac") else None
        if self.device != "cpu":
            xb, yb = to_device(xb, self.device), to_device(yb, self.device)
        if self.autoencoder:
            yb = xb   # reconstruct the input
        global_rows = min(self.batch_size, self.n - k * self.batch_size)
        rows = parallel.shard_rows(global_rows, comm.rank, comm.world_size)
        optimizer.shard(rows[1] - rows[0], global_rows, rows[0])
        sent, spent = comm.stats.bytes, comm.stats.seconds
        started = time.perf_counter()
        loss = steps.one_step(self.name, self.model, optimizer, xb, yb, self.steps_done,
                              global_rows, rows)
        step_time = time.perf_counter() - started
        self.steps_done += 1
        self.position = k + 1
        if self.position == self.per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        self._record_step(loss, lr, step_time, comm.stats.bytes - sent,
                          comm.stats.seconds - spent, global_rows)
        return loss

    def _record_step(self, loss, lr, step_time, comm_bytes, comm_time, global_rows):
        """The step's entries of run.h5 steps/ (cli/runlog.py)."""
        st = self.history["steps"]
        st["loss"].append(loss)
        st["wall_time"].append(self.wall())
        st.setdefault("step_time", []).append(step_time)
        if self.comm.world_size > 1 or self.config.get("profile") or "comm_bytes" in st:
            for key, value in (("comm_bytes", comm_bytes), ("comm_time", comm_time)):
                # aligned with the steps: nan for steps of sessions not measured
                series = st.setdefault(key, [])
                series.extend([float("nan")] * (len(st["loss"]) - 1 - len(series)))
                series.append(value)
        if self.name in ("sgd", "kfac"):
            st["lr"].append(lr)
        else:
            st["radius"].append(float(self.optimizer.radius))
        for key, value in cost.step_cost(self.name, self.optimizer.info, global_rows).items():
            st.setdefault(key, []).append(value)
        self.since_eval.append(loss)

    def _after_step(self, loss, interrupt, bar):
        """An evaluation when one is due (True: the run stops there, at its targets), the
        progress bar, the stop signals agreed on, a checkpoint when one is due."""
        evaluated = self.steps_done % self.eval_every == 0 and self.steps_done < self.total
        if evaluated:
            train_loss, self.last_acc = self.evaluate()
            if self._diverged():
                span = self.steps_done - self._chance_since()
                over = f" over {span} steps ({span / self.per_epoch:.2f} epochs)" \
                    if self.config.get("diverged_epochs") else ""
                raise agreed(Diverged(
                    f"diverged: {self.evals_at_chance} consecutive evaluations at chance{over} "
                    f"(test accuracy {self.last_acc:.4f}, train loss {train_loss:.4f}; "
                    "--diverged-after)"))
            if self.config.get("stop_at_target") and self.targets_reached():
                self.stopped = True
                return True
            self._read_bound()
        if cannot_win(self.steps_done, self.total, self.bound, self.targets_reached()):
            raise Pruned(self.bound)
        bar.update(1, f"loss {loss:.4f}" + ("" if self.last_acc is None
                                            else f"  {self.acc_label} {self.last_acc:.4f}"))
        if self.stop_file is not None and self.root and not interrupt.requested:
            interrupt.request(read_stop_file(self.stop_file))   # rank 0's: agreed on below
        stop = interrupt.agreed(self.comm)   # every rank the same, after every step
        if stop:
            raise StopRequested(stop)
        self._checkpoint_if_due(evaluated)
        return False

    def _read_bound(self):
        """The --prune-file's bound, read by rank 0 and the same on every rank (a bound that
        only ever decreases: an older value prunes later, never wrongly)."""
        if self.prune_file is not None:
            found = read_bound(self.prune_file) if self.root else None
            self.bound = self.comm.broadcast_object(found)

    def _checkpoint_if_due(self, evaluated):
        """The checkpoint when one is due (the module docstring), run.h5 at an evaluation; the
        last step's are written by the end of the run."""
        since = time.monotonic() - self.last_checkpoint_time
        seconds = self.checkpoint_seconds
        due = ((self.checkpoint_every and self.steps_done % self.checkpoint_every == 0)
               or since >= seconds > 0
               or (evaluated and since >= min(seconds, EVAL_CHECKPOINT_SPACING)))
        if self.steps_done < self.total and (due or evaluated):
            self.snapshot("running", checkpoint=bool(due))

    # ----------------------------------------------------------------- evaluations
    def evaluate(self):
        """Evaluate after the current step: appended to run.h5 evals/ (and layers/), one line
        printed; updates the targets' steps and the evaluations at chance. Returns (mean batch
        loss since the last evaluation, test accuracy or reconstruction error)."""
        train_loss = float(np.mean(self.since_eval)) if self.since_eval else float("nan")
        test_loss, acc = self._evaluate_split(self.splits.test_images, self.splits.test_labels)
        ev = self.history["evals"]
        ev["step"].append(self.steps_done)
        ev["train_loss"].append(train_loss)
        ev["test_loss"].append(test_loss)
        ev.setdefault(self.acc_key, []).append(acc)
        if self.config.get("target_loss") is not None:
            split_loss = self._evaluate_split(self.splits.images, self.splits.labels)[0]
            ev.setdefault("train_split_loss", []).append(split_loss)
            if self.loss_step is None and split_loss <= self.config["target_loss"]:
                self.loss_step = self.steps_done
        if self.root and self.config.get("layer_stats", True):   # no collectives inside
            self._log_layer_statistics()
        if self.root and self.config.get("noise_scale_examples"):
            self._log_noise_scale(self.config["noise_scale_examples"])
        self.since_eval = []
        self._count_targets_and_chance(acc, train_loss)
        clear = "\r\x1b[K" if self.interactive else ""   # over the progress bar's line
        parallel.echo(f"{clear}step {self.steps_done:>6}/{self.total}  "
                      f"epoch {self.epoch + self.position / self.per_epoch:6.2f}  "
                      f"train loss {train_loss:.4f}  test loss {test_loss:.4f}  "
                      f"{self.acc_label} {acc:.4f}  {self.wall():7.1f}s")
        return train_loss, acc

    def _evaluate_split(self, images, labels):
        """(mean loss, accuracy) of a whole split, each rank evaluating a part of it."""
        return parallel.evaluate(evaluation.evaluate, self.comm, self.model, images, labels,
                                 self.splits.flatten, self.device)

    def _chance_since(self):
        """The step of the first of the evaluations at chance in a row so far: the logged
        evaluations' (exact across a resume, wherever the checkpoint fell)."""
        return self.history["evals"]["step"][-self.evals_at_chance]

    def _diverged(self):
        """--diverged-after K (and --diverged-epochs E): K or more evaluations at chance in a
        row, the first of them E epochs or more before this one."""
        if self.evals_at_chance < (self.config.get("diverged_after") or math.inf):
            return False
        epochs = self.config.get("diverged_epochs") or 0
        return self.steps_done - self._chance_since() >= epochs * self.per_epoch

    def _count_targets_and_chance(self, acc, train_loss):
        """The step the accuracy target was reached at, and the evaluations at chance in a row
        (counted from the end of the first epoch, once the run has left its start: stopping.py).
        The same on every rank: the loss and the accuracy are the global ones."""
        if not self.autoencoder:
            classes = self.splits.classes
            at = (self.steps_done >= self.per_epoch and at_chance(acc, train_loss, classes)
                  and left_start(self.history["evals"]["train_loss"], classes))
            self.evals_at_chance = self.evals_at_chance + 1 if at else 0
        if self.target_step is None and self.config["target_accuracy"] is not None \
                and not self.autoencoder and acc >= self.config["target_accuracy"]:
            self.target_step = self.steps_done

    def _log_layer_statistics(self):
        """run.h5 layers/: the statistics of one forward and backward of the first batch-size
        examples of the training split (one process's model: no collectives inside)."""
        bs = self.batch_size
        stats = evaluation.layer_statistics(self.model, self.splits.images[:bs],
                                            self.splits.labels[:bs], self.device)
        runlog.append_layers(self.history, len(self.history["evals"]["step"]), stats)

    def _log_noise_scale(self, examples):
        """run.h5 evals/noise_*: the gradient noise scale of `examples` training examples drawn
        without replacement by default_rng([seed, 1, step])."""
        n = self.n
        rows = np.sort(np.random.default_rng([self.config["seed"], 1, self.steps_done]).choice(
            n, min(examples, n), replace=False))
        found = evaluation.noise_scale(self.model, self.splits.images, self.splits.labels, rows,
                                       self.device)
        ev = self.history["evals"]
        for key, value in (("noise_scale", found.b_simple), ("noise_trace_cov", found.trace_cov),
                           ("noise_grad_sq_norm", found.grad_sq_norm)):
            ev.setdefault(key, []).append(float(value))
