"""minigrad.datasets: CIFAR-10 and SVHN from tiny synthetic files (no network, no real data).

The synthetic files cannot match the published MD5s, so each test overrides the expected
checksums by monkeypatching ``cifar_svhn.MD5`` (the documented test-only hook).  The tests call
``cifar_svhn.load`` directly, which is what ``minigrad.datasets.load`` dispatches to once wired.
"""
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

import minigrad.datasets as D
from minigrad.datasets import cifar_svhn as CS

scipy_io = pytest.importorskip("scipy.io")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MINIGRAD_CACHE", raising=False)  # caches in $MINIGRAD_DATA, per test
    monkeypatch.setattr(CS, "MD5", dict(CS.MD5))  # tests override the expected checksums
    monkeypatch.setattr(CS, "URLS", dict(CS.URLS))


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _cifar_tarball(path, n=3, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(member, obj):
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i, m in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            x[0, 0], x[0, 1] = 0, 255
            y = [int(v) for v in rng.integers(0, 10, size=n)]
            batches[m] = (x, y)
            add(m, {b"data": x, b"labels": y, b"batch_label": m.encode()})
        add("batches.meta", {b"label_names": [f"c{k}".encode() for k in range(10)]})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return batches


def _svhn_mat(path, n=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255
    y = np.array([10, 1, 2, 10, 9][:n], dtype=np.uint8).reshape(n, 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy_io.savemat(path, {"X": x, "y": y})
    return x, y


def test_cifar10_tarball_shapes_labels_classes_and_cache(tmp_path):
    tar = tmp_path / "data" / "cifar10" / CS.CIFAR_TARBALL
    batches = _cifar_tarball(str(tar))
    CS.MD5[CS.CIFAR_TARBALL] = _md5(tar)
    x, y, meta = CS.load("cifar10", "train")
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    want_x = np.concatenate([batches[f"data_batch_{k}"][0] for k in range(1, 6)])
    np.testing.assert_array_equal(x, want_x.reshape(-1, 3, 32, 32) / np.float32(255))
    np.testing.assert_array_equal(y, sum((batches[f"data_batch_{k}"][1] for k in range(1, 6)), []))
    assert meta["classes"] == [f"c{k}" for k in range(10)] and meta["shape"] == (3, 32, 32)
    assert meta["checksum"] == CS.MD5[CS.CIFAR_TARBALL] and meta["source"] == str(tar)
    cache = D.cache_path("cifar10", "train")
    assert os.path.isfile(cache)
    xt, yt, mt = CS.load("cifar10", "test")
    assert xt.shape == (3, 3, 32, 32) and list(yt) == batches["test_batch"][1]
    os.unlink(tar)  # second load comes from the cache alone
    x2, y2, m2 = CS.load("cifar10", "train")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert m2["source"] == cache and m2["classes"] == meta["classes"]


def test_cifar10_extracted_folder(tmp_path):
    tar = tmp_path / "src.tar.gz"
    batches = _cifar_tarball(str(tar))
    dest = tmp_path / "data"
    with tarfile.open(tar) as t:
        t.extractall(dest)
    for m in ["test_batch", "batches.meta"]:
        CS.MD5[m] = _md5(dest / "cifar-10-batches-py" / m)
    x, y, meta = CS.load("cifar10", "test")
    assert x.shape == (3, 3, 32, 32) and list(y) == batches["test_batch"][1]
    assert meta["source"] == str(dest / "cifar-10-batches-py")


def test_cifar10_checksum_mismatch_names_file_and_both_hashes(tmp_path):
    tar = tmp_path / "data" / CS.CIFAR_TARBALL
    _cifar_tarball(str(tar))
    with pytest.raises(D.ChecksumError) as e:
        CS.load("cifar10", "train")
    msg = str(e.value)
    assert str(tar) in msg and _md5(tar) in msg and "c58f30108f718f92721af3b95e74349a" in msg
    assert not os.path.exists(D.cache_path("cifar10", "train"))


def test_svhn_shapes_label_mapping_and_cache(tmp_path):
    mat = tmp_path / "data" / "svhn" / "train_32x32.mat"
    raw_x, raw_y = _svhn_mat(str(mat))
    CS.MD5["train_32x32.mat"] = _md5(mat)
    x, y, meta = CS.load("svhn", "train")
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert list(y) == [0, 1, 2, 0, 9]  # 10 means the digit 0
    np.testing.assert_array_equal(x[1, 2, 3, 4], raw_x[3, 4, 2, 1] / np.float32(255))
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["checksums"] == {"train_32x32.mat": CS.MD5["train_32x32.mat"]}
    os.unlink(mat)
    x2, y2, m2 = CS.load("svhn", "train")
    np.testing.assert_array_equal(x2, x)
    assert m2["source"] == D.cache_path("svhn", "train")
    CS.MD5["train_32x32.mat"] = "0" * 32  # a cache built from other files is stale
    with pytest.warns(UserWarning, match="stale"), pytest.raises(D.DataNotFoundError):
        CS.load("svhn", "train")


def test_svhn_checksum_mismatch(tmp_path):
    mat = tmp_path / "data" / "test_32x32.mat"
    _svhn_mat(str(mat))
    with pytest.raises(D.ChecksumError) as e:
        CS.load("svhn", "test")
    msg = str(e.value)
    assert str(mat) in msg and _md5(mat) in msg and "eb5a983be6a315427106f1b164d9cef3" in msg


def test_not_found_lists_folders_and_files(tmp_path):
    for name, files in [("cifar10", [CS.CIFAR_TARBALL, "cifar-10-batches-py"]),
                        ("svhn", ["test_32x32.mat"])]:
        with pytest.raises(D.DataNotFoundError) as e:
            CS.load(name, "test", data_dir=tmp_path / "mine")
        msg = str(e.value)
        for f in files:
            assert f in msg
        for d in [tmp_path / "mine", tmp_path / "data", tmp_path / "home" / ".cache" / "minigrad"]:
            assert os.path.join(str(d), name) in msg


def test_download_verified_from_file_url(tmp_path):
    src = tmp_path / "remote" / "test_32x32.mat"
    _svhn_mat(str(src), n=4)
    CS.URLS["test_32x32.mat"] = src.as_uri()
    CS.MD5["test_32x32.mat"] = _md5(src)
    x, y, _ = CS.load("svhn", "test", download=True)
    assert x.shape == (4, 3, 32, 32) and list(y) == [0, 1, 2, 0]
    assert os.path.isfile(tmp_path / "data" / "svhn" / "test_32x32.mat")
    # a download whose checksum does not match is refused and not kept
    tar_src = tmp_path / "remote" / CS.CIFAR_TARBALL
    _cifar_tarball(str(tar_src))
    CS.URLS[CS.CIFAR_TARBALL] = tar_src.as_uri()
    with pytest.raises(D.ChecksumError, match="checksum mismatch"):
        CS.load("cifar10", "test", download=True)
    folder = tmp_path / "data" / "cifar10"
    assert not folder.exists() or os.listdir(folder) == []


def test_refuses_unexpected_pickle_globals():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        CS._unpickle(pickle.dumps({b"f": os.path.join}, protocol=2))
