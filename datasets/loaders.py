"""``load(name, split)``: every data set by name. The embedded digits set and the IDX image
sets (MNIST, Fashion-MNIST) are read here, CIFAR-10 and SVHN in ``cifar_svhn``.

Every set comes back the same way: ``images`` float32 in [0, 1], NCHW; ``labels`` int64;
``metadata`` with ``classes``, ``shape`` (C, H, W), ``source`` and ``checksum``.

IDX files are looked for in the folders ``storage.search_dirs`` lists, first hit wins, each file
on its own (Debian's ``dataset-fashion-mnist`` puts its files in
``/usr/share/datasets/fashion-mnist``, a system folder); in each folder both
``<folder>/<name>/<file>`` and ``<folder>/<file>``, gzip-compressed (``.gz``) or not.
Every file is verified by the SHA-256 of its decompressed payload before it is used; a file
that does not match, or that cannot even be decompressed (corrupted or truncated ``.gz``),
raises ``ChecksumError`` (a ``ValueError``) naming the file and what to do about it.
The parsed arrays are cached (see ``storage``) with the payload hashes they came from.
"""
import gzip
import io
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import cifar_svhn
from ._files import arrays_sha256, parse_idx, read_h5, read_payload, sha256_bytes
from .storage import (ChecksumError, DataNotFoundError, cache_dir, cache_path, in_system_folder,
                      labelled_dirs, not_found_message, read_cache, write_cache)

SPLITS = ("train", "test")

# ---------------------------------------------------------------------------------------------
# digits: embedded in the package (datasets/data/digits.h5; see datasets/README.md)

DIGITS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.h5")
# arrays_sha256 of images, labels, train_index, test_index as exported by _export_digits.py
DIGITS_SHA256 = "9d8f67724811024f3b807bb90a1eedc80b1948fdcb5f7f30079d0caa493e7b7b"
# SHA-256 of the file itself, checked before HDF5 reads it (a damaged HDF5 file can make the
# HDF5 library fail in any way); _export_digits.py prints both digests
DIGITS_FILE_SHA256 = "eb05600319223994d34285f6b401c576949d6d90ae6102dff156aedffd8ff0ad"
DIGITS_CLASSES = [str(d) for d in range(10)]


