"""Optional matplotlib figures for the study commands.

matplotlib is the extra `plot` (``pip install matplotlib``). Every command writes its HDF5
and prints its table first and draws last: without matplotlib `pyplot()` returns None, the
command says how to get the picture (`hint`) and still succeeds. Figures are drawn with the
non-interactive Agg backend (no display needed) and saved atomically (temp file + os.replace).
"""
import os
import tempfile

import click

INSTALL_HINT = 'pip install matplotlib'


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed (or this is
    not rank 0 of a job under mpiexec: rank 0 draws)."""
    from .parallel import is_root

    if not is_root():
        return None
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def hint(path):
    """Tell the user the picture `path` was not drawn and how to get it (rank 0 under mpiexec
    draws and speaks)."""
    from .parallel import is_root

    if not is_root():
        return
    click.echo(f"no plot written: matplotlib is not installed; for {os.path.basename(path)} "
               f"run: {INSTALL_HINT}")


def save(fig, path, dpi=120):
    """Write the figure to `path` (PNG by its suffix) atomically and close it."""
    plt = pyplot()
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)
    click.echo(f"plot written to {path}")
