"""What the commands share: one-line errors, a run folder named on the command line, the
--hidden option's parser and plain-text tables."""
import functools
import os
import sys

import click


class UserError(Exception):
    """A problem with the user's files or options: one line on stderr, exit status 1."""


def one_line_errors(fn):
    """UserError, ValueError, TypeError, KeyError and OSError as `Error: ...` and exit 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FloatingPointError as e:
            click.echo(f"Error: non-finite value: {' '.join(str(e).split())}", err=True)
            sys.exit(1)
        except (UserError, ValueError, TypeError, KeyError, OSError) as e:
            click.echo(f"Error: {' '.join(str(e).split()) or repr(e)}", err=True)
            sys.exit(1)
    return wrapper


def run_folder(run):
    if not os.path.exists(run):
        raise UserError(f"run folder {run!r} not found")
    if not os.path.isdir(run):
        raise UserError(f"{run!r} is not a run folder")
    return run


def parse_hidden(ctx, param, value):
    """--hidden "64,64" as a list of ints (a click callback); "" is no hidden layer."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive ints like 64,64, got {value!r}")
    if any(s < 1 for s in sizes):
        raise click.BadParameter(f"layer sizes must be positive, got {value!r}")
    return sizes


def table(header, rows):
    """The rows under the header, in columns as wide as their widest entry."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
             for line in [header] + rows]
    return "\n".join(lines)