def _load_digits(split):
    names = ("images", "labels", "train_index", "test_index")
    fix = "re-install minigrad (the file is part of the package)"
    try:
        with open(DIGITS_PATH, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise OSError(f"digits: cannot read the embedded file {DIGITS_PATH} ({e}); {fix}") from e
    if sha256_bytes(raw) != DIGITS_FILE_SHA256:
        raise ChecksumError(f"digits: the embedded file {DIGITS_PATH} is damaged or was changed: "
                            f"SHA-256 of the file is {sha256_bytes(raw)}, expected "
                            f"{DIGITS_FILE_SHA256}; {fix}")
    try:
        arrays, attrs = read_h5(io.BytesIO(raw), names)
    except Exception as e:  # a dataset missing, ... (the bytes are the expected ones)
        raise ChecksumError(f"digits: cannot read the embedded file {DIGITS_PATH} "
                            f"({type(e).__name__}: {e}); {fix}") from e
    actual = arrays_sha256(arrays)
    if actual != DIGITS_SHA256:
        raise ChecksumError(f"digits: {DIGITS_PATH} is corrupt: SHA-256 of its arrays is "
                            f"{actual}, expected {DIGITS_SHA256}; {fix}")
    rows = arrays[f"{split}_index"]
    images = arrays["images"][rows][:, None, :, :].astype(np.float32)
    labels = arrays["labels"][rows].astype(np.int64)
    meta = {
        "name": "digits", "split": split, "classes": list(DIGITS_CLASSES), "shape": (1, 8, 8),
        "num_examples": len(labels), "source": DIGITS_PATH, "checksum": actual,
        "license": "CC BY 4.0",
        "citation": "E. Alpaydin and C. Kaynak, Optical Recognition of Handwritten Digits, "
                    "UCI Machine Learning Repository, 1998 (via scikit-learn's load_digits)",
    }
    return images, labels, meta


# ---------------------------------------------------------------------------------------------
# IDX sets


@dataclass
class IDXSet:
    """An image set shipped as four IDX files, each known by its decompressed SHA-256."""
    name: str
    classes: list
    files: dict        # split -> (images file name, labels file name), without ".gz"
    sha256: dict       # file name -> SHA-256 of the decompressed payload
    urls: list = field(default_factory=list)   # mirrors; file URL = mirror + "/" + name + ".gz"
    gz_sha256: dict = field(default_factory=dict)  # published hash of the .gz, where known
    license: str = ""
    citation: str = ""
    shape: tuple = (1, 28, 28)


_STANDARD_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                   "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

IDX_SETS = {
    "fashion-mnist": IDXSet(
        name="fashion-mnist",
        classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"],
        files=_STANDARD_FILES,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        urls=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"],
        license="MIT", citation="H. Xiao, K. Rasul and R. Vollgraf, Fashion-MNIST, "
                                "arXiv:1708.07747, 2017"),
    "mnist": IDXSet(
        name="mnist",
        classes=[str(d) for d in range(10)],
        files=_STANDARD_FILES,
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        gz_sha256={
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        urls=["https://ossci-datasets.s3.amazonaws.com/mnist",
              "https://storage.googleapis.com/cvdf-datasets/mnist"],
        license="CC BY-SA 3.0", citation="Y. LeCun, C. Cortes and C. J. C. Burges, "
                                         "The MNIST database of handwritten digits"),
}



def names():
    """The data sets ``load`` knows."""
    return ("digits",) + tuple(IDX_SETS) + ("cifar10", "svhn")


def _find(spec, fname, dirs):
    for d in dirs:
        for folder in (os.path.join(d, spec.name), d):
            for candidate in (fname + ".gz", fname):
                path = os.path.join(folder, candidate)
                if os.path.isfile(path):
                    return path
    return None


def _remedy(spec, fname, path):
    """What to do about a damaged data file."""
    if spec.name == "fashion-mnist" and in_system_folder(path):
        return "re-install the package: apt-get install --reinstall dataset-fashion-mnist"
    src = f" (from {spec.urls[0]}/{fname}.gz)" if spec.urls else ""
    deb = ("; on Debian/Ubuntu, apt-get install dataset-fashion-mnist provides good copies"
           if spec.name == "fashion-mnist" else "")
    return (f"replace it with a good copy{src}, or delete it (a copy in a later folder, if "
            f"any, is then used){deb}")


def _verified_payload(spec, fname, path):
    expected = spec.sha256[fname]
    try:
        data = read_payload(path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        # A corrupted or truncated .gz: reading it fails before its hash can be compared.
        raise ChecksumError(
            f"{spec.name}: {path} is corrupt or truncated (it cannot be decompressed: "
            f"{' '.join(str(e).split()) or 'unexpected end'}); "
            f"{_remedy(spec, fname, path)}") from e
    actual = sha256_bytes(data)
    if actual != expected:
        raise ChecksumError(
            f"{spec.name}: checksum mismatch for {path}: SHA-256 of the decompressed content "
            f"is {actual}, expected {expected} (a damaged or different file); "
            f"{_remedy(spec, fname, path)}")
    return data


def _not_found(spec, split, missing, dirs):
    files = [f"{f}.gz" for f in missing]
    src = f" from {spec.urls[0]}/" if spec.urls else ""
    get = (f"On Debian/Ubuntu, apt-get install dataset-fashion-mnist installs them (in "
           f"/usr/share/datasets/fashion-mnist, where they are found); or download them{src}."
           if spec.name == "fashion-mnist" else f"Download them{src}.")
    python_hint = (f"From Python, minigrad.datasets.load({spec.name!r}, download=True) "
                   f"downloads and verifies them." if spec.urls else "")
    message = not_found_message(spec.name, split, ", ".join(files), dirs, get, python_hint)
    return DataNotFoundError(message.rstrip(), spec.name, split, files,
                             [d for d, _ in dirs])


def _download(spec, fname, dest_dir):
    """Fetch ``fname.gz`` into ``dest_dir/name/``, verified before it is moved into place."""
    folder = os.path.join(dest_dir, spec.name)
    os.makedirs(folder, exist_ok=True)
    errors = []
    for mirror in spec.urls:
        url = f"{mirror}/{fname}.gz"
        fd, tmp = tempfile.mkstemp(prefix=fname + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                shutil.copyfileobj(resp, out)
            with open(tmp, "rb") as f:
                raw = f.read()
            if fname in spec.gz_sha256 and sha256_bytes(raw) != spec.gz_sha256[fname]:
                raise ChecksumError(f"{url}: SHA-256 {sha256_bytes(raw)}, expected "
                                    f"{spec.gz_sha256[fname]}")
            os.rename(tmp, tmp + ".gz")  # read_payload decompresses by the name's suffix
            tmp += ".gz"
            _verified_payload(spec, fname, tmp)
            path = os.path.join(folder, fname + ".gz")
            os.replace(tmp, path)
            return path
        except Exception as e:  # try the next mirror
            errors.append(f"{url}: {e}")
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError(f"{spec.name}: could not download {fname}.gz:\n  " + "\n  ".join(errors))


def _build(spec, split, data_dir, download):
    labelled = labelled_dirs(data_dir)
    dirs = [d for d, _ in labelled]
    paths = {f: _find(spec, f, dirs) for f in spec.files[split]}
    missing = [f for f, p in paths.items() if p is None]
    if missing and download:
        for f in missing:
            paths[f] = _download(spec, f, cache_dir(data_dir))
        missing = []
    if missing:
        raise _not_found(spec, split, missing, labelled)
    img_name, lab_name = spec.files[split]
    images = parse_idx(_verified_payload(spec, img_name, paths[img_name]), paths[img_name])
    labels = parse_idx(_verified_payload(spec, lab_name, paths[lab_name]), paths[lab_name])
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{spec.name}: {paths[img_name]} has {images.shape[0]} images but "
                         f"{paths[lab_name]} has {labels.shape[0]} labels")
    return {f"{split}_images": images, f"{split}_labels": labels}, paths


def _load_idx(spec, split, data_dir, download):
    path = cache_path(spec.name, split, data_dir)

    def sources_changed(attrs):
        for fname in spec.files[split]:
            if attrs.get(f"payload_sha256:{fname}") != spec.sha256[fname]:
                return f"it was built from a different {fname}"
        return None

    hit = read_cache(spec.name, path, split, sources_changed)
    if hit is not None:
        arrays, source = hit[0], path
    else:
        arrays, paths = _build(spec, split, data_dir, download)
        write_cache(spec.name, path, split, arrays,
                    {f"payload_sha256:{f}": spec.sha256[f] for f in spec.files[split]})
        source = ", ".join(paths.values())
    raw = arrays[f"{split}_images"]
    images = (raw.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    labels = arrays[f"{split}_labels"].astype(np.int64)
    img_name, lab_name = spec.files[split]
    meta = {
        "name": spec.name, "split": split, "classes": list(spec.classes),
        "shape": tuple(images.shape[1:]), "num_examples": len(labels), "source": source,
        "checksum": spec.sha256[img_name],
        "checksums": {img_name: spec.sha256[img_name], lab_name: spec.sha256[lab_name]},
        "license": spec.license, "citation": spec.citation,
    }
    return images, labels, meta


def load(name, split="train", data_dir=None, download=False):
    """Load a data set split as ``(images, labels, metadata)``.

    images: float32 array (N, C, H, W) in [0, 1];  labels: int64 array (N,);
    metadata: dict with ``classes``, ``shape`` (C, H, W), ``source`` (file or files read),
    ``checksum`` (SHA-256 the content was verified against), ``num_examples``, ``license``,
    ``citation``.

    name: ``"digits"`` (embedded, 1,437 train / 360 test 8x8 images), ``"mnist"`` or
    ``"fashion-mnist"`` (60,000 / 10,000 28x28 images, read from local IDX files; see the
    module docstring for where they are looked for). ``download=True`` fetches missing IDX
    files into the cache folder, verified by SHA-256 before use.
    """
    if split not in SPLITS:
        raise ValueError(f"load({name!r}): split must be 'train' or 'test', got {split!r}")
    key = str(name).lower().replace("_", "-")
    if key == "digits":
        return _load_digits(split)
    if key in IDX_SETS:
        return _load_idx(IDX_SETS[key], split, data_dir, download)
    if key in ("cifar10", "cifar-10", "svhn"):
        return cifar_svhn.load("svhn" if key == "svhn" else "cifar10", split, data_dir, download)
    raise ValueError(f"load: unknown data set {name!r}; supported: {', '.join(names())}")
