"""What every file-based data set shares: where its files are looked for, where its parsed
arrays are cached, and the errors for missing and damaged files (``loaders`` for digits and the
IDX sets, ``cifar_svhn`` for CIFAR-10 and SVHN).

Where files are looked for, first hit wins, each file on its own (``search_dirs``):
``data_dir``, ``$MINIGRAD_DATA``, ``$MINIGRAD_CACHE``, ``~/.cache/minigrad``, then the system
folders ``SYSTEM_DIRS`` (``/usr/share/datasets``, ``/usr/local/share/datasets``); a set's
loader looks in each for ``<folder>/<name>/<file>`` and ``<folder>/<file>``.

The cache: the parsed arrays of one split in ``<cache>/<name>-<split>.h5`` (``cache_path``;
``<cache>`` is ``cache_dir``), written atomically with the checksums of the files it came from
and a digest of its arrays, both checked on every load (``read_cache``): a stale or corrupt
cache is reported with a warning and rebuilt from the files, never used.
"""
import os
import warnings

from ._files import CorruptFileError, arrays_sha256, read_h5_verified, write_h5_atomic

SYSTEM_DIRS = ["/usr/share/datasets", "/usr/local/share/datasets"]
CACHE_VERSION = 2  # 2: the file's SHA-256 in its HDF5 user block, checked before parsing


class ChecksumError(ValueError):
    """A data file's content does not match its published checksum, or the file is so damaged
    (a corrupted or truncated ``.gz``) that it cannot even be read to compute it.  The message
    names the file and what to do (replace or delete it, or re-install the package)."""


class DataNotFoundError(FileNotFoundError):
    """The files of a data set are in none of the folders searched.

    Attributes: ``dataset``, ``split``, ``missing`` (file names) and ``folders`` (searched)."""

    def __init__(self, message, dataset=None, split=None, missing=(), folders=()):
        super().__init__(message)
        self.dataset, self.split = dataset, split
        self.missing, self.folders = list(missing), list(folders)

    def __str__(self):
        return self.args[0] if self.args else ""


# ---------------------------------------------------------------------------------------------
# where files are looked for

def home_cache_dir():
    """``~/.cache/minigrad``: the cache folder when neither ``data_dir``, ``$MINIGRAD_CACHE``
    nor ``$MINIGRAD_DATA`` says otherwise."""
    return os.path.join(os.path.expanduser("~"), ".cache", "minigrad")


def labelled_dirs(data_dir=None):
    """``[(folder, where it comes from)]``: the folders ``search_dirs`` returns, each with a
    short label (``data_dir``, ``$MINIGRAD_DATA``, ...) for messages."""
    dirs = []
    if data_dir is not None:
        dirs.append((os.fspath(data_dir), "data_dir"))
    for var in ("MINIGRAD_DATA", "MINIGRAD_CACHE"):
        if os.environ.get(var):
            dirs.append((os.environ[var], "$" + var))
    dirs.append((home_cache_dir(), "default cache"))
    dirs.extend((d, "system folder") for d in SYSTEM_DIRS)
    seen, unique = set(), []
    for d, label in dirs:
        if d not in seen:
            seen.add(d)
            unique.append((d, label))
    return unique


def search_dirs(data_dir=None):
    """Folders searched for data files, in order: ``data_dir``, ``$MINIGRAD_DATA``,
    ``$MINIGRAD_CACHE`` (where downloads go), ``~/.cache/minigrad``, the system folders."""
    return [d for d, _ in labelled_dirs(data_dir)]


def cache_dir(data_dir=None):
    """Where parsed arrays are cached (and downloads go): ``data_dir``, else
    ``$MINIGRAD_CACHE``, else ``$MINIGRAD_DATA``, else ``~/.cache/minigrad``."""
    if data_dir is not None:
        return os.fspath(data_dir)
    for var in ("MINIGRAD_CACHE", "MINIGRAD_DATA"):
        if os.environ.get(var):
            return os.environ[var]
    return home_cache_dir()


def cache_path(name, split, data_dir=None):
    """The cache file of one split: ``<cache>/<name>-<split>.h5``."""
    return os.path.join(cache_dir(data_dir), f"{name}-{split}.h5")


def in_system_folder(path):
    """True when ``path`` lies under one of the system folders (a file a package installed)."""
    path = os.path.abspath(path)
    for folder in SYSTEM_DIRS:
        folder = os.path.abspath(folder)
        if os.path.commonpath([path, folder]) == folder:
            return True
    return False


def not_found_message(name, split, missing, dirs, get, python_hint):
    """The text of a DataNotFoundError: what is missing, how to get it (``get``, a sentence),
    the folders searched (``dirs`` as from ``labelled_dirs``), and a Python-only hint."""
    where = "\n".join(f"  {os.path.join(d, name)}  ({label})" for d, label in dirs)
    return (f"{name} ({split} split): missing {missing}. {get} Data files are looked for in "
            f"these folders, as <folder>/{name}/<file> or <folder>/<file> (set MINIGRAD_DATA "
            f"to add a folder):\n{where}\n{python_hint}").rstrip()


# ---------------------------------------------------------------------------------------------
# the cache of parsed arrays

def read_cache(name, path, split, sources_changed):
    """(arrays, attrs) of ``split`` from the HDF5 cache at ``path``, or None when there is none
    or it cannot be used: its bytes do not match the SHA-256 in its header (checked before
    HDF5 parses them: damaged, truncated, or written by an older minigrad), unreadable, of
    another CACHE_VERSION, built from other source files (``sources_changed(attrs)`` returns
    why, or None), or with arrays that no longer match the digest recorded in it. An unusable
    cache is reported with a warning; the caller rebuilds it (replacing the file).
    """
    if not os.path.exists(path):
        return None
    keys = (f"{split}_images", f"{split}_labels")
    try:
        arrays, attrs = read_h5_verified(path, keys)
    except CorruptFileError as e:  # checked before HDF5 sees the bytes
        reason = str(e)
    except Exception as e:  # unreadable file, garbled HDF5, missing dataset, ...
        reason = f"unreadable ({type(e).__name__}: {e})"
    else:
        if attrs.get("version") != CACHE_VERSION:
            reason = f"cache version {attrs.get('version')!r}, expected {CACHE_VERSION}"
        else:
            reason = sources_changed(attrs)
            if reason is None and attrs.get(f"sha256_{split}") != arrays_sha256(arrays):
                reason = "its arrays do not match the digest recorded in it"
    if reason is not None:
        warnings.warn(f"{name}: cache {path} is corrupt or stale ({reason}); rebuilding it",
                      stacklevel=4)
        return None
    return arrays, attrs


def write_cache(name, path, split, arrays, attrs):
    """Write ``arrays`` (the ``split_*`` arrays) atomically with ``attrs`` plus the version and
    the arrays' digest; a failure only warns (the files are parsed again next time)."""
    attrs = {"version": CACHE_VERSION, "name": name, "split": split,
             f"sha256_{split}": arrays_sha256(arrays), **attrs}
    try:
        write_h5_atomic(path, arrays, attrs, level=1, checksummed=True)
    except OSError as e:
        warnings.warn(f"{name}: could not write the cache {path} ({e}); "
                      f"the files will be parsed again next time", stacklevel=4)
