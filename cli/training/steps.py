"""One optimizer step on one batch: the only place where the training loop calls an optimizer.

The trainer looks `one_step` up in this module at every step (steps.one_step), so a test can
put a wrapper in its place (to send a signal, fail or record at a given step).
"""
import math

import minigrad as mg
from minigrad.optim.optimizer import agreed

from .model import loss_of


def one_step(name, model, optimizer, xb, yb, step, global_rows=None, rows=None):
    """One optimizer step on the batch (xb, yb), this rank's rows `rows` of a global batch of
    global_rows; returns the global batch's loss at the start of the step.

    sgd and kfac take the gradient of the mean loss (K-FAC's true Fisher also the logits, to
    sample labels from); trcg and strcg take a closure that evaluates the loss of any rows of
    the batch (their curvature sub-sample, their ratio tests)."""
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
