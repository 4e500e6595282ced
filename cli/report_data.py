"""What `minigrad report` reads: the summary files of finished studies, never their trials/
folders (only the summary files are committed), and the run.h5 of reference runs that logged
the gradient noise scale (`minigrad train --noise-scale-examples N`).

A study file is about one problem: a data set, a model (with its hidden sizes for the mlp) and a
target (attrs["options"]: dataset, model, hidden, target_accuracy, target_loss). It holds one
curve per method, a method being an optimizer together with the train options the study fixed
for it (options["train_options"], `--train-option [OPT.]NAME=VALUE`) and the hyperparameters
outside its default search axes that a --grid entry fixed to one value (options["grid_entries"]:
K-FAC's kl_clip, search.EXTRA_AXES), where they differ from their defaults: K-FAC started from
identity factors, or without its KL clip, is another method than K-FAC, with its own row.

    scaling.h5      best/<optimizer>/ per batch size: reached, steps_to_target,
                    epochs_to_target, wall_to_target, cost_to_target
    compare.h5      best/ one row per optimizer (optimizer, batch_size and the same columns)
    sensitivity.h5  maps/<optimizer>/ batch_size, fraction_reached, reached (nb x rows x cols)

(the layouts are in the docstrings of cli/scaling.py, cli/compare.py, cli/sensitivity.py).
"""
import dataclasses
import json
import math
import os
from collections import namedtuple

import numpy as np

from . import search
from .common import UserError
from .study.results import edge_values, is_off, on_edge, reached_rank
from .study.trials import TRIAL_DEFAULTS
from .training import hyperparameters
from .training.config import applies_to

STUDY_FILES = ("scaling.h5", "sensitivity.h5", "compare.h5")
# train options that do not change the training (what is logged, what is kept): not part of a
# method's name
BOOKKEEPING = ("layer_stats", "noise_scale_examples", "keep_checkpoints", "checkpoint_every",
               "checkpoint_seconds", "profile", "device")
# train options of the study's protocol, not of the method: when a run stuck at chance ends (a
# study may run one optimizer's trials without the rule); shown with the study, not in its name
PROTOCOL = ("diverged_after", "diverged_epochs")

Point = namedtuple("Point", "reached steps epochs wall cost source steps_min steps_max seeds "
                            "setting")
Point.__doc__ = """One method at one batch size of a scaling or compare study: the best trial's
reached flag and figures to the target (nan where not reached), the study file (source), and the
spread of the steps over the seeds the setting was trained with (steps_min, steps_max: nan where
the file has none or not every seed reached the target; seeds: how many), and the best
setting in words ("lr=0.0707 momentum=0.9": the searched hyperparameters, lr as trained at that
batch size)."""
Fraction = namedtuple("Fraction", "fraction reached grid source")
Fraction.__doc__ = """One method at one batch size of a sensitivity study: fraction_reached, and
the number of grid points reaching the target out of `grid`."""
NoiseRun = namedtuple("NoiseRun", "path dataset model hidden optimizer batch_size per_epoch step "
                                  "trace grad_sq")


@dataclasses.dataclass(frozen=True)
class Method:
    """An optimizer and the train options fixed for it: ((name, value as given), ...) sorted by
    name, so the order they were given in does not matter; `label` keeps that order."""
    optimizer: str
    options: tuple
    label: str = dataclasses.field(compare=False)

    def sort_key(self):
        return search.OPTIMIZERS.index(self.optimizer), len(self.options), self.options


@dataclasses.dataclass(frozen=True)
class Problem:
    """What a study trains: data set, model, hidden sizes (mlp only) and target."""
    dataset: str
    model: str
    hidden: tuple
    target_accuracy: float = None
    target_loss: float = None

    def sort_key(self):
        missing = -1.0   # no target sorts first
        return (self.dataset, self.model, self.hidden,
                missing if self.target_accuracy is None else self.target_accuracy,
                missing if self.target_loss is None else self.target_loss)

    def model_text(self):
        return model_text(self.model, self.hidden)

    def target_text(self):
        parts = []
        if self.target_accuracy is not None:
            parts.append(f"test accuracy >= {self.target_accuracy:g}")
        if self.target_loss is not None:
            parts.append(f"train loss <= {self.target_loss:g}")
        return " and ".join(parts) or "none"


