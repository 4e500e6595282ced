"""minigrad/functional/malloc.py: importing minigrad.functional sets glibc's malloc to keep
freed memory, unless the user opted out (MINIGRAD_MALLOC=system) or chose a glibc policy of
their own; read in a fresh process each, since the policy is set once, at import."""
import os
import subprocess
import sys

import pytest

GLIBC = (hasattr(os, "confstr") and
         (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"))


def applied(**env):
    clean = {k: v for k, v in os.environ.items()
             if k != "MINIGRAD_MALLOC" and not k.startswith("MALLOC_")}
    code = "import minigrad.functional.malloc as m; print(m.applied)"
    result = subprocess.run([sys.executable, "-c", "import minigrad; " + code],
                            env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's; elsewhere it is never applied")
def test_the_policy_is_set_at_import_on_glibc():
    assert applied() == "True"


@pytest.mark.parametrize("env", [{"MINIGRAD_MALLOC": "system"},
                                 {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_an_opt_out_or_the_users_own_glibc_policy_is_left_alone(env):
    assert applied(**env) == "False"


def refault_count(**env):
    """Minor page faults of allocating and filling a 64 MiB array again after freeing one of
    the same size (larger than glibc's largest mmap threshold, 32 MiB), in a fresh process."""
    clean = {k: v for k, v in os.environ.items()
             if k != "MINIGRAD_MALLOC" and not k.startswith("MALLOC_")}
    code = ("import resource, numpy as np, minigrad.functional\n"
            "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "a = np.ones(16 * 2**20, np.float32); del a\n"
            "before = faults(); a = np.ones(16 * 2**20, np.float32)\n"
            "print(faults() - before)")
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's; elsewhere it is never applied")
def test_a_freed_block_above_the_mmap_threshold_is_reused_without_page_faults():
    # without the policy glibc maps a 64 MiB block afresh each time and the kernel faults its
    # pages in (hundreds of faults even with transparent huge pages); with it, the block comes
    # back from the heap already mapped
    system = refault_count(MINIGRAD_MALLOC="system")
    assert system >= 16, system   # the reference: fresh pages (at least one per 4 MiB)
    assert refault_count() <= system // 10
