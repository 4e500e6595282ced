"""Go on with the Fashion-MNIST study on a machine that may be new, keeping its work safe.

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
4. meanwhile saves the work every --save-every seconds into in-progress.tar.xz, and commits
   that file, if it changed, once --commit-every seconds have passed since its last commit,
   after each step and when the driver stops. The file is committed alone, from the working
   tree (`git commit --only`), never left staged, so that a person's plain `git commit` in the
   same checkout meanwhile neither takes it along nor has their staged work taken (`git commit
   -a` or `git add -u` would take it: commit named paths). A failed save or commit is logged
   (run-study.log and stderr) and tried again at the next tick.

SIGTERM (a session's end) stops the driver cleanly: the running step's processes get it too
and write their checkpoints, the save already on disk is committed at once, then the driver
waits for those processes, saves and commits once more. Saves run a copy of study_state.py
taken at the start. The driver refuses to start where git could not commit (a stale
.git/index.lock, no committer identity).

    python docs/results/fashion-mnist/continue_study.py STUDIES_DIR --steps 8,2,6,5,11,10
        [--jobs 2] [--checkout ../study-run] [--venv ../venv-study] [--pin COMMIT]
        [--save-every 900] [--commit-every 3600]

Run it with the Python of an environment that has minigrad installed (the README's: restoring
imports study_state.py, which imports minigrad). --pin is needed only when there is no archive
yet (the study's start); with one, it must name the archive's commit. The checkout must be a
clean checkout of that commit, and its environment must import minigrad from it. Fashion-MNIST
must be installed (`apt-get install -y dataset-fashion-mnist`).

Putting a finished step on the results page stays a person's work, since the page says what the
figures mean: copy each of its studies' summary (scaling.h5, sensitivity.h5 or compare.h5) and
recheck-diverged.md from STUDIES_DIR/NAME/ to docs/results/fashion-mnist/NAME/; in
docs/results/preface.md add the folder to the `minigrad report` command, its count of rechecked
trials to the divergence bullet and the step to "So far"; run that command from the
repository's root; write what the figures say into docs/results/discussion.md (only figures the
page computes); then run tests/test_results_doc.py, test_readme.py and test_docs_prose.py.
(LeNet-5's steps 5 and 10 share one study: step 10's summary holds step 5's trials too.)
"""
import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHIVE = os.path.join(HERE, "in-progress.tar.xz")
STEPS_DONE = "steps-done.json"   # in STUDIES_DIR, saved with the archive
RECHECK_PAGE = "recheck-diverged.md"   # in each study folder, saved with the archive
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