@dataclasses.dataclass
class Study:
    path: str
    command: str
    options: dict
    problem: Problem
    train_examples: int
    points: dict = dataclasses.field(default_factory=dict)      # {Method: {B: Point}}
    fractions: dict = dataclasses.field(default_factory=dict)   # {Method: {B: Fraction}}
    compute: "Compute" = None


Compute = namedtuple("Compute", "trials steps seconds grad_evals")
Compute.__doc__ = """What a study's trials cost, summed over its trial table (trials/): how many,
their optimizer steps, the steps' own time in seconds (evaluations and file writes excluded, as
in every wall time of the report) and gradient-evaluation equivalents (cli/cost.py)."""


def _compute(f):
    if "trials" not in f:
        return None
    g = f["trials"]
    total = lambda name: float(np.nansum(g[name][()])) if name in g else math.nan
    return Compute(len(g["optimizer"]), total("steps"), total("wall_time"), total("cost"))


def model_text(model, hidden):
    """"mlp 64-64" (the hidden sizes of an mlp), "lenet"."""
    return model + (" " + "-".join(map(str, hidden)) if hidden else "")


def _hidden(model, hidden):
    if model != "mlp" or hidden is None:
        return ()
    if isinstance(hidden, str):   # run.h5 attrs store "64,64"; config JSON a list
        hidden = [h for h in hidden.split(",") if h.strip()]
    return tuple(int(h) for h in hidden)


def problem_of(options):
    return Problem(str(options["dataset"]), str(options["model"]),
                   _hidden(options["model"], options.get("hidden")),
                   options.get("target_accuracy"), options.get("target_loss"))


def method_of(optimizer, train_options, grid_entries=()):
    """The Method of `optimizer` in a study with these --train-option entries ([OPT.]NAME=VALUE):
    the entries for it (prefixed with it, or unprefixed and applying to it), less bookkeeping
    and protocol options (BOOKKEEPING, PROTOCOL) and values equal to the defaults; and the EXTRA_AXES its --grid
    entries (OPT.NAME=V1,V2,...) fix to one value other than the option's default."""
    given = _fixed_extra_axes(optimizer, grid_entries)
    for entry in train_options or ():
        key, _, value = str(entry).partition("=")
        scope, dot, name = key.strip().rpartition(".")
        name, value = name.replace("-", "_"), value.strip()
        applies = applies_to(name)
        mine = scope == optimizer if dot else optimizer in applies
        if mine and name not in BOOKKEEPING + PROTOCOL and not _is_default(name, value):
            given.append((name, value))
    label = optimizer + (f" ({', '.join(f'{n}={v}' for n, v in given)})" if given else "")
    return Method(optimizer, tuple(sorted(given)), label)


def _is_default(name, value):
    """Whether the --train-option value `value` (text) of `name` is what a study's trial gets
    anyway: the study's trial default (TRIAL_DEFAULTS), else `minigrad train`'s own default
    (compared as numbers where both are: 0, 0.0 and 0e0 are one value)."""
    from .train import train
    defaults = {p.name: p.default for p in train.params}
    default = TRIAL_DEFAULTS.get(name, defaults.get(name))
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return value.lower() == str(default).lower()


def _fixed_extra_axes(optimizer, grid_entries):
    """[(name, value)] of the EXTRA_AXES of `optimizer` that the --grid entries give exactly one
    value (as the study read them: search.parse_grid), where it is not the option's default (a
    study searching kl_clip over several values, or leaving it at 1e-3, studies K-FAC itself).
    The value is written as %g, so that 0, 0.0 and 0e0 name one method."""
    axes = search.parse_grid(list(grid_entries or ())).get(optimizer, {})
    return [(name, f"{values[0]:g}") for name, values in axes.items()
            if name in search.EXTRA_AXES[optimizer] and len(values) == 1
            and values[0] != float(hyperparameters.default(optimizer, name))]


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _nan_unless(reached, value):
    return float(value) if reached else math.nan


def _point(reached, steps, epochs, wall, cost, source, spread=(math.nan, math.nan), seeds=1,
           setting=""):
    reached = bool(reached)
    return Point(reached, *(_nan_unless(reached, v) for v in (steps, epochs, wall, cost)), source,
                 *(_nan_unless(reached, v) for v in spread), seeds, setting)


def _seeds(options):
    """How many seeds a study's best settings were trained with (--seeds, --confirm-seeds)."""
    return max(int(options.get("seeds") or 1), int(options.get("confirm_seeds") or 1))


