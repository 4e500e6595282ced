"""Running the trials of a study: --jobs worker processes on this machine (workers.py) that
take them from the study's storage (storage.py, queue.py), together with any other machine's
workers on the same study; or, under mpiexec, one after the other on all the processes. One
line per trial this session ran as it ends; stop signals passed on.

Each worker gets --threads-per-job BLAS threads (default 1, through OMP/OPENBLAS/MKL_NUM_THREADS,
"spawn" start method): the thread count changes the rounding of matrix products, so it is
fixed whatever J is, and a trial is deterministic given its options (the seed is one of them):
--jobs, and the number of machines, change wall times, never results. (One thread per process
is also the fast choice for small models on shared cores: OpenBLAS threads that wait for a busy
core make a step several times slower.) Ctrl-C stops the running trials after their current
step (each writes its checkpoint, and its trial goes back to the queue) and ends this session
with exit status 130; the same command continues it. A worker that dies (killed, out of memory)
is replaced; its trial is taken over by a worker once its heartbeat is overdue.
"""
import contextlib
import multiprocessing
import os
import queue as queues
import signal
import socket
import sys
import time

import click

from .. import parallel
from ..common import UserError
from ..training.signals import EXIT_INTERRUPTED
from . import queue, storage
from .pruning import bound_file, reset
from .results import crashed_result, describe, outcome, trial_result
from .specs import TPE_DRAW
from .trials import (DONE_EARLIER, STOP_FILE, STOPPED, TRIALS, execute, trial_mode,
                     trial_name)
from .workers import searches_of, work

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_HEARTBEAT = 30   # seconds between a running trial's heartbeats (--heartbeat)


def run_trials(root, specs, options, command, phase="search", prune=False):
    """Run every spec (skipping finished ones) with options["jobs"] local workers of
    options["threads_per_job"] BLAS threads each, through the storage options["storage"] (None:
    SQLite in `root`); returns (specs, their results), TPE's placeholders replaced by the specs
    drawn (specs.py). `command` and `phase` name the searches' Optuna studies
    (storage.study_name); `prune`: scaling's early stopping (pruning.py). Prints one line per
    trial; exits 130 if interrupted, raises UserError if a trial could not start (bad options)."""
    folders = [None if TPE_DRAW in s else os.path.join(root, TRIALS, trial_name(s)) for s in specs]
    report = _Report(len(specs))
    comm = parallel.communicator()
    if comm.world_size > 1:
        return specs, _run_trials_distributed(comm, root, specs, folders, report)
    done = {}
    for spec, folder in zip(specs, folders):
        if folder is not None and trial_mode(folder, prune) == "done":
            report(spec, folder, 0, DONE_EARLIER, 0.0)
            done[os.path.basename(folder)] = trial_result(folder)
    url = storage.storage_url(root, options.get("storage"))
    heartbeat = options.get("heartbeat") or DEFAULT_HEARTBEAT
    searches = searches_of(
        specs, folders, lambda opt, b: storage.study_name(root, command, opt, b, phase),
        (lambda name, names: bound_file(root, name, names)) if prune else None)
    studies = _sync(url, heartbeat, searches, done, prune)
    if not all(s.complete(st, prune) for st, s in zip(studies, searches)):
        interrupted = _run_workers(root, searches, url, heartbeat, options, report)
        if interrupted:
            _interrupted(root, interrupted)
        _check_ended(studies, searches, prune)
    specs = list(specs)
    for study, s in zip(studies, searches):
        if s.tpe:
            for i, spec in zip(s.indices, queue.drawn_specs(study, s.tpe)):
                specs[i] = spec
    return specs, [trial_result(os.path.join(root, TRIALS, trial_name(s))) for s in specs]


def _sync(url, heartbeat, searches, done, prune):
    """Open the storage and every search's Optuna study, and queue what is left to do
    (queue.sync); the bound files start from what the storage knows (pruning.reset)."""
    opened = storage.open_storage(url, heartbeat)
    studies = []
    for s in searches:
        study = storage.load_or_create(opened, s.study)
        queue.sync(study, s.names, s.specs, done, prune)
        if s.tpe:
            queue.draw(study, s.tpe)   # the first point, if not drawn yet
        if s.bound is not None:
            reset(s.bound, queue.best_steps(study, set(s.names)))
        studies.append(study)
    return studies


def _check_ended(studies, searches, prune):
    """UserError unless every search has ended: the workers have all returned, but they may
    have died (more often than they were replaced) before the trials were done."""
    left = [s.study for st, s in zip(studies, searches) if not s.complete(st, prune)]
    if left:
        raise UserError(f"the trials of {len(left)} of {len(searches)} searches did not all end "
                        f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): the "
                        "workers stopped (see above why); run the same command again to "
                        "continue the study")


class _Report:
    """The line of a trial that ended: "[k/N] <trial>: <outcome>  <seconds or why>"; a trial
    that could not start (exit status 2: bad options) is a UserError."""

    def __init__(self, total):
        self.total, self.count = total, 0
        self.width = len(str(total))

    def __call__(self, spec, folder, code, message, seconds):
        self.count += 1
        if code == 2:
            raise UserError(f"trial {folder} could not start: {message}")
        click.echo(f"[{self.count:>{self.width}}/{self.total}] {describe(spec)}: "
                   f"{outcome(trial_result(folder))}"
                   + (f"  ({message})" if message else f"  {seconds:.1f}s"))


