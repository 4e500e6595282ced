"""The run folder (--out) around its log and checkpoint: checked writable before training,
cleared of an old run for --overwrite, and holding process.json, the pid and host of the
process writing the run (for `minigrad runs` to tell a live run from a killed one)."""
import contextlib
import json
import os
import shutil
import socket
import tempfile

from .. import runlog
from ..atomic import atomic_write
from ..checkpoint import CHECKPOINT_FILE, KEPT_FOLDER
from ..common import UserError

PROCESS_FILE = "process.json"   # the pid and host of the process writing the run


def check_writable(out):
    """Check, before any training, that files can be written in `out` (UserError naming the
    folder otherwise); folders made for the check are removed again (a usage error found
    later must leave nothing behind)."""
    made, path = [], os.path.abspath(out)
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise UserError(f"--out {out!r} is not writable: {e.strerror or e}") from None
    finally:
        for folder in made:   # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def make_run_folder(out, overwrite):
    """The folder of a new run, created; with overwrite, the old run's run.h5 and checkpoints
    (the kept ones too) removed from it."""
    os.makedirs(out, exist_ok=True)
    if overwrite:
        for fname in (runlog.RUN_FILE, CHECKPOINT_FILE):
            if os.path.exists(os.path.join(out, fname)):
                os.remove(os.path.join(out, fname))
        if os.path.isdir(os.path.join(out, KEPT_FOLDER)):   # the old run's kept ones
            shutil.rmtree(os.path.join(out, KEPT_FOLDER))


def write_process_file(out):
    """OUT/process.json: this process's pid and host, for `minigrad runs` to tell a live run
    from one that was killed (status "running" in run.h5, but no such process: "stale")."""
    record = {"pid": os.getpid(), "host": socket.gethostname()}

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(record, fh)
    atomic_write(os.path.join(out, PROCESS_FILE), write)
