"""A throwaway PostgreSQL server for the tests: ``postgres_server()`` and the ``postgres_url``
fixture.

``postgres_server()`` is a context manager. It creates a temporary folder, runs ``initdb`` in it
(trust authentication: no passwords), starts the server with ``pg_ctl`` and creates the database
``minigrad``. It yields a ``Server`` whose ``url`` is a SQLAlchemy URL, e.g.

    postgresql+psycopg://postgres@/minigrad?host=/tmp/minigrad-pg-x1y2z3&port=5432

On leaving, also through an exception, it stops the server (``pg_ctl stop -m fast``) and deletes
the folder. The server listens on a Unix socket in that folder and on no TCP port, so it cannot
collide with another server or another test session on the same machine.

``postgres_url`` is the session-scoped pytest fixture around it; tests/conftest.py imports it, so
one server serves the whole session, and ``fresh_database(url)`` gives a test an empty database
of its own on it.

Where the server runs:

- **Binaries.** ``initdb``, ``pg_ctl`` and ``postgres`` from one folder: the one of ``initdb`` on
  PATH (symbolic links resolved), else Debian's ``/usr/lib/postgresql/<version>/bin``, the newest
  first. Debian's ``postgresql`` package installs them there and does not put them on PATH.
- **Not as root.** ``initdb`` and ``postgres`` refuse to run as root. When the tests run as root,
  the server runs as the ``postgres`` account (Debian's package creates it), else as ``nobody``:
  every command is started with ``subprocess.run(..., user=, group=, extra_groups=[])``, which
  switches the account in the child before it runs, with no ``su``/``runuser`` and no PAM. The
  temporary folder belongs to that account; root's clients can still use its socket. Any other
  user runs the server as itself.
- **Skipped or failed.** Without the binaries, the psycopg driver or an unprivileged account, the
  fixture skips the test with the reason, unless ``MINIGRAD_REQUIRE_POSTGRES=1`` (set by
  ``.ci/run`` after installing Debian's ``postgresql``): then the test fails with it.
"""
import contextlib
import dataclasses
import glob
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

REQUIRE = os.environ.get("MINIGRAD_REQUIRE_POSTGRES") == "1"
BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"      # the role initdb creates; trust authentication lets anyone use it
DATABASE = "minigrad"
PORT = 5432                 # names the socket file only: the server has no TCP port
# The Unix socket only, and no waiting for the disk on any commit (the data may be lost).
SETTINGS = {"listen_addresses": "''", "port": str(PORT), "fsync": "off",
            "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "100"}
TIMEOUT_S = 120             # for each of initdb, start and stop on a busy machine


class Unavailable(Exception):
    """The server cannot run here; the message says what is missing."""


@dataclasses.dataclass
class Server:
    url: str        # SQLAlchemy URL of the database DATABASE
    folder: str     # the temporary folder: data/, the socket and server.log
    pid: int        # the postmaster's process id

    def log(self):
        """The server's log so far (for a failing test's message)."""
        with open(os.path.join(self.folder, "server.log"), errors="replace") as f:
            return f.read()


def find_binaries():
    """The folder that holds all of BINARIES, or raise Unavailable."""
    on_path = shutil.which("initdb")
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda d: _version(os.path.basename(os.path.dirname(d))), reverse=True)
    candidates = ([os.path.dirname(os.path.realpath(on_path))] if on_path else []) + debian
    for folder in candidates:
        if all(os.access(os.path.join(folder, name), os.X_OK) for name in BINARIES):
            return folder
    raise Unavailable("PostgreSQL's initdb, pg_ctl and postgres were not found on PATH or under "
                      "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")


def _version(text):
    return tuple(int(part) if part.isdigit() else -1 for part in text.split("."))


def check_driver():
    """Raise Unavailable unless SQLAlchemy's psycopg (version 3) driver can be imported."""
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"the PostgreSQL driver is missing ({exc}): pip install "
                          '"psycopg[binary]" sqlalchemy') from exc


def server_account():
    """(uid, gid) of the account the server runs as when we are root, None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry.pw_uid, entry.pw_gid
    raise Unavailable("the tests run as root, which initdb and postgres refuse, and there is no "
                      "'postgres' or 'nobody' account to run the server as")


def why_unavailable():
    """None if a server can start here, else the reason it cannot."""
    try:
        find_binaries()
        check_driver()
        server_account()
    except Unavailable as exc:
        return str(exc)
    return None


def require_postgres():
    """Skip the calling test (fail it under MINIGRAD_REQUIRE_POSTGRES=1) if no server can start."""
    reason = why_unavailable()
    if reason is None:
        return
    if REQUIRE:
        pytest.fail(f"MINIGRAD_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a database on a server that lives for the whole test session."""
    require_postgres()
    with postgres_server() as server:
        yield server.url