class Stop:
    """The driver's SIGTERM handler (a session's end). It never raises: raised inside a save or
    a `git commit`, it would kill git and leave .git/index.lock behind, which fails every later
    commit. It records the request, ignores repeats (the way out must not be cut short), and
    passes SIGTERM on to the process group of the step running (run-study.sh, its study and
    trials: each trial writes its checkpoint and exits); run_steps then waits for that group to
    end and stops."""

    def __init__(self, at_once=None):
        self.requested = False
        self.group = None   # the process group of the running step or recheck, if any
        self.at_once = at_once   # called once, as soon as the request is seen outside the handler

    def first_aid(self):
        """Call `at_once` (main's: commit the save already on disk), once."""
        action, self.at_once = self.at_once, None
        if action is not None:
            action()

    def __call__(self, signum, frame):
        signal.signal(signum, signal.SIG_IGN)
        self.requested = True
        self.forward()

    def forward(self):
        if self.group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.group, signal.SIGTERM)

    def run(self, command, env, log, grace=120):
        """Run `command` in a new process group (forwarded SIGTERM, see above); returns its
        status. After a stop request, first waits up to `grace` s for every process of the
        group to end (the trials' checkpoints), so that the last save finds them written."""
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.group = child.pid
        if self.requested:   # the request came between Popen and the line above
            self.forward()
        status = child.wait()
        if self.requested:
            self.first_aid()   # before the wait below: a SIGKILL may follow the SIGTERM soon
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(child.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        self.group = None
        return status


def run_steps(steps, studies_dir, script, bin_dir, jobs, log, after_step=lambda step: None,
              stop=None):
    """Run each step of `steps` not yet done with run-study.sh, recheck its studies, record it
    as done and call `after_step(step)`. A failed step or recheck raises SystemExit, the step
    not recorded (its trials resume on the next call); so does a stop request (`stop`, a
    Stop), once the running step's processes have ended. Returns the steps run."""
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"],
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    stop = stop or Stop()
    studies = step_studies(script)
    ran = []

    def stamp(step, what):
        log.write(f"=== step {step} {what} {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}\n")
        log.flush()

    def check(step, status, what):
        if stop.requested:
            stamp(step, "stopped")
            raise SystemExit(f"continue_study: stopped (SIGTERM) in step {step}; its trials "
                             "resume on the next call")
        if status != 0:
            stamp(step, "failed")
            raise SystemExit(f"continue_study: {what} failed: see the log")

    for step in steps:
        if step in steps_done(studies_dir):
            continue
        check(step, 0, "")   # a request during the last step's save and commit
        stamp(step, "start")
        check(step, stop.run(["bash", script, studies_dir, str(jobs), str(step), str(step)],
                             env, log), f"step {step} of {script}")
        for name in studies.get(step, []):
            folder = os.path.join(studies_dir, name)
            check(step, stop.run([os.path.join(bin_dir, "minigrad"), "recheck-diverged", folder,
                                  "--jobs", "1", "--out",
                                  os.path.join(folder, RECHECK_PAGE)], env, log),
                  f"recheck-diverged {folder}")
        mark_done(studies_dir, step)
        stamp(step, "done")
        ran.append(step)
        after_step(step)
    return ran


def git(repo, *args, check=True, timeout=120):
    """git's output; with `check`, a failure raises RuntimeError with git's own message."""
    done = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])}: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def resolve(repo, commit):
    """The full hash of `commit` (a hash, a branch, a tag), or an error naming it."""
    found = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet",
                            f"{commit}^{{commit}}"], capture_output=True, text=True)
    if found.returncode != 0 or not commit:
        raise SystemExit(f"continue_study: {commit!r} is not a commit of {repo}")
    return found.stdout.strip()


