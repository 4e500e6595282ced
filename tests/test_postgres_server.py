"""The throwaway PostgreSQL server of tests/postgres_server.py works for real, and the SLURM script
of docs/distributed.md's "A study on a cluster" is one `minigrad scaling` can run.

The server: SQLAlchemy connects and creates a table; two connections see each other's commits
(and not before); an Optuna study in it is shared by two processes that ask for and report
trials at the same time, and no trial is handed out twice; after the context manager exits,
normally or by an exception, the server process is gone and so is its folder.
"""
import contextlib
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import postgres_server
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SLURM_SCRIPT = ROOT / "examples" / "slurm" / "study-workers.sh"


@pytest.fixture
def engine(postgres_url):
    import sqlalchemy
    engine = sqlalchemy.create_engine(postgres_url)
    yield engine
    engine.dispose()


def test_sqlalchemy_creates_a_table_and_reads_back_its_rows(engine):
    from sqlalchemy import text
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE check_rows (n integer PRIMARY KEY, name text)"))
        conn.execute(text("INSERT INTO check_rows VALUES (1, 'one'), (2, 'two')"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n, name FROM check_rows ORDER BY n")).all() == \
            [(1, "one"), (2, "two")]


def test_two_connections_see_each_others_commits_and_not_before(engine):
    from sqlalchemy import text
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE check_commits (who text)"))
    select = text("SELECT who FROM check_commits ORDER BY who")
    with engine.connect() as a, engine.connect() as b:
        a.execute(text("INSERT INTO check_commits VALUES ('a')"))
        assert b.execute(select).all() == []            # a has not committed yet
        a.commit()
        assert b.execute(select).all() == [("a",)]
        b.execute(text("INSERT INTO check_commits VALUES ('b')"))
        b.commit()
        assert a.execute(select).all() == [("a",), ("b",)]


# One process of the Optuna test: it loads the study, says "ready", waits for the go (a line on
# its stdin, so that both processes ask at the same time), runs N ask/tell rounds and prints the
# numbers of the trials it was given.
WORKER = """
import json, sys
import optuna
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())
print("ready", flush=True)
sys.stdin.readline()
numbers = []
for _ in range(n):
    trial = study.ask()
    x = trial.suggest_float("x", -1.0, 1.0)
    study.tell(trial, x * x)
    numbers.append(trial.number)
print(json.dumps(numbers), flush=True)
"""


def test_two_processes_share_an_optuna_study_and_no_trial_is_given_twice(
        postgres_url):
    optuna = _optuna()
    rounds = 15
    optuna.create_study(study_name="check-two-workers", storage=postgres_url)   # makes the tables
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, "check-two-workers",
                                 str(rounds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    first, second = (json.loads(out) for out, _ in outputs)
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(2 * rounds))
    study = optuna.load_study(study_name="check-two-workers", storage=postgres_url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(2 * rounds))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.value == t.params["x"] ** 2 for t in trials)


def _optuna():
    """Optuna, or skip (fail under MINIGRAD_REQUIRE_POSTGRES=1, where the test extra has it)."""
    if postgres_server.REQUIRE:
        import optuna
        return optuna
    return pytest.importorskip("optuna")


@pytest.mark.parametrize("leaving", ["normally", "by an exception"])
def test_the_server_and_its_folder_are_gone_after_the_context_exits(leaving):
    postgres_server.require_postgres()
    import sqlalchemy

    class Leave(Exception):
        pass

    with pytest.raises(Leave) if leaving == "by an exception" else contextlib.nullcontext():
        with postgres_server.postgres_server() as server:
            engine = sqlalchemy.create_engine(server.url)
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            assert postgres_server.is_running(server.pid)
            account = postgres_server.server_account()      # None: not root, the server is ours
            server_uid = os.geteuid() if account is None else account[0]
            if os.path.isdir(f"/proc/{server.pid}"):        # Linux: whose process it is
                assert server_uid != 0 and os.stat(f"/proc/{server.pid}").st_uid == server_uid
            if leaving == "by an exception":
                raise Leave
    assert not postgres_server.is_running(server.pid), server
    assert not pathlib.Path(server.folder).exists()
    engine.dispose()   # its pooled connection was open while the server stopped
    with pytest.raises(sqlalchemy.exc.OperationalError):
        sqlalchemy.create_engine(server.url).connect()


def test_without_the_binaries_tests_skip_with_the_reason_and_fail_when_required(monkeypatch):
    monkeypatch.setattr(postgres_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres_server.glob, "glob", lambda pattern: [])
    assert "apt-get install postgresql" in postgres_server.why_unavailable()
    monkeypatch.setattr(postgres_server, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match="initdb, pg_ctl and postgres were not found"):
        postgres_server.require_postgres()
    monkeypatch.setattr(postgres_server, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match="MINIGRAD_REQUIRE_POSTGRES=1 but"):
        postgres_server.require_postgres()


# ---------------------------------------------------------------- the SLURM script of the docs

def test_the_slurm_script_is_valid_bash_and_named_in_the_docs():
    done = subprocess.run(["bash", "-n", str(SLURM_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "examples/slurm/study-workers.sh" in (ROOT / "docs" / "distributed.md").read_text()


def test_minigrad_scaling_accepts_the_slurm_scripts_command_line(tmp_path):
    """Its options exist and their values parse (click's parsing only: nothing runs)."""
    from minigrad.cli.scaling import scaling
    script = SLURM_SCRIPT.read_text().replace("\\\n", " ")
    (command,) = re.findall(r"^\s*exec minigrad scaling (.*)$", script, flags=re.MULTILINE)
    values = {"$STUDY_DIR": str(tmp_path / "study"),
              "$STORAGE_URL": f"sqlite:///{tmp_path / 'study.db'}"}
    args = [values.get(arg, arg) for arg in shlex.split(command)]
    assert "--storage" in args and "--jobs" in args
    with scaling.make_context("scaling", args) as ctx:
        assert ctx.params["jobs"] == 1 and ctx.params["threads_per_job"] == 1
