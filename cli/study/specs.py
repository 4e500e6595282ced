"""The trials of a study as specs, {`minigrad train` option: value}: one trial's (trial_spec),
and those of the search of every optimizer at every batch size (prepare), what scaling,
sensitivity and compare do before their trials run.

A TPE search's points are drawn while the study runs, each from the results before it
(cli/search.py tpe_point): its trials are placeholders here, specs with the point's axes at 0
and TPE_DRAW = {"index": k, "seed": --seed, "lr_factor": the lr's factor at this batch size},
which the workers replace by drawn specs (cli/study/queue.py draw)."""
import math

import click

from minigrad import datasets

from .. import parallel, search
from ..training.hyperparameters import defaults
from .files import study_folder
from .options import per_batch
from .trials import OPTIMIZER_DEFAULTS, fixed_train_options

TPE_DRAW = "tpe_draw"   # the key of a placeholder spec of a TPE search (the module docstring)


def prepare(options, sizes, stop_at_target, command, grids=search.GRIDS):
    """(study folder, specs, train examples, base batch size) for the grid/random search of every
    optimizer at every batch size in `sizes`; raises click.UsageError on bad options."""
    try:
        overrides = search.parse_grid(options["grid_entries"])
    except ValueError as e:
        raise click.UsageError(str(e))
    unused = sorted(set(overrides) - set(options["optimizers"]))
    if unused:
        raise click.UsageError(f"--grid given for {', '.join(unused)}, which is not in --optimizers")
    n = len(datasets.load(options["dataset"], "train")[1])
    too_big = [b for b in sizes if b > n]
    if too_big:
        raise click.UsageError(f"batch size(s) {too_big} exceed the {n} training examples of "
                               f"{options['dataset']}")
    world = parallel.communicator().world_size
    odd = [b for b in sizes if b % world]
    if odd:
        raise click.UsageError(f"batch size(s) {odd} are not divisible by the {world} processes "
                               "(each trial splits its batch into equal shards)")
    base = options["base_batch_size"] or min(sizes)
    fixed = fixed_train_options(options["train_options"], options["optimizers"])
    for b in sizes:   # a per-batch-size option without a value for one size: a usage error now
        per_batch(options, "budget_epochs", b)
        if options["eval_every"]:
            per_batch(options, "eval_every", b)
    if options["search_kind"] == "tpe" and options["seeds"] > 1:
        raise click.UsageError("--search tpe draws each point from the results before it; "
                               "with --seeds every point would need its seeds first: give one "
                               "(--confirm-seeds retrains the best settings)")
    specs = []
    for optimizer in options["optimizers"]:
        for b in sizes:
            specs += _search_specs(options, optimizer, b, base, math.ceil(n / b),
                                   stop_at_target, fixed[optimizer], overrides, grids)
    root = study_folder(options["out"], command, options["jobs"])
    click.echo(f"{command}: {len(specs)} trials in {root} ({len(options['optimizers'])} "
               f"optimizer(s) x {len(sizes)} batch size(s), {options['search_kind']} search"
               + (f", {options['seeds']} seeds per setting" if options["seeds"] > 1 else "") + ")")
    return root, specs, n, base


def _search_specs(options, optimizer, b, base, steps_per_epoch, stop_at_target, fixed,
                  overrides, grids):
    """The specs of the search of `optimizer` at batch size `b` (TPE's as placeholders)."""
    if options["search_kind"] == "tpe":
        template = trial_spec(options, optimizer, b, {name: 0.0 for name in search.AXES[optimizer]},
                              steps_per_epoch, stop_at_target, fixed)
        factor = search.lr_factor(options["lr_scaling"], b, base)
        return [dict(template, **{TPE_DRAW: {"index": k, "seed": options["seed"],
                                             "lr_factor": factor}})
                for k in range(options["trials"])]
    specs = []
    for point in search.points(optimizer, b, base, options["lr_scaling"], options["search_kind"],
                               options["trials"], options["seed"], overrides, grids):
        for k in range(options["seeds"]):
            spec = trial_spec(options, optimizer, b, point, steps_per_epoch, stop_at_target,
                              fixed)
            specs.append(dict(spec, seed=options["seed"] + k))
    return specs


def trial_spec(options, optimizer, batch_size, point, steps_per_epoch, stop_at_target,
               fixed=None):
    """The `minigrad train` options of one trial, as {option name: value}; `fixed` are the
    optimizer's fixed train options (fixed_train_options). spec[OPTIMIZER_DEFAULTS] holds the
    defaults of the optimizer's other options (cli/training/hyperparameters.py), so that a spec
    (and the hash that names its folder) says every value the trial trains with and a trial
    trained under other defaults is not reused; the tables show the point and the fixed
    options only, as before. A spec whose point and fixed options give every option has no
    OPTIMIZER_DEFAULTS: its hash is what it was before the key existed."""
    eval_every = per_batch(options, "eval_every", batch_size) if options.get("eval_every") else \
        max(1, math.ceil(steps_per_epoch / options["evals_per_epoch"]))
    spec = {"dataset": options["dataset"], "model": options["model"],
            "hidden": list(options["hidden"]) if options["model"] == "mlp" else None,
            "optimizer": optimizer, "batch_size": batch_size,
            "epochs": per_batch(options, "budget_epochs", batch_size), "seed": options["seed"],
            "dtype": options["dtype"], "eval_every": eval_every,
            "target_accuracy": options["target_accuracy"], "target_loss": options["target_loss"],
            "stop_at_target": bool(stop_at_target and (options["target_accuracy"] is not None
                                                       or options["target_loss"] is not None))}
    spec.update(fixed or {})
    spec.update(point)
    others = {name: value for name, value in defaults(optimizer, options["model"]).items()
              if name not in spec}
    if others:   # none where the point and the fixed options give them all (sgd, trcg, strcg)
        spec[OPTIMIZER_DEFAULTS] = others
    return spec
