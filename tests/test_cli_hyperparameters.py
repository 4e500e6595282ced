"""`minigrad train`'s optimizer options against the library's declarations
(optim/hyperparameters.py), every case generated from them: the defaults a run gets are the
library's except the command line's preset (CLI_PRESET), each option's range is the declaration's
bounds except the documented departures, a study's --grid limits are the same, and a bad value
is the same one-line error whichever way it comes (command line, --config, --grid,
--train-option). Then the values of old runs: a configuration older than an option resumes with
the value that run was trained with (LEGACY_VALUES), and a checkpoint whose fixed hyperparameter
disagrees with the run's configuration is refused, naming both."""
import types

import click
import pytest
from click.testing import CliRunner
from minigrad.cli import main, search
from minigrad.cli.checkpoint import read_checkpoint, write_checkpoint
from minigrad.cli.study import specs, trials
from minigrad.cli.train import train
from minigrad.cli.training import hyperparameters as cli_hyper
from minigrad.optim import KFAC, REQUIRED, SGD, STRCG, TRCG, hyperparameters_of
from support import assert_same_params

CLASSES = {"sgd": SGD, "kfac": KFAC, "trcg": TRCG, "strcg": STRCG}
OPTIONS = [(opt, name) for opt, names in cli_hyper.OPTIONS.items() for name in names]
# the command line's documented departures from the declared bounds
DEPARTURES = {"lr": {"low_open": True},                                   # CLI_NARROWED
              "kl_clip": {"low_open": False},                             # OFF: 0 turns it off
              "radius": {"high": TRCG.max_radius.default, "high_open": False}}  # <= max_radius
PARAMS = {p.name: p for p in train.params}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def error_line(result):
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    return lines[0]


def declared(optimizer, name):
    return next(h for h in hyperparameters_of(optimizer) if h.name == name)


def train_briefly(out, *args):
    return ok(invoke("train", "--hidden", 8, "--batch-size", 256, "--no-layer-stats",
                     "--out", out, *args))


# ----------------------------------------------------------------------------- defaults
@pytest.mark.parametrize("optimizer", list(CLASSES))
def test_a_run_gets_the_library_defaults_except_the_cli_preset(tmp_path, optimizer):
    """Every hyperparameter of the optimizer a run builds, with an option or without, has the
    declared default, except CLI_PRESET's entries (and the trust radius, which evolves)."""
    train_briefly(tmp_path / "r", "--optimizer", optimizer, "--steps", 1)
    _, state = read_checkpoint(str(tmp_path / "r"))
    preset = {name: p.value for name, p in cli_hyper.CLI_PRESET.get(optimizer, {}).items()}
    built = state["optimizer"]["hyperparameters"]
    for h in CLASSES[optimizer].hyperparameters:
        expected = preset[h.name] if h.name in preset else h.default
        assert expected is not REQUIRED, f"{optimizer} {h.name}: no default and no preset"
        if h.name in cli_hyper.OPTIONS[optimizer]:
            cli_value = state["config"][h.name]
            assert (None if h.optional and cli_value == cli_hyper.OFF else cli_value) == expected
        if h.name != "radius":
            assert built[h.name] == expected, h.name


def test_the_preset_covers_exactly_what_the_library_leaves_to_the_user_or_the_cli_changes():
    for optimizer, names in cli_hyper.CLI_PRESET.items():
        for name, preset in names.items():
            assert name in cli_hyper.OPTIONS[optimizer] and preset.reason
            h = declared(optimizer, name)
            assert h.default is REQUIRED or h.default != preset.value
    required = {(opt, name) for opt, name in OPTIONS if declared(opt, name).default is REQUIRED}
    assert required <= {(opt, name) for opt in cli_hyper.CLI_PRESET
                        for name in cli_hyper.CLI_PRESET[opt]}


def test_the_autoencoder_defaults_to_the_empirical_fisher_and_refuses_the_true_one(tmp_path):
    train_briefly(tmp_path / "ae", "--model", "autoencoder", "--optimizer", "kfac", "--steps", 1)
    assert read_checkpoint(str(tmp_path / "ae"))[1]["config"]["fisher"] == "empirical"
    result = invoke("train", "--model", "autoencoder", "--optimizer", "kfac", "--fisher", "true",
                    "--out", tmp_path / "true")
    assert result.exit_code == 2 and "--model autoencoder has none" in error_line(result)
    assert "with --model autoencoder 'empirical'" in PARAMS["fisher"].help


