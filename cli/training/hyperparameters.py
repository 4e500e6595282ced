"""The optimizer hyperparameters `minigrad train` has options for, derived from their
declarations (optim/hyperparameters.py: each one's default, bounds, meaning and the source of
its default), so that the command line, its --config files and a study's --grid state none of
them again:

    option_type(name)      the click type of --NAME: the declaration's bounds or choices
    option_help(name)      its --help: what it is, each optimizer's default and its source
    default(optimizer, name, model)   its default: the library's, or CLI_PRESET's
    run_values(config)     the values a run was trained with: its configuration's, or
                           LEGACY_VALUES' for an option added after the run was written
    optimizer_arguments(config)   the same as the optimizer's constructor takes them

The command line's own rules, each stated once here:

    CLI_PRESET     a default where the library leaves the value to the user (SGD's and K-FAC's
                   lr, K-FAC's damping) or keeps plain SGD (momentum 0)
    AUTOENCODER    --model autoencoder has no class labels to sample: K-FAC's true Fisher is
                   not implemented for it, and --fisher defaults to the empirical one there
    OFF            an optional hyperparameter (K-FAC's kl_clip), off at None in the library, is
                   off at 0 on the command line and in TOML, which have no None
    CLI_NARROWED   --lr > 0: the library allows lr = 0 (a schedule's values reach it), a run
                   whose lr is 0 trains nothing
    max_radius     TRCG's max_radius has no option: it is the library's default (the radius
                   never grows past it), and a bound of the radius: --radius <= max_radius

The hyperparameters without an option (SGD's nesterov, K-FAC's factor_decay, TRCG's cg_tol, ...)
take the library's defaults.
"""
import math
import types
from collections import namedtuple

import click

from minigrad.optim import REQUIRED, hyperparameters_of

# per optimizer, the declared hyperparameters `minigrad train` has an option for
OPTIONS = {"sgd": ("lr", "momentum"),
           "kfac": ("lr", "momentum", "damping", "fisher", "cov_update_every", "inv_update_every",
                    "kl_clip", "damping_form", "factor_init"),
           "trcg": ("radius", "hessian_fraction"),
           "strcg": ("radius", "hessian_fraction")}
# option name -> the optimizers it applies to, the options in the order of --help
APPLIES = {name: tuple(opt for opt in OPTIONS if name in OPTIONS[opt])
           for name in dict.fromkeys(n for names in OPTIONS.values() for n in names)}

Preset = namedtuple("Preset", "value reason")
CLI_PRESET = {
    "sgd": {
        "lr": Preset(0.1, "the reference lr of momentum SGD in He et al. 2016 and Goyal et al. "
                          "2017; the centre of the study's sgd grid (cli/search.py)"),
        "momentum": Preset(0.9, "momentum SGD as trained by He et al. 2016 and Goyal et al. "
                                "2017")},
    "kfac": {
        "lr": Preset(0.05, "tuned on digits with the empirical Fisher, when it was the default: "
                           "the best K-FAC setting of a scaling study at batch 32; the centre of "
                           "the study's kfac grid"),
        "damping": Preset(1e-2, "tuned on digits, as the lr: the best of that study at batch 32 "
                                "to 128")},
}
# defaults for --model autoencoder, which has no class labels to sample
AUTOENCODER = {"kfac": {"fisher": "empirical"}}
OFF = 0.0   # an optional hyperparameter's None (off) on the command line and in TOML
CLI_NARROWED = {"lr": {"low_open": True}}   # bounds stricter than the library's

# What a run written before an option existed was trained with: its configuration lacks the
# option (or holds None), and a resume must train on with these values. History, not
# defaults: frozen, whatever the defaults become.
LEGACY_VALUES = types.MappingProxyType({"kfac": types.MappingProxyType({
    "fisher": "empirical", "kl_clip": 1e-3, "cov_update_every": 1, "inv_update_every": 20,
    "damping_form": "factored", "factor_init": "batch"})})


