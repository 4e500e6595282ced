"""Damaged data files are reported as the documented errors, naming the file and what to do.

A corrupted or truncated IDX ``.gz`` raises ``ChecksumError`` (a ValueError, never a raw
zlib.error / EOFError / BadGzipFile), and ``minigrad train`` turns it into one line on stderr with
exit status 1; a damaged HDF5 cache is never parsed (its SHA-256 is checked first), it is
rebuilt with a warning; CIFAR-10/SVHN files likewise; files that are missing get a message that a
command-line user can act on.  The synthetic tests always run; those on the real Fashion-MNIST
files (copied to a temporary folder and damaged there) run where the files are installed, and
must run under MINIGRAD_REQUIRE_DATA=1.  Also: tests/conftest.py's guard of the user's cache.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import minigrad.datasets as D
from minigrad.cli import main
from minigrad.datasets import cifar_svhn as CS
from minigrad.datasets import loaders, storage
from minigrad.datasets._files import write_idx

FASHION = loaders.IDX_SETS["fashion-mnist"]
FILES = [f for split in ("train", "test") for f in FASHION.files[split]]
REAL_DIRS = storage.search_dirs()  # as the session has them, before any test's fixture
RAW_ERRORS = ("zlib.error", "EOFError", "BadGzipFile", "Traceback", "Aborted")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test has its own ~, cache and data folder; no system folder (real data is copied
    explicitly by the tests that use it)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MINIGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(storage, "SYSTEM_DIRS", [])
    monkeypatch.setattr(CS, "MD5", dict(CS.MD5))
    return tmp_path


# ------------------------------------------------------------------------------ damage

def flip_middle_byte(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def truncate(path, size=None):
    n = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(n // 2 if size is None else size)


def bad_deflate_block(path):
    """The first deflate block of the .gz gets the invalid block type 3 (zlib.error)."""
    data = bytearray(open(path, "rb").read())
    flags, offset = data[3], 10
    if flags & 4:
        offset += 2 + int.from_bytes(data[10:12], "little")
    for bit in (8, 16):
        if flags & bit:
            offset = data.index(0, offset) + 1
    if flags & 2:
        offset += 2
    data[offset] = 0x07
    open(path, "wb").write(bytes(data))


DAMAGE = {
    "flipped byte": flip_middle_byte,
    "bad deflate block": bad_deflate_block,
    "truncated": truncate,
    "truncated to 10 bytes": lambda p: truncate(p, 10),
    "empty": lambda p: truncate(p, 0),
    "trailing garbage": lambda p: open(p, "ab").write(b"garbage"),
    "not gzip": lambda p: open(p, "wb").write(b"this is not a gzip file\n" * 10),
}


def one_error_line(stderr):
    """The single `Error: ...` line of a failed command, checked to be the only output."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert not any(word in stderr for word in RAW_ERRORS), stderr
    return lines[0]


# ------------------------------------------------------------------------------ synthetic IDX

