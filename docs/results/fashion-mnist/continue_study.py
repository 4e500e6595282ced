"""Go on with the Fashion-MNIST study on a machine that may be new, keeping its work in the repository.

The study (run-study.sh) takes days of CPU; a machine here lasts a session, and anything left
only on it is lost with it. This driver does what a session must do, in order, unattended:

1. restores the study's work from in-progress.tar.xz beside this script (study_state.py), which
   names the commit the trials were trained with (the pin);
2. makes a checkout of the pin (`git worktree add --detach`) and a virtual environment with that
   checkout installed, unless they are there already (a trial's folder name hashes the defaults
   of the code that runs it: only the pinned code resumes the trials);
3. runs the given steps of the pinned run-study.sh, one after the other, skipping those recorded
   as done in STUDIES_DIR/steps-done.json; after a step, reruns each of its studies' trials that
   the divergence rule stopped (`minigrad recheck-diverged`, writing recheck-diverged.md beside
   the study's summary file) and records the step as done;
4. meanwhile saves the work every --save-every seconds into in-progress.tar.xz and commits that
   file every --commit-every seconds (and after each step), with `git commit --only`, so that
   nothing else staged in the repository is committed with it.

    python docs/results/fashion-mnist/continue_study.py STUDIES_DIR --steps 8,2,6,5,11,10
        [--jobs 2] [--checkout ../study-run] [--venv ../venv-study] [--pin COMMIT]

Run it with the Python of an environment that has minigrad installed (the README's: restoring
imports study_state.py, which imports minigrad). --pin is needed only when there is no archive
yet (the study's start). Fashion-MNIST must be
installed (`apt-get install -y dataset-fashion-mnist`). Putting the finished studies on the
results page (their summary files copied under docs/results/fashion-mnist/, the report command
and the preface extended) stays a person's work: the page says what the figures mean.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHIVE = os.path.join(HERE, "in-progress.tar.xz")
STEPS_DONE = "steps-done.json"   # in STUDIES_DIR, saved with the archive
DATA = "/usr/share/datasets/fashion-mnist"
STUDY_KINDS = ("scaling", "sensitivity", "compare")


def step_studies(script):
    """{step: [study folder names]} of the study commands in run-study.sh (`step N && minigrad
    scaling|sensitivity|compare ... --out "$out/NAME"`, continuation lines included); the
    reference runs (`minigrad train`) are run folders, not studies, and are left out."""
    studies, step, command = {}, None, ""
    for line in open(script).read().splitlines():
        start = re.match(r"step (\d+) && minigrad (\w[\w-]*)", line)
        if start:
            step, command = int(start.group(1)), start.group(2)
        if step is not None:
            out = re.search(r'--out "\$out/([\w.-]+)"', line)
            if out and command in STUDY_KINDS:
                studies.setdefault(step, []).append(out.group(1))
            if not line.rstrip().endswith("\\"):
                step = None
    return studies


def steps_done(studies_dir):
    path = os.path.join(studies_dir, STEPS_DONE)
    return json.load(open(path)) if os.path.isfile(path) else []


def mark_done(studies_dir, step):
    done = steps_done(studies_dir) + [step]
    tmp = os.path.join(studies_dir, STEPS_DONE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(done, f)
    os.replace(tmp, os.path.join(studies_dir, STEPS_DONE))


def run_steps(steps, studies_dir, script, bin_dir, jobs, log, after_step=lambda step: None):
    """Run each step of `steps` not yet done with run-study.sh, then recheck its studies; stops
    at the first step that fails (its trials resume on the next call). Returns the steps run."""
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"],
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    studies = step_studies(script)
    ran = []
    for step in steps:
        if step in steps_done(studies_dir):
            continue
        stamp = lambda what: log.write(f"=== step {step} {what} "   # noqa: E731
                                       f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}\n")
        stamp("start")
        log.flush()
        if subprocess.run(["bash", script, studies_dir, str(jobs), str(step), str(step)],
                          env=env, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            stamp("failed")
            raise SystemExit(f"continue_study: step {step} of {script} failed: see the log")
        for name in studies.get(step, []):
            folder = os.path.join(studies_dir, name)
            if subprocess.run([os.path.join(bin_dir, "minigrad"), "recheck-diverged", folder,
                               "--jobs", "1", "--out",
                               os.path.join(folder, "recheck-diverged.md")],
                              env=env, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                stamp("failed")
                raise SystemExit(f"continue_study: recheck-diverged {folder} failed: see the log")
        mark_done(studies_dir, step)
        stamp("done")
        log.flush()
        ran.append(step)
        after_step(step)
    return ran


def git(repo, *args, check=True):
    return subprocess.run(["git", "-C", repo, *args], check=check, capture_output=True,
                          text=True).stdout.strip()


class Keeper:
    """Saves the study into ARCHIVE (with the pinned Python: the archive records its commit)
    and commits ARCHIVE alone; `every` runs both on a timer in a thread."""

    def __init__(self, studies_dir, python, repo, archive=ARCHIVE):
        self.studies_dir, self.python, self.repo, self.archive = \
            studies_dir, python, repo, archive
        self.lock = threading.Lock()

    def save(self):
        with self.lock:
            subprocess.run([self.python, os.path.join(HERE, "study_state.py"), "save",
                            self.studies_dir, self.archive], check=True, capture_output=True)

    def commit(self, why, tries=5):
        """Commit ARCHIVE alone if it changed; retried while another git holds the index."""
        with self.lock:
            for attempt in range(tries):
                try:
                    git(self.repo, "add", "--", self.archive)
                    if subprocess.run(["git", "-C", self.repo, "diff", "--cached", "--quiet",
                                       "--", self.archive]).returncode == 0:
                        return False   # the same as the last commit's
                    git(self.repo, "commit", "-q", "--only", "-m",
                        f"The Fashion-MNIST study's work so far ({why})", "--", self.archive)
                    return True
                except subprocess.CalledProcessError:
                    if attempt == tries - 1:
                        raise
                    time.sleep(10)

    def every(self, save_every, commit_every):
        def loop():
            last_commit = time.monotonic()
            while True:
                time.sleep(save_every)
                try:
                    self.save()
                    if time.monotonic() - last_commit >= commit_every:
                        self.commit("saved on the hour")
                        last_commit = time.monotonic()
                except (subprocess.CalledProcessError, OSError) as error:   # the next try
                    print(f"continue_study: save failed: {error}", file=sys.stderr)
        threading.Thread(target=loop, daemon=True).start()


def prepare(args, repo):
    """Restore the archive, then make the pinned checkout and its environment if missing;
    returns the pinned environment's bin folder."""
    pin = args.pin
    if os.path.isfile(ARCHIVE):
        out = subprocess.run([sys.executable, os.path.join(HERE, "study_state.py"), "restore",
                              ARCHIVE, args.studies_dir], check=True, capture_output=True,
                             text=True).stdout
        pin = re.search(r"trained with commit ([0-9a-f]{40})", out).group(1)
    elif pin is None:
        raise SystemExit(f"continue_study: no {ARCHIVE} to resume from: give --pin COMMIT")
    os.makedirs(args.studies_dir, exist_ok=True)
    if not os.path.isdir(args.checkout):
        git(repo, "worktree", "add", "--detach", args.checkout, pin)
    head = git(args.checkout, "rev-parse", "HEAD")
    if not head.startswith(pin) and not pin.startswith(head):
        raise SystemExit(f"continue_study: {args.checkout} is at {head}, the trials were "
                         f"trained with {pin}")
    bin_dir = os.path.join(args.venv, "bin")
    if not os.path.isfile(os.path.join(bin_dir, "minigrad")):
        subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
        subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", "-e",
                        args.checkout + "[plot]"], check=True)
    if not os.path.isdir(DATA):
        raise SystemExit(f"continue_study: no Fashion-MNIST in {DATA}: "
                         "apt-get install -y dataset-fashion-mnist")
    return bin_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies_dir")
    parser.add_argument("--steps", required=True,
                        help="comma-separated steps of run-study.sh, in the order to run them")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--checkout", default=None, help="the pinned checkout (made if missing)")
    parser.add_argument("--venv", default=None, help="its virtual environment (made if missing)")
    parser.add_argument("--pin", default=None, help="the commit to train with, without archive")
    parser.add_argument("--save-every", type=float, default=900)
    parser.add_argument("--commit-every", type=float, default=3600)
    args = parser.parse_args(argv)
    repo = git(HERE, "rev-parse", "--show-toplevel")
    parent = os.path.dirname(repo)
    args.checkout = os.path.abspath(args.checkout or os.path.join(parent, "study-run"))
    args.venv = os.path.abspath(args.venv or os.path.join(parent, "venv-study"))
    args.studies_dir = os.path.abspath(args.studies_dir)
    steps = [int(s) for s in args.steps.split(",")]
    bin_dir = prepare(args, repo)
    keeper = Keeper(args.studies_dir, os.path.join(bin_dir, "python"), repo)
    keeper.every(args.save_every, args.commit_every)
    script = os.path.join(args.checkout, "docs", "results", "fashion-mnist", "run-study.sh")
    with open(os.path.join(args.studies_dir, "run-study.log"), "a") as log:
        def after(step):
            keeper.save()
            keeper.commit(f"step {step} done")
        try:
            run_steps(steps, args.studies_dir, script, bin_dir, args.jobs, log, after)
        finally:
            keeper.save()
            keeper.commit("the driver stopped")
    print(f"continue_study: steps {steps_done(args.studies_dir)} are done")


if __name__ == "__main__":
    main()
