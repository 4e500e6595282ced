"""The README's code runs as written, and CI runs the README's test command."""
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_runs_and_its_hessian_vector_product_is_right(capsys):
    code = blocks("python")[0]
    example = (ROOT / "examples" / "quickstart.py").read_text().splitlines()[1:]  # minus its docstring
    assert [ln for ln in code.splitlines() if ln.strip()] == [ln for ln in example if ln.strip()]
    env = {}
    exec(compile(code, "README quick start", "exec"), env)
    X, y, w, v, hv = (env[k].numpy() for k in ("X", "y", "w", "v", "hv"))

    def grad(w):
        z = np.tanh(X @ w)
        return X.T @ (2 * (z - y) * (1 - z ** 2)) / len(y)

    eps = 1e-6
    np.testing.assert_allclose(hv, (grad(w + eps * v) - grad(w - eps * v)) / (2 * eps), rtol=1e-6)
    assert "H v" in capsys.readouterr().out


def test_gradcheck_example_runs():
    (code,) = [b for b in blocks("python") if "gradgradcheck(Cube.apply" in b]
    exec(compile(code, "README gradcheck example", "exec"), {})


def test_curvature_example_runs_and_its_eigenvalues_are_the_dense_ones():
    (code,) = [b for b in blocks("python") if "HessianOperator(loss" in b]
    env = {}
    exec(compile(code, "README curvature example", "exec"), env)
    dense = np.linalg.eigvalsh(env["H"].dense())  # a backend array, NumPy on the CPU
    np.testing.assert_allclose(env["top"], dense[::-1][:3], rtol=1e-6, atol=1e-10)
    assert env["A"].shape == (21, 21) and env["G"].shape == (16, 16)


def test_ci_runs_the_readme_test_command():
    setup = blocks("bash")[:2]   # the two set-up commands come first
    assert setup[0].strip().startswith("pip install -e . && minigrad train")
    test_command = setup[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_command_lines_parse():
    """Every `minigrad ...` line of the README names a command and options that exist."""
    import shlex

    from minigrad.cli import main

    import re

    parts = [part.strip() for block in blocks("bash") for line in block.splitlines()
             for part in line.split("#")[0].split("&&")]
    lines = [re.sub(r"^(\w+=\S+ )*mpiexec -n \d+ ", "", part) for part in parts]
    lines = [line for line in lines if line.startswith("minigrad ")]
    assert len(lines) >= 9
    for line in lines:
        name, *args = shlex.split(line)[1:]
        command = main.get_command(None, name)
        assert command is not None, line
        command.make_context(name, args, resilient_parsing=False)


def test_optimizer_example_runs_and_each_step_is_reported():
    (code,) = [b for b in blocks("python") if "TRCG(model.parameters()" in b]
    env = {}
    exec(compile(code, "README optimizer example", "exec"), env)
    info = env["opt"].info
    assert info["cg_iterations"] >= 1 and "rho" in info and "radius" in info
