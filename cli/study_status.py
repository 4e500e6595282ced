"""`minigrad study-status STUDY_DIR`: where a study stands, read from its storage while its
workers run (on this machine or others) or after.

One line per search (command, optimizer, batch size; "+confirm" for --confirm-seeds' trials):
its trial folders by the state of their latest Optuna trial (cli/study/queue.py)

    enqueued   waiting for a worker
    running    a worker trains it (its heartbeat is recorded)
    finished   ended by itself: reached the target, used its budget or diverged
    pruned     stopped by scaling's early stopping (cli/study/pruning.py)
    failed     crashed, or its worker died (queued again by the next worker that looks)

and the best so far: the fewest steps to target among the finished trials, with the trial's
hyperparameters. optuna-dashboard reads the same storage (URL) for plots.
"""
import json
import os

import click

from .common import UserError, one_line_errors, table
from .search import HYPERPARAMETERS
from .study import queue, storage

STATES = ("WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL")
HEADER = ("command", "optimizer", "batch", "enqueued", "running", "finished", "pruned", "failed",
          "best")


@click.command("study-status", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("study_dir", type=click.Path(file_okay=False))
@click.option("--storage", "url", default=None, metavar="URL",
              help="The study's database, as given to its workers (default: SQLite in STUDY_DIR).")
@one_line_errors
def study_status(study_dir, url):
    """Trials enqueued, running, finished, pruned and failed per optimizer and batch size of the
    study in STUDY_DIR, and the best so far."""
    if url is None and not os.path.isfile(os.path.join(study_dir, storage.DB_FILE)):
        raise UserError(f"no study in {study_dir!r}: no {storage.DB_FILE} (give --storage URL "
                        "if its workers use another database)")
    import optuna

    full_url = storage.storage_url(study_dir, url)
    if _has_tables(full_url) is False:   # say so, and leave the database as it is
        if url is None:
            raise UserError(f"no study in {study_dir!r}: its {storage.DB_FILE} has no Optuna "
                            "tables")
        raise UserError(f"no study in --storage {storage.safe_url(full_url)}: it has no Optuna "
                        "tables (is it the URL the study's workers were given?)")
    opened = storage.open_storage(full_url, 30, create=False)
    prefix = os.path.basename(os.path.abspath(study_dir)) + "/"
    names = sorted(s.study_name for s in storage.retry(
        lambda: optuna.get_all_study_summaries(opened, include_best_trial=False))
        if s.study_name.startswith(prefix))
    if not names:
        raise UserError(f"no study of the folder {os.path.basename(os.path.abspath(study_dir))!r} "
                        "in the storage")
    rows = [_row(name[len(prefix):], optuna.load_study(study_name=name, storage=opened))
            for name in names]
    click.echo(table(HEADER, rows))


def _has_tables(url):
    """Whether the database at `url` has Optuna's tables (a study was ever created in it);
    None where it cannot be asked (a bad URL, a missing driver, no server: open_storage then
    says which). A SQLite file that does not exist is not created."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and not os.path.isfile(parsed.database or ""):
            return False
        engine = sqlalchemy.create_engine(parsed)
        try:
            return sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception:   # noqa: BLE001 -- open_storage turns it into the one-line error
        return None


def _row(name, study):
    """The table row of the Optuna study `name` (<command>/<optimizer>-b<B>[/confirm])."""
    command, search, *phase = name.split("/")
    optimizer, _, size = search.rpartition("-b")
    trials = queue.latest(study).values()
    counts = [sum(t.state.name == state for t in trials) for state in STATES]
    return (command + "".join(f"+{p}" for p in phase), optimizer, size, *counts, _best(trials))


def _best(trials):
    """"step S: hyperparameters" of the finished trial with the fewest steps to target, or -."""
    reached = [t for t in trials if t.state.name == "COMPLETE"
               and t.user_attrs.get(queue.STEPS, -1) >= 0]
    if not reached:
        return "-"
    best = min(reached, key=lambda t: (t.user_attrs[queue.STEPS], t.user_attrs[queue.INDEX]))
    spec = json.loads(best.user_attrs[queue.SPEC])
    point = " ".join(f"{k}={spec[k]:.3g}" for k in HYPERPARAMETERS if spec.get(k) is not None)
    return f"step {best.user_attrs[queue.STEPS]}: {point}"