class Keeper:
    """Saves the study into ARCHIVE with the pinned Python (the archive records its commit) and
    commits ARCHIVE alone. Two saves never overlap, nor two commits (a lock each); a commit may
    run during a save (the save replaces the file whole: the commit takes the old or the new
    one). A failure is logged and the next tick tries again, a failed commit at the next tick
    whatever the hour: losing one save must not stop the study."""

    def __init__(self, studies_dir, python, repo, archive=ARCHIVE, log=sys.stderr,
                 state=os.path.join(HERE, "study_state.py"), save_timeout=1800):
        self.studies_dir, self.python, self.repo, self.archive, self.log, self.state = \
            studies_dir, python, repo, archive, log, state
        self.save_timeout = save_timeout
        self.save_lock, self.commit_lock = threading.Lock(), threading.Lock()
        self.last_commit = time.monotonic()
        self.pending = False    # a commit failed: the next tick commits
        self.stopping = False   # the driver is on its way out: the thread starts no save

    def save(self):
        with self.save_lock:
            done = subprocess.run([self.python, self.state, "save", self.studies_dir,
                                   self.archive], capture_output=True, text=True,
                                  timeout=self.save_timeout)
            if done.returncode != 0:
                raise RuntimeError(f"study_state.py save: {done.stderr.strip()[-500:]}")

    def commit(self, why, tries=10):
        """Commit ARCHIVE alone, if it differs from HEAD's. The file is committed from the
        working tree (`git commit --only`), never left staged: staged, a person's own
        `git commit` at that moment would take it along. Only its first commit, while
        untracked, goes through `git add` (undone if the commit fails). A commit that finds
        .git/index.lock (a person's git at work) is tried again a second later, `tries` times."""
        with self.commit_lock:
            name = os.path.relpath(self.archive, self.repo)
            added = False
            try:
                if subprocess.run(["git", "-C", self.repo, "ls-files", "--error-unmatch", "--",
                                   name], capture_output=True).returncode != 0:
                    self._git(tries, "add", "--", name)
                    added = True
                elif subprocess.run(["git", "-C", self.repo, "diff", "--quiet", "HEAD", "--",
                                     name]).returncode == 0:
                    self.pending = False
                    return False   # the same as the last commit's
                self._git(tries, "commit", "-q", "--only", "-m",
                          f"The Fashion-MNIST study's work so far ({why})", "--", name)
            except Exception:
                self.pending = True
                if added:
                    with contextlib.suppress(Exception):
                        self._git(tries, "reset", "-q", "--", name)
                raise
            self.pending = False
            self.last_commit = time.monotonic()
            return True

    def _git(self, tries, *args):
        for attempt in range(tries):
            try:
                return git(self.repo, *args)
            except RuntimeError as error:
                if "index.lock" not in str(error) or attempt == tries - 1:
                    raise
                time.sleep(1)

    def complain(self, message):
        """Into the log, and to stderr (the log is in the studies folder, lost with it)."""
        message = f"continue_study: {message}\n"
        for out in (self.log, sys.stderr):
            out.write(message)
            out.flush()

    def keep(self, why, save=True):
        """Save (unless `save` is false) then commit, logging a failure instead of raising it."""
        try:
            if save:
                self.save()
            self.commit(why)
        except Exception as error:   # noqa: BLE001 (any failure: the next tick tries again)
            self.complain(f"keeping the study's work failed ({why}): {error}")

    def every(self, save_every, commit_every):
        """A thread that saves every `save_every` s and commits once `commit_every` s have
        passed since the last commit (a commit after a step counts), or a commit failed."""
        def loop():
            while True:
                time.sleep(save_every)
                if self.stopping:
                    return
                if self.pending or time.monotonic() - self.last_commit >= commit_every:
                    self.keep("saved on the hour")
                else:
                    try:
                        self.save()
                    except Exception as error:   # noqa: BLE001
                        self.complain(f"save failed: {error}")
        threading.Thread(target=loop, daemon=True).start()


def check_git(repo):
    """Refuse to start where no commit could be made: a .git/index.lock left by a killed git
    (it fails every commit, the driver's and a person's), or no committer identity. Removes the
    temporary files of saves cut short (atomic_write's, beside the archive)."""
    lock = os.path.join(git(repo, "rev-parse", "--absolute-git-dir"), "index.lock")
    if os.path.exists(lock):
        raise SystemExit(f"continue_study: {lock} exists: a git command is running, or one was "
                         "killed and left it; remove it once no git is running")
    try:
        git(repo, "var", "GIT_COMMITTER_IDENT")
    except RuntimeError as error:
        raise SystemExit(f"continue_study: git cannot commit here ({error}): set user.name "
                         "and user.email") from None
    for tmp in glob.glob(os.path.join(os.path.dirname(ARCHIVE),
                                      "." + os.path.basename(ARCHIVE) + ".*.tmp")):
        os.remove(tmp)


