"""The hyperparameters a study tunes per optimizer: documented grids, seeded random search, and
the learning-rate scaling rule across batch sizes.

Each optimizer has two key hyperparameters (the ones Ma et al. 2020 tune, and the trust-region
pair):

    optimizer   default grid                              random-search range
    sgd         lr {0.025 .. 0.4} (x2), momentum {0.9}    lr [0.01, 1] log, momentum [0, 0.99]
    kfac        lr {0.0125, 0.05, 0.2},                   lr [0.005, 0.5] log,
                damping {1e-3, 1e-2, 1e-1}                damping [1e-4, 1] log
    trcg/strcg  radius {0.1, 1, 10},                      radius [0.01, 20] log,
                hessian_fraction {0.1}                    hessian_fraction [0.02, 0.5]

(GRIDS and RANGES below; the sgd and kfac grids are centred on `minigrad train`'s defaults, its
CLI_PRESET; the trust-region grid on radius 1 and hessian_fraction 0.1, train's defaults before
they became the library's 5 and 0.05). Values of `lr` are the learning rates at the base batch
size B0 and are multiplied, at batch size B, by

    linear: B / B0   (Goyal et al. 2017)      sqrt: sqrt(B / B0)  (Krizhevsky 2014; Hoffer et
    none:   1                                                       al. 2017)

The other hyperparameters are not scaled. `--grid OPT.NAME=v1,v2,...` replaces one axis of one
optimizer's grid, or adds one of EXTRA_AXES (K-FAC's kl_clip: with the default 1e-3 the KL clip is
active at almost every step on digits, and then the step length is sqrt(kl_clip / F-norm of the
update), whatever the lr). `minigrad sensitivity` uses the larger SENSITIVITY_GRIDS (4-7 values per
axis).

The samplers are Optuna's. `--search grid` is GridSampler's set, every point of the grid (here
in row-major order of AXES: the order of a study's trials, and so of its ties). Random search
(`--search random --trials T`) draws T points per optimizer and batch size from RANGES
(log-uniform for lr, damping and radius, uniform otherwise; lr again at B0, then scaled) with
Optuna's RandomSampler seeded by numpy.random.SeedSequence([seed, optimizer index, B]), so a
study's trials do not depend on the order they run in, on how many workers run them, or on the
other batch sizes. (Before Optuna the same seed drew other points, from
numpy.random.default_rng([seed, optimizer index, B]): a random-search study begun then draws new
trials.) `--search tpe` is Optuna's TPESampler over RANGES, one point at a time (tpe_point): the
k-th point is drawn, by a sampler seeded by SeedSequence([seed, optimizer index, B, k]), from
the k - 1 trials before it once they have all finished, so the same seed gives the same points
whatever the number of workers.
"""
import itertools
import math
import warnings

import click
import numpy as np
import optuna

from .training.hyperparameters import check_value, option_type

OPTIMIZERS = ("sgd", "kfac", "trcg", "strcg")
# every hyperparameter a study may tune (the columns of its trial table)
HYPERPARAMETERS = ("lr", "momentum", "damping", "kl_clip", "radius", "hessian_fraction")
# the axes of each optimizer's search, in the order of the sensitivity heat maps (rows, columns)
AXES = {"sgd": ("lr", "momentum"), "kfac": ("lr", "damping"),
        "trcg": ("radius", "hessian_fraction"), "strcg": ("radius", "hessian_fraction")}
