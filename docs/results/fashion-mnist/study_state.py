"""The Fashion-MNIST study's work so far, in one small file that survives the machine.

The study (run-study.sh) takes days of CPU, longer than a machine may last; a new machine starts
from the repository alone. `save` packs what a resumed study needs into one tar.xz: every trial's
run.h5 and train.log (a finished trial is then "done earlier": its figures come from run.h5), the
checkpoint of each trial that is not done (it resumes from there), and the same for the reruns of
`minigrad recheck-diverged` (STUDY/rechecks/), each study's summary (its scaling.h5,
sensitivity.h5 or compare.h5, and recheck-diverged.md: what the results page is made from, and
the driver does not make them again for a step it has recorded as done), and continue_study.py's
record of the finished steps. Left out: the checkpoints of done trials, pruned
ones included (a study that prunes, as every scaling study of run-study.sh does, counts a
pruned trial done; one run without pruning, --no-prune, under mpiexec or with --search tpe,
would train it again from its start), and any checkpoint larger than MAX_CHECKPOINT (an MLP's
K-FAC state, 9 MB: its trial, minutes long, starts again; LeNet-5's trust-region runs, hours
long, have checkpoints of a few hundred kB). Run folders (the noise-scale runs) keep theirs. `restore`
unpacks the file into a studies folder and prints the commit the trials were trained with:
resume the study from a checkout of that commit, since a trial's folder name hashes the
defaults of the code that runs it.

    python docs/results/fashion-mnist/study_state.py save STUDIES_DIR FILE
    python docs/results/fashion-mnist/study_state.py restore FILE STUDIES_DIR

`save` writes FILE atomically and records the commit of the checkout that the minigrad it imports
comes from (run it with the pinned checkout's Python), and whether that checkout had uncommitted
changes (`restore` then warns: the commit alone is not the code). `restore` never overwrites a
file that is already there (local work is newer than the file's), and refuses a member that is
not a plain file inside the studies folder. Each save committed to the repository is a new
binary blob in its history, but what is not committed is lost with its machine, and a session
can end without warning: commit a save about every hour, not every one.
"""
import contextlib
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import minigrad
from minigrad.cli.atomic import atomic_write
from minigrad.cli.checkpoint import checkpoint_path
from minigrad.cli.recheck import NOT_ENDED, RECHECKS
from minigrad.cli.report_data import STUDY_FILES
from minigrad.cli.runlog import RUN_FILE
from minigrad.cli.study.results import trial_result
from minigrad.cli.study.trials import LOG_FILE, TRIALS, trial_mode

PIN = "PIN.json"   # in the archive: the commit the trials were trained with
MAX_CHECKPOINT = 2 ** 21   # bytes: larger checkpoints are left out (the module docstring)
STEPS_DONE = "steps-done.json"   # continue_study.py's record of the finished steps
RECHECK_PAGE = "recheck-diverged.md"   # continue_study.py's name for a study's recheck


def members(studies):
    """(path relative to `studies`) of every file `save` keeps, sorted; an error if `studies` is
    a study folder itself, not the folder of studies."""
    if os.path.isdir(os.path.join(studies, TRIALS)):
        raise SystemExit(f"{studies!r} is a study folder: give the folder that holds the studies")
    kept = []
    for study in sorted(os.listdir(studies)):
        root = os.path.join(studies, study)
        if os.path.isdir(os.path.join(root, TRIALS)):
            for name in sorted(os.listdir(os.path.join(root, TRIALS))):
                folder = os.path.join(root, TRIALS, name)
                kept += _run_files(folder, checkpoint=trial_mode(folder, prune=True) != "done")
            for folder in sorted(glob.glob(os.path.join(root, RECHECKS, "*"))):
                kept += _run_files(folder, checkpoint=trial_result(folder)["status"] in NOT_ENDED)
            kept += [os.path.join(root, n) for n in (*STUDY_FILES, RECHECK_PAGE)
                     if os.path.isfile(os.path.join(root, n))]
        elif os.path.isfile(os.path.join(root, RUN_FILE)):   # a run folder
            kept += _run_files(root, checkpoint=True)
    if os.path.isfile(os.path.join(studies, STEPS_DONE)):
        kept.append(os.path.join(studies, STEPS_DONE))
    return [os.path.relpath(path, studies) for path in kept]


def _run_files(folder, checkpoint):
    files = [os.path.join(folder, n) for n in (RUN_FILE, LOG_FILE)]
    if checkpoint and os.path.isfile(checkpoint_path(folder)) and \
            os.path.getsize(checkpoint_path(folder)) <= MAX_CHECKPOINT:
        files.append(checkpoint_path(folder))
    return [f for f in files if os.path.isfile(f)]


def _pin():
    """{"commit": HEAD, "dirty": uncommitted changes?} of the checkout minigrad is imported from."""
    here = os.path.dirname(minigrad.__file__)
    git = lambda *args: subprocess.run(["git", "-C", here, *args], check=True,  # noqa: E731
                                       capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def save(studies, path):
    """Write the archive; returns the pin ({"commit", "dirty"})."""
    names = members(studies)   # before the write: an error here is not the archive's
    if not names:
        raise SystemExit(f"nothing to save in {studies!r}: no study or run folder in it")
    pin = _pin()

    def write(tmp):
        with tarfile.open(tmp, mode="w:xz") as tar:
            data = json.dumps(pin).encode()
            info = tarfile.TarInfo(PIN)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for name in names:
                with contextlib.suppress(FileNotFoundError):   # a checkpoint its trial removed
                    # the size is the open file's: a trial that replaces the file meanwhile
                    # (atomically, with a new one) cannot make tar copy part of it
                    with open(os.path.join(studies, name), "rb") as f:
                        tar.addfile(tar.gettarinfo(arcname=name, fileobj=f), f)
    atomic_write(path, write)
    return pin


def restore(path, studies):
    """Unpack `path` into `studies` (created), keeping files already there; returns the pin."""
    os.makedirs(studies, exist_ok=True)
    root = os.path.realpath(studies)
    with tarfile.open(path, "r:xz") as tar:
        pin = json.load(tar.extractfile(PIN))
        for member in tar.getmembers():
            if member.name == PIN:
                continue
            target = os.path.realpath(os.path.join(root, member.name))
            if not member.isfile() or os.path.commonpath([root, target]) != root:
                raise SystemExit(f"{path}: refusing {member.name!r}: not a plain file inside "
                                 f"{studies!r}")
            if not os.path.exists(target):
                # written whole or not at all (atomic_write): a restore cut short leaves no
                # part file, which a later restore would keep as it is
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)

                def write(tmp, source=source, mtime=member.mtime):
                    with open(tmp, "wb") as out:
                        shutil.copyfileobj(source, out)
                    os.utime(tmp, (mtime, mtime))
                atomic_write(target, write)
    return pin


def main(argv):
    if len(argv) != 3 or argv[0] not in ("save", "restore"):
        sys.exit(__doc__.split("\n\n")[2])
    pin = save(argv[1], argv[2]) if argv[0] == "save" else restore(argv[1], argv[2])
    print(f"{'saved ' + argv[2] if argv[0] == 'save' else 'restored into ' + argv[2]}: trained "
          f"with commit {pin['commit']}")
    if pin.get("dirty"):   # (archives of the first version have no flag)
        print("warning: that checkout had uncommitted changes: the commit alone is not the code "
              "the trials ran", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
