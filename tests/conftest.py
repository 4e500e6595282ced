"""Session-wide test set-up: three independent blocks.

1. "Data caches" (owned with datasets/): the tests never write to the user's data caches.
2. "GPU test double" (owned with tests/cupy_double.py and tests/test_gpu.py): which CuPy the
   `cupy` fixture gives, real CuPy or the NumPy-backed double.
3. "Study storage" (owned with cli/study/): the database URL (`study_storage_url`) that the
   multi-worker study tests share a study through.

Data caches.

``$MINIGRAD_CACHE`` (where ``minigrad.datasets`` caches parsed arrays and puts downloads; see
datasets/README.md) points at a temporary folder for the whole session.  It is set in
``os.environ`` here, when pytest imports this file and so before any test runs, which is how it
reaches everything: ``datasets.load`` in the tests, CLI commands run in-process, and child
processes (``minigrad`` subprocesses, ``mpiexec`` ranks, spawned study workers) that inherit the
environment.  ``$MINIGRAD_DATA`` is left as it is (a user's data folder is still searched) but
takes no cache files, since ``$MINIGRAD_CACHE`` comes first.

The session-scoped autouse fixture ``user_caches_untouched`` enforces it: it records
``~/.cache/minigrad`` (and the folder of ``$MINIGRAD_DATA``, if set) before the session (whether it
exists, and every entry's kind, size and mtime) and fails at the end, naming what changed.
"""
import atexit
import os
import shutil
import tempfile

import pytest
from postgres_server import fresh_database, postgres_url  # noqa: F401 (one server per session)

# ============================================================================ data caches

HOME_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "minigrad")
GUARDED = [HOME_CACHE] + ([os.environ["MINIGRAD_DATA"]] if os.environ.get("MINIGRAD_DATA") else [])

SESSION_CACHE = tempfile.mkdtemp(prefix="minigrad-test-cache-")
os.environ["MINIGRAD_CACHE"] = SESSION_CACHE
atexit.register(shutil.rmtree, SESSION_CACHE, True)


def snapshot(folder):
    """None if ``folder`` does not exist, else {relative path: (kind, size, mtime_ns)} for the
    folder itself ("") and everything under it (symbolic links not followed)."""
    if not os.path.lexists(folder):
        return None
    entries = {}

    def record(path):
        st = os.lstat(path)
        kind = ("folder" if os.path.isdir(path) and not os.path.islink(path)
                else "link" if os.path.islink(path) else "file")
        entries[os.path.relpath(path, folder) if path != folder else ""] = (
            kind, st.st_size if kind == "file" else 0, st.st_mtime_ns)

    record(folder)
    if entries[""][0] == "folder":
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                record(os.path.join(root, name))
    return entries


def changes(folder, before, after):
    """What differs between two snapshots of ``folder``, as a list of short sentences."""
    if before == after:
        return []
    if before is None:
        return [f"{folder} was created (with {max(len(after) - 1, 0)} entries: "
                f"{', '.join(sorted(k for k in after if k)[:10]) or 'empty'})"]
    if after is None:
        return [f"{folder} was removed"]
    out = []
    for key in sorted(set(before) | set(after)):
        path = os.path.join(folder, key) if key else folder
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is None:
            out.append(f"{path} was added ({new[0]}, {new[1]} bytes)")
        elif new is None:
            out.append(f"{path} was removed ({old[0]}, {old[1]} bytes)")
        elif old[0] != new[0]:
            out.append(f"{path} changed from a {old[0]} to a {new[0]}")
        elif old[1] != new[1]:
            out.append(f"{path} changed size ({old[1]} -> {new[1]} bytes)")
        else:
            out.append(f"{path} was modified (mtime changed)" if old[0] == "file" else
                       f"{path} ({old[0]}) was modified: entries were written in it")
    return out


@pytest.fixture(scope="session", autouse=True)
def user_caches_untouched():
    """Fails the session if it changed ~/.cache/minigrad (or the folder of $MINIGRAD_DATA)."""
    before = {folder: snapshot(folder) for folder in GUARDED}
    yield
    found = [c for folder in GUARDED for c in changes(folder, before[folder], snapshot(folder))]
    if found:
        pytest.fail("the test session wrote to the user's data cache (tests must use the "
                    f"temporary $MINIGRAD_CACHE={SESSION_CACHE} set in tests/conftest.py, or "
                    "their own folder): " + "; ".join(found), pytrace=False)


# ============================================================================ GPU test double
# Real CuPy when `import cupy` works and it sees a CUDA device, otherwise the NumPy-backed double
# of tests/cupy_double.py; MINIGRAD_TEST_CUPY=real|double forces one. The choice is printed in
# pytest's header and is the parameter id of every test that uses the `cupy` fixture
# (test_x[cupy-real] / test_x[cupy-double]); it is also left in os.environ as MINIGRAD_TEST_CUPY
# for subprocesses (an mpiexec script installs the double itself: cupy_double.install()).
# The double is in sys.modules only while a test that uses the fixture runs.


def _real_cupy_works():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - not installed, no driver, no device: no usable GPU
        return False


def _cupy_backend():
    forced = os.environ.get("MINIGRAD_TEST_CUPY", "").strip().lower()
    if forced in ("real", "double"):
        return forced
    if forced:
        raise pytest.UsageError(f"MINIGRAD_TEST_CUPY={forced!r}: expected 'real' or 'double'")
    return "real" if _real_cupy_works() else "double"


CUPY_BACKEND = _cupy_backend()
os.environ["MINIGRAD_TEST_CUPY"] = CUPY_BACKEND


def pytest_report_header(config):
    return (f"cupy backend: {CUPY_BACKEND}"
            + (" (tests/cupy_double.py, NumPy-backed)" if CUPY_BACKEND == "double" else ""))


@pytest.fixture(params=[CUPY_BACKEND], ids=lambda backend: f"cupy-{backend}")
def cupy(request):
    """The `cupy` module of this run: real CuPy, or the double installed as `cupy` in
    sys.modules for this test only."""
    if request.param == "real":
        import cupy as real
        yield real
        return
    try:
        import cupy_double
    except ImportError:  # tests/ became a package
        from tests import cupy_double
    with cupy_double.installed() as double:
        yield double


# ============================================================================ study storage

@pytest.fixture(params=["sqlite", "postgresql"])
def study_storage_url(request, tmp_path):
    """The --storage URL the multi-worker study tests (tests/test_cli_study_workers.py) share
    their study through, each test once per database: SQLite in a temporary folder, and an
    empty database of its own on the session's throwaway PostgreSQL server (tests/
    postgres_server.py: skipped without PostgreSQL's binaries or driver, failed instead under
    MINIGRAD_REQUIRE_POSTGRES=1)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study-storage.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))