# hyperparameters --grid may also set (one value in `minigrad sensitivity`, whose maps are 2-D)
EXTRA_AXES = {"sgd": (), "kfac": ("kl_clip",), "trcg": (), "strcg": ()}
GRIDS = {
    "sgd": {"lr": [0.025, 0.05, 0.1, 0.2, 0.4], "momentum": [0.9]},
    "kfac": {"lr": [0.0125, 0.05, 0.2], "damping": [1e-3, 1e-2, 1e-1]},
    "trcg": {"radius": [0.1, 1.0, 10.0], "hessian_fraction": [0.1]},
    "strcg": {"radius": [0.1, 1.0, 10.0], "hessian_fraction": [0.1]},
}
# `minigrad sensitivity`: the full two-axis grids whose heat maps show how robust each method is
SENSITIVITY_GRIDS = {
    "sgd": {"lr": [0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8], "momentum": [0.0, 0.5, 0.9, 0.95]},
    "kfac": {"lr": [0.0125, 0.025, 0.05, 0.1, 0.2], "damping": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
    "trcg": {"radius": [0.01, 0.1, 1.0, 10.0], "hessian_fraction": [0.05, 0.1, 0.25, 0.5]},
    "strcg": {"radius": [0.01, 0.1, 1.0, 10.0], "hessian_fraction": [0.05, 0.1, 0.25, 0.5]},
}
# (low, high, log-uniform?)
RANGES = {
    "sgd": {"lr": (0.01, 1.0, True), "momentum": (0.0, 0.99, False)},
    "kfac": {"lr": (0.005, 0.5, True), "damping": (1e-4, 1.0, True)},
    "trcg": {"radius": (0.01, 20.0, True), "hessian_fraction": (0.02, 0.5, False)},
    "strcg": {"radius": (0.01, 20.0, True), "hessian_fraction": (0.02, 0.5, False)},
}
# the values --grid accepts: `minigrad train`'s option types, from the declarations
LIMITS = {name: option_type(name) for name in HYPERPARAMETERS}
SCALING_RULES = ("linear", "sqrt", "none")
SEARCHES = ("grid", "random", "tpe")


def lr_factor(rule, batch_size, base_batch_size):
    """The multiplier of the base-batch learning rate at batch_size under `rule`."""
    ratio = batch_size / base_batch_size
    return {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


def parse_grid(entries):
    """{optimizer: {name: [values]}} from ("sgd.lr=0.1,0.2", ...); ValueError names the entry."""
    out = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        opt, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"--grid {entry!r}: expected OPTIMIZER.NAME=v1,v2,... such as "
                             "sgd.lr=0.05,0.1")
        if opt not in AXES:
            raise ValueError(f"--grid {entry!r}: unknown optimizer {opt!r}; one of {', '.join(AXES)}")
        if name not in AXES[opt] + EXTRA_AXES[opt]:
            raise ValueError(f"--grid {entry!r}: {opt} tunes "
                             f"{' and '.join(AXES[opt] + EXTRA_AXES[opt])}, not {name!r}")
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--grid {entry!r}: values must be numbers") from None
        if not values:
            raise ValueError(f"--grid {entry!r}: no values")
        try:
            values = [check_value(name, v, LIMITS[name]) for v in values]
        except click.BadParameter as e:   # the message the command line gives
            raise ValueError(f"--grid {entry!r}: {e.format_message()}") from None
        out.setdefault(opt, {})[name] = sorted(set(values))
    return out


def grid(optimizer, overrides=None, grids=GRIDS):
    """{name: [values]} of the optimizer's grid in `grids` (GRIDS or SENSITIVITY_GRIDS) with
    `overrides` (parse_grid output) applied."""
    axes = {name: list(values) for name, values in grids[optimizer].items()}
    axes.update((overrides or {}).get(optimizer, {}))
    return axes


def points(optimizer, batch_size, base_batch_size, rule="sqrt", search="grid", trials=8,
           seed=0, overrides=None, grids=GRIDS):
    """The hyperparameter settings of a grid or random search: a list of {name: value}, lr
    already scaled to batch_size. Grid points come in row-major order of AXES[optimizer]. (TPE's
    come one at a time, each from the results before it: tpe_point.)"""
    factor = lr_factor(rule, batch_size, base_batch_size)
    if search == "grid":
        axes = grid(optimizer, overrides, grids)
        names = [n for n in AXES[optimizer] + EXTRA_AXES[optimizer] if n in axes]
        settings = [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]
    else:
        sampler = optuna.samplers.RandomSampler(seed=_sampler_seed(seed, optimizer, batch_size))
        study = _scratch_study(sampler)
        settings = [_draw(study, optimizer) for _ in range(trials)]
    return [scale_lr(point, factor) for point in settings]


def scale_lr(point, factor):
    """The point with its lr (given at the base batch size) multiplied by `factor`."""
    return dict(point, lr=float(point["lr"] * factor)) if "lr" in point else dict(point)


def distributions(optimizer):
    """{name: optuna FloatDistribution} of the optimizer's RANGES (lr at the base batch size)."""
    return {name: optuna.distributions.FloatDistribution(low, high, log=log)
            for name, (low, high, log) in RANGES[optimizer].items()}


def tpe_point(optimizer, batch_size, seed, history):
    """The next point of `--search tpe` (lr at the base batch size): TPESampler over RANGES,
    seeded by SeedSequence([seed, optimizer index, B, k]) with k = len(history), told the
    finished trials `history` ([(point at the base batch size, objective)], objective: lower is
    better). The same history gives the same point."""
    sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(seed, optimizer, batch_size, len(history)))
    study = _scratch_study(sampler)
    space = distributions(optimizer)
    for point, value in history:
        study.add_trial(optuna.trial.create_trial(
            params={name: point[name] for name in space}, distributions=space, value=value))
    return _draw(study, optimizer)


def _sampler_seed(seed, optimizer, batch_size, *more):
    """A sampler's seed (Optuna wants one int < 2**32) from the study's seed, the optimizer,
    the batch size and `more`."""
    words = [seed, OPTIMIZERS.index(optimizer), batch_size, *more]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _scratch_study(sampler):
    """An in-memory Optuna study that only draws points (no trial of it runs)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # no line per trial
    return optuna.create_study(sampler=sampler, direction="minimize")


def _draw(study, optimizer):
    """One point {name: value} drawn by the study's sampler from the optimizer's RANGES."""
    trial = study.ask()
    with warnings.catch_warnings():   # TPE's "independent sampling" notes are not ours to show
        warnings.simplefilter("ignore")
        point = {name: float(trial.suggest_float(name, d.low, d.high, log=d.log))
                 for name, d in distributions(optimizer).items()}
    study.tell(trial, state=optuna.trial.TrialState.FAIL)   # only drawn, never run
    return point