def synthetic_fashion(tmp_path, monkeypatch, n_train=48, n_test=16):
    """Fashion-MNIST-shaped IDX files in $MINIGRAD_DATA/fashion-mnist, registered under the
    real name (with their own SHA-256s) so that `minigrad train --dataset fashion-mnist` in this
    process reads them."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    sizes = {"train": n_train, "test": n_test}
    sha = {}
    for split, (images, labels) in FASHION.files.items():
        n = sizes[split]
        sha[images] = hashlib.sha256(write_idx(
            str(folder / f"{images}.gz"), rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))).hexdigest()
        sha[labels] = hashlib.sha256(write_idx(
            str(folder / f"{labels}.gz"), (np.arange(n) % 10).astype(np.uint8))).hexdigest()
    spec = loaders.IDXSet(name="fashion-mnist", classes=FASHION.classes, files=FASHION.files,
                          sha256=sha, urls=FASHION.urls)
    monkeypatch.setitem(loaders.IDX_SETS, "fashion-mnist", spec)
    return folder


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_gz_raises_checksum_error_naming_the_file(tmp_path, monkeypatch, damage):
    folder = synthetic_fashion(tmp_path, monkeypatch, n_train=2000)
    path = folder / "train-images-idx3-ubyte.gz"
    DAMAGE[damage](path)
    with pytest.raises(D.ChecksumError) as e:
        D.load("fashion-mnist", "train")
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert str(path) in msg and "train-images-idx3-ubyte" in msg
    assert ("corrupt or truncated" in msg) or ("checksum mismatch" in msg), msg
    assert "replace it with a good copy" in msg and "dataset-fashion-mnist" in msg
    assert not os.path.exists(D.cache_path("fashion-mnist", "train"))  # nothing cached
    # the labels file is fine; the test split is unaffected
    D.load("fashion-mnist", "test")


def test_damaged_gz_in_the_system_folder_says_reinstall(tmp_path, monkeypatch):
    folder = synthetic_fashion(tmp_path, monkeypatch)
    monkeypatch.setattr(storage, "SYSTEM_DIRS", [str(tmp_path / "data")])
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "elsewhere"))
    truncate(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(D.ChecksumError, match="corrupt or truncated") as e:
        D.load("fashion-mnist", "test")
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in str(e.value)
    assert "apt-get install --reinstall dataset-fashion-mnist" in str(e.value)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "bad deflate block"])
def test_cli_reports_a_damaged_gz_in_one_line(tmp_path, monkeypatch, damage):
    folder = synthetic_fashion(tmp_path, monkeypatch)
    path = folder / ("train-labels-idx1-ubyte.gz" if damage == "truncated"
                     else "train-images-idx3-ubyte.gz")
    DAMAGE[damage](path)
    result = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--steps", "1",
                                       "--hidden", "8", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert type(result.exception) is SystemExit, repr(result.exception)  # not EOFError etc.
    line = one_error_line(result.stderr)
    assert str(path) in line and "fashion-mnist" in line


def test_cli_not_found_message_is_for_command_line_users(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--steps", "1",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "missing train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in line
    assert "apt-get install dataset-fashion-mnist" in line and "MINIGRAD_DATA" in line
    assert str(tmp_path / "data" / "fashion-mnist") in line
    assert "pass download=True" not in line  # the CLI has no such option
    assert "From Python, minigrad.datasets.load('fashion-mnist', download=True)" in line


# ------------------------------------------------------------------------------ the HDF5 cache

def _no_hdf5_reads(monkeypatch):
    """From now on opening an HDF5 file for reading fails the test (writing is allowed)."""
    real = h5py.File

    def guarded(name, mode="r", *args, **kwargs):
        if mode == "r":
            raise AssertionError(f"HDF5 asked to parse {name!r}")
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", guarded)
    return real


CACHE_DAMAGE = {
    "flipped byte": flip_middle_byte,
    "flipped header byte": lambda p: _flip_at(p, 30),
    "truncated": truncate,
    "empty": lambda p: truncate(p, 0),
    "garbage": lambda p: open(p, "wb").write(b"\x89HDF\r\n\x1a\n" + bytes(1000)),
}


def _flip_at(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_damaged_cache_is_never_parsed_and_is_rebuilt(tmp_path, monkeypatch, damage):
    synthetic_fashion(tmp_path, monkeypatch)
    x, y, _ = D.load("fashion-mnist", "train")
    path = D.cache_path("fashion-mnist", "train")
    assert path.startswith(str(tmp_path / "cache"))
    with open(path, "rb") as f:
        assert f.read(19) == b"minigrad-h5-sha256:"  # the checksum in the HDF5 user block
    CACHE_DAMAGE[damage](path)
    real = _no_hdf5_reads(monkeypatch)  # a damaged file can make HDF5 hang: it must not see it
    with pytest.warns(UserWarning, match="corrupt or stale") as w:
        x2, y2, meta = D.load("fashion-mnist", "train")
    assert path in str(w[0].message) and "rebuilding it" in str(w[0].message)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert meta["source"] != path  # read from the IDX files
    monkeypatch.setattr(h5py, "File", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: now served from the cache without a warning
        x3, _, meta3 = D.load("fashion-mnist", "train")
    assert meta3["source"] == path
    np.testing.assert_array_equal(x3, x)


def test_cache_of_the_old_format_is_rebuilt(tmp_path, monkeypatch):
    """A cache written before the checksum header (CACHE_VERSION 1) is not trusted."""
    from minigrad.datasets._files import write_h5_atomic
    synthetic_fashion(tmp_path, monkeypatch)
    x, y, _ = D.load("fashion-mnist", "test")
    path = D.cache_path("fashion-mnist", "test")
    with h5py.File(path, "r") as f:  # h5py reads it, skipping the user block
        arrays = {k: f[k][()] for k in f}
        attrs = dict(f.attrs)
    attrs["version"] = 1
    write_h5_atomic(path, arrays, attrs)  # no user block
    with pytest.warns(UserWarning, match="no checksum header"):
        _, y2, meta = D.load("fashion-mnist", "test")
    np.testing.assert_array_equal(y2, y)
    assert meta["source"] != path


def test_damaged_cache_without_the_files_is_a_clear_error(tmp_path, monkeypatch):
    folder = synthetic_fashion(tmp_path, monkeypatch)
    D.load("fashion-mnist", "test")
    shutil.rmtree(folder)
    path = D.cache_path("fashion-mnist", "test")
    truncate(path)
    with pytest.warns(UserWarning, match="corrupt or stale"), \
            pytest.raises(D.DataNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        D.load("fashion-mnist", "test")


def test_cli_rebuilds_a_damaged_cache(tmp_path, monkeypatch):
    synthetic_fashion(tmp_path, monkeypatch)
    D.load("fashion-mnist", "train")
    path = D.cache_path("fashion-mnist", "train")
    flip_middle_byte(path)
    result = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--steps", "1",
                                       "--hidden", "8", "--batch-size", "16",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    # the CLI prints the loader's warning as one line
    warned = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warned) == 1 and "corrupt" in warned[0], result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.load("fashion-mnist", "train")[2]["source"] == path


# ------------------------------------------------------------------------------ CIFAR-10, SVHN

def _cifar_tarball(path):
    import io
    import pickle
    import tarfile
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            data = pickle.dumps({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                                 b"labels": [1, 2, 3, 4]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{m}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_damaged_cifar_tarball(tmp_path, damage):
    tar = tmp_path / "data" / "cifar10" / CS.CIFAR_TARBALL
    CS.MD5[CS.CIFAR_TARBALL] = _cifar_tarball(str(tar))
    DAMAGE[damage](tar)
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as e:
        D.load("cifar10", "test")
    assert str(tar) in str(e.value) and CS.URLS[CS.CIFAR_TARBALL] in str(e.value)
    # even a damaged tarball whose MD5 were accepted is a ValueError naming it, never a raw
    # tarfile/zlib/EOF error
    CS.MD5[CS.CIFAR_TARBALL] = hashlib.md5(tar.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="cannot read|has no member") as e:
        D.load("cifar10", "test")
    assert str(tar) in str(e.value)


def test_damaged_cifar_member_and_svhn_file(tmp_path):
    import tarfile
    src = tmp_path / "src.tar.gz"
    _cifar_tarball(str(src))
    with tarfile.open(src) as t:
        t.extractall(tmp_path / "data")
    member = tmp_path / "data" / CS.CIFAR_FOLDER / "test_batch"
    CS.MD5["test_batch"] = hashlib.md5(member.read_bytes()).hexdigest()
    truncate(member)
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as e:
        D.load("cifar10", "test")
    assert str(member) in str(e.value) and "extract cifar-10-batches-py/ again" in str(e.value)
    CS.MD5["test_batch"] = hashlib.md5(member.read_bytes()).hexdigest()  # accepted, still damaged
    with pytest.raises(ValueError, match="cannot read") as e:
        D.load("cifar10", "test")
    assert str(member.parent) in str(e.value)

    scipy_io = pytest.importorskip("scipy.io")
    mat = tmp_path / "data" / "svhn" / "test_32x32.mat"
    mat.parent.mkdir(parents=True)
    scipy_io.savemat(str(mat), {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                "y": np.array([[1], [10]], np.uint8)})
    CS.MD5["test_32x32.mat"] = hashlib.md5(mat.read_bytes()).hexdigest()
    truncate(mat)
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as e:
        D.load("svhn", "test")
    assert str(mat) in str(e.value) and CS.URLS["test_32x32.mat"] in str(e.value)
    CS.MD5["test_32x32.mat"] = hashlib.md5(mat.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="cannot read") as e:
        D.load("svhn", "test")
    assert str(mat) in str(e.value)


def test_cli_reports_a_damaged_cifar_tarball_in_one_line(tmp_path):
    tar = tmp_path / "data" / CS.CIFAR_TARBALL
    CS.MD5[CS.CIFAR_TARBALL] = _cifar_tarball(str(tar))
    truncate(tar)
    result = CliRunner().invoke(main, ["train", "--dataset", "cifar10", "--steps", "1",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert str(tar) in line and "checksum mismatch" in line


# ------------------------------------------------------------------------------ real files

def real_fashion_copy(tmp_path):
    """The installed Fashion-MNIST files copied (as .gz) to tmp_path/data/fashion-mnist."""
    found = {f: loaders._find(FASHION, f, REAL_DIRS) for f in FILES}
    missing = [f for f, p in found.items() if p is None]
    if missing:
        if os.environ.get("MINIGRAD_REQUIRE_DATA") == "1":
            pytest.fail(f"MINIGRAD_REQUIRE_DATA=1 but Fashion-MNIST is missing: {missing}")
        pytest.skip("Fashion-MNIST is not installed")
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for f, p in found.items():
        if p.endswith(".gz"):
            shutil.copyfile(p, folder / f"{f}.gz")
        else:
            with open(p, "rb") as src, gzip.open(folder / f"{f}.gz", "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
    return folder


def test_real_files_damaged_through_the_api(tmp_path):
    folder = real_fashion_copy(tmp_path)
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    flip_middle_byte(images)
    truncate(labels)
    with pytest.raises(D.ChecksumError, match="corrupt or truncated|checksum mismatch") as e:
        D.load("fashion-mnist", "train")
    assert str(images) in str(e.value)
    with pytest.raises(D.ChecksumError, match="corrupt or truncated") as e:
        D.load("fashion-mnist", "test")
    assert str(labels) in str(e.value)
    test_images = folder / "t10k-images-idx3-ubyte.gz"
    bad_deflate_block(test_images)  # what gzip reports as a zlib.error
    with pytest.raises(D.ChecksumError, match="invalid block type") as e:
        D.load("fashion-mnist", "test")
    assert str(test_images) in str(e.value)
    for split in ("train", "test"):
        assert not os.path.exists(D.cache_path("fashion-mnist", split))


def _minigrad(tmp_path, *args):
    env = dict(os.environ, MINIGRAD_DATA=str(tmp_path / "data"),
               MINIGRAD_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "minigrad.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_real_files_damaged_through_the_cli(tmp_path):
    """`minigrad train --dataset fashion-mnist` in a subprocess (the real entry point, real
    files in $MINIGRAD_DATA): one line, exit 1, no traceback, for a flipped byte and a
    truncation; then, with the files repaired, a damaged cache is rebuilt with a warning."""
    folder = real_fashion_copy(tmp_path)
    good = {p.name: p.read_bytes() for p in folder.iterdir()}
    args = ["train", "--dataset", "fashion-mnist", "--steps", "1", "--hidden", "8",
            "--batch-size", "32"]
    for name, damage in [("train-images-idx3-ubyte.gz", flip_middle_byte),
                         ("train-labels-idx1-ubyte.gz", truncate)]:
        damage(folder / name)
        result = _minigrad(tmp_path, *args, "--out", str(tmp_path / name))
        assert result.returncode == 1, result.stdout + result.stderr
        line = one_error_line(result.stderr)
        assert str(folder / name) in line and "fashion-mnist" in line
        (folder / name).write_bytes(good[name])
    # the files are good again: the test split is cached, then its cache damaged
    D.load("fashion-mnist", "test")
    cache = D.cache_path("fashion-mnist", "test")
    assert cache.startswith(str(tmp_path / "cache"))
    flip_middle_byte(cache)
    result = _minigrad(tmp_path, *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"cache {cache} is corrupt or stale" in result.stderr and "rebuilding it" in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.load("fashion-mnist", "test")[2]["source"] == cache


# ------------------------------------------------------------------------------ the home guard

def test_session_cache_is_a_temporary_folder():
    import tempfile

    import conftest
    assert os.path.isdir(conftest.SESSION_CACHE)
    assert os.path.commonpath([conftest.SESSION_CACHE, tempfile.gettempdir()]) == \
        tempfile.gettempdir()
    assert not conftest.SESSION_CACHE.startswith(conftest.HOME_CACHE)
    assert conftest.HOME_CACHE in conftest.GUARDED
    assert loaders.cache_dir.__doc__ and "MINIGRAD_CACHE" in loaders.cache_dir.__doc__


def test_home_guard_names_what_changed(tmp_path):
    import conftest
    folder = str(tmp_path / "guarded")
    before = conftest.snapshot(folder)
    assert before is None and conftest.changes(folder, before, conftest.snapshot(folder)) == []
    os.makedirs(os.path.join(folder, "fashion-mnist"))
    created = conftest.changes(folder, before, conftest.snapshot(folder))
    assert created == [f"{folder} was created (with 1 entries: fashion-mnist)"]
    with open(os.path.join(folder, "a.h5"), "wb") as f:
        f.write(b"x" * 10)
    before = conftest.snapshot(folder)
    with open(os.path.join(folder, "a.h5"), "ab") as f:
        f.write(b"y")
    with open(os.path.join(folder, "fashion-mnist-train.h5"), "wb") as f:
        f.write(b"z" * 5)
    found = conftest.changes(folder, before, conftest.snapshot(folder))
    assert f"{os.path.join(folder, 'a.h5')} changed size (10 -> 11 bytes)" in found
    assert f"{os.path.join(folder, 'fashion-mnist-train.h5')} was added (file, 5 bytes)" in found
    assert any(s.startswith(f"{folder} (folder) was modified") for s in found)
    shutil.rmtree(folder)
    assert conftest.changes(folder, before, conftest.snapshot(folder)) == [f"{folder} was removed"]
