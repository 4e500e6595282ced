"""`minigrad train` on P processes (`mpiexec -n P minigrad train ...`): the pieces of the training
loop that change with data parallelism. With one process every helper here is the identity.

- The global batch B is split into P shards by minigrad.datasets.batches(rank, world_size):
  rank r holds rows [lo_r, hi_r) of each global batch (a short last batch is split as evenly as
  possible, so a shard may be empty). B not divisible by P is a usage error.
- Every rank computes the MEAN loss over its rows; the optimizer, told `shard(n_r, N)`, reduces
  gradients (SGD, K-FAC), factors (K-FAC), curvature products and losses (TRCG/STRCG) as
  sum_r (n_r / N) x_r, which is the global batch's value (optim/optimizer.py).
- At start all ranks exchange their configuration and a fingerprint of their data; any
  difference is an error on every rank that names the option (or the data) and the ranks.
- Evaluation is sharded the same way (each rank a contiguous part of the split; sums reduced).
- Only rank 0 prints and writes run.h5 and checkpoints (the other ranks hold the same state,
  since every reduced quantity is the same on all ranks); resume reads the same files on every
  rank, which therefore must share the run folder (a shared file system).
- Ending together: Ctrl-C is agreed on (every step ends with an allreduce of the stop flag), and
  so are the failures that test reduced values (a non-finite loss or gradient: the optimizers
  mark them `agreed`). Then rank 0 writes its checkpoint or run.h5 as one process would, all
  ranks meet at a barrier and exit with the same status (exit_together).
- Any other error on one rank prints "Error: rank r: ..." and aborts the whole job (MPI_Abort):
  the others never hang in a collective, and the last checkpoint stays intact (checkpoints are
  replaced atomically).
"""
import contextlib
import hashlib
import json
import sys

import click
import numpy as np

from minigrad import distributed


class ExitTogether(SystemExit):
    """Every rank leaves with this status after a barrier (not an abort)."""


def exit_together(code):
    """End the command with `code` on every rank: a barrier first (rank 0 has written its
    files), then SystemExit; abort_on_error lets it through."""
    comm = communicator()
    if comm.world_size > 1:
        comm.barrier()
    raise ExitTogether(code)


def communicator():
    return distributed.get_communicator()


def fail(message, code=1, together=False):
    """One line `Error: ...` and exit `code`. Distributed: with together=True (every rank fails
    alike) rank 0 prints and all ranks exit after a barrier; otherwise this rank prints, naming
    itself, and its exit aborts the job (abort_on_error)."""
    comm = communicator()
    if together:
        echo(f"Error: {message}", err=True)
        exit_together(code)
    where = f"rank {comm.rank}: " if comm.world_size > 1 else ""
    click.echo(f"Error: {where}{message}", err=True)
    sys.exit(code)


def is_root(comm=None):
    return (comm or communicator()).rank == 0


def echo(*args, **kwargs):
    """click.echo on rank 0 only."""
    if is_root():
        click.echo(*args, **kwargs)


def shard_rows(global_rows, rank, world_size):
    """(lo, hi): the rows of a global batch of global_rows that `rank` holds (the split of
    datasets.batches: contiguous equal parts, numpy.array_split for a short batch)."""
    if world_size == 1:   # every step calls this: no arrays for the common case
        return 0, global_rows
    sizes = [len(part) for part in np.array_split(np.arange(global_rows), world_size)]
    lo = sum(sizes[:rank])
    return lo, lo + sizes[rank]


def check_batch(comm, batch_size):
    if batch_size % comm.world_size:
        raise click.UsageError(f"--batch-size {batch_size} is not divisible by the {comm.world_size} "
                               f"processes: the global batch is split into equal shards")


def check_same(comm, what, value):
    """Every rank passes its `value` (a dict of JSON-able values): a UsageError on every rank,
    naming the keys and ranks that differ from rank 0's, if they are not all equal."""
    if comm.world_size == 1:
        return
    values = comm.allgather_object(json.loads(json.dumps(value, sort_keys=True, default=str)))
    reference = values[0]
    problems = []
    for r, v in enumerate(values[1:], start=1):
        keys = sorted(k for k in set(reference) | set(v) if reference.get(k) != v.get(k))
        if keys:
            problems.append(f"rank {r}: " + ", ".join(f"{k}={v.get(k)!r} (rank 0: "
                                                      f"{reference.get(k)!r})" for k in keys))
    if problems:
        raise click.UsageError(f"the {comm.world_size} processes disagree on their {what}: "
                               + "; ".join(problems))


def data_fingerprint(images, labels):
    """A short digest of a split, to check that every rank reads the same data."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images[:: max(1, len(images) // 64)]).tobytes())
    return h.hexdigest()[:16]


def evaluate(evaluate_split, comm, model, images, labels, flatten, device):
    """(mean loss, accuracy) of the whole split with each rank evaluating a contiguous part;
    one process: evaluate_split itself."""
    if comm.world_size == 1:
        return evaluate_split(model, images, labels, flatten, device)
    lo, hi = shard_rows(len(labels), comm.rank, comm.world_size)
    n = hi - lo
    loss, metric = evaluate_split(model, images[lo:hi], labels[lo:hi], flatten, device) if n \
        else (0.0, 0.0)
    total_loss, total_metric = comm.allreduce_scalars([loss * n, metric * n])
    return total_loss / len(labels), total_metric / len(labels)


@contextlib.contextmanager
def abort_on_error(comm):
    """Distributed: an error (or a non-zero exit) on this rank prints one line naming the rank
    and ends the whole job with MPI_Abort, so that no rank waits forever."""
    if comm.world_size == 1:
        yield
        return
    try:
        yield
    except ExitTogether as e:
        raise SystemExit(e.code) from None
    except SystemExit as e:
        if e.code in (None, 0):
            raise
        comm.abort(e.code if isinstance(e.code, int) else 1)
    except click.ClickException as e:
        click.echo(f"Error: rank {comm.rank}: {e.format_message()}", err=True)
        sys.stderr.flush()
        comm.abort(e.exit_code)
    except BaseException as e:
        click.echo(f"Error: rank {comm.rank}: {type(e).__name__}: {' '.join(str(e).split())}",
                   err=True)
        sys.stderr.flush()
        comm.abort(1)


def profile_report(stats, comm_bytes, comm_seconds, step_seconds):
    """The --profile lines: communication inside the optimizer steps of this session (per-step
    series comm_bytes, comm_seconds, step_seconds) and all collectives (stats: evaluations and
    the stop flag included)."""
    steps = len(step_seconds)
    if steps == 0:
        return "profile: no steps"
    total, comm = float(np.sum(step_seconds)), float(np.sum(comm_seconds))
    return (f"profile: {steps} steps; per step {np.sum(comm_bytes) / steps / 1e6:.4f} MB "
            f"communicated (this rank's buffers) and {1e3 * comm / steps:.3f} ms in "
            f"communication = {100 * comm / max(total, 1e-12):.1f}% of {1e3 * total / steps:.3f} "
            f"ms per step\n         all collectives: {stats.calls} calls, "
            f"{stats.bytes / 1e6:.3f} MB, {stats.seconds:.3f} s")
