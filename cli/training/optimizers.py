"""The optimizer of a run, built from its configuration (cli/training/config.py), restored from
a checkpoint, and the learning-rate schedule of sgd and kfac.

--schedule (sgd, kfac): the lr as a function of the optimizer step t over T steps, T the total
of the FIRST session (config "schedule_steps"; a resume with a new --steps keeps it): constant,
cosine (to 0 at T), step (x0.1 after each ceil(T/3) steps); --warmup-steps W, or --warmup-epochs
E with W = ceil(E x steps per epoch), multiplies it by min(1, (t+1)/W). steps/lr in run.h5 is
the lr each step used.
"""
import math

from minigrad.optim import KFAC, SGD, STRCG, TRCG, schedules

from .hyperparameters import optimizer_arguments

STEP_DECAY_GAMMA = 0.1   # --schedule step: lr * 0.1 after each third of the run


def build_optimizer(config, model):
    """The optimizer of `config` over the model's parameters (K-FAC: over the model itself),
    with the hyperparameters of cli/training/hyperparameters.py's optimizer_arguments (the
    run's own values; LEGACY_VALUES' for options added after the run was written) and the lr
    schedule; fisher "true" samples its labels with the --seed Generator."""
    name = config["optimizer"]
    values = optimizer_arguments(config)
    if "lr" in values:
        values["lr"] = lr_schedule(config)
    if name == "sgd":
        return SGD(model.parameters(), **values)
    if name == "kfac":
        return KFAC(model, rng=config["seed"], **values)
    cls = TRCG if name == "trcg" else STRCG
    return cls(model.parameters(), seed=config["seed"], **values)


def evolving(optimizer):
    """The hyperparameters `optimizer` changes as it trains: the trust radius, and K-FAC's
    damping when it adapts it. The others are fixed by the run's configuration."""
    if isinstance(optimizer, TRCG):   # STRCG too
        return ("radius",)
    return ("damping",) if getattr(optimizer, "adaptive_damping", False) else ()


def restore_optimizer(optimizer, saved):
    """Load the optimizer state `saved` (a checkpoint's) into `optimizer`, built from the run's
    configuration: the one source of the fixed hyperparameters, the state only of those that
    evolve in training. A fixed one the state holds with another value is a ValueError naming
    both (a checkpoint or a configuration changed by hand, or written under other rules)."""
    moving = evolving(optimizer)
    stored = saved.get("hyperparameters", {})
    for h in optimizer.hyperparameters:
        built = getattr(optimizer, h.name)
        if h.name in stored and h.name not in moving and not callable(built) \
                and stored[h.name] != built:
            raise ValueError(f"--resume: the checkpoint's optimizer state has {h.name} = "
                             f"{stored[h.name]!r}, the run's configuration gives {built!r}")
    optimizer.load_state_dict(saved)


def warmup_steps(config):
    """The steps of linear lr warmup: --warmup-steps, or ceil(--warmup-epochs x the run's steps
    per epoch) (config["steps_per_epoch"], set before the optimizer is built); 0 for none."""
    if config.get("warmup_epochs"):   # (rounded first: 0.07 x 100 is 7.000000000000001)
        return math.ceil(round(config["warmup_epochs"] * config["steps_per_epoch"], 9))
    return int(config.get("warmup_steps") or 0)


def lr_schedule(config):
    """The lr (sgd, kfac) as a callable of the step: --schedule over config["schedule_steps"]
    steps (the total of the first session), with linear warmup over warmup_steps(config)."""
    lr, kind = config["lr"], config.get("schedule") or "constant"
    total = int(config.get("schedule_steps") or 1)
    warmup = warmup_steps(config)
    if kind == "cosine":
        fn = schedules.cosine(lr, total)
    elif kind == "step":
        fn = schedules.step_decay(lr, max(1, math.ceil(total / 3)), STEP_DECAY_GAMMA)
    elif not warmup:
        return lr   # a plain number, as without a schedule
    else:
        fn = schedules.constant(lr)
    if warmup:
        fn = schedules.linear_warmup(fn, warmup)
    return fn