def _settings(f, g, optimizers, sizes):
    """The best settings of a best/ group's rows (optimizer, batch size) in words: the
    hyperparameters the optimizer's search varies (search.AXES and EXTRA_AXES) that the group
    records, each marked "(edge)" where it sits on an edge of the values its search tried at
    that batch size that a wider grid could improve on (read from the study's trial table,
    cli/study/results.py on_edge: the smallest or largest value, not tied by the trial next to
    it inside the grid); an optional hyperparameter's OFF (kl_clip 0) reads "off"."""
    trials = f["trials"] if "trials" in f else None
    tried = _tried(trials) if trials is not None else lambda *key: []
    known = trials is not None and all(k in trials for k in (
        "seed", "reached", "steps_to_target", "cost_to_target", "final_test_accuracy"))
    rows = _trial_rows(trials, _seeds_per_setting(f) > 1) if known else []
    index = _best_rows(g, trials if known else None, len(optimizers))
    out = []
    for i, (optimizer, size) in enumerate(zip(optimizers, sizes)):
        parts = []
        for name in search.AXES[optimizer] + search.EXTRA_AXES[optimizer]:
            value = float(g[name][i]) if name in g else math.nan
            if not math.isfinite(value):
                continue
            values = tried(optimizer, size, name)
            if index[i] is None:
                edge = any(math.isclose(value, v) for v in edge_values(optimizer, name, values))
            else:
                edge = on_edge(optimizer, name, values, rows[index[i]], rows)
            text = "off" if is_off(optimizer, name, value) else f"{value:.3g}"
            parts.append(f"{name}={text}{' (edge)' if edge else ''}")
        out.append(" ".join(parts))
    return out


def _tried(trials):
    """tried(optimizer, size, name): the values of `name` the trial table `trials` holds for
    `optimizer` at batch size `size` (the table's optimizer and batch-size columns read once)."""
    optimizers = np.array([_text(o) for o in trials["optimizer"][()]])
    sizes = trials["batch_size"][()]

    def tried(optimizer, size, name):
        if name not in trials:
            return []
        values = trials[name][()][(optimizers == optimizer) & (sizes == size)]
        return sorted(set(values[np.isfinite(values)].tolist()))
    return tried


def _trial_rows(trials, by_setting):
    """The trial table as results.on_edge reads it: one dict per trial with its optimizer,
    batch_size, seed, hyperparameter columns (None where nan) and rank (results.reached_rank
    from its steps, cost and final test accuracy; None where not reached). `by_setting` (the
    study's --seeds K > 1, whose search chose on the K-seed means): each trial's dict is its
    setting's, with the means, reached only if every seed reached the target."""
    columns = [k for k in search.HYPERPARAMETERS if k in trials]
    data = {k: trials[k][()] for k in columns + ["batch_size", "seed", "reached", "steps_to_target",
                                                  "cost_to_target", "final_test_accuracy"]}
    optimizers = [_text(o) for o in trials["optimizer"][()]]
    groups = {}
    for i, optimizer in enumerate(optimizers):
        values = tuple(None if not np.isfinite(data[k][i]) else float(data[k][i]) for k in columns)
        key = (optimizer, int(data["batch_size"][i]), values) + (() if by_setting else (i,))
        groups.setdefault(key, []).append(i)
    rows = [None] * len(optimizers)
    for (optimizer, size, values, *_), idx in groups.items():
        reached = bool(all(data["reached"][i] for i in idx))
        mean = {k: float(np.mean([data[k][i] for i in idx]))
                for k in ("steps_to_target", "cost_to_target", "final_test_accuracy")}
        row = dict(zip(columns, values), optimizer=optimizer, batch_size=size,
                   seed=int(data["seed"][idx[0]]), rank=reached_rank(mean) if reached else None)
        for i in idx:
            rows[i] = row
    return rows


def _seeds_per_setting(f):
    """A study's --seeds (each setting trained with that many seeds, chosen on their means)."""
    return int(json.loads(f.attrs.get("options", "{}")).get("seeds") or 1)


