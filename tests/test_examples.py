"""The scripts in examples/ run as written, and docs/reading-guide.md links every tutorial.

Each example is run as a separate process (the interpreter running the tests, a timeout), from
a folder of its own so that it cannot depend on the working directory; it must exit 0 and print
its key line: the numbered tutorials check their own numbers with asserts and print "ok: ..."
only when every check passed.
"""
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "reading-guide.md"
TIMEOUT_S = 120   # each takes about a second on an idle machine

KEY_LINES = {
    "quickstart.py": "H v",
    "01_scalar_tape.py": "ok: the hand tape, minigrad.grad and finite differences agree",
    "02_broadcasting_and_the_graph_walk.py": "ok: broadcast gradients summed back, reused gradients "
                                             "added, each node visited once",
    "03_hessian_vector_product.py": "ok: H v by double backward == dense Hessian @ v == finite "
                                    "differences of the gradient",
    "04_gauss_newton_product.py": "ok: G v == J^T H_L J v, G is PSD, H is indefinite, and they "
                                  "agree where z is linear",
    "05_kfac_factors.py": "ok: kron(G, A) is the exact Fisher block for one example and an "
                          "approximation for a batch",
    "06_steihaug_cg_step.py": "ok: Steihaug-CG stops where Algorithm 7.2 says, between the Cauchy "
                              "point and the exact step",
    "07_one_kfac_step_by_hand.py": "ok: the NumPy K-FAC steps match minigrad.optim.KFAC for both "
                                   "damping forms",
}


def example_files():
    return sorted(p.name for p in EXAMPLES.glob("*.py"))


def tutorials():
    """The numbered tutorials, examples/NN_*.py."""
    return [name for name in example_files() if re.fullmatch(r"\d\d_\w+\.py", name)]


def test_every_example_has_a_key_line():
    assert example_files() == sorted(KEY_LINES), "add the new example's key line to KEY_LINES"


@pytest.mark.parametrize("name", example_files())
def test_example_runs_and_prints_its_key_line(name, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    lines = done.stdout.splitlines()
    assert any(KEY_LINES[name] in line for line in lines), \
        f"{name} did not print {KEY_LINES[name]!r}; its output ends:\n" + "\n".join(lines[-10:])


def guide_links():
    """The relative link targets of the reading guide (no web addresses, no #fragments)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", GUIDE.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_reading_guide_links_every_tutorial():
    linked = {(GUIDE.parent / t).resolve() for t in guide_links()}
    missing = [name for name in tutorials() if (EXAMPLES / name).resolve() not in linked]
    assert tutorials(), "no numbered tutorials found in examples/"
    assert not missing, f"docs/reading-guide.md does not link {missing}"


def test_every_link_of_the_reading_guide_exists():
    broken = [t for t in guide_links() if not (GUIDE.parent / t).exists()]
    assert guide_links() and not broken, f"docs/reading-guide.md links missing files: {broken}"