@contextlib.contextmanager
def postgres_server():
    """Start a server in a new temporary folder; yield its Server; stop it and delete the folder."""
    binaries, account = find_binaries(), server_account()
    check_driver()
    folder = _make_folder(account)
    data = os.path.join(folder, "data")
    try:
        _run(account, folder, [os.path.join(binaries, "initdb"), "-D", data, "-U", SUPERUSER,
                               "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        options = " ".join(f"-c {key}={value}" for key, value in SETTINGS.items())
        _run(account, folder, [os.path.join(binaries, "pg_ctl"), "start", "-D", data, "-w",
                               "-t", str(TIMEOUT_S), "-l", os.path.join(folder, "server.log"),
                               "-o", f"-k {shlex.quote(folder)} {options}"])
        _create_database(folder)
        url = f"postgresql+psycopg://{SUPERUSER}@/{DATABASE}?host={folder}&port={PORT}"
        yield Server(url=url, folder=folder, pid=_postmaster_pid(data))
    finally:
        _stop(binaries, account, folder, data)
        shutil.rmtree(folder, ignore_errors=True)


def _make_folder(account):
    """A new temporary folder owned by the server's account. Under root it goes where that
    account can reach it: the usual temporary folder if every folder above it lets others pass
    (pytest's own temporary folders under /tmp/pytest-of-root do not), else /tmp. /tmp also when
    the usual one's path is too long for the socket's (about 100 bytes on Linux and macOS)."""
    parent = tempfile.gettempdir()
    if len(parent) > 60 or account is not None and not _others_can_pass(parent):
        parent = "/tmp"
    folder = tempfile.mkdtemp(prefix="minigrad-pg-", dir=parent)
    if account is not None:
        os.chown(folder, *account)
    return folder


def _others_can_pass(path):
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)


def _run(account, folder, command):
    """Run one of PostgreSQL's programs as the server's account; raise with its output if it
    fails. It starts in `folder` (root's working folder may be closed to the account), in the C
    locale so that initdb does not depend on which locales the machine has, and without the
    user's PG* variables (PGPORT, PGDATA, ... would override the settings here)."""
    switch = {} if account is None else {"user": account[0], "group": account[1],
                                         "extra_groups": []}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", HOME=folder)
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, **switch)
    if done.returncode != 0:
        log = os.path.join(folder, "server.log")
        tail = open(log, errors="replace").read()[-3000:] if os.path.exists(log) else ""
        raise RuntimeError(f"{os.path.basename(command[0])} {command[1]} exited with "
                           f"{done.returncode}:\n{done.stdout}{done.stderr}{tail}")


def _create_database(folder, name=DATABASE):
    import psycopg
    with psycopg.connect(host=folder, port=PORT, user=SUPERUSER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")


def fresh_database(url):
    """The URL of a new, empty database on the server of `url` (a test that must not see
    another test's tables: the study tests name their Optuna studies after the study folder's
    name, which two tests may share)."""
    folder = url.split("host=", 1)[1].split("&", 1)[0]
    name = f"test_{uuid.uuid4().hex[:12]}"
    _create_database(folder, name)
    return url.replace(f"/{DATABASE}?", f"/{name}?", 1)


def _postmaster_pid(data):
    """The running postmaster's process id, from the first line of data/postmaster.pid; None
    when there is no such file (the server is not running)."""
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            return int(f.readline())
    except (FileNotFoundError, ValueError):
        return None


def _stop(binaries, account, folder, data):
    """Stop the server if it runs: pg_ctl's fast shutdown (clients disconnected, no waiting for
    them), or, should that fail, an immediate one by SIGQUIT to the postmaster."""
    pid = _postmaster_pid(data)
    if pid is None:
        return
    try:
        _run(account, folder, [os.path.join(binaries, "pg_ctl"), "stop", "-D", data,
                               "-m", "fast", "-w", "-t", str(TIMEOUT_S)])
    except (RuntimeError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def is_running(pid):
    """Whether process `pid` exists and has not exited (an exited one that nobody reaped, a
    zombie, counts as gone: pg_ctl's postmaster is not our child, and PID 1 in a container
    may not reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