def _best_rows(g, trials, n):
    """For each of the n rows of a best/ group, its trial's index in the trial table (scaling's
    and seeded compare's "trial" column, else the same folder), None where unknown."""
    if trials is None:
        return [None] * n
    if "trial" in g:
        return [int(t) if t >= 0 else None for t in g["trial"][()]]
    if "folder" in g and "folder" in trials:
        where = {_text(name): i for i, name in enumerate(trials["folder"][()])}
        return [where.get(_text(name)) for name in g["folder"][()]]
    return [None] * n


def _spreads(g, n):
    """[(steps_min, steps_max)] of the n rows of a best/ group (nan where it has none)."""
    if "steps_min" not in g:
        return [(math.nan, math.nan)] * n
    return list(zip(g["steps_min"][()], g["steps_max"][()]))


def _read_scaling(f, study):
    for name in f["best"]:
        g = f["best"][name]
        method = method_of(name, study.options.get("train_options"),
                           study.options.get("grid_entries"))
        columns = [g[k][()] for k in ("batch_size", "reached", "steps_to_target",
                                      "epochs_to_target", "wall_to_target", "cost_to_target")]
        n = len(columns[0])
        settings = _settings(f, g, [name] * n, columns[0])
        study.points[method] = {int(row[0]): _point(*row[1:], study.path, spread,
                                                    _seeds(study.options), setting)
                                for row, spread, setting in zip(zip(*columns), _spreads(g, n),
                                                                settings)}


def _read_compare(f, study):
    g = f["best"]
    columns = [g[k][()] for k in ("optimizer", "batch_size", "reached", "steps_to_target",
                                  "epochs_to_target", "wall_to_target", "cost_to_target")]
    names = [_text(name) for name in columns[0]]
    settings = _settings(f, g, names, columns[1])
    for (name, size, *row), spread, setting in zip(zip(names, *columns[1:]),
                                                  _spreads(g, len(names)), settings):
        method = method_of(name, study.options.get("train_options"),
                           study.options.get("grid_entries"))
        study.points[method] = {int(size): _point(*row, study.path, spread,
                                                  _seeds(study.options), setting)}


def _read_sensitivity(f, study):
    for name in f["maps"]:
        g = f["maps"][name]
        method = method_of(name, study.options.get("train_options"),
                           study.options.get("grid_entries"))
        reached = g["reached"][()]
        study.fractions[method] = {
            int(b): Fraction(float(fr), int(hit.sum()), int(hit.size), study.path)
            for b, fr, hit in zip(g["batch_size"][()], g["fraction_reached"][()], reached)}


READERS = {"scaling": _read_scaling, "compare": _read_compare, "sensitivity": _read_sensitivity}


def study_files(paths):
    """The study files of the given folders (each of STUDY_FILES it holds) or files; a file
    named twice (a folder and its file, overlapping shell patterns) is read once."""
    found = []
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"{path}: not found")
        if os.path.isfile(path):
            found.append(path)
            continue
        inside = [os.path.join(path, name) for name in STUDY_FILES
                  if os.path.isfile(os.path.join(path, name))]
        if not inside:
            raise UserError(f"{path}: holds no study file ({', '.join(STUDY_FILES)})")
        found += inside
    once = {}
    for path in found:
        once.setdefault(os.path.realpath(path), path)
    return list(once.values())


