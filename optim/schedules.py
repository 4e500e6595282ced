"""Learning-rate schedules: callables of the step number (0, 1, 2, ...) giving the lr.

Pass one as `lr=` to an optimizer, or set `opt.lr = schedule(step)` yourself.
"""
import math

from .hyperparameters import check_number


def _whole(owner, name, value, low):
    """A whole number >= low (2.0 is fine, 2.5 is a ValueError naming the argument)."""
    number = check_number(owner, name, value, low=low)
    if number != int(number):
        raise ValueError(f"{owner}: {name} must be a whole number, got {value!r}")
    return int(number)


def constant(lr):
    lr = check_number("constant", "lr", lr, low=0)
    return lambda step: lr


def step_decay(lr, step_size, gamma=0.1):
    """lr * gamma^(step // step_size)."""
    lr = check_number("step_decay", "lr", lr, low=0)
    step_size = _whole("step_decay", "step_size", step_size, 1)
    gamma = check_number("step_decay", "gamma", gamma, low=0)
    return lambda step: lr * gamma ** (step // step_size)


def cosine(lr, total_steps, min_lr=0.0):
    """min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2 for t <= T, then min_lr (Loshchilov & Hutter 2017)."""
    lr = check_number("cosine", "lr", lr, low=0)
    total = _whole("cosine", "total_steps", total_steps, 1)
    min_lr = check_number("cosine", "min_lr", min_lr, low=0, high=lr)
    return lambda step: min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / total)) / 2


def linear_warmup(schedule, warmup_steps):
    """schedule(step) * (step + 1) / warmup_steps for the first warmup_steps steps (Goyal et al. 2017)."""
    warmup = _whole("linear_warmup", "warmup_steps", warmup_steps, 1)
    if not callable(schedule):
        schedule = constant(schedule)
    return lambda step: schedule(step) * min(1.0, (step + 1) / warmup)


def scaled_lr(base_lr, base_batch_size, batch_size, rule="linear"):
    """The lr for `batch_size` from one tuned at `base_batch_size`: linear scaling
    lr = base_lr B / B0 (Goyal et al. 2017) or square-root scaling lr = base_lr sqrt(B / B0)
    (Krizhevsky 2014; Hoffer et al. 2017)."""
    base_lr = check_number("scaled_lr", "base_lr", base_lr, low=0)
    b0 = check_number("scaled_lr", "base_batch_size", base_batch_size, low=1)
    b = check_number("scaled_lr", "batch_size", batch_size, low=1)
    if rule == "linear":
        return base_lr * b / b0
    if rule == "sqrt":
        return base_lr * math.sqrt(b / b0)
    raise ValueError(f"scaled_lr: rule must be 'linear' or 'sqrt', got {rule!r}")
