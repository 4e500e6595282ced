"""A worker: one process that takes the trials of a study's searches from their queues in the
storage (cli/study/queue.py), trains each in this process (trials.py execute) with a heartbeat,
records how it ended, and stops when every trial of its searches has ended (trained by it or by
any other worker, on this machine or another), when its session's stop file appears, or when the
process that started it is gone.

A worker with nothing to take while other workers still train waits, and looks for trials whose
worker died (queue.repair) and draws the next points of TPE searches whose trials have all ended
(queue.draw) meanwhile. It looks again after POLL_SECONDS, twice as long each time it finds
nothing, up to MAX_POLL_SECONDS: each look reads every trial of the study (about 0.2 s of CPU
for 800 trials in SQLite), which an idle worker would otherwise take from the trials still
training on the same cores.
"""
import json
import contextlib
import dataclasses
import os
import signal
import time

from . import queue
from .pruning import tighten
from .specs import TPE_DRAW
from .results import trial_result
from .storage import load_or_create, open_storage
from .trials import DONE_EARLIER, STOPPED, TRIALS, execute

POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 4.0
ENDED_BY_ITSELF = ("finished", "failed", "pruned")   # run.h5 statuses of a trial that ended


@dataclasses.dataclass
class Search:
    """The trials of one optimizer at one batch size, in their Optuna study `study`: their
    folder names `names` and options `specs` (in the search's order), their places `indices` in
    the session's list of trials, and the search's bound file (pruning.py; None: no pruning).
    A TPE search has `tpe` (queue.tpe_search) instead of names and specs."""
    study: str
    names: list
    specs: list
    indices: list
    bound: str = None
    tpe: dict = None

    def wanted(self, study):
        """The trial folders of the search (a TPE search's drawn so far)."""
        return set(queue.drawn(study, self.tpe).values()) if self.tpe else set(self.names)

    def complete(self, study, prune):
        """Whether every trial of the search has ended (all of a TPE search's drawn)."""
        wanted = self.wanted(study)
        return (not self.tpe or len(wanted) == self.tpe["trials"]) and \
            queue.complete(study, wanted, prune)


def work(root, searches, url, heartbeat, stop, reports):
    """The worker process's life (the module docstring); `reports` (a multiprocessing queue)
    gets (spec, folder, exit code, message, seconds) for every trial this worker ran or found
    done."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        # an idle worker ignores the stop signals (the stop file tells it to stop); a training
        # trial installs its own handlers (checkpoint, then exit 128 + signal)
        signal.signal(signum, signal.SIG_IGN)
    parent = os.getppid()
    storage = open_storage(url, heartbeat, checked=True)
    studies = [load_or_create(storage, s.study) for s in searches]
    previous = previous_searches(searches)
    wait = POLL_SECONDS
    while not os.path.exists(stop) and os.getppid() == parent:
        taken = _take(studies, searches, previous)
        if taken is not None:
            if _run(root, *taken, heartbeat, stop, reports) in STOPPED:
                return
            wait = POLL_SECONDS
            continue
        if all(s.complete(study, s.bound is not None) for study, s in zip(studies, searches)):
            return
        for study, s in zip(studies, searches):
            queue.repair(study, s.wanted(study))
            if s.tpe:
                queue.draw(study, s.tpe)
        _sleep_unless_stopped(wait, stop)
        wait = min(2 * wait, MAX_POLL_SECONDS)


def _sleep_unless_stopped(seconds, stop):
    """Sleep `seconds`, in steps of POLL_SECONDS, ending early once the stop file appears."""
    end = time.monotonic() + seconds
    while not os.path.exists(stop) and time.monotonic() < end:
        time.sleep(min(POLL_SECONDS, max(0.0, end - time.monotonic())))


def _take(studies, searches, previous):
    """(study, search, claimed trial) of the first search with a trial waiting, or None;
    `previous`: previous_searches(searches)."""
    for k, (study, search) in enumerate(zip(studies, searches)):
        j = previous[k]
        first = None if j is None else \
            (lambda j=j, search=search: first_choice(search, searches[j], studies[j]))
        trial = queue.claim(study, search.wanted(study), first)
        if trial is not None:
            return study, search, trial
    return None


def previous_searches(searches):
    """For each search, the index of the search of the same optimizer at the next smaller batch
    size with a grid of the same size (None: there is none, or either is a TPE search)."""
    def key(s):
        return (s.specs[0]["optimizer"], s.specs[0]["batch_size"]) if s.specs and not s.tpe \
            else None
    keys = [key(s) for s in searches]
    out = []
    for k, s in enumerate(searches):
        smaller = [j for j, other in enumerate(keys) if other and keys[k]
                   and other[0] == keys[k][0] and other[1] < keys[k][1]
                   and len(searches[j].names) == len(s.names)]
        out.append(max(smaller, key=lambda j: keys[j][1], default=None))
    return out


def first_choice(search, previous, previous_study):
    """The trial of `search` at the grid point that reached the target in the fewest steps in
    the `previous` search (the same grid at a smaller batch size, lr scaled alike), None if
    none has yet: a setting that was best there is likely good here, and the tight pruning
    bound it gives early stops the others sooner."""
    best = queue.best_name(previous_study, set(previous.names))
    return None if best is None else search.names[previous.names.index(best)]


def _run(root, study, search, trial, heartbeat, stop, reports):
    """Train the claimed `trial` of `search` and record its end; returns train's exit code."""
    spec = json.loads(trial.user_attrs[queue.SPEC])
    folder = os.path.join(root, TRIALS, trial.user_attrs[queue.TRIAL])
    prune = search.bound is not None
    if prune:   # what the storage knows may be newer than the file
        tighten(search.bound, queue.best_steps(study, set(search.names)))
    started = time.perf_counter()
    with queue.heartbeat(study, trial, heartbeat):
        code, message = execute(spec, folder, stop=stop, prune_file=search.bound)
    seconds = time.perf_counter() - started
    if code in STOPPED:
        queue.give_back(study, trial)
    else:
        result = trial_result(folder)
        if message == DONE_EARLIER and queue.ended_before(study, trial, prune):
            queue.drop(study, trial)   # recorded already
        else:
            crashed = code == 2 or result["status"] not in ENDED_BY_ITSELF
            queue.finish(study, trial, result, prune, crashed)
        if prune and result["reached"]:
            tighten(search.bound, result["steps_to_target"])
    with contextlib.suppress(Exception):   # the session that started us is gone
        reports.put((spec, folder, code, message, seconds))
    return code


def searches_of(specs, folders, study_of, bound_of=None):
    """The Search of every (optimizer, batch size) in `specs` (folders: theirs, None for TPE's
    placeholders), in order of first appearance; study_of(optimizer, B): its Optuna study's
    name; bound_of(study name, names): its bound file, or None."""
    groups = {}
    for i, (spec, folder) in enumerate(zip(specs, folders)):
        key = (spec["optimizer"], spec["batch_size"])
        if key not in groups:
            groups[key] = Search(study_of(*key), [], [], [])
        if folder is None:
            groups[key].tpe = queue.tpe_search(spec, spec[TPE_DRAW]["index"] + 1)
            groups[key].indices.append(i)
            continue
        groups[key].names.append(os.path.basename(folder))
        groups[key].specs.append(spec)
        groups[key].indices.append(i)
    for s in groups.values():
        s.bound = bound_of(s.study, s.names) if bound_of and not s.tpe else None
    return list(groups.values())