def declaration(optimizer, name):
    """The Hyperparameter `name` of `optimizer` (optim/hyperparameters.py)."""
    return next(h for h in hyperparameters_of(optimizer) if h.name == name)


def _optimizer_bounds(optimizer, name):
    """The values --NAME may take for `optimizer`: the declaration's bounds, with OFF and
    CLI_NARROWED, lowered to the default of a hyperparameter without an option that must be
    at least this one (TRCG's max_radius >= radius)."""
    h = declaration(optimizer, name)
    bounds = h.bounds()
    if h.optional:
        if (bounds["low"], bounds["low_open"]) != (OFF, True):
            raise ValueError(f"{optimizer} {name}: OFF ({OFF}) must be its open lower bound")
        bounds["low_open"] = False
    bounds.update(CLI_NARROWED.get(name, {}))
    for other in _capping(optimizer, name):
        high = bounds["high"]
        bounds.update(high=other.default if high is None else min(high, other.default),
                      high_open=False)
    return bounds


def _capping(optimizer, name):
    """The declarations of `optimizer` without an option that must be at least `name`: their
    default is the option's upper bound (TRCG's max_radius >= radius)."""
    return [h for h in hyperparameters_of(optimizer)
            if h.low == name and h.name not in OPTIONS[optimizer]]


def cli_bounds(name):
    """{low, high, low_open, high_open} of --NAME, the same for every optimizer it applies to
    (ValueError if the declarations disagree: one option cannot have two ranges)."""
    found = {opt: _optimizer_bounds(opt, name) for opt in APPLIES[name]}
    first, *others = found.values()
    if any(bounds != first for bounds in others):
        raise ValueError(f"--{_dashed(name)}: the optimizers declare other bounds: {found}")
    return first


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf, as the declarations do."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


def option_type(name):
    """The click type of --NAME: the declaration's choices, or its bounds (cli_bounds)."""
    h = declaration(APPLIES[name][0], name)
    if h.kind == "choice":
        return click.Choice(h.choices)
    b = cli_bounds(name)
    cls = click.IntRange if h.kind == "int" else FiniteRange
    return cls(min=b["low"], max=b["high"], min_open=b["low_open"], max_open=b["high_open"])


def check_value(name, value, kind=None):
    """`value` converted and checked by `kind` (default option_type(name)); click.BadParameter
    naming --NAME, the message the command line gives for it."""
    try:
        return (kind or option_type(name)).convert(value, None, None)
    except click.BadParameter as e:
        e.param_hint = f"'--{_dashed(name)}'"
        raise


def default(optimizer, name, model=None):
    """The default of --NAME for `optimizer` (and `model`), as the command line writes it."""
    if model == "autoencoder" and name in AUTOENCODER.get(optimizer, {}):
        return AUTOENCODER[optimizer][name]
    preset = CLI_PRESET.get(optimizer, {}).get(name)
    if preset is not None:
        return preset.value
    value = declaration(optimizer, name).default
    if value is REQUIRED:
        raise ValueError(f"{optimizer} {name}: the library has no default; give it a CLI_PRESET")
    return OFF if value is None else value


def defaults(optimizer, model=None):
    """{name: default} of every option of `optimizer`."""
    return {name: default(optimizer, name, model) for name in OPTIONS[optimizer]}


def to_library(name, value):
    """The value the optimizer takes for the command line's `value` (OFF: None)."""
    optional = any(declaration(opt, name).optional for opt in APPLIES[name])
    return None if optional and value == OFF else value


def run_values(config):
    """{name: value} of the options of the run's optimizer: the configuration's, LEGACY_VALUES'
    where it has none (a run written before the option existed)."""
    optimizer = config["optimizer"]
    legacy = LEGACY_VALUES.get(optimizer, {})
    values = {name: config.get(name) for name in OPTIONS[optimizer]}
    return {name: legacy[name] if value is None and name in legacy else value
            for name, value in values.items()}


