"""Small file helpers: SHA-256 digests, atomic HDF5 writes and the IDX format.

Nothing here imports minigrad: the data-set layer stands on NumPy and h5py alone.
"""
import gzip
import hashlib
import io
import os
import tempfile

import h5py
import numpy as np


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def arrays_sha256(arrays):
    """SHA-256 over named arrays, in sorted name order: for each array its name, dtype string
    (e.g. ``<f4``), shape and C-order bytes.  Independent of how the file stored them."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# A checksummed HDF5 file (the caches) starts with a 512-byte user block, which HDF5 skips:
# CHECKSUM_MAGIC, the hex SHA-256 of everything after the user block, "\n", zero padding.
USERBLOCK = 512
CHECKSUM_MAGIC = b"minigrad-h5-sha256:"


class CorruptFileError(ValueError):
    """A checksummed HDF5 file whose bytes do not match the SHA-256 in its user block."""


def write_h5_atomic(path, arrays, attrs=None, deterministic=False, level=9, checksummed=False):
    """Write ``arrays`` (gzip-compressed datasets) and ``attrs`` to HDF5 at ``path`` atomically.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so a reader sees the old file or the complete new one, never a part.
    ``level`` is the gzip level (1 fast, 9 small); ``deterministic`` drops HDF5 timestamps
    so the same arrays give the same bytes.  ``checksummed`` reserves a user block at the start
    of the file and stores there the SHA-256 of the rest, for ``read_h5_verified``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        kwargs = {"track_order": True}
        if checksummed:
            kwargs["userblock_size"] = USERBLOCK
        with h5py.File(tmp, "w", libver="earliest", **kwargs) as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            for name, a in arrays.items():
                a = np.asarray(a)
                f.create_dataset(name, data=a, compression="gzip", compression_opts=level,
                                 shuffle=a.size > 1, track_times=not deterministic)
        with open(tmp, "r+b") as fh:
            if checksummed:
                fh.seek(USERBLOCK)
                digest = hashlib.sha256(fh.read()).hexdigest().encode()
                header = CHECKSUM_MAGIC + digest + b"\n"
                fh.seek(0)
                fh.write(header + bytes(USERBLOCK - len(header)))
                fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_h5(path, names):
    """Read datasets ``names`` and all attributes from an HDF5 file (a path or a file object).
    Only for files whose bytes are trusted: see ``read_h5_verified``."""
    with h5py.File(path, "r") as f:
        arrays = {name: np.asarray(f[name][()]) for name in names}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return arrays, attrs


def read_h5_verified(path, names):
    """``read_h5`` for a file written with ``checksummed=True``: the whole file is read and its
    bytes checked against the SHA-256 in its user block *before* HDF5 parses them (a damaged
    HDF5 file can make the HDF5 library fail in any way, even loop forever).  Raises
    ``CorruptFileError`` (a ValueError) saying what is wrong when they do not match."""
    with open(path, "rb") as fh:
        raw = fh.read()
    header = raw[:USERBLOCK]
    if not header.startswith(CHECKSUM_MAGIC):
        raise CorruptFileError("no checksum header (a damaged file, or one written by an "
                               "older minigrad)")
    end = header.find(b"\n")
    recorded = header[len(CHECKSUM_MAGIC):end].decode("ascii", "replace")
    actual = hashlib.sha256(raw[USERBLOCK:]).hexdigest()
    if len(raw) <= USERBLOCK or actual != recorded:
        raise CorruptFileError(f"SHA-256 of the file is {actual}, its header records "
                               f"{recorded[:64]!r}: damaged or truncated")
    with h5py.File(io.BytesIO(raw), "r") as f:
        arrays = {name: np.asarray(f[name][()]) for name in names}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return arrays, attrs


# IDX: magic 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 sizes, then the data,
# big-endian, C order (LeCun et al., http://yann.lecun.com/exdb/mnist/).
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_payload(path):
    """The file's bytes, decompressed if its name ends in ``.gz``."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def parse_idx(data, name="<bytes>"):
    """Parse an IDX payload (bytes) into a NumPy array in native byte order."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (bad magic number {data[:4]!r})")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: IDX header truncated ({len(data)} bytes, need {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name}: IDX payload is {len(data)} bytes, header {shape} "
                         f"of {dtype.name} needs {expected}")
    a = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return a.astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {v.newbyteorder("=").str[1:]: k for k, v in _IDX_TYPES.items()}
    code = codes[array.dtype.newbyteorder("=").str[1:]]
    be = _IDX_TYPES[code]
    data = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
            + np.ascontiguousarray(array, dtype=be).tobytes())
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
    return data
