"""minigrad.datasets: the embedded digits set, IDX parsing, verification, caching, batches."""
import gzip
import hashlib
import os

import h5py
import numpy as np
import pytest

import minigrad.datasets as D
from minigrad.datasets import loaders, storage
from minigrad.datasets._files import parse_idx, write_h5_atomic, write_idx


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache folders, nor shares the session's cache
    (tests/conftest.py's $MINIGRAD_CACHE): each test has its own ~."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIGRAD_DATA", raising=False)
    monkeypatch.delenv("MINIGRAD_CACHE", raising=False)


# ------------------------------------------------------------------------------ digits

def test_digits_shapes_dtypes_ranges_and_split():
    xtr, ytr, mtr = D.load("digits", "train")
    xte, yte, mte = D.load("digits", split="test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0 and xtr.max() == 1.0
    assert set(np.unique(ytr)) == set(range(10)) and set(np.unique(yte)) == set(range(10))
    # pixel values are the 17 levels 0/16 .. 16/16
    np.testing.assert_array_equal(np.unique(xtr * 16), np.arange(17, dtype=np.float32))
    assert mtr["classes"] == [str(d) for d in range(10)] and mtr["shape"] == (1, 8, 8)
    assert mtr["checksum"] == loaders.DIGITS_SHA256 == mte["checksum"]
    assert mtr["source"].endswith("digits.h5") and mtr["num_examples"] == 1437


def test_digits_split_is_fixed_and_disjoint():
    with h5py.File(loaders.DIGITS_PATH, "r") as f:
        tr, te = f["train_index"][()], f["test_index"][()]
        assert f.attrs["sha256"] == loaders.DIGITS_SHA256
    assert len(tr) == 1437 and len(te) == 360
    assert len(np.intersect1d(tr, te)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(1797))
    a, _, _ = D.load("digits", "test")
    b, _, _ = D.load("digits", "test")
    np.testing.assert_array_equal(a, b)


def test_digits_checksum_detects_tampering(tmp_path, monkeypatch):
    with open(loaders.DIGITS_PATH, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == loaders.DIGITS_FILE_SHA256
    bad = tmp_path / "digits.h5"
    with h5py.File(loaders.DIGITS_PATH, "r") as f:
        arrays = {k: f[k][()] for k in f}
    arrays["labels"][0] = (arrays["labels"][0] + 1) % 10
    write_h5_atomic(bad, arrays)
    monkeypatch.setattr(loaders, "DIGITS_PATH", str(bad))
    # the file's own SHA-256 is checked before HDF5 reads it
    with pytest.raises(D.ChecksumError, match="SHA-256") as e:
        D.load("digits")
    assert loaders.DIGITS_FILE_SHA256 in str(e.value) and str(bad) in str(e.value)
    assert "re-install minigrad" in str(e.value)
    # and, behind it, the digest of the arrays
    monkeypatch.setattr(loaders, "DIGITS_FILE_SHA256", hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(D.ChecksumError, match="SHA-256") as e:
        D.load("digits")
    assert loaders.DIGITS_SHA256 in str(e.value) and str(bad) in str(e.value)


def test_unknown_names_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="unknown data set 'nope'.*digits"):
        D.load("nope")
    with pytest.raises(D.DataNotFoundError, match="cifar-10-python.tar.gz"):
        D.load("cifar10", data_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        D.load("digits", split="val")


# ------------------------------------------------------------------------------ batches

def _data(n=103):
    x = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    return x, np.arange(n, dtype=np.int64)


def test_batches_same_seed_same_order_and_each_example_once():
    x, y = _data()
    a = [yb for _, yb in D.batches(x, y, 10, seed=3)]
    b = [yb for _, yb in D.batches(x, y, 10, seed=3)]
    c = [yb for _, yb in D.batches(x, y, 10, seed=4)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b)) and len(a) == len(b) == 11
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), y)
    assert [len(t) for t in a] == [10] * 10 + [3]
    for xb, yb in D.batches(x, y, 10, seed=3):
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb.astype(np.float32))  # rows stay paired
    assert len(a) == D.num_batches(103, 10)