def read_study(path):
    """Study(...) of one summary file; UserError (one line) when it is not a readable one."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({_one_line(e)})")
    command = "study"
    try:
        with f:
            command = _text(f.attrs.get("command", ""))
            if command not in READERS:
                raise UserError(f"{path}: not a study file of minigrad scaling, sensitivity or "
                                f"compare (attrs command is {command!r})")
            options = json.loads(_text(f.attrs["options"]))
            study = Study(path, command, options, problem_of(options),
                          int(f.attrs["train_examples"]))
            READERS[command](f, study)
            study.compute = _compute(f)
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise UserError(f"{path}: not a complete {command} file ({_one_line(e)})")
    return study


@dataclasses.dataclass
class Collection:
    """Every study merged: problems and methods (sorted), and per (method, problem) the points
    of the scaling and compare studies and the fractions of the sensitivity studies, by batch
    size."""
    studies: list
    problems: list
    methods: list
    points: dict      # {(Method, Problem): {B: Point}}
    fractions: dict   # {(Method, Problem): {B: Fraction}}
    train_examples: dict   # {Problem: n}

    def labels(self):
        """{Problem: short name}: "data set model hidden", with the target when two problems
        would otherwise share a name."""
        short = {p: f"{p.dataset} {p.model_text()}" for p in self.problems}
        if len(set(short.values())) < len(short):
            short = {p: f"{s}, {p.target_text()}" for p, s in short.items()}
        return short

    def baseline(self, problem, table):
        """The SGD method of `problem` in `table` (points or fractions): the only one, or the one
        without fixed options; None if there is none."""
        sgd = [m for m in self.methods if m.optimizer == "sgd" and (m, problem) in table]
        if len(sgd) > 1:
            sgd = [m for m in sgd if not m.options]
        return sgd[0] if len(sgd) == 1 else None

    def best_sgd(self, problem):
        """SGD at its best on `problem`, {B: (Method, Point)}: at each batch size, of the SGD
        methods studied there (without fixed train options and with them, e.g. a warmup), the
        one whose point reached the target in the fewest steps (ties: the baseline, then the
        methods' order), or the baseline where none reached it (else the first); {} without
        SGD. What a second-order method is compared with: SGD tuned, a fixed option being one
        more of its hyperparameters."""
        base = self.baseline(problem, self.points)
        sgd = sorted((m for m in self.methods if m.optimizer == "sgd"
                      and (m, problem) in self.points), key=lambda m: (m != base, m.sort_key()))
        best = {}
        for m in sgd:
            for b, p in self.points[(m, problem)].items():
                q = best[b][1] if b in best else None
                if q is None or (p.reached and (not q.reached or p.steps < q.steps)):
                    best[b] = (m, p)
        return best


def _merge(target, key, values, what):
    mine = target.setdefault(key, {})
    for b, value in values.items():
        if b in mine:
            method, problem = key
            raise UserError(f"{mine[b].source} and {value.source} both give {what} of "
                            f"{method.label} on {problem.dataset} {problem.model_text()} "
                            f"({problem.target_text()}) at B = {b}; give only one of them")
        mine[b] = value


def collect(studies):
    """Collection of the studies; UserError when two give the same method, problem and batch
    size (the report would have to choose)."""
    studies = sorted(studies, key=lambda s: s.path)
    points, fractions, examples = {}, {}, {}
    for study in studies:
        examples.setdefault(study.problem, study.train_examples)
        for method, values in study.points.items():
            _merge(points, (method, study.problem), values, "steps to the target")
        for method, values in study.fractions.items():
            _merge(fractions, (method, study.problem), values, "a sensitivity map")
    keys = list(points) + list(fractions)
    labels = {}
    for method, _ in keys:   # the label of the first study (by path) that names the method
        labels.setdefault(method, method)
    methods = sorted(labels.values(), key=Method.sort_key)
    problems = sorted({p for _, p in keys}, key=Problem.sort_key)
    return Collection(studies, problems, methods, points, fractions, examples)


def read_noise_run(path):
    """NoiseRun(...) of a `minigrad train` run folder (or its run.h5) that logged evals/noise_*."""
    import h5py

    file = path if os.path.isfile(path) else os.path.join(path, "run.h5")
    if not os.path.exists(path):
        raise UserError(f"--noise-run {path}: not found")
    if not os.path.isfile(file):
        raise UserError(f"--noise-run {path}: holds no run.h5")
    try:
        f = h5py.File(file, "r")
    except OSError as e:
        raise UserError(f"--noise-run {path}: not a readable HDF5 file ({_one_line(e)})")
    try:
        with f:
            config = json.loads(_text(f.attrs["config"]))
            evals = f["evals"]
            if "noise_trace_cov" not in evals or "noise_grad_sq_norm" not in evals:
                raise UserError(f"--noise-run {path}: run.h5 has no evals/noise_trace_cov and "
                                "noise_grad_sq_norm (train it with --noise-scale-examples N)")
            step, trace, grad_sq = (evals[k][()].astype(np.float64) for k in
                                    ("step", "noise_trace_cov", "noise_grad_sq_norm"))
            per_epoch = config.get("steps_per_epoch") or \
                math.ceil(config["train_examples"] / config["batch_size"])
            return NoiseRun(path, str(config["dataset"]), str(config["model"]),
                            _hidden(config["model"], config.get("hidden")),
                            str(config["optimizer"]), int(config["batch_size"]), int(per_epoch),
                            step, trace, grad_sq)
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise UserError(f"--noise-run {path}: not a complete run.h5 ({_one_line(e)})")
