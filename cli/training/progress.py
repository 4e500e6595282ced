"""The progress bar of `minigrad train` when stdout is a terminal: a click progress bar over the
steps, with the batch loss and the last test accuracy (or reconstruction error) as its text.
Elsewhere (a file, a pipe, the other ranks) nothing is drawn."""
import sys

import click


def stdout_is_terminal():
    """Whether to draw the progress bar (tests patch this)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n_steps, current_item=None):
        pass


def progress_bar(step, total, interactive):
    """A click progress bar over the remaining steps (loss and test accuracy as its item
    text) when stdout is a terminal; otherwise a no-op."""
    if not interactive:
        return _NoBar()
    bar = click.progressbar(length=max(total - step, 1), label=f"steps {step}->{total}",
                            show_pos=True, show_eta=True, item_show_func=lambda item: item,
                            file=sys.stdout)
    bar.is_hidden = False   # we decided ourselves (stdout is a terminal)
    return bar
