"""docs/results/fashion-mnist/continue_study.py: which studies each step of run-study.sh writes,
steps run in the given order with the done ones skipped and each study rechecked after its step,
the record of done steps saved with the study, and the archive committed alone."""
import importlib.util
import json
import os
import subprocess

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
    assert state.STEPS_DONE == cs.STEPS_DONE
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


def test_the_archive_is_committed_alone(tmp_path):
    cs = load("continue_study")
    repo = tmp_path / "repo"
    run = git_repo(repo)
    archive = repo / "in-progress.tar.xz"
    archive.write_bytes(b"state 1")
    (repo / "other.txt").write_text("two")
    run("add", "other.txt")   # staged work of a person: not the driver's to commit
    keeper = cs.Keeper("unused", "unused", str(repo), archive=str(archive))
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
