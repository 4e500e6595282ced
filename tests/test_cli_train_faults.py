"""Runs that survive faults and refuse bad input (`minigrad train`, and a study's trials):
stop signals checkpoint and exit 128 + signal, a kill -9 loses at most the steps since the last
evaluation and shows as "stale", an unwritable --out is found before training, periodic
checkpoints by wall time, and bad input refused instead of reinterpreted."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.checkpoint import kept_steps, read_checkpoint
from minigrad.cli.runlog import read_run
from minigrad.cli.training import signals, trainer
from minigrad.cli.training import steps as step_module
from support import assert_same_params


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_stop_signal_checkpoints_after_the_step_and_resumes_exactly(tmp_path, monkeypatch,
                                                                     signum, code):
    real = step_module.one_step

    def step_then_signal(name, model, optimizer, xb, yb, step, *rows):
        if step == 7:
            os.kill(os.getpid(), signum)   # deferred: the step finishes first
        return real(name, model, optimizer, xb, yb, step, *rows)

    monkeypatch.setattr(step_module, "one_step", step_then_signal)
    result = invoke("train", "--steps", 20, "--out", tmp_path / "b")
    assert result.exit_code == code, result.output
    line = [x for x in result.output.splitlines() if x.strip()][-1]
    assert line.startswith(f"{signal.Signals(signum).name}: stopped at step 8;") and "--resume" in line
    run = read_run(str(tmp_path / "b"))
    assert run["attrs"]["status"] == "interrupted" and run["attrs"]["steps"] == 8
    monkeypatch.setattr(step_module, "one_step", real)
    ok(invoke("train", "--out", tmp_path / "b", "--resume"))
    ok(invoke("train", "--steps", 20, "--out", tmp_path / "a"))
    assert_same_params(tmp_path / "a", tmp_path / "b", rtol=0)


class _SignalDuringAgreement:
    """A 2-rank communicator whose allreduce delivers a SIGTERM to this process while it runs
    (the race that lost a signal under MPI): no other rank got one (the sum is this rank's)."""
    world_size = 2

    def __init__(self):
        self.calls = 0

    def allreduce_scalars(self, values):
        self.calls += 1
        if self.calls == 1:
            os.kill(os.getpid(), signal.SIGTERM)   # handled before the call returns
        return list(values)


def test_a_signal_arriving_during_the_agreement_is_agreed_on_after_the_next_step():
    comm = _SignalDuringAgreement()
    with signals.DeferredInterrupt() as interrupt:
        first = interrupt.agreed(comm)    # this rank sent 0: nobody stops after this step
        second = interrupt.agreed(comm)   # the signal received meanwhile is agreed on now
    assert (first, second) == (0, signal.SIGTERM)
    assert signals.agreed_signal(comm, signal.SIGINT) == signal.SIGINT


KILLED_AT = 17
KILL_SCRIPT = textwrap.dedent(f"""
    import os, signal, sys
    from minigrad.cli import main
    step_module = sys.modules["minigrad.cli.training.steps"]
    real = step_module.one_step
    def step(name, model, optimizer, xb, yb, step, *rows):
        if step == {KILLED_AT}:
            os.kill(os.getpid(), signal.SIGKILL)   # no handler, no checkpoint: gone
        return real(name, model, optimizer, xb, yb, step, *rows)
    step_module.one_step = step
    main(sys.argv[1:])
""")


def test_kill_9_keeps_the_last_evaluation_shows_stale_and_resumes_exactly(tmp_path):
    out = tmp_path / "killed"
    args = ["train", "--steps", "30", "--eval-every", "5", "--checkpoint-seconds", "0",
            "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    run = read_run(str(out))   # current at the last evaluation before the kill
    assert run["attrs"]["status"] == "running" and run["attrs"]["steps"] == 15
    assert read_checkpoint(str(out))[1]["step"] == 15   # lost: the 2 steps since
    listing = ok(invoke("runs", tmp_path)).output
    assert listing.splitlines()[1].split()[0] == "killed" and listing.rstrip().endswith("stale")
    assert "stale" in ok(invoke("show", out)).output
    ok(invoke("train", "--out", out, "--resume"))
    ok(invoke("train", "--steps", "30", "--eval-every", "5", "--out", tmp_path / "whole"))
    assert_same_params(out, tmp_path / "whole", rtol=0)
    assert "finished" in ok(invoke("runs", tmp_path)).output.splitlines()[1]


def test_a_live_run_shows_as_running(tmp_path):
    from minigrad.cli.inspect import live_status
    from minigrad.cli.training.run_folder import write_process_file
    write_process_file(str(tmp_path))
    assert live_status(str(tmp_path), "running") == "running"   # this very process
    assert live_status(str(tmp_path), "finished") == "finished"


def test_checkpoints_come_at_evaluations_and_by_wall_time(tmp_path, monkeypatch):
    ok(invoke("train", "--steps", "12", "--eval-every", "5", "--keep-checkpoints",
              "--checkpoint-seconds", "0", "--out", tmp_path / "evals"))
    assert kept_steps(str(tmp_path / "evals")) == [5, 10, 12]
    # by default an evaluation checkpoints only 10 s after the last checkpoint (a fast run:
    # only the end), but run.h5 is current at every evaluation
    ok(invoke("train", "--steps", "12", "--eval-every", "1", "--keep-checkpoints",
              "--out", tmp_path / "spaced"))
    assert kept_steps(str(tmp_path / "spaced")) == [12]
    clock = iter(range(0, 10_000, 7))   # every step "takes" 7 s of monotonic time
    monkeypatch.setattr(trainer.time, "monotonic", lambda: float(next(clock)))
    ok(invoke("train", "--steps", "12", "--eval-every", "100", "--checkpoint-seconds", "20",
              "--keep-checkpoints", "--out", tmp_path / "timed"))
    steps = kept_steps(str(tmp_path / "timed"))
    assert steps[-1] == 12 and len(steps) >= 3 and steps != list(range(1, 13))


def test_an_unwritable_out_is_found_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = invoke("train", "--out", tmp_path / "file" / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [x for x in result.output.splitlines() if x.startswith("Error")] == [
        f"Error: --out {str(tmp_path / 'file' / 'run')!r} is not writable: Not a directory"]
    assert "step" not in result.output   # nothing trained


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1437 training examples of digits"),
    (["--lr", "0"], "0.0 is not in the range x>0"),
    (["--optimizer", "kfac", "--lr", "0"], "0.0 is not in the range x>0"),
])
def test_bad_options_are_refused(tmp_path, args, words):
    result = invoke("train", *args, "--out", tmp_path / "r")
    assert result.exit_code == 2 and words in result.output, result.output


@pytest.mark.parametrize("text, words", [
    ("batch_size = 64.7", "batch-size = 64.7: expected an integer, got a float"),
    ("epochs = true", "epochs = True: expected an integer, got a bool"),
    ("lr = \"0.1\"", "lr = '0.1': expected a number, got a str"),
    ("momentum = false", "momentum = False: expected a number, got a bool"),
    ("stop_at_target = 1", "stop-at-target = 1: expected true or false"),
    ("optimizer = 3", "optimizer = 3: expected a string, got a int"),
    ("hidden = [64.5]", "hidden = [64.5]: expected a list of ints"),
])
def test_toml_values_are_type_checked_as_the_command_line(tmp_path, text, words):
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    result = invoke("train", "--config", config, "--out", tmp_path / "r")
    assert result.exit_code == 2 and words in result.output, result.output


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "done"
    ok(invoke("train", "--steps", "6", "--eval-every", "3", "--out", out))
    before = {f: (out / f).read_bytes() for f in ("run.h5", "checkpoint.npz")}
    result = ok(invoke("train", "--out", out, "--resume"))
    assert "finished at step 6 already; nothing to do" in result.output
    assert {f: (out / f).read_bytes() for f in before} == before
    ok(invoke("train", "--out", out, "--resume", "--steps", "9"))   # more steps: trains on
    assert read_run(str(out))["attrs"]["steps"] == 9


def test_a_study_stopped_by_sigterm_checkpoints_its_trials_and_continues(tmp_path):
    """SIGTERM to the study's own process reaches the running trial, which checkpoints after its
    step; the study exits 143 and the same command finishes it."""
    out = tmp_path / "study"
    command = [sys.executable, "-m", "minigrad.cli", "scaling", "--optimizers", "sgd",
               "--batch-sizes", "16", "--grid", "sgd.lr=0.05", "--target-accuracy", "0.999",
               "--budget-epochs", "15", "--hidden", "32", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trials = out / "trials"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # the trial has started and written an evaluation
        runs = list(trials.glob("*/run.h5")) if trials.is_dir() else []
        if runs:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 143, output
    (folder,) = list(trials.iterdir())
    stopped = read_run(str(folder))
    assert stopped["attrs"]["status"] == "interrupted"
    assert read_checkpoint(str(folder))[1]["step"] == stopped["attrs"]["steps"] < 15 * 90
    again = subprocess.run(command, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stdout.decode() + again.stderr.decode()
    assert read_run(str(folder))["attrs"]["status"] == "finished", again.stdout.decode() + \
        (folder / "train.log").read_text()


@pytest.mark.parametrize("again, stops_now", [(signal.SIGTERM, False), (signal.SIGUSR1, False),
                                              (signal.SIGINT, True)])
def test_only_a_second_ctrl_c_interrupts_mid_step(again, stops_now):
    """A scheduler's SIGTERM that comes twice (to the job's every process, and forwarded by the
    study) still lets the step finish; a second Ctrl-C does not wait."""
    with signals.DeferredInterrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.signum == signal.SIGTERM
        if stops_now:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), again)
        else:
            os.kill(os.getpid(), again)
            assert interrupt.signum == signal.SIGTERM   # the most urgent is kept


def test_of_several_stop_signals_the_most_urgent_is_acted_on():
    with signals.DeferredInterrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.signum == signal.SIGTERM
    with signals.DeferredInterrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGUSR1)   # not a second Ctrl-C: recorded, no interrupt
        assert interrupt.signum == signal.SIGUSR1