@pytest.mark.parametrize("optimizer, name", OPTIONS, ids=[f"{o}-{n}" for o, n in OPTIONS])
def test_help_states_each_default_and_its_source(optimizer, name):
    text = " ".join(PARAMS[name].help.split())
    h = declared(optimizer, name)
    preset = cli_hyper.CLI_PRESET.get(optimizer, {}).get(name)
    value = h.default if preset is None else preset.value
    assert f"default {value!r}" in text
    source = h.source.removeprefix("none: ") if h.default is REQUIRED else h.source
    assert cli_hyper._spelled_out(source) in text
    if preset is not None:
        assert "the command line's preset" in text and preset.reason in text


def test_radius_may_not_exceed_the_library_max_radius_and_older_runs_keep_theirs(tmp_path):
    result = invoke("train", "--optimizer", "trcg", "--radius", 20.5, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "20.5 is not in the range 0<x<=20.0" in error_line(result)
    # a run written when the command line passed max(20, radius) is built as it was
    old = {"optimizer": "strcg", "radius": 30.0, "hessian_fraction": 0.1}
    assert cli_hyper.optimizer_arguments(old)["max_radius"] == 30.0
    assert cli_hyper.optimizer_arguments(dict(old, radius=3.0))["max_radius"] == \
        TRCG.max_radius.default


# ----------------------------------------------------------------------------- ranges
def bounds_of(kind):
    return dict(low=kind.min, high=kind.max, low_open=kind.min_open, high_open=kind.max_open)


@pytest.mark.parametrize("optimizer, name", OPTIONS, ids=[f"{o}-{n}" for o, n in OPTIONS])
def test_every_option_range_is_the_declared_one(optimizer, name):
    h, kind = declared(optimizer, name), PARAMS[name].type
    if h.kind == "choice":
        assert tuple(kind.choices) == h.choices
        return
    assert bounds_of(kind) == dict(h.bounds(), **DEPARTURES.get(name, {}))
    assert (h.kind == "int") == (kind.name == "integer range")


@pytest.mark.parametrize("name", search.HYPERPARAMETERS)
def test_grid_limits_are_the_train_options_and_the_declarations(name):
    assert bounds_of(search.LIMITS[name]) == bounds_of(PARAMS[name].type)
    for opt in cli_hyper.APPLIES[name]:
        assert bounds_of(search.LIMITS[name]) == dict(declared(opt, name).bounds(),
                                                      **DEPARTURES.get(name, {}))


def bad_values(name):
    """Values just outside --NAME's range (or not one of its choices), as text."""
    kind = PARAMS[name].type
    if isinstance(kind, click.Choice):
        return ["cubic"]
    step = 1 if kind.name == "integer range" else 0.5
    values = []
    if kind.min is not None:
        values.append(kind.min if kind.min_open else kind.min - step)
    if kind.max is not None:
        values.append(kind.max if kind.max_open else kind.max + step)
    return [repr(float(v)) if kind.name != "integer range" else str(v) for v in values]


CASES = [(name, value) for name in cli_hyper.APPLIES for value in bad_values(name)]


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_a_bad_value_is_the_same_one_line_error_wherever_it_is_given(tmp_path, name, value):
    optimizer = cli_hyper.APPLIES[name][0]
    option = "--" + name.replace("_", "-")
    line = error_line(invoke("train", "--optimizer", optimizer, f"{option}={value}",
                             "--out", tmp_path / "a"))
    message = line.removeprefix("Error: ")
    assert message.startswith(f"Invalid value for '{option}': ")
    toml = tmp_path / "c.toml"
    toml.write_text(f"{name} = {value if value[0].isdigit() or value[0] == '-' else repr(value)}\n")
    from_file = invoke("train", "--optimizer", optimizer, "--config", toml, "--out", tmp_path / "b")
    assert from_file.exit_code == 2 and error_line(from_file).endswith(": " + message)
    study = ("scaling", "--optimizers", ",".join(cli_hyper.APPLIES[name]), "--batch-sizes", 64,
             "--target-accuracy", 0.9, "--out", tmp_path / "s")
    axis = [opt for opt in cli_hyper.APPLIES[name]
            if name in search.AXES[opt] + search.EXTRA_AXES[opt]]
    given = (["--grid", f"{axis[0]}.{name}={value}"] if axis else
             ["--train-option", f"{optimizer}.{name}={value}"])
    from_study = invoke(*study, *given)
    assert from_study.exit_code == 2 and error_line(from_study) == \
        f"Error: {given[0]} {given[1]!r}: {message}"


# ----------------------------------------------------------------------------- old runs
def doctor(folder, change):
    """Rewrite the checkpoint of `folder` with change(state) applied to its state."""
    weights, state = read_checkpoint(str(folder))
    change(state)
    write_checkpoint(str(folder), types.SimpleNamespace(state_dict=lambda: weights), state)


def test_a_configuration_older_than_the_kfac_options_resumes_with_the_legacy_values(tmp_path):
    legacy = dict(cli_hyper.LEGACY_VALUES["kfac"])
    given = [arg for name, value in legacy.items()
             for arg in ("--" + name.replace("_", "-"), value)]
    train_briefly(tmp_path / "whole", "--optimizer", "kfac", *given, "--steps", 6)
    train_briefly(tmp_path / "old", "--optimizer", "kfac", *given, "--steps", 3)
    doctor(tmp_path / "old", lambda state: [state["config"].pop(name) for name in legacy])
    ok(invoke("train", "--out", tmp_path / "old", "--resume", "--steps", 6))
    assert_same_params(tmp_path / "whole", tmp_path / "old", rtol=0)
    # a legacy value is the run's, as a resume with another value is told
    train_briefly(tmp_path / "older", "--optimizer", "kfac", *given, "--steps", 3)
    doctor(tmp_path / "older", lambda state: state["config"].pop("fisher"))
    result = invoke("train", "--out", tmp_path / "older", "--resume", "--fisher", "true")
    assert result.exit_code == 2 and "--fisher 'true' differs from the run's 'empirical'" in \
        error_line(result)


def test_a_checkpoint_whose_fixed_hyperparameter_disagrees_with_the_configuration_is_refused(
        tmp_path):
    train_briefly(tmp_path / "sgd", "--steps", 3)
    doctor(tmp_path / "sgd",
           lambda state: state["optimizer"]["hyperparameters"].update(momentum=0.5))
    line = error_line(invoke("train", "--out", tmp_path / "sgd", "--resume", "--steps", 6))
    assert "momentum = 0.5" in line and "configuration gives 0.9" in line
    # a run trained with the true Fisher whose configuration lost the key: the legacy
    # empirical Fisher is not what its state says
    train_briefly(tmp_path / "kfac", "--optimizer", "kfac", "--steps", 3)
    doctor(tmp_path / "kfac", lambda state: state["config"].pop("fisher"))
    line = error_line(invoke("train", "--out", tmp_path / "kfac", "--resume", "--steps", 6))
    assert "fisher = 'true'" in line and "configuration gives 'empirical'" in line


def test_the_trust_radius_comes_from_the_checkpoint(tmp_path):
    train_briefly(tmp_path / "tr", "--optimizer", "trcg", "--steps", 3)
    doctor(tmp_path / "tr", lambda state: state["optimizer"]["hyperparameters"].update(radius=0.25))
    ok(invoke("train", "--out", tmp_path / "tr", "--resume", "--steps", 4))
    _, state = read_checkpoint(str(tmp_path / "tr"))
    assert state["history"]["steps"]["radius"][3] <= 2 * 0.25 and state["config"]["radius"] == 5.0


# ----------------------------------------------------------------------------- studies
STUDY = {"dataset": "digits", "model": "mlp", "hidden": [8], "seed": 0, "dtype": "float32",
         "budget_epochs": 1, "eval_every": None, "evals_per_epoch": 1, "target_accuracy": 0.9,
         "target_loss": None}


def test_a_trial_spec_holds_its_optimizer_defaults_and_the_tables_do_not(tmp_path):
    point = {"lr": 0.05, "damping": 0.1}
    spec = specs.trial_spec(STUDY, "kfac", 64, point, 23, True, {"factor_init": "identity"})
    defaults = spec[trials.OPTIMIZER_DEFAULTS]
    assert defaults == {name: cli_hyper.default("kfac", name)
                        for name in cli_hyper.OPTIONS["kfac"]
                        if name not in ("lr", "damping", "factor_init")}
    assert defaults["fisher"] == "true"
    args = trials.train_args(spec, str(tmp_path), "new")
    assert args[args.index("--fisher") + 1] == "true" and "--kl-clip" in args
    from minigrad.cli.study import describe
    assert describe(spec).split()[2:] == ["lr=0.05", "damping=0.1"]


def test_a_trial_whose_point_gives_every_option_keeps_its_hash():
    for optimizer in ("sgd", "trcg", "strcg"):
        point = search.points(optimizer, 64, 64)[0]
        spec = specs.trial_spec(STUDY, optimizer, 64, point, 23, True)
        assert trials.OPTIMIZER_DEFAULTS not in spec and set(point) == \
            set(cli_hyper.OPTIONS[optimizer])