def test_batches_no_shuffle_and_drop_last():
    x, y = _data()
    got = [yb for _, yb in D.batches(x, y, 10, shuffle=False)]
    np.testing.assert_array_equal(np.concatenate(got), y)
    dropped = [yb for _, yb in D.batches(x, y, 10, seed=0, drop_last=True)]
    assert [len(t) for t in dropped] == [10] * 10 == [10] * D.num_batches(103, 10, True)
    assert len(np.unique(np.concatenate(dropped))) == 100


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_sharding_partitions_each_global_batch(drop_last):
    x, y = _data()
    world = 4
    full = [yb for _, yb in D.batches(x, y, 12, seed=7, drop_last=drop_last)]
    shards = [[yb for _, yb in D.batches(x, y, 12, seed=7, drop_last=drop_last, rank=r,
                                         world_size=world)] for r in range(world)]
    assert all(len(s) == len(full) for s in shards)
    for i, global_batch in enumerate(full):
        parts = [shards[r][i] for r in range(world)]
        np.testing.assert_array_equal(np.concatenate(parts), global_batch)  # disjoint, complete
        if len(global_batch) == 12:
            assert all(len(p) == 3 for p in parts)


def test_batches_errors():
    x, y = _data(10)
    with pytest.raises(ValueError, match="batch_size=10.*world_size=4"):
        D.batches(x, y, 10, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        D.batches(x, y, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        D.batches(x, y, 0)
    with pytest.raises(ValueError, match="labels"):
        D.batches(x, y[:5], 2)


# ------------------------------------------------------------------------------ IDX files

def test_parse_idx_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    for a in (rng.integers(0, 256, (5, 3, 4)).astype(np.uint8),
              rng.integers(-1000, 1000, 7).astype(np.int32),
              rng.standard_normal((2, 3)).astype(np.float32)):
        path = str(tmp_path / f"a_{a.dtype}.idx.gz")
        data = write_idx(path, a)
        with gzip.open(path, "rb") as f:
            assert f.read() == data
        b = parse_idx(data)
        assert b.dtype == a.dtype and b.dtype.isnative
        np.testing.assert_array_equal(b, a)
    # hand-written header: 2 images of 2x3, big-endian dims
    raw = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") \
        + (3).to_bytes(4, "big") + bytes(range(12))
    np.testing.assert_array_equal(parse_idx(raw), np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01\x00\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="needs"):
        parse_idx(raw[:-1])


def _fake_set(tmp_path, monkeypatch, n_train=20, n_test=6):
    """Register a small IDX set 'fake' whose files are written to tmp_path/src/fake."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "src" / "fake"
    folder.mkdir(parents=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 5, 4)).astype(np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 3, n_train).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 4)).astype(np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 3, n_test).astype(np.uint8)}
    sha = {}
    for name, a in arrays.items():
        sha[name] = hashlib.sha256(write_idx(str(folder / f"{name}.gz"), a)).hexdigest()
    spec = loaders.IDXSet(name="fake", classes=["a", "b", "c"], files=loaders._STANDARD_FILES,
                          sha256=sha, shape=(1, 5, 4))
    monkeypatch.setitem(loaders.IDX_SETS, "fake", spec)
    monkeypatch.setattr(storage, "SYSTEM_DIRS", [str(tmp_path / "src")])
    return spec, arrays, folder


def test_idx_set_loads_from_system_folder_and_caches(tmp_path, monkeypatch):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    x, y, meta = D.load("fake", "train", data_dir=cache)
    assert x.shape == (20, 1, 5, 4) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    assert str(folder) in meta["source"] and meta["classes"] == ["a", "b", "c"]
    assert meta["checksum"] == spec.sha256["train-images-idx3-ubyte"]
    cached = loaders.cache_path("fake", "train", cache)
    assert os.path.exists(cached)
    for p in folder.iterdir():  # from now on the cache alone serves
        p.unlink()
    x2, y2, meta2 = D.load("fake", "train", data_dir=cache)
    assert meta2["source"] == cached
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_search_order_data_dir_then_env_then_home(tmp_path, monkeypatch):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    env = tmp_path / "env"
    monkeypatch.setenv("MINIGRAD_DATA", str(env))
    dirs = D.search_dirs(tmp_path / "dd")
    assert dirs == [str(tmp_path / "dd"), str(env),
                    str(tmp_path / "home" / ".cache" / "minigrad"), str(tmp_path / "src")]
    # files directly in $MINIGRAD_DATA (no sub-folder) and uncompressed also work
    env.mkdir()
    for name, a in arrays.items():
        write_idx(str(env / name), a)
    x, y, meta = D.load("fake", "test")
    assert str(env) in meta["source"] and x.shape == (6, 1, 5, 4)
    assert os.path.exists(env / "fake-test.h5")  # cached in $MINIGRAD_DATA


def test_minigrad_cache_takes_the_cache_and_is_searched(tmp_path, monkeypatch):
    """$MINIGRAD_CACHE: where caches (and downloads) go, before $MINIGRAD_DATA; it is searched
    after $MINIGRAD_DATA (downloaded files are found there next time)."""
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    env, cache = tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv("MINIGRAD_DATA", str(env))
    monkeypatch.setenv("MINIGRAD_CACHE", str(cache))
    assert D.search_dirs() == [str(env), str(cache),
                               str(tmp_path / "home" / ".cache" / "minigrad"), str(tmp_path / "src")]
    assert D.cache_dir() == str(cache) and D.cache_dir(tmp_path / "dd") == str(tmp_path / "dd")
    assert D.cache_path("fake", "test") == str(cache / "fake-test.h5")
    D.load("fake", "test")
    assert os.listdir(cache) == ["fake-test.h5"] and not env.exists()
    assert not (tmp_path / "home").exists()
    monkeypatch.setenv("MINIGRAD_DATA", str(cache))  # the same folder twice is listed once
    assert D.search_dirs()[:2] == [str(cache), str(tmp_path / "home" / ".cache" / "minigrad")]


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, monkeypatch):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    bad = arrays["t10k-labels-idx1-ubyte"].copy()
    bad[0] ^= 1
    path = folder / "t10k-labels-idx1-ubyte.gz"
    actual = hashlib.sha256(write_idx(str(path), bad)).hexdigest()
    with pytest.raises(D.ChecksumError) as e:
        D.load("fake", "test", data_dir=tmp_path / "cache")
    msg = str(e.value)
    assert str(path) in msg and actual in msg and spec.sha256["t10k-labels-idx1-ubyte"] in msg
    assert not os.path.exists(loaders.cache_path("fake", "test", tmp_path / "cache"))


def test_atomic_cache_write_leaves_no_file_on_crash(tmp_path, monkeypatch):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    real = h5py.Group.create_dataset
    calls = []

    def crash(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:  # die halfway through writing the file
            raise KeyboardInterrupt("simulated crash")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", crash)
    with pytest.raises(KeyboardInterrupt):
        D.load("fake", "train", data_dir=cache)
    assert os.listdir(cache) == []  # neither the cache nor a temporary file is left
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    D.load("fake", "train", data_dir=cache)
    assert os.listdir(cache) == ["fake-train.h5"]


def test_atomic_write_keeps_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "x.h5"
    write_h5_atomic(path, {"a": np.arange(3)})
    monkeypatch.setattr(h5py.Group, "create_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write_h5_atomic(path, {"a": np.arange(5)})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["a"][()], np.arange(3))
    assert os.listdir(tmp_path) == ["x.h5"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered"])
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, monkeypatch, damage):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    x, y, _ = D.load("fake", "train", data_dir=cache)
    path = loaders.cache_path("fake", "train", cache)
    if damage == "garbage":
        with open(path, "wb") as f:
            f.write(b"not an hdf5 file")
    elif damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:  # valid HDF5 whose arrays no longer match the digest recorded in it
        with h5py.File(path, "r+") as f:
            f["train_labels"][0] = (f["train_labels"][0] + 1) % 3
    with pytest.warns(UserWarning, match="corrupt") as w:
        x2, y2, meta = D.load("fake", "train", data_dir=cache)
    assert path in str(w[0].message) and "rebuilding" in str(w[0].message)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(x2, x)
    assert str(folder) in meta["source"]
    _, _, meta3 = D.load("fake", "train", data_dir=cache)  # rebuilt: served from cache again
    assert meta3["source"] == path


def test_not_found_error_lists_folders_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "SYSTEM_DIRS", [str(tmp_path / "sys")])
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "env"))
    with pytest.raises(D.DataNotFoundError) as e:
        D.load("fashion-mnist", "train", data_dir=tmp_path / "dd")
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    for d in (tmp_path / "dd", tmp_path / "env", tmp_path / "home" / ".cache" / "minigrad",
              tmp_path / "sys"):
        assert str(d / "fashion-mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "t10k" not in msg
    # what a command-line user can do (install the package, put the files, set MINIGRAD_DATA);
    # download=True is offered as Python's option only
    assert "apt-get install dataset-fashion-mnist" in msg and "MINIGRAD_DATA" in msg
    assert "pass download=True" not in msg
    assert "From Python, minigrad.datasets.load('fashion-mnist', download=True)" in msg
    assert e.value.dataset == "fashion-mnist" and e.value.split == "train"
    assert e.value.missing == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert e.value.folders == D.search_dirs(tmp_path / "dd")


# ------------------------------------------------------------------------------ real data

def _real_data_or_skip(name):
    try:
        return D.load(name, "test")
    except D.DataNotFoundError as e:
        if os.environ.get("MINIGRAD_REQUIRE_DATA") == "1":
            pytest.fail(f"MINIGRAD_REQUIRE_DATA=1 but {name} is missing: {e}")
        pytest.skip(f"{name} not installed")


def test_fashion_mnist_loads_when_present():
    x, y, meta = _real_data_or_skip("fashion-mnist")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    assert meta["classes"][0] == "T-shirt/top" and meta["shape"] == (1, 28, 28)
    x2, y2, meta2 = D.load("fashion-mnist", "test")  # second time from the cache
    assert meta2["source"].endswith("fashion-mnist-test.h5")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    xtr, ytr, _ = D.load("fashion-mnist", "train")
    assert xtr.shape == (60000, 1, 28, 28) and np.bincount(ytr).tolist() == [6000] * 10


def test_datasets_imports_nothing_of_minigrad():
    import ast
    import pathlib
    root = pathlib.Path(D.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("minigrad"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("minigrad") for a in node.names), path


def test_download_verifies_before_use(tmp_path, monkeypatch):
    spec, arrays, folder = _fake_set(tmp_path, monkeypatch)
    mirror = tmp_path / "mirror"
    folder.rename(mirror)
    gz = {f: hashlib.sha256((mirror / f"{f}.gz").read_bytes()).hexdigest() for f in spec.sha256}
    monkeypatch.setattr(spec, "urls", [mirror.as_uri()])
    monkeypatch.setattr(spec, "gz_sha256", gz)
    cache = tmp_path / "cache"
    with pytest.raises(D.DataNotFoundError):
        D.load("fake", "train", data_dir=cache)
    x, y, meta = D.load("fake", "train", data_dir=cache, download=True)
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    assert sorted(os.listdir(cache / "fake")) == ["train-images-idx3-ubyte.gz",
                                                  "train-labels-idx1-ubyte.gz"]
    # a corrupted mirror file is rejected and nothing is kept
    write_idx(str(mirror / "t10k-labels-idx1-ubyte.gz"), arrays["t10k-labels-idx1-ubyte"] + 1)
    with pytest.raises(OSError, match="t10k-labels-idx1-ubyte.*SHA-256"):
        D.load("fake", "test", data_dir=cache, download=True)
    assert "t10k-labels-idx1-ubyte.gz" not in os.listdir(cache / "fake")
    assert not any(p.endswith((".part", ".gz.part", ".part.gz")) for p in os.listdir(cache / "fake"))
