"""Where a study's workers meet: an Optuna RDB storage (a relational database), one Optuna study
in it per search (study folder, command, optimizer, batch size).

By default the storage is SQLite in the study folder (STUDY/optuna.db: nothing to start);
`--storage URL` names any database SQLAlchemy reaches (postgresql+psycopg://user@host/db), which
the workers of every machine share. The run folders stay in STUDY/trials/: every worker must see
the same study folder (a shared file system), since a trial one worker began may be continued
from its checkpoint by another.

The Optuna study of a search is named "<study folder's name>/<command>/<optimizer>-b<B>"
(+ "/confirm" for --confirm-seeds' trials): the folder's name, not its path, so that machines
that mount the shared folder at different paths meet in the same study; two study folders of
the same name must not share a storage.

Every worker records a heartbeat for the trial it trains every --heartbeat seconds; a trial
whose heartbeat is older than GRACE_BEATS beats is taken for dead (its worker was killed, its
machine lost) and put back in the queue (cli/study/queue.py).
"""
import contextlib
import os
import time
import warnings

import click

from ..common import UserError

DB_FILE = "optuna.db"   # the default storage, in the study folder
GRACE_BEATS = 4         # missed heartbeats before a running trial counts as dead
RETRIES = 20            # attempts of a storage operation the database refused (busy, locked)
OPEN_ATTEMPTS = 4       # attempts to open the storage


def storage_url(root, url=None):
    """The storage's URL: `url`, or SQLite in the study folder `root`."""
    return url or f"sqlite:///{os.path.abspath(os.path.join(root, DB_FILE))}"


def study_name(root, command, optimizer, batch_size, phase="search"):
    """The Optuna study of one search (the module docstring)."""
    name = f"{os.path.basename(os.path.abspath(root))}/{command}/{optimizer}-b{batch_size}"
    return name if phase == "search" else f"{name}/{phase}"


def quiet_optuna():
    """Optuna's own lines (one per trial at INFO) and its experimental-feature warnings off:
    the study's output is the study's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def open_storage(url, heartbeat, checked=False, create=True):
    """An optuna RDBStorage at `url` with a heartbeat every `heartbeat` seconds (a dead trial
    after GRACE_BEATS of them). SQLite gets one writer at a time (BEGIN IMMEDIATE: a trial is
    claimed by one worker only) and waits up to a minute for a lock; a URL that cannot be
    opened is a click.UsageError naming it. `checked`: the session opened it already (its
    tables exist, their version is right), a worker skips those checks. `create` False: a
    reader, which leaves a database without Optuna's tables as it found it."""
    import optuna

    quiet_optuna()
    sqlite = url.startswith("sqlite")
    kwargs = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=int(heartbeat),
                grace_period=int(GRACE_BEATS * heartbeat), skip_compatibility_check=checked,
                skip_table_creation=checked or not create)
            break
        except ImportError as e:
            raise click.UsageError(f"--storage {safe_url(url)}: its database driver is missing "
                                   f"({e}); for PostgreSQL: pip install "
                                   "'minigrad-curvature[postgres]'")
        except Exception as e:   # a bad URL, no server, a file not writable; or two sessions
            if attempt == OPEN_ATTEMPTS - 1:   # creating the tables at once: try again
                raise click.UsageError(f"--storage {safe_url(url)}: cannot open it: "
                                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
            time.sleep(0.2 * (attempt + 1))
    if sqlite:
        _one_writer(storage.engine)
    return storage


def _one_writer(engine):
    """Make every SQLite transaction BEGIN IMMEDIATE: a read followed by a write (a claim: is
    the trial waiting? then it is mine) holds the write lock from the read on, so no two
    processes claim the same trial. (pysqlite would otherwise begin the transaction only at the
    write, after both had read "waiting".)"""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None   # pysqlite leaves BEGIN to us

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    engine.dispose()   # connections opened before the listeners are dropped


def safe_url(url):
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, user = head.partition("://")
    return f"{scheme}{sep}{user.split(':')[0]}:***@{tail}" if ":" in user else url


def retry(operation):
    """operation(), tried again (up to RETRIES times, waiting a little longer each time) when
    the database refuses it for now (SQLite busy or locked, a dropped connection); a UserError
    (one line) if it still does."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(RETRIES):
        try:
            return operation()
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as e:
            if attempt == RETRIES - 1:
                cause = e.orig if isinstance(e, sqlalchemy.exc.DBAPIError) else e
                text = " ".join(str(cause).split()) or type(cause).__name__
                raise UserError(f"the study's storage refused {RETRIES} times: {text}") from e
            time.sleep(min(0.05 * 2 ** attempt, 2.0))


def load_or_create(storage, name):
    """The Optuna study `name` in `storage`, created (direction minimize: steps to target) if
    no worker created it yet."""
    import optuna

    def load():
        with contextlib.suppress(optuna.exceptions.DuplicatedStudyError):
            return optuna.create_study(storage=storage, study_name=name, direction="minimize")
        return optuna.load_study(storage=storage, study_name=name)
    return retry(load)
