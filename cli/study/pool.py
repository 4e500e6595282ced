"""Running the trials of a study: in a pool of --jobs worker processes, or under mpiexec one
after the other on all the processes; one line per trial as it ends; stop signals passed on.

A trial runs `minigrad train` in a worker process (a concurrent.futures pool of --jobs J
processes, "spawn" start method), with its output in the trial folder's train.log. Each worker
gets --threads-per-job BLAS threads (default 1, through OMP/OPENBLAS/MKL_NUM_THREADS): the thread
count changes the rounding of matrix products, so it is fixed whatever J is, and a trial is
deterministic given its options (the seed is one of them): --jobs changes wall times, never
results. (One thread per process is also the fast choice for small models on shared cores:
OpenBLAS threads that wait for a busy core make a step several times slower.) Ctrl-C stops the
running trials after their current step (each writes its checkpoint) and ends the study with
exit status 130; the same command continues it.
"""
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import sys
import time

import click

from .. import parallel
from ..common import UserError
from ..training.signals import EXIT_INTERRUPTED, STOP_SIGNALS
from .results import crashed_result, describe, outcome, trial_result
from .trials import STOP_FILE, STOPPED, TRIALS, execute, trial_mode, trial_name

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_trials(root, specs, jobs=1, threads=1):
    """Run every spec (skipping finished ones) in `jobs` worker processes with `threads` BLAS
    threads each, and return their results in order. Prints one line per trial; exits 130 if
    interrupted, raises UserError if a trial could not start (bad options)."""
    folders = [os.path.join(root, TRIALS, trial_name(s)) for s in specs]
    report = _Report(specs, folders)
    comm = parallel.communicator()
    if comm.world_size > 1:
        return _run_trials_distributed(comm, root, specs, folders, report)
    todo = []
    for i, folder in enumerate(folders):
        if trial_mode(folder) == "done":
            report(i, 0, "done earlier", 0.0)
        else:
            todo.append(i)
    interrupted = _run_in_pool(root, specs, folders, todo, jobs, threads, report) if todo else 0
    if interrupted:
        _interrupted(root, interrupted)
    return [trial_result(f) for f in folders]


class _Report:
    """The line of a trial that ended: "[k/N] <trial>: <outcome>  <seconds or why>"; a trial
    that could not start (exit status 2: bad options) is a UserError."""

    def __init__(self, specs, folders):
        self.specs, self.folders, self.count = specs, folders, 0
        self.width = len(str(len(specs)))

    def __call__(self, i, code, message, seconds):
        self.count += 1
        if code == 2:
            raise UserError(f"trial {self.folders[i]} could not start: {message}")
        click.echo(f"[{self.count:>{self.width}}/{len(self.specs)}] {describe(self.specs[i])}: "
                   f"{outcome(trial_result(self.folders[i]))}"
                   + (f"  ({message})" if message else f"  {seconds:.1f}s"))


def _run_in_pool(root, specs, folders, todo, jobs, threads, report):
    """Run the trials `todo` (indices into specs) in the worker pool; the exit status to leave
    with, 0 if not interrupted."""
    interrupted = 0
    # Workers are spawned when tasks are submitted and inherit the environment then. Every
    # trial runs in a worker, with the same BLAS thread count whatever --jobs is: a
    # different thread count changes the rounding of matrix products, and so the run.
    with _blas_threads(threads):
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(todo)), initializer=_worker_init,
            mp_context=multiprocessing.get_context("spawn"))
        with contextlib.suppress(FileNotFoundError):   # an earlier session's
            os.remove(os.path.join(root, STOP_FILE))
        try:
            with _forward_stops(pool, root):
                futures = {pool.submit(_timed, specs[i], folders[i]): i for i in todo}
                for future in concurrent.futures.as_completed(futures):
                    code, message, seconds = future.result()
                    if code in STOPPED:
                        interrupted = interrupted or code
                    else:
                        report(futures[future], code, message, seconds)
        except KeyboardInterrupt:
            interrupted = EXIT_INTERRUPTED
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return interrupted


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


def _worker_init():
    # an idle worker ignores the stop signals; a training trial installs its own handlers
    # (checkpoint, then exit 128 + signal) and so stops cleanly after its current step
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def _forward_stops(pool, root):
    """While the pool runs: SIGTERM/SIGUSR1 sent to the study's process (a scheduler's stop or
    preemption warning) goes on to every worker, whose trial then checkpoints after its step,
    and STOP_FILE (holding the signal's number) makes the trials queued behind them return
    without starting. The handler raises nothing: the pool's bookkeeping is never cut short,
    and the study ends once every worker has returned. Ctrl-C at a terminal reaches the
    workers itself."""
    def handle(signum, frame):
        with open(os.path.join(root, STOP_FILE), "w") as fh:
            fh.write(str(int(signum)))
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signum)
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


def _timed(spec, folder):
    started = time.perf_counter()
    code, message = execute(spec, folder)
    return code, message, time.perf_counter() - started


def _interrupted(root, code=EXIT_INTERRUPTED):
    parallel.echo(f"interrupted: finished trials are kept in {os.path.join(root, TRIALS)} "
                  "(stopped ones with their checkpoints); run the same command again to continue "
                  "the study", err=True)
    sys.exit(code)


def _run_trials_distributed(comm, root, specs, folders, report):
    """Under mpiexec: the trials one after the other, each trained by all P processes together
    (data parallelism inside a trial). Rank 0 decides what each trial needs (its files), reports
    and writes; the other ranks follow."""
    for i, (spec, folder) in enumerate(zip(specs, folders)):
        mode = comm.broadcast_object(trial_mode(folder) if comm.rank == 0 else None)
        started = time.perf_counter()
        code, message = execute(spec, folder, mode)
        if code in STOPPED:
            _interrupted(root, code)
        if code == 2:   # a usage error of train: the same on every rank
            raise UserError(f"trial {folder} could not start: {message}")
        if comm.rank == 0:
            report(i, code, message, time.perf_counter() - started)
        comm.barrier()   # rank 0 has read the trial's files before anyone moves on
    return [trial_result(f) if comm.rank == 0 else crashed_result(f) for f in folders]
