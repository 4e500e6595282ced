"""CIFAR-10 (python tarball or its extracted folder) and SVHN (cropped digits, ``*_32x32.mat``).

Same design as the IDX sets in ``loaders``, on the same ``storage``: the same search folders
(``<folder>/<name>/<file>`` then ``<folder>/<file>``), files verified before use, parsed arrays
cached atomically in ``<cache>/<name>-<split>.h5`` with the checksums they came from and a
SHA-256 of the arrays, optional downloads verified before they are moved into place.

Files are verified by their *published MD5* (the only checksums the authors publish).  The
expected values live in the module-level dict ``MD5`` (file name -> hex MD5).  It exists so
that tests can monkeypatch it with the checksums of tiny synthetic files; it is test-only:
never change it to make a mismatching real file load.  Likewise ``URLS`` (file name -> URL)
may be monkeypatched by tests with ``file://`` URLs.

Why this module still unpickles (the only place in minigrad that does; checkpoints are arrays
and JSON, see cli/runlog.py). The official CIFAR-10 "python version" is a set of pickles (one
dict per batch, written by Python 2's cPickle): there is no other file to read it from. Unpickling
can run code, so two defences stand in front of it. First, the bytes are unpickled only after
their MD5 matched the published checksum (of the tarball, or of the extracted member file), and
only in memory. Second, ``_ArrayUnpickler`` resolves no global but NumPy's array reconstruction
(``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and ``_codecs.encode``
(how protocol 2 writes bytes), so what comes out can only be NumPy arrays and the basic types a
pickle builds by itself (dicts, lists, tuples, bytes, str, numbers): any other global, e.g.
``os.system`` or ``builtins.eval``, raises ``pickle.UnpicklingError`` before anything runs. The
parsed arrays are then cached as HDF5, so the pickles are read once per file.

Imports nothing of minigrad outside ``minigrad.datasets`` (NumPy, h5py; SciPy lazily for SVHN).
"""
import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib

import numpy as np

from ._files import arrays_sha256
from .storage import (ChecksumError, DataNotFoundError, cache_dir, cache_path, labelled_dirs,
                      not_found_message, read_cache, write_cache)

CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR_META = "batches.meta"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}

# Published MD5s (https://www.cs.toronto.edu/~kriz/cifar.html for the tarball; the members'
# values are those torchvision checks; http://ufldl.stanford.edu/housenumbers/ for SVHN).
# Test-only override: tests monkeypatch this dict (see the module docstring).
MD5 = {
    CIFAR_TARBALL: "c58f30108f718f92721af3b95e74349a",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    CIFAR_META: "5ff9c542aee3614f3951f8cda6e48888",
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}

URLS = {
    CIFAR_TARBALL: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "train_32x32.mat": "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    "test_32x32.mat": "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
}

INFO = {
    "cifar10": {"license": "unspecified (free for research; see the CIFAR page)",
                "citation": "A. Krizhevsky, Learning Multiple Layers of Features from Tiny "
                            "Images, Tech. report, University of Toronto, 2009"},
    "svhn": {"license": "non-commercial use only",
             "citation": "Y. Netzer, T. Wang, A. Coates, A. Bissacco, B. Wu and A. Y. Ng, "
                         "Reading Digits in Natural Images with Unsupervised Feature Learning, "
                         "NIPS Workshop on Deep Learning and Unsupervised Feature Learning, 2011"},
}


def md5_bytes(data):
    return hashlib.md5(data).hexdigest()


def _remedy(fname):
    """What to do about a damaged file ``fname`` (a member of the extracted CIFAR folder, the
    tarball or an SVHN .mat)."""
    if fname in URLS:
        return f"replace it with a good copy (from {URLS[fname]}), or delete it"
    return (f"extract {CIFAR_FOLDER}/ again from a good {CIFAR_TARBALL} (from "
            f"{URLS[CIFAR_TARBALL]}), or delete the folder")


def _check(name, fname, label, data):
    """``data`` (bytes) must have the MD5 expected for ``fname``; ``label`` names the file."""
    expected = MD5[fname]
    actual = md5_bytes(data)
    if actual != expected:
        raise ChecksumError(
            f"{name}: checksum mismatch for {label}: MD5 is {actual}, expected {expected} "
            f"(a damaged, truncated or different file); {_remedy(fname)}")
    return data