def test_a_stop_file_stops_the_run_after_its_step_as_its_signal_would(tmp_path, monkeypatch):
    """--stop-file: the file appears during step 8 (holding SIGUSR1's number): the run finishes
    that step, checkpoints and exits 128 + SIGUSR1, and resumes exactly; an empty file means
    SIGTERM."""
    real = step_module.one_step
    stop = tmp_path / "stop"

    def step_then_file(name, model, optimizer, xb, yb, step, *rows):
        if step == 7:
            stop.write_text(str(int(signal.SIGUSR1)))
        return real(name, model, optimizer, xb, yb, step, *rows)

    monkeypatch.setattr(step_module, "one_step", step_then_file)
    result = invoke("train", "--steps", 20, "--stop-file", stop, "--out", tmp_path / "b")
    assert result.exit_code == 128 + signal.SIGUSR1, result.output
    assert [x for x in result.output.splitlines() if x.strip()][-1].startswith(
        "SIGUSR1: stopped at step 8;")
    assert read_run(str(tmp_path / "b"))["attrs"]["steps"] == 8
    monkeypatch.setattr(step_module, "one_step", real)
    stop.write_text("")
    result = invoke("train", "--out", tmp_path / "b", "--resume", "--stop-file", stop)
    assert result.exit_code == 128 + signal.SIGTERM and "stopped at step 9;" in result.output
    stop.unlink()
    ok(invoke("train", "--out", tmp_path / "b", "--resume", "--stop-file", stop))
    ok(invoke("train", "--steps", 20, "--out", tmp_path / "a"))
    assert_same_params(tmp_path / "a", tmp_path / "b", rtol=0)
