"""The `minigrad` command line (a click group).

    train                            one training run (cli/train.py; the training library
                                     is cli/training/)
    evaluate, runs, show             looking at runs (cli/inspect.py)
    scaling, sensitivity, compare    studies made of many runs (one file each; what they share
                                     is cli/study/)
    study-status                     where a study stands, from its storage
    recheck-diverged                 whether the divergence rule changed a study's figures
    hessian, landscape               curvature and loss surface at a checkpoint
    plot                             curves of several runs
    report                           the report of several studies (cli/report*.py)

The files of a run are cli/runlog.py (run.h5) and cli/checkpoint.py (checkpoint.npz), both
written through cli/atomic.py.
"""
import sys

import click

from minigrad import __version__


class _Main(click.Group):
    """The group; under mpiexec a usage error (the same on every rank) is printed by rank 0
    only, and every rank exits with its status."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            from .parallel import communicator
            if communicator().rank != 0:
                sys.exit(e.exit_code)
            raise


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minigrad")
def main():
    """minigrad: second-order optimization studies on a from-scratch autodiff engine."""


from .compare import compare
from .hessian import hessian
from .inspect import evaluate, runs, show
from .landscape import landscape
from .plot import plot
from .recheck import recheck_diverged
from .report import report
from .scaling import scaling
from .sensitivity import sensitivity
from .study_status import study_status
from .train import train

main.add_command(train)
main.add_command(evaluate)
main.add_command(runs)
main.add_command(show)
main.add_command(scaling)
main.add_command(sensitivity)
main.add_command(plot)
main.add_command(compare)
main.add_command(landscape)
main.add_command(hessian)
main.add_command(report)
main.add_command(study_status)
main.add_command(recheck_diverged)