def _unreadable(name, label, fname, e):
    """The error for a file whose checksum matched but which cannot be parsed (possible only
    when ``MD5`` was overridden): a ValueError naming the file, never a raw parser error."""
    return ValueError(f"{name}: cannot read {label} ({type(e).__name__}: {e}); "
                      f"{_remedy(fname)}")


# ------------------------------------------------------------------------------ unpickling

def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as r  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct as r
    return r


class _ArrayUnpickler(pickle.Unpickler):
    """Only plain containers and NumPy arrays: a second line of defence behind the checksum
    (see the module docstring for why CIFAR-10 needs an unpickler at all). find_class is the
    only way a pickle reaches a callable; it allows NumPy's array reconstruction and nothing
    else, so no pickle read here can call os.system, eval, open, ..."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray"):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            import codecs
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _unpickle(data):
    # SECURITY: unpickling can run arbitrary code.  Callers pass only bytes whose MD5 matched
    # the published checksum (the tarball's, or the member file's), and the unpickler above
    # refuses every global but NumPy's array reconstruction.  The CIFAR batches were written
    # by Python 2, hence encoding="bytes" (keys come back as bytes: b"data", b"labels").
    return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()


# ------------------------------------------------------------------------------ finding files

def _candidates(name, dirs):
    for d in dirs:
        for folder in (os.path.join(d, name), d):
            yield folder


def _not_found(name, split, wanted, labelled):
    urls = ", ".join(URLS[w] for w in wanted if w in URLS)
    get = f"Download it from {urls}." if urls else ""
    python_hint = (f"From Python, minigrad.datasets.load({name!r}, download=True) downloads "
                   f"and verifies it.")
    message = not_found_message(name, split, " or ".join(wanted), labelled, get, python_hint)
    return DataNotFoundError(message, name, split, wanted, [d for d, _ in labelled])


def _download(name, fname, dest_dir):
    """Fetch ``URLS[fname]`` into ``dest_dir/name/fname``, MD5-verified before the move."""
    folder = os.path.join(dest_dir, name)
    os.makedirs(folder, exist_ok=True)
    url = URLS[fname]
    fd, tmp = tempfile.mkstemp(prefix=fname + ".", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        with open(tmp, "rb") as f:
            _check(name, fname, url, f.read())
        path = os.path.join(folder, fname)
        os.replace(tmp, path)
        return path
    except ChecksumError:
        raise
    except Exception as e:
        raise OSError(f"{name}: could not download {url}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ------------------------------------------------------------------------------ parsing

def _cifar_from_batches(get, members, where):
    """``get(member)`` -> verified bytes.  Returns uint8 (N, 3, 32, 32), int64 (N,), classes.
    ``where`` (the tarball or folder) names the file in errors."""
    def unpickle(m):
        data = get(m)
        try:
            return _unpickle(data)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError) as e:
            raise _unreadable("cifar10", f"{where}: {m}", m, e) from e

    xs, ys = [], []
    for m in members:
        d = unpickle(m)
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[b"labels"], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise ValueError(f"cifar10: {m}: data {x.shape} / labels {y.shape}, expected "
                             f"(N, 3072) / (N,)")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    classes = list(CIFAR_CLASSES)
    try:
        meta = unpickle(CIFAR_META)
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[b"label_names"]]
    except (KeyError, FileNotFoundError):
        pass
    return np.concatenate(xs), np.concatenate(ys), classes


def _build_cifar(split, data_dir, download):
    name = "cifar10"
    labelled = labelled_dirs(data_dir)
    dirs = [d for d, _ in labelled]
    members = CIFAR_MEMBERS[split]
    for folder in _candidates(name, dirs):
        tar_path = os.path.join(folder, CIFAR_TARBALL)
        if os.path.isfile(tar_path):
            return _cifar_from_tarball(tar_path, members), {CIFAR_TARBALL: MD5[CIFAR_TARBALL]}
        ext = os.path.join(folder, CIFAR_FOLDER)
        if all(os.path.isfile(os.path.join(ext, m)) for m in members):
            def get(m, ext=ext):
                p = os.path.join(ext, m)
                if not os.path.isfile(p):
                    raise FileNotFoundError(p)
                with open(p, "rb") as f:
                    return _check(name, m, p, f.read())
            return (_cifar_from_batches(get, members, ext) + (ext,),
                    {m: MD5[m] for m in members})
    if download:
        tar_path = _download(name, CIFAR_TARBALL, cache_dir(data_dir))
        return _cifar_from_tarball(tar_path, members), {CIFAR_TARBALL: MD5[CIFAR_TARBALL]}
    raise _not_found(name, split, [CIFAR_TARBALL, CIFAR_FOLDER + "/"], labelled)


def _cifar_from_tarball(tar_path, members):
    with open(tar_path, "rb") as f:
        data = _check("cifar10", CIFAR_TARBALL, tar_path, f.read())
    # Only now, with the tarball's MD5 matching, are its members read (in memory) and unpickled.
    # (A tarball that matches the published MD5 is intact; the errors below can only come from
    # one whose MD5 was overridden, and still name the file.)
    damaged = (tarfile.TarError, EOFError, zlib.error, OSError)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except damaged as e:
        raise _unreadable("cifar10", tar_path, CIFAR_TARBALL, e) from e
    with tar:
        def get(m):
            try:
                fh = tar.extractfile(f"{CIFAR_FOLDER}/{m}")
                return fh.read()
            except KeyError:
                raise (FileNotFoundError if m == CIFAR_META else ValueError)(
                    f"cifar10: {tar_path} has no member {CIFAR_FOLDER}/{m}") from None
            except damaged as e:
                raise _unreadable("cifar10", tar_path, CIFAR_TARBALL, e) from e
        return _cifar_from_batches(get, members, tar_path) + (tar_path,)


def _build_svhn(split, data_dir, download):
    name = "svhn"
    fname = SVHN_FILES[split]
    labelled = labelled_dirs(data_dir)
    dirs = [d for d, _ in labelled]
    path = next((os.path.join(f, fname) for f in _candidates(name, dirs)
                 if os.path.isfile(os.path.join(f, fname))), None)
    if path is None:
        if not download:
            raise _not_found(name, split, [fname], labelled)
        path = _download(name, fname, cache_dir(data_dir))
    with open(path, "rb") as f:
        data = _check(name, fname, path, f.read())
    import scipy.io  # lazy: only SVHN needs it
    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except Exception as e:  # only with an overridden MD5: a file that matches is intact
        raise _unreadable(name, path, fname, e) from e
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(f"svhn: {path}: X {x.shape} / y {y.shape}, expected "
                         f"(32, 32, 3, N) / (N, 1)")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8)  # HWCN -> NCHW
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return (images, y, [str(d) for d in range(10)], path), {fname: MD5[fname]}


# ------------------------------------------------------------------------------ cache + load

def load(name, split, data_dir=None, download=False):
    """``cifar10`` or ``svhn``: ``(images float32 (N, 3, 32, 32) in [0, 1], labels int64, meta)``."""
    build = {"cifar10": _build_cifar, "svhn": _build_svhn}[name]
    sources = ([CIFAR_TARBALL] + CIFAR_MEMBERS[split]) if name == "cifar10" else [SVHN_FILES[split]]
    path = cache_path(name, split, data_dir)

    def sources_changed(attrs):
        recorded = json.loads(attrs.get("source_md5", "{}"))
        return None if any(recorded.get(f) == MD5[f] for f in sources) else \
            "it was built from different files"

    hit = read_cache(name, path, split, sources_changed)
    if hit is not None:
        arrays, attrs = hit
        classes, source = json.loads(attrs.get("classes", "[]")), path
        checks = json.loads(attrs.get("source_md5", "{}"))
    else:
        (raw_x, raw_y, classes, source), checks = build(split, data_dir, download)
        arrays = {f"{split}_images": raw_x, f"{split}_labels": raw_y}
        write_cache(name, path, split, arrays, {"source_md5": json.dumps(checks),
                                                 "classes": json.dumps(classes), "source": source})
    images = arrays[f"{split}_images"].astype(np.float32) / np.float32(255.0)
    labels = arrays[f"{split}_labels"].astype(np.int64)
    meta = {"name": name, "split": split, "classes": list(classes),
            "shape": tuple(images.shape[1:]), "num_examples": len(labels), "source": source,
            "checksum": next(iter(checks.values())), "checksums": dict(checks),
            "arrays_sha256": arrays_sha256(arrays), **INFO[name]}
    return images, labels, meta