def optimizer_arguments(config):
    """The keyword arguments of the run's optimizer class for its hyperparameters (lr a number:
    the schedule is cli/training/optimizers.py's)."""
    values = {name: to_library(name, value) for name, value in run_values(config).items()}
    if "radius" in values:
        values["max_radius"] = max_radius(config["optimizer"], values["radius"])
    return values


def max_radius(optimizer, radius):
    """The library's default max_radius, which --radius may not exceed (option_type). A larger
    radius is a run written when the command line passed max(20, radius): built as it was, with
    max_radius = radius."""
    return max(declaration(optimizer, "max_radius").default, radius)


def option_help(name):
    """--help of --NAME: the declaration's meaning, then each optimizer's default and where it
    comes from (CLI_PRESET's reason, or the declaration's source), optimizers alike merged."""
    docs = {opt: CLI_DOCS.get(name, declaration(opt, name).doc) for opt in APPLIES[name]}
    shared = len(set(docs.values())) == 1
    texts = {}   # what is said of each optimizer -> the optimizers it is said of
    for opt in APPLIES[name]:
        text = ("" if shared else docs[opt] + "; ") + _default_text(opt, name)
        texts.setdefault(text, []).append(opt)
    parts = [_capital(docs[APPLIES[name][0]])] if shared else []
    parts += [f"{', '.join(opts)}: {text}" for text, opts in texts.items()]
    parts += [NOTES[name]] if name in NOTES else []
    for h in {h.name: h for opt in APPLIES[name] for h in _capping(opt, name)}.values():
        parts.append(f"At most {h.name}, {h.default!r} ({h.doc}; {h.source})")
    return _spelled_out(" ".join(_sentence(part) for part in parts))


def _default_text(optimizer, name):
    h = declaration(optimizer, name)
    preset = CLI_PRESET.get(optimizer, {}).get(name)
    if preset is None:
        text = f"default {default(optimizer, name)!r} ({h.source})"
    elif h.default is REQUIRED:
        text = (f"default {preset.value!r}, the command line's preset ({preset.reason}); the "
                f"library has none ({h.source.removeprefix('none: ')})")
    else:
        text = (f"default {preset.value!r}, the command line's preset ({preset.reason}); the "
                f"library's default is {h.default!r} ({h.source})")
    if name in AUTOENCODER.get(optimizer, {}):
        text += (f"; with --model autoencoder {AUTOENCODER[optimizer][name]!r} (it has no class "
                 "labels to sample)")
    return text


# the declarations' sources abbreviate the papers they cite most
ABBREVIATIONS = {"M&G": "Martens & Grosse 2015", "XRM": "Xu, Roosta & Mahoney 2017"}


def _spelled_out(text):
    for short, full in ABBREVIATIONS.items():
        text = text.replace(short, full)
    return text


def hyperparameter_options(command):
    """`command` (a click command function) with an option --NAME for every name of APPLIES:
    its type and help from the declarations, no default (None: the optimizer's, filled in when
    the run's configuration is made)."""
    for name in reversed(tuple(APPLIES)):
        command = click.option("--" + _dashed(name), type=option_type(name), default=None,
                               help=option_help(name))(command)
    return command


# the meaning on the command line where the declaration's doc speaks of Python values (a
# callable lr, None for no clipping) that an option cannot take
CLI_DOCS = {
    "lr": "the step size",
    "kl_clip": "scale the update so that lr^2 sum <V, V'> <= kl_clip",
}
# what --help says beyond the declarations
NOTES = {
    "kl_clip": f"On the command line {OFF:g} turns it off (the library's None). While the clip "
               "binds, the step of the preconditioned layers no longer depends on the lr.",
    "fisher": "true costs one more backward pass on the steps that update the factors.",
    "lr": "On the command line a number; --schedule and --warmup-steps (or --warmup-epochs) "
          "vary it over the run.",
}


def _dashed(name):
    return name.replace("_", "-")


def _capital(text):
    return text[:1].upper() + text[1:]


def _sentence(text):
    return text if text.endswith(".") else text + "."
