"""`minigrad train --threads N`: every BLAS library in the process runs with N threads while the
run trains, and with its own count again afterwards; without the option nothing is changed; the
count is a per-session choice that a resume may change."""
import numpy as np
import pytest
from click.testing import CliRunner
from threadpoolctl import threadpool_limits

from minigrad.cli import main
from minigrad.cli.runlog import read_run
from minigrad.cli.training import steps as step_module
from minigrad.cli.training.threads import blas_threads


def train_recording_threads(monkeypatch, *args):
    """Run `minigrad train ARGS`, returning the BLAS thread counts seen inside every step."""
    seen, real = [], step_module.one_step

    def step(*a, **k):
        seen.append(blas_threads())
        return real(*a, **k)

    monkeypatch.setattr(step_module, "one_step", step)
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return seen


@pytest.mark.parametrize("threads", [1, 3])
def test_the_steps_run_with_the_asked_threads_and_the_count_comes_back(tmp_path, monkeypatch,
                                                                       threads):
    with threadpool_limits(limits=2):   # a known count outside the run, whatever the machine has
        before = blas_threads()
        seen = train_recording_threads(monkeypatch, "train", "--steps", 3, "--threads", threads,
                                       "--out", tmp_path / "run")
        after = blas_threads()
    assert len(seen) == 3 and before and set(before.values()) == {2}
    assert all(set(counts.values()) == {threads} and counts.keys() == before.keys()
               for counts in seen)
    assert after == before


def test_without_the_option_the_libraries_keep_their_count(tmp_path, monkeypatch):
    with threadpool_limits(limits=2):
        seen = train_recording_threads(monkeypatch, "train", "--steps", 2, "--out", tmp_path / "r")
    assert [set(c.values()) for c in seen] == [{2}, {2}]


def test_a_resume_may_change_the_count_and_continues_the_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_recording_threads(monkeypatch, "train", "--steps", 4, "--threads", 1, "--out", out)
    seen = train_recording_threads(monkeypatch, "train", "--out", out, "--resume", "--steps", 6,
                                   "--threads", 2)
    assert [set(c.values()) for c in seen] == [{2}, {2}]
    run = read_run(str(out))
    assert run["attrs"]["steps"] == 6 and np.all(np.isfinite(run["steps"]["loss"]))


def test_zero_threads_is_refused_with_the_option_named():
    result = CliRunner().invoke(main, ["train", "--threads", "0"])
    assert result.exit_code == 2 and "'--threads'" in result.output
