"""docs/results/fashion-mnist/continue_study.py: which studies each step of run-study.sh writes,
steps run in the given order with the done ones skipped and each study rechecked after its step,
the record of done steps saved with the study, and the archive committed alone."""
import importlib.util
import json
import os
import signal
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "docs", "results", "fashion-mnist")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_steps_studies_are_read_from_the_study_script():
    studies = load("continue_study").step_studies(os.path.join(HERE, "run-study.sh"))
    assert studies[8] == ["mlp-kfac-eigen-every-step", "mlp-kfac-sparse-updates"]
    assert studies[5] == studies[10] == ["lenet"]   # step 10 adds optimizers to step 5's study
    assert studies[11] == ["lenet-sgd-warmup", "mlp-sgd-warmup"]
    # every committed study is some step's (the reference runs are run folders, not studies)
    committed = {name for name in os.listdir(HERE) if os.path.isdir(os.path.join(HERE, name))
                 and not name.startswith("noise-")
                 and any(f.endswith(".h5") for f in os.listdir(os.path.join(HERE, name)))}
    assert committed and committed <= {n for names in studies.values() for n in names}


STUB_SCRIPT = """#!/usr/bin/env bash
set -euo pipefail   # as run-study.sh
out=$1; first=$3; last=$4
step() { [ "$1" -ge "$first" ] && [ "$1" -le "$last" ]; }
step 1 && minigrad scaling --grid x \\
    --out "$out/a"
step 2 && minigrad train --out "$out/run"
step 3 && minigrad sensitivity --out "$out/b"
step 3 && minigrad scaling --out "$out/c"
true
"""
# records its arguments; fails for a study named "bad"
STUB_MINIGRAD = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case "$*" in *"/bad"*) exit 1;; esac
"""


def stubs(tmp_path, script=STUB_SCRIPT):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "minigrad").write_text(STUB_MINIGRAD)
    (bin_dir / "minigrad").chmod(0o755)
    (tmp_path / "run-study.sh").write_text(script)
    (tmp_path / "studies").mkdir()
    return str(bin_dir), str(tmp_path / "run-study.sh"), str(tmp_path / "studies")


def test_steps_run_in_order_skip_done_ones_and_recheck_their_studies(tmp_path, monkeypatch):
    cs = load("continue_study")
    bin_dir, script, studies = stubs(tmp_path)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    cs.mark_done(studies, 2)
    after = []
    with open(tmp_path / "log", "w") as log:
        ran = cs.run_steps([3, 1, 2], studies, script, bin_dir, 2, log, after.append)
    assert ran == after == [3, 1]
    assert cs.steps_done(studies) == [2, 3, 1]
    calls = (tmp_path / "calls").read_text().splitlines()
    recheck = "recheck-diverged {0}/{1} --jobs 1 --out {0}/{1}/recheck-diverged.md"
    assert calls == [f"sensitivity --out {studies}/b", f"scaling --out {studies}/c",
                     recheck.format(studies, "b"), recheck.format(studies, "c"),
                     f"scaling --grid x --out {studies}/a", recheck.format(studies, "a")]
    # a second call has nothing left to run
    with open(tmp_path / "log", "a") as log:
        assert cs.run_steps([3, 1, 2], studies, script, bin_dir, 2, log) == []


def test_a_failed_step_stops_the_driver_and_stays_to_do(tmp_path, monkeypatch):
    cs = load("continue_study")
    bin_dir, script, studies = stubs(tmp_path, STUB_SCRIPT.replace('"$out/c"', '"$out/bad"'))
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    with open(tmp_path / "log", "w") as log, pytest.raises(SystemExit, match="step 3"):
        cs.run_steps([3, 1], studies, script, bin_dir, 2, log)
    assert cs.steps_done(studies) == []
    assert not any("scaling --grid x" in c for c in (tmp_path / "calls").read_text().split("\n"))


def test_the_record_of_done_steps_is_saved_with_the_study(tmp_path):
    cs, state = load("continue_study"), load("study_state")
    assert state.STEPS_DONE == cs.STEPS_DONE and state.RECHECK_PAGE == cs.RECHECK_PAGE
    cs.mark_done(str(tmp_path), 5)
    assert state.members(str(tmp_path)) == [cs.STEPS_DONE]
    assert json.loads((tmp_path / cs.STEPS_DONE).read_text()) == [5]


def git_repo(path):
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout
    path.mkdir()
    run("init", "-q")
    run("config", "user.email", "t@example.org")
    run("config", "user.name", "t")
    (path / "other.txt").write_text("one")
    run("add", "other.txt")
    run("commit", "-qm", "first")
    return run


def keeper_in_a_repo(tmp_path, python="unused"):
    """(git runner, archive path, Keeper) for a fresh repository holding "state 1" as an
    untracked archive; `python` runs the saves (`true`: each succeeds, writing nothing)."""
    cs = load("continue_study")
    repo = tmp_path / "repo"
    run = git_repo(repo)
    archive = repo / "in-progress.tar.xz"
    archive.write_bytes(b"state 1")
    return run, archive, cs.Keeper("unused", python, str(repo), archive=str(archive))


def test_the_archive_is_committed_alone(tmp_path):
    run, archive, keeper = keeper_in_a_repo(tmp_path)
    (tmp_path / "repo" / "other.txt").write_text("two")
    run("add", "other.txt")   # staged work of a person: not the driver's to commit
    assert keeper.commit("test") is True
    assert run("show", "--name-only", "--format=", "HEAD").split() == ["in-progress.tar.xz"]
    assert run("diff", "--cached", "--name-only").split() == ["other.txt"]
    assert keeper.commit("test") is False   # unchanged: no empty commit
    archive.write_bytes(b"state 2")
    assert keeper.commit("test") is True
    assert run("show", "HEAD:in-progress.tar.xz") == "state 2"
    assert run("diff", "--cached", "--name-only").split() == ["other.txt"]
    # the person's commit, with the archive changed on disk, takes their work alone
    archive.write_bytes(b"state 3")
    run("commit", "-qm", "theirs")
    assert run("show", "--name-only", "--format=", "HEAD").split() == ["other.txt"]
    assert keeper.commit("test") is True and run("show", "HEAD:in-progress.tar.xz") == "state 3"


def test_a_failed_save_is_logged_not_raised(tmp_path):
    import io
    cs = load("continue_study")
    log = io.StringIO()
    keeper = cs.Keeper(str(tmp_path), "false", str(tmp_path), log=log)   # `false` exits 1
    keeper.keep("test")
    assert "keeping the study's work failed (test)" in log.getvalue()
    with pytest.raises(RuntimeError, match="study_state.py save"):
        keeper.save()


def test_the_pin_is_resolved_to_a_full_commit(tmp_path):
    cs = load("continue_study")
    repo = tmp_path / "repo"
    run = git_repo(repo)
    head = run("rev-parse", "HEAD").strip()
    run("branch", "pinned")
    assert cs.resolve(str(repo), "pinned") == cs.resolve(str(repo), head[:8]) == head
    for bad in ("no-such-branch", ""):
        with pytest.raises(SystemExit, match="is not a commit"):
            cs.resolve(str(repo), bad)


# a step whose study takes a while and, on SIGTERM, takes a second to write its "checkpoint"
SLOW_MINIGRAD = """#!/usr/bin/env bash
trap 'sleep 1; echo checkpointed >> "$CALLS"; exit 143' TERM
echo "$*" >> "$CALLS"
sleep 60 &
wait
"""


def test_sigterm_reaches_the_step_and_the_driver_waits_for_its_checkpoints(tmp_path,
                                                                           monkeypatch):
    cs = load("continue_study")
    bin_dir, script, studies = stubs(tmp_path)
    (tmp_path / "bin" / "minigrad").write_text(SLOW_MINIGRAD)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    # at once, before the wait for the checkpoints: the commit of the save already on disk
    first = []
    stop = cs.Stop(lambda: first.append((tmp_path / "calls").read_text().splitlines()))
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        # the signal comes to this process (the driver) only, as `kill PID` would send it
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        with open(tmp_path / "log", "w") as log, pytest.raises(SystemExit, match="stopped"):
            cs.run_steps([1, 3], studies, script, bin_dir, 2, log, stop=stop)
        assert time.monotonic() - start < 30   # not the study's 60 s
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN   # repeats cannot cut it short
    finally:
        signal.signal(signal.SIGTERM, previous)
    # the study got SIGTERM and had written its checkpoint when run_steps returned
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"scaling --grid x --out {studies}/a", "checkpointed"]
    assert first == [[f"scaling --grid x --out {studies}/a"]]   # called once, before that
    assert cs.steps_done(studies) == []   # step 1 stays to do, step 3 never started
    assert "=== step 1 stopped" in (tmp_path / "log").read_text()


def test_a_commit_waits_for_a_persons_git_and_a_failed_one_is_retried(tmp_path):
    run, archive, keeper = keeper_in_a_repo(tmp_path)
    repo = tmp_path / "repo"
    lock = repo / ".git" / "index.lock"
    # a lock that stays: the first commit fails with git's message, and leaves nothing staged
    lock.write_text("")
    with pytest.raises(RuntimeError, match="index.lock"):
        keeper.commit("test", tries=2)
    assert keeper.pending
    lock.unlink()
    assert run("diff", "--cached", "--name-only").split() == []
    assert run("status", "--porcelain").split() == ["??", "in-progress.tar.xz"]
    # a commit that fails after the first `git add` (a hook refuses it): the add is undone
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    keeper.pending = False
    with pytest.raises(RuntimeError, match="git commit"):
        keeper.commit("test")
    assert keeper.pending
    assert run("status", "--porcelain").split() == ["??", "in-progress.tar.xz"]
    hook.unlink()
    # a lock that goes within the tries: the commit waits for it
    lock.write_text("")
    threading.Timer(1.5, lock.unlink).start()
    assert keeper.commit("test") is True and not keeper.pending
    assert run("show", "HEAD:in-progress.tar.xz") == "state 1"


def test_the_driver_refuses_a_repository_it_could_not_commit_to(tmp_path, monkeypatch):
    cs = load("continue_study")
    repo = tmp_path / "repo"
    git_repo(repo)
    cs.check_git(str(repo))   # a clean repository with an identity passes
    (repo / ".git" / "index.lock").write_text("")
    with pytest.raises(SystemExit, match="index.lock exists"):
        cs.check_git(str(repo))


def test_a_failed_commit_is_tried_again_at_the_next_tick_whatever_the_hour(tmp_path):
    run, archive, keeper = keeper_in_a_repo(tmp_path, python="true")
    keeper.pending = True   # as after a failed commit, well inside the hour
    keeper.every(0.2, 3600)
    deadline = time.monotonic() + 20
    while keeper.pending and time.monotonic() < deadline:
        time.sleep(0.1)
    keeper.stopping = True
    assert not keeper.pending
    assert run("show", "HEAD:in-progress.tar.xz") == "state 1"
