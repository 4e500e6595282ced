"""Stopping a run between two steps: Ctrl-C, SIGTERM (a batch scheduler's or a container's stop)
and SIGUSR1 (a scheduler's preemption warning).

While training, these signals only record themselves (DeferredInterrupt); after every step the
ranks agree on whether any of them got one (agreed_signal), and if so the run writes its
checkpoint and exits with status 128 + the signal's number. A second Ctrl-C interrupts at once,
mid-step: the last checkpoint written is kept. A repeated SIGTERM or SIGUSR1 does not: a batch
scheduler may send it to every process of a job, and a study forwards the one it got to its
trials, so a trial often gets the same stop twice and must still finish its step and checkpoint
(SIGKILL remains the way to stop at once).
"""
import signal

# the exit status is 128 + the signal's number (SIGINT 130: Ctrl-C; SIGTERM 143; SIGUSR1 138)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
EXIT_INTERRUPTED = 130


class StopRequested(Exception):
    """A stop signal (its number: args[0]) came; raised between steps, where the state is
    consistent."""


# the most urgent first: the one a run acts on when it got several
URGENCY = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def agreed_signal(comm, signum):
    """The stop signal every rank acts on: 0 if no rank got one, else the one they got (with
    different ones, the most urgent: SIGTERM over SIGUSR1 over SIGINT)."""
    got = comm.allreduce_scalars([float(signum == s) for s in STOP_SIGNALS])
    for s in URGENCY:
        if got[STOP_SIGNALS.index(s)] > 0:
            return int(s)
    return 0


class DeferredInterrupt:
    """While active, STOP_SIGNALS (Ctrl-C, SIGTERM, SIGUSR1) only record themselves (checked
    between steps; of several, the most urgent: SIGTERM over SIGUSR1 over SIGINT); a Ctrl-C
    after any of them interrupts at once."""

    def __init__(self):
        self.signum = 0        # the first stop signal received, 0 while none
        self.previous = {}

    @property
    def requested(self):
        return self.signum != 0

    def __enter__(self):
        for signum in STOP_SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def agreed(self, comm):
        """The stop signal all ranks act on after this step (agreed_signal; with one process,
        the one received). The agreed value is returned, never stored in self.signum: a signal
        that arrives during the agreement sets self.signum, and is agreed on after the next
        step (assigning the agreed 0 to it would lose it, and the run would never stop)."""
        return agreed_signal(comm, self.signum) if comm.world_size > 1 else self.signum

    def request(self, signum):
        """Record the stop signal `signum` (0: none) as if it had been received, unless one
        was (a stop file: --stop-file)."""
        if signum and not self.requested:
            self.signum = signum

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:   # Ctrl-C again: a person wants out now
            raise KeyboardInterrupt
        if not self.requested or URGENCY.index(signum) < URGENCY.index(self.signum):
            self.signum = signum

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        return False
