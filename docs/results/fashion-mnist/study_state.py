"""The Fashion-MNIST study's work so far, in one small file that survives the machine.

The study (run-study.sh) takes days of CPU, longer than a machine may last; a new machine starts
from the repository alone. `save` packs what a resumed study needs into one tar.xz: every trial's
run.h5 and train.log (a finished trial is then "done earlier": its figures come from run.h5) and
the checkpoint of each trial that is not done (it resumes from there); checkpoints of done trials,
which only a longer run of another kind of study would continue from, are left out. Run folders
(the noise-scale runs) keep their checkpoints. `restore` unpacks it into a studies folder and
prints the commit the trials were trained with: resume the study from a checkout of that commit,
since a trial's folder name hashes the defaults of the code that runs it.

    python docs/results/fashion-mnist/study_state.py save STUDIES_DIR FILE
    python docs/results/fashion-mnist/study_state.py restore FILE STUDIES_DIR

`save` writes FILE atomically and records the commit of the checkout that the minigrad it imports
comes from (run it with the pinned checkout's Python). `restore` never overwrites a file that is already there: local work is
newer than the file's.
"""
import io
import json
import os
import subprocess
import sys
import tarfile

import minigrad
from minigrad.cli.atomic import atomic_write
from minigrad.cli.checkpoint import checkpoint_path
from minigrad.cli.runlog import RUN_FILE
from minigrad.cli.study.trials import LOG_FILE, TRIALS, trial_mode

PIN = "PIN.json"   # in the archive: the commit the trials were trained with


def members(studies):
    """(path relative to `studies`) of every file `save` keeps, sorted."""
    kept = []
    for study in sorted(os.listdir(studies)):
        root = os.path.join(studies, study)
        if os.path.isdir(os.path.join(root, TRIALS)):
            for name in sorted(os.listdir(os.path.join(root, TRIALS))):
                folder = os.path.join(root, TRIALS, name)
                kept += _run_files(folder, checkpoint=trial_mode(folder, prune=True) != "done")
        elif os.path.isfile(os.path.join(root, RUN_FILE)):   # a run folder
            kept += _run_files(root, checkpoint=True)
    return [os.path.relpath(path, studies) for path in kept]


def _run_files(folder, checkpoint):
    names = [RUN_FILE, LOG_FILE] + ([os.path.basename(checkpoint_path(folder))] if checkpoint else [])
    return [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]


def save(studies, path):
    commit = subprocess.run(["git", "-C", os.path.dirname(minigrad.__file__), "rev-parse", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()

    def write(tmp):
        with tarfile.open(tmp, mode="w:xz") as tar:
            pin = json.dumps({"commit": commit}).encode()
            info = tarfile.TarInfo(PIN)
            info.size = len(pin)
            tar.addfile(info, io.BytesIO(pin))
            for name in members(studies):
                tar.add(os.path.join(studies, name), arcname=name)
    atomic_write(path, write)
    return commit


def restore(path, studies):
    """Unpack `path` into `studies` (created), keeping files already there; returns the commit."""
    os.makedirs(studies, exist_ok=True)
    with tarfile.open(path, "r:xz") as tar:
        commit = json.load(tar.extractfile(PIN))["commit"]
        for member in tar.getmembers():
            if member.name != PIN and not os.path.exists(os.path.join(studies, member.name)):
                tar.extract(member, studies, filter="data")
    return commit


def main(argv):
    if len(argv) != 3 or argv[0] not in ("save", "restore"):
        sys.exit(__doc__.split("\n\n")[2])
    if argv[0] == "save":
        print(f"saved {argv[2]} (trained with {save(argv[1], argv[2])})")
    else:
        print(f"restored into {argv[2]}; resume from commit {restore(argv[1], argv[2])}")


if __name__ == "__main__":
    main(sys.argv[1:])