def prepare(args, repo, state):
    """Restore the archive, then make the pinned checkout and its environment if missing and
    check them (the pinned code must run `state`, the driver's copy of study_state.py); returns
    the pinned environment's bin folder."""
    check_git(repo)
    pin = resolve(repo, args.pin) if args.pin is not None else None
    if os.path.isfile(ARCHIVE):
        out = subprocess.run([sys.executable, state, "restore", ARCHIVE, args.studies_dir],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"continue_study: restoring {ARCHIVE}: {out.stderr.strip()}")
        sys.stderr.write(out.stderr)   # the warning of a dirty pinned checkout, if any
        archived = re.search(r"trained with commit ([0-9a-f]{40})", out.stdout).group(1)
        if pin is not None and pin != archived:
            raise SystemExit(f"continue_study: --pin {args.pin} is not {archived}, the commit "
                             f"the archived trials were trained with")
        pin = archived
    elif pin is None:
        raise SystemExit(f"continue_study: no {ARCHIVE} to resume from: give --pin COMMIT")
    os.makedirs(args.studies_dir, exist_ok=True)
    if not os.path.isdir(args.checkout):
        git(repo, "worktree", "add", "--detach", args.checkout, pin)
    if git(args.checkout, "rev-parse", "HEAD") != pin or \
            git(args.checkout, "status", "--porcelain", "--untracked-files=no"):
        raise SystemExit(f"continue_study: {args.checkout} is not a clean checkout of {pin}, "
                         "the commit the trials are trained with")
    bin_dir = os.path.join(args.venv, "bin")
    if not os.path.isfile(os.path.join(bin_dir, "minigrad")):
        subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
        subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", "-e",
                        args.checkout + "[plot]"], check=True)
    # the pinned code must import what study_state.py needs and know the commands run here
    where = subprocess.run([os.path.join(bin_dir, "python"), "-c",
                            "import minigrad, os; print(os.path.dirname(minigrad.__file__))"],
                           capture_output=True, text=True, cwd="/").stdout.strip()   # (not ./)
    if os.path.realpath(os.path.dirname(where or "/")) != os.path.realpath(args.checkout):
        raise SystemExit(f"continue_study: {args.venv} does not import minigrad from "
                         f"{args.checkout}")
    for check in ([os.path.join(bin_dir, "python"), "-c",
                   "import importlib.util as u, sys; s = u.spec_from_file_location('s', "
                   "sys.argv[1]); s.loader.exec_module(u.module_from_spec(s))", state],
                  [os.path.join(bin_dir, "minigrad"), "recheck-diverged", "--help"]):
        done = subprocess.run(check, capture_output=True, text=True, cwd="/")
        if done.returncode != 0:
            raise SystemExit(f"continue_study: the pinned code cannot run {check[-1]}: "
                             f"{done.stderr.strip()[-300:]}")
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
    parser.add_argument("--pin", default=None,
                        help="the commit to train with; needed without an archive, and must be "
                             "the archive's commit with one")
    parser.add_argument("--save-every", type=float, default=900)
    parser.add_argument("--commit-every", type=float, default=3600)
    args = parser.parse_args(argv)
    repo = git(HERE, "rev-parse", "--show-toplevel")
    parent = os.path.dirname(repo)
    args.checkout = os.path.abspath(args.checkout or os.path.join(parent, "study-run"))
    args.venv = os.path.abspath(args.venv or os.path.join(parent, "venv-study"))
    args.studies_dir = os.path.abspath(args.studies_dir)
    steps = [int(s) for s in args.steps.split(",")]
    # saves run the copy taken now: an edit of study_state.py in the checkout meanwhile (a
    # person's work, a branch switched) cannot break them
    state = shutil.copy(os.path.join(HERE, "study_state.py"),
                        tempfile.mkdtemp(prefix="continue-study-"))
    bin_dir = prepare(args, repo, state)
    script = os.path.join(args.checkout, "docs", "results", "fashion-mnist", "run-study.sh")
    with open(os.path.join(args.studies_dir, "run-study.log"), "a") as log:
        keeper = Keeper(args.studies_dir, os.path.join(bin_dir, "python"), repo, log=log,
                        state=state)
        # the session's end sends SIGTERM: at once a commit of the save already on disk (quick,
        # in case a SIGKILL follows), then the steps stop, and a last save and commit
        stop = Stop(lambda: keeper.keep("the last save before the driver stopped", save=False))
        signal.signal(signal.SIGTERM, stop)
        keeper.every(args.save_every, args.commit_every)
        try:
            run_steps(steps, args.studies_dir, script, bin_dir, args.jobs, log,
                      lambda step: keeper.keep(f"step {step} done"), stop)
        finally:
            keeper.stopping = True
            if stop.requested:
                stop.first_aid()
            keeper.keep("the driver stopped")
    print(f"continue_study: steps {steps_done(args.studies_dir)} are done")


if __name__ == "__main__":
    main()
