"""The optimizer of a run, built from its configuration (cli/training/config.py), and the
learning-rate schedule of sgd and kfac.

--schedule (sgd, kfac): the lr as a function of the optimizer step t over T steps, T the total
of the FIRST session (config "schedule_steps"; a resume with a new --steps keeps it): constant,
cosine (to 0 at T), step (x0.1 after each ceil(T/3) steps); --warmup-steps W multiplies it by
min(1, (t+1)/W). steps/lr in run.h5 is the lr each step used.
"""
import math

from minigrad.optim import KFAC, SGD, STRCG, TRCG, schedules

from .config import DEFAULTS

STEP_DECAY_GAMMA = 0.1   # --schedule step: lr * 0.1 after each third of the run


def build_optimizer(config, model):
    """The optimizer of `config` over the model's parameters (K-FAC: over the model itself)."""
    name = config["optimizer"]
    if name == "sgd":
        return SGD(model.parameters(), lr=lr_schedule(config), momentum=config["momentum"])
    if name == "kfac":
        # runs written before --kl-clip existed used KFAC's default, 1e-3
        kl_clip = config.get("kl_clip", DEFAULTS["kfac"]["kl_clip"])
        # options added later than some runs: such a run was trained with what DEFAULTS say
        # (the empirical Fisher, factors every step, eigenbases every 20, factored damping, the
        # first batch's factors); fisher "true" samples its labels with the --seed Generator
        older = {key: config.get(key) or DEFAULTS["kfac"][key]
                 for key in ("fisher", "cov_update_every", "inv_update_every", "damping_form",
                             "factor_init")}
        return KFAC(model, lr=lr_schedule(config), damping=config["damping"],
                    momentum=config["momentum"], kl_clip=kl_clip or None, rng=config["seed"],
                    **older)
    cls = TRCG if name == "trcg" else STRCG
    return cls(model.parameters(), radius=config["radius"], max_radius=max(20.0, config["radius"]),
               hessian_fraction=config["hessian_fraction"], seed=config["seed"])


def lr_schedule(config):
    """The lr (sgd, kfac) as a callable of the step: --schedule over config["schedule_steps"]
    steps (the total of the first session), with linear warmup over --warmup-steps."""
    lr, kind = config["lr"], config.get("schedule") or "constant"
    total = int(config.get("schedule_steps") or 1)
    if kind == "cosine":
        fn = schedules.cosine(lr, total)
    elif kind == "step":
        fn = schedules.step_decay(lr, max(1, math.ceil(total / 3)), STEP_DECAY_GAMMA)
    elif not config.get("warmup_steps"):
        return lr   # a plain number, as without a schedule
    else:
        fn = schedules.constant(lr)
    if config.get("warmup_steps"):
        fn = schedules.linear_warmup(fn, config["warmup_steps"])
    return fn
