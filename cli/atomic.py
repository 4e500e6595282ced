"""Writing a file so that no reader, and no crash, ever sees half of it.

A file is written whole into a temporary file in its folder (``.<name>.<random>.tmp``), flushed
to disk (fsync) and moved into place with ``os.replace``: the previous version stays until the
new one is complete. A write that fails (disk full, no permission, read-only file system, a file
size limit, ...) removes its temporary file, leaves the previous version in place and raises
WriteError (an OSError) whose one-line message names the file and says what is kept.

Every file of a run and of a study is written this way (cli/runlog.py, cli/checkpoint.py, the
study and curvature files). An HDF5 file is built in memory by HDF5 and written to disk by plain
Python I/O (write_h5): HDF5 itself never writes into the folder, so a failing disk is an ordinary
OSError, never an HDF5 error at close or exit.
"""
import io
import os
import tempfile

import h5py


class Kept(str):
    """What a failed write leaves on disk, in words, and whether that is a checkpoint a run can
    resume from (`resumable`): the callers decide on the flag, never on the wording."""

    def __new__(cls, text, resumable=False):
        note = super().__new__(cls, text)
        note.resumable = resumable
        return note


class WriteError(OSError):
    """A file of a run could not be written (disk full, no permission, read-only file system,
    ...). path: the file; reason: why, in words; kept: what is left on disk, in words (or None;
    a Kept says whether it can be resumed from: `resumable`); errno: the OSError's errno (or
    None). str() is one line naming the file and saying what is kept, e.g. "cannot write
    runs/a/run.h5: No space left on device; the last checkpoint, step 40, is kept". The previous
    version of the file, if any, is untouched and no temporary file is left."""

    def __init__(self, path, reason, kept=None, errno=None):
        super().__init__(errno, reason)
        self.filename = self.path = path
        self.reason, self.kept = reason, kept

    @property
    def resumable(self):
        """Whether what is kept is a checkpoint to resume from (a Kept with resumable set)."""
        return getattr(self.kept, "resumable", False)

    def __str__(self):
        return f"cannot write {self.path}: {self.reason}" + (f"; {self.kept}" if self.kept else "")

    def __reduce__(self):   # picklable (the constructor's arguments are not OSError's)
        return type(self), (self.path, self.reason, self.kept, self.errno)


def reason(error):
    """An OSError (or anything raised by a failing write) as a few words, on one line."""
    code = getattr(error, "errno", None)
    text = (os.strerror(code) if isinstance(code, int) and code > 0 else "") or \
        getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _fsync_folder(folder):
    """Make a rename in `folder` durable; best effort (not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, kept=None):
    """Call write(tmp_path), fsync it, then os.replace(tmp_path, path). On any error the temp
    file is removed and `path` is left as it was; an OSError becomes a WriteError naming `path`,
    with kept() (a callable, evaluated after the failure) or `kept` saying what is kept."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=folder)
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)   # mkstemp makes 0600; give the usual permissions
        write(tmp)
        # a full disk may only show when the data reach it (NFS, quotas, delayed allocation):
        # flush before the rename, so that a checkpoint in place is always a complete one
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        note = kept() if callable(kept) else kept
        raise WriteError(path, reason(e), note, getattr(e, "errno", None)) from e
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:   # e.g. the folder became read-only: nothing more to do
                pass
    _fsync_folder(folder)


def write_stream(path, fill, kept=None):
    """atomic_write of the binary file that fill(fh) writes into `fh` (open for writing)."""
    def write(tmp):
        with open(tmp, "wb") as fh:
            fill(fh)
    atomic_write(path, write, kept=kept)


def write_h5(path, fill, kept=None):
    """Atomically write the HDF5 file `path` that fill(f) (an h5py.File open for writing)
    builds; WriteError naming it (and kept, as in atomic_write) if it cannot be written.

    HDF5 writes into memory only (a file image, closed before the disk is touched); the disk
    sees one plain write of the bytes. An HDF5 file written in place on a failing disk stays
    open inside HDF5 in an undefined state (errors again at close, a crash at exit was
    reported); this way that cannot happen, and a failure is an ordinary OSError."""
    def write(tmp):
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            fill(f)
        with open(tmp, "wb") as fh:
            fh.write(image.getbuffer())
    atomic_write(path, write, kept=kept)