def _run_workers(root, searches, url, heartbeat, options, report):
    """Start options["jobs"] workers on `searches`, report what they ran, replace the ones that
    die, until all have ended; the exit status to leave with, 0 if not interrupted."""
    stop = os.path.join(root, f"{STOP_FILE}-{socket.gethostname()}-{os.getpid()}")
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    args = (root, searches, url, heartbeat, stop, reports)
    interrupted, spare = 0, 2 * options["jobs"]   # replacements for workers that died

    def start():
        # Workers inherit the environment when they start: every trial runs with the same BLAS
        # thread count whatever --jobs is (a different count changes the rounding, and the run)
        with _blas_threads(options["threads_per_job"]):
            worker = context.Process(target=work, args=args, daemon=True)
            worker.start()
        return worker
    workers = [start() for _ in range(options["jobs"])]
    try:
        with _forward_stops(workers, stop):
            while any(w.is_alive() for w in workers) or not reports.empty():
                try:
                    spec, folder, code, message, seconds = reports.get(timeout=0.2)
                except queues.Empty:
                    spare = _replace_dead(workers, start, spare, stop)
                    continue
                if code in STOPPED:
                    interrupted = interrupted or code
                else:
                    report(spec, folder, code, message, seconds)
    except KeyboardInterrupt:
        interrupted = EXIT_INTERRUPTED
    finally:   # the stop file holds a signal (interrupted: its exit status, 128 + signal)
        _stop_file(stop, interrupted - 128 if interrupted else signal.SIGTERM)
        for w in workers:
            w.join()
        with contextlib.suppress(FileNotFoundError):
            os.remove(stop)
    return interrupted


def _replace_dead(workers, start, spare, stop):
    """Replace (in the list `workers`) each worker that died (killed: a non-zero exit) by a new
    one, as long as `spare` replacements are left; returns the replacements left."""
    for k, w in enumerate(list(workers)):
        if w.exitcode in (None, 0) or os.path.exists(stop):
            continue
        how = (f"signal {signal.Signals(-w.exitcode).name}" if w.exitcode < 0
               else f"exit status {w.exitcode}")
        click.echo(f"a worker (pid {w.pid}) died ({how}); its trial is taken over once its "
                   "heartbeat is overdue", err=True)
        if spare > 0:
            workers[k] = start()
            spare -= 1
        else:
            workers[k] = _Ended()
    return spare


class _Ended:
    """In place of a dead worker that was not replaced."""
    exitcode, pid = 0, None

    def is_alive(self):
        return False

    def join(self):
        pass


def _stop_file(path, signum):
    """The session's stop file: its workers take no more trials (and trials not yet started
    return at once)."""
    with open(path, "w") as fh:
        fh.write(str(int(signum)))


@contextlib.contextmanager
def _blas_threads(threads):
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: str(threads) for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _forward_stops(workers, stop):
    """While the workers run: SIGTERM/SIGUSR1 sent to the study's process (a scheduler's stop or
    preemption warning) goes on to every worker, whose trial then checkpoints after its step,
    and the stop file (holding the signal's number) stops the workers from taking more. The
    handler raises nothing: the study ends once every worker has returned. Ctrl-C at a
    terminal reaches the workers itself."""
    def handle(signum, frame):
        _stop_file(stop, signum)
        for worker in workers:
            with contextlib.suppress(OSError, TypeError):
                os.kill(worker.pid, signum)
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            previous[signum] = signal.signal(signum, handle)
    except ValueError:   # not the main thread
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupted(root, code=EXIT_INTERRUPTED):
    parallel.echo(f"interrupted: finished trials are kept in {os.path.join(root, TRIALS)} "
                  "(stopped ones with their checkpoints); run the same command again to continue "
                  "the study", err=True)
    sys.exit(code)


def _run_trials_distributed(comm, root, specs, folders, report):
    """Under mpiexec: the trials one after the other, each trained by all P processes together
    (data parallelism inside a trial). Rank 0 decides what each trial needs (its files), reports
    and writes; the other ranks follow. (No storage: --search tpe is refused here.)"""
    if any(folder is None for folder in folders):
        raise click.UsageError("--search tpe draws its points through the study's storage; "
                               "under mpiexec a study runs its trials one after the other "
                               "without one: use --search grid or random")
    for spec, folder in zip(specs, folders):
        mode = comm.broadcast_object(trial_mode(folder) if comm.rank == 0 else None)
        started = time.perf_counter()
        code, message = execute(spec, folder, mode)
        if code in STOPPED:
            _interrupted(root, code)
        if code == 2:   # a usage error of train: the same on every rank
            raise UserError(f"trial {folder} could not start: {message}")
        if comm.rank == 0:
            report(spec, folder, code, message, time.perf_counter() - started)
        comm.barrier()   # rank 0 has read the trial's files before anyone moves on
    return [trial_result(f) if comm.rank == 0 else crashed_result(f) for f in folders]
