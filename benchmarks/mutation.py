"""Mutation testing of minigrad with Cosmic Ray: by hand, not in CI (it is slow).

    pip install -e ".[test,dev]"
    python benchmarks/mutation.py hotspots            # the three hot spots (docs/testing.md)
    python benchmarks/mutation.py optim               # every file of optim/, smallest first
    python benchmarks/mutation.py --list              # every target, its functions and tests

Run it in a checkout of its own (a `git worktree`): Cosmic Ray writes each mutant into the
source file on disk, runs the tests, and writes the original back. The script refuses files with
uncommitted changes, restores every file it touched on exit (Ctrl-C, SIGTERM included) and checks
that `minigrad` is imported from this checkout (the editable install maps minigrad.optim ->
optim/, minigrad.cli -> cli/; a mutant written into a tree the interpreter does not import would
"survive" every test).

Each target is a set of files (optionally only some functions in them: the mutants whose line
lies inside one of the functions are run, the rest skipped) with a pytest selection:

  tests    the fast selection each mutant runs first (pytest -x: the first failure kills it)
  confirm  a wider selection that the mutants surviving `tests` run again; a mutant is counted
           as surviving only if it survives both.

One worker, at nice 15 (--nice): the machine is shared. A test run longer than
--timeout-factor x the unmutated run (+10 s) is a timeout, counted apart from the killed ones.
Results go to build/mutation/ (ignored by git): <target>.sqlite, the Cosmic Ray session (see
`cr-report`, `cr-html`); <target>.md, counts and the surviving mutants; summary.md, the table of
every target run in this invocation.
"""
import argparse
import ast
import datetime
import fnmatch
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --- which tests each source file needs ----------------------------------------------------------
# (glob of source files, fast selection, confirm selection); the first match wins.
TESTS = [
    ("optim/kfac*.py", ["tests/test_kfac.py"],
     ["tests/test_kfac.py", "tests/test_optim_training.py", "tests/test_capture.py",
      "tests/test_distributed.py", "-k", "kfac or KFAC or empty_shard or two_ranks"]),
    ("optim/sgd.py", ["tests/test_sgd.py", "tests/test_optim_training.py"], None),
    ("optim/schedules.py", ["tests/test_sgd.py", "tests/test_kfac.py"],
     ["tests/test_sgd.py", "tests/test_kfac.py", "tests/test_cli_train.py", "-k", "schedule"]),
    ("optim/optimizer.py", ["tests/test_sgd.py", "tests/test_kfac.py", "tests/test_trust_region.py",
                            "tests/test_optim_training.py"], None),
    ("optim/*.py", ["tests/test_trust_region.py", "tests/test_optim_training.py"], None),
    ("minigrad/curvature/*.py", ["tests/test_curvature.py", "tests/test_hessian_exact.py",
                                 "tests/test_spectrum.py"], None),
    ("minigrad/nn/capture.py", ["tests/test_capture.py", "tests/test_kfac.py"], None),
    ("minigrad/nn/noise_scale.py", ["tests/test_capture.py"], None),
    ("minigrad/nn/landscape.py", ["tests/test_landscape.py"], None),
    ("minigrad/nn/*.py", ["tests/test_nn.py", "tests/test_models.py", "tests/test_conv_pool.py"],
     ["tests/test_nn.py", "tests/test_models.py", "tests/test_conv_pool.py",
      "tests/test_capture.py", "tests/test_landscape.py"]),
    ("cli/train.py", ["tests/test_cli_train.py"], None),
    ("cli/training/*.py", ["tests/test_cli_train.py", "tests/test_cli_train_faults.py"], None),
    ("cli/hessian.py", ["tests/test_cli_hessian.py"], None),
    ("cli/inspect.py", ["tests/test_cli_inspect.py"], None),
    ("cli/plot*.py", ["tests/test_cli_plot.py"], None),
    ("cli/landscape.py", ["tests/test_landscape.py", "tests/test_cli_plot.py"], None),
    ("cli/parallel.py", ["tests/test_distributed.py"], None),
    ("cli/*.py", ["tests/test_cli_study.py"],
     ["tests/test_cli_study.py", "tests/test_cli_train.py", "tests/test_cli_plot.py"]),
]

# --- the hot spots: some functions only, and tests chosen for them -------------------------------
HOTSPOTS = {
    "hot-train-optimizer": {
        "functions": {"cli/training/optimizers.py": ["build_optimizer"]},
        "tests": ["tests/test_cli_hyperparameters_reach.py"],
        "confirm": ["tests/test_cli_hyperparameters_reach.py", "tests/test_cli_train.py",
                    "tests/test_optim_training.py"],
    },
    "hot-kfac-update": {
        "functions": {"optim/kfac.py": ["KFAC._step", "KFAC._running_factors",
                                        "KFAC._batch_factors", "KFAC._refresh_due",
                                        "KFAC._refresh_eigenbases", "KFAC._precondition_all",
                                        "KFAC._grad_matrix", "KFAC._kl_clip_factor",
                                        "KFAC._commit", "KFAC._apply"],
                      "optim/kfac_factors.py": ["precondition"]},
        "tests": ["tests/test_kfac.py", "tests/test_kfac_dense_steps.py",
                  "tests/test_kfac_schedule_edges.py"],
        "confirm": ["tests/test_kfac_dense_steps.py", "tests/test_kfac_schedule_edges.py"]
        + TESTS[0][2],
    },
    "hot-study-best-and-maps": {
        "functions": {"cli/study/results.py": ["best_index", "aggregate", "trial_result"],
                      "cli/sensitivity.py": ["maps"]},
        "tests": ["tests/test_cli_study_values.py"],
        "confirm": ["tests/test_cli_study_values.py", "tests/test_cli_study.py",
                    "tests/test_cli_study_options.py"],
    },
}
GROUPS = {"hotspots": list(HOTSPOTS)}
PACKAGES = {"optim": "optim", "curvature": "minigrad/curvature", "nn": "minigrad/nn", "cli": "cli"}

# --- the operators: a selective set (Offutt et al. 1996: ABS/AOR/LCR/ROR/UOI-like), not Cosmic
# Ray's all-pairs set, which replaces every binary operator by all 10 others (shifts and bit
# operators included) and every comparison by all 6 others: ~4x the mutants, nearly all of them
# killed at once by any test. --all-operators runs the full set.
OPERATORS = [
    r"core/ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Div|Mod_FloorDiv"
    r"|Pow_Mul|BitAnd_BitOr|BitOr_BitAnd|BitXor_BitOr)$",
    r"core/ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|Lt_GtE|LtE_Lt|LtE_Gt|Gt_GtE"
    r"|Gt_LtE|GtE_Gt|GtE_Lt|Is_IsNot|IsNot_Is)$",
    r"core/ReplaceUnaryOperator_(USub_UAdd|Delete_Not)$",
    r"core/(AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|ReplaceBreakWithContinue|ReplaceContinueWithBreak|ExceptionReplacer|NumberReplacer"
    r"|ZeroIterationForLoop|RemoveDecorator)$",
]


def tests_for(path):
    for pattern, tests, confirm in TESTS:
        if fnmatch.fnmatch(path, pattern):
            return tests, confirm
    raise SystemExit(f"no test selection for {path}: add it to TESTS in {__file__}")


def expand(names):
    """[(target name, {file: functions or None}, tests, confirm)] for the names asked."""
    out = []
    for name in names:
        if name in GROUPS:
            out.extend(expand(GROUPS[name]))
        elif name in HOTSPOTS:
            h = HOTSPOTS[name]
            out.append((name, h["functions"], h["tests"], h.get("confirm")))
        elif name in PACKAGES or (ROOT / name).is_dir():
            folder = ROOT / PACKAGES.get(name, name)
            files = sorted((p for p in folder.glob("*.py") if p.name != "__init__.py"),
                           key=lambda p: (p.stat().st_size, p.name))     # smallest first
            out.extend(expand([str(p.relative_to(ROOT)) for p in files]))
        elif (ROOT / name).is_file():
            tests, confirm = tests_for(name)
            out.append((name, {name: None}, tests, confirm))
        else:
            raise SystemExit(f"unknown target {name!r}: see --list")
    return out


def function_lines(path, qualnames):
    """{qualname: (first line, last line)} of the functions (decorators included)."""
    tree = ast.parse((ROOT / path).read_text())
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                q = prefix + child.name
                if q in qualnames and not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    found[q] = (first, child.end_lineno)
                visit(child, q + ".")
    visit(tree, "")
    missing = set(qualnames) - set(found)
    if missing:
        raise SystemExit(f"{path}: no function {', '.join(sorted(missing))}")
    return found


def enclosing(ranges, line):
    for q, (lo, hi) in ranges.items():
        if lo <= line <= hi:
            return q
    return None


def pytest_command(selection):
    # -x: the first failing test kills the mutant; -p no:cacheprovider: no .pytest_cache writes
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "-p", "no:randomly", *selection]


def quote(args):
    import shlex
    return " ".join(shlex.quote(a) for a in args)


def check_imports():
    """minigrad and its mapped subpackages must come from this checkout."""
    code = ("import minigrad, minigrad.optim, minigrad.cli, minigrad.nn, minigrad.curvature;"
            "print(minigrad.__file__); print(minigrad.optim.__file__); print(minigrad.cli.__file__)")
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd="/", check=True).stdout.split()
    for f in files:
        if not Path(f).resolve().is_relative_to(ROOT):
            raise SystemExit(f"minigrad is imported from {f}, not from this checkout {ROOT}: "
                             f"pip install -e {ROOT} into this interpreter ({sys.executable}) "
                             "first, or every mutant would survive")


def check_clean(files, force):
    out = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    if out and not force:
        raise SystemExit(f"uncommitted changes in files to mutate (--force to go on):\n{out}")


def baseline(selection):
    """Seconds the unmutated tests take; they must pass."""
    t = time.perf_counter()
    r = subprocess.run(pytest_command(selection), cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    if r.returncode != 0:
        raise SystemExit(f"the unmutated tests fail ({quote(pytest_command(selection))}):\n"
                         + r.stdout[-3000:] + r.stderr[-2000:])
    return time.perf_counter() - t


def changed_lines(diff):
    lines = [l for l in (diff or "").splitlines()
             if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    return " / ".join(l[0] + " " + l[1:].strip() for l in lines)


def run_target(name, functions, tests, confirm, args, out):
    from cosmic_ray.commands import init
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    files = list(functions)
    check_clean(files, args.force)
    ranges = {f: function_lines(f, q) for f, q in functions.items() if q}
    db_path = out / (re.sub(r"[^\w.-]", "_", name) + ".sqlite")
    fingerprint = hashlib.sha256(repr((functions, tests, confirm, args.all_operators)).encode()
                                 + b"".join((ROOT / f).read_bytes() for f in files)).hexdigest()
    stamp = out / (db_path.name + ".fingerprint")
    resume = (args.resume and db_path.exists() and stamp.exists()
              and stamp.read_text() == fingerprint)
    print(f"\n== {name}: {', '.join(f + (' ' + ','.join(q) if q else '') for f, q in functions.items())}"
          f"\n   tests:   {quote(tests)}" + (f"\n   confirm: {quote(confirm)}" if confirm else ""),
          flush=True)

    keep = re.compile("|".join(OPERATORS))
    with use_db(str(db_path), WorkDB.Mode.create) as db:
        if not resume:
            init([ROOT / f for f in files], db, {})
            skip = []
            for item in db.pending_work_items:
                m = item.mutations[0]
                rel = str(Path(m.module_path).relative_to(ROOT))
                r = ranges.get(rel)
                if (r is not None and enclosing(r, m.start_pos[0]) is None) or \
                        (not args.all_operators and not keep.match(m.operator_name)):
                    skip.append(item.job_id)
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
            stamp.write_text(fingerprint)
        pending = sorted(db.pending_work_items, key=lambda i: (
            i.mutations[0].module_path, i.mutations[0].start_pos, i.mutations[0].operator_name,
            i.mutations[0].occurrence))
        if args.dry_run:
            print(f"   {len(pending)} mutants")
            return name, len(pending), {}, 0.0
        base = baseline(tests)
        timeout = args.timeout_factor * base + 10
        confirm_timeout = None
        print(f"   {len(pending)} mutants to run; unmutated tests {base:.1f} s, timeout {timeout:.0f} s",
              flush=True)
        started = time.perf_counter()
        for k, item in enumerate(pending, 1):
            m = item.mutations[0]
            result = mutate_and_test(item.mutations, quote(pytest_command(tests)), timeout)
            how = ""
            if (result.worker_outcome == WorkerOutcome.NORMAL
                    and result.test_outcome == TestOutcome.SURVIVED and confirm):
                if confirm_timeout is None:
                    confirm_timeout = args.timeout_factor * baseline(confirm) + 10
                wider = mutate_and_test(item.mutations, quote(pytest_command(confirm)),
                                        confirm_timeout)
                if wider.test_outcome != TestOutcome.SURVIVED:
                    result, how = wider, " (by the confirm tests)"
            db.set_result(item.job_id, result)
            rel = Path(m.module_path).relative_to(ROOT)
            print(f"   [{k}/{len(pending)} {time.perf_counter() - started:5.0f} s] "
                  f"{outcome(result)}{how}: {rel}:{m.start_pos[0]} {short(m.operator_name)}",
                  flush=True)
        return report(name, functions, tests, confirm, db, ranges, time.perf_counter() - started,
                      out)


def short(operator):
    return operator.replace("core/", "").replace("ReplaceBinaryOperator_", "binop ") \
        .replace("ReplaceComparisonOperator_", "compare ").replace("ReplaceUnaryOperator_", "unary ")


def outcome(result):
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome
    if result.worker_outcome == WorkerOutcome.SKIPPED:
        return "skipped"
    if result.worker_outcome == WorkerOutcome.NO_TEST:
        return "no mutation"
    if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
        return "incompetent"
    if result.test_outcome == TestOutcome.KILLED:
        return "timeout" if result.output == "timeout" else "killed"
    return "survived"


def report(name, functions, tests, confirm, db, ranges, seconds, out):
    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "no mutation": 0}
    survivors = []
    for item, result in db.completed_work_items:
        o = outcome(result)
        if o == "skipped":
            continue
        counts[o] += 1
        if o == "survived":
            m = item.mutations[0]
            rel = str(Path(m.module_path).relative_to(ROOT))
            where = enclosing(ranges.get(rel) or {}, m.start_pos[0]) or m.definition_name or "-"
            survivors.append((rel, m.start_pos[0], m.start_pos[1], where, short(m.operator_name),
                              changed_lines(result.diff)))
    survivors.sort()
    mutants = sum(counts[k] for k in ("killed", "survived", "timeout", "incompetent"))
    lines = [f"# {name}", "",
             f"{datetime.date.today()}, commit {git_head()}, "
             f"`python benchmarks/mutation.py {name}`", "",
             "files: " + ", ".join(f"{f}" + (f" ({', '.join(q)})" if q else "")
                                   for f, q in functions.items()),
             f"tests: `{quote(tests)}`" + (f"; confirm: `{quote(confirm)}`" if confirm else ""), "",
             "| mutants | killed | survived | timeouts | incompetent | minutes |",
             "|---|---|---|---|---|---|",
             f"| {mutants} | {counts['killed']} | {counts['survived']} | {counts['timeout']} | "
             f"{counts['incompetent']} | {seconds / 60:.1f} |", "",
             "## surviving mutants", ""]
    lines += [f"- {f}:{line} ({where}) {op}: `{diff}`" for f, line, _, where, op, diff in survivors]
    if not survivors:
        lines.append("none")
    (out / (re.sub(r"[^\w.-]", "_", name) + ".md")).write_text("\n".join(lines) + "\n")
    print("   " + " ".join(f"{k} {v}" for k, v in counts.items()) + f" in {seconds / 60:.1f} min")
    for f, line, _, where, op, diff in survivors:
        print(f"   survived {f}:{line} ({where}) {op}: {diff}")
    return name, mutants, counts, seconds


def git_head():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", help="hotspots, a hot spot, a package (optim, "
                   "curvature, nn, cli), a folder or a file; see --list")
    p.add_argument("--list", action="store_true", help="print the targets and their tests")
    p.add_argument("--out", default=str(ROOT / "build" / "mutation"), help="results folder")
    p.add_argument("--resume", action="store_true",
                   help="go on with a target's session if its files and tests are unchanged")
    p.add_argument("--timeout-factor", type=float, default=3.0)
    p.add_argument("--all-operators", action="store_true",
                   help="Cosmic Ray's whole operator set instead of the selective one")
    p.add_argument("--nice", type=int, default=15, help="niceness (default 15: a shared machine)")
    p.add_argument("--dry-run", action="store_true", help="count the mutants, run nothing")
    p.add_argument("--force", action="store_true", help="mutate files with uncommitted changes")
    args = p.parse_args()
    if args.list or not args.targets:
        for name, h in HOTSPOTS.items():
            print(f"{name}: " + "; ".join(f"{f} {', '.join(q)}" for f, q in h["functions"].items()))
            print(f"    tests: {quote(h['tests'])}\n    confirm: {quote(h.get('confirm') or [])}")
        print("groups: " + ", ".join(f"{k} = {' '.join(v)}" for k, v in GROUPS.items()))
        print("packages: " + ", ".join(f"{k} ({v}/)" for k, v in PACKAGES.items()))
        for pattern, tests, confirm in TESTS:
            print(f"  {pattern}: {quote(tests)}" + (f"; confirm {quote(confirm)}" if confirm else ""))
        return
    os.nice(args.nice)
    os.chdir(ROOT)      # Cosmic Ray runs the test command in the current folder
    check_imports()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = expand(args.targets)

    # the originals, written back whatever happens (Cosmic Ray restores each mutant itself; this
    # covers a kill between its write and its restore)
    files = sorted({f for _, fs, _, _ in targets for f in fs})
    originals = {} if args.dry_run else {f: (ROOT / f).read_bytes() for f in files}

    def restore():
        for f, data in originals.items():
            if (ROOT / f).read_bytes() != data:
                (ROOT / f).write_bytes(data)
                print(f"restored {f}", file=sys.stderr)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    rows = []
    try:
        for name, functions, tests, confirm in targets:
            rows.append(run_target(name, functions, tests, confirm, args, out))
    finally:
        restore()
        if rows and not args.dry_run:
            table = ["| target | mutants | killed | survived | timeouts | incompetent | minutes |",
                     "|---|---|---|---|---|---|---|"]
            table += [f"| {n} | {m} | {c['killed']} | {c['survived']} | {c['timeout']} | "
                      f"{c['incompetent']} | {s / 60:.1f} |" for n, m, c, s in rows]
            text = (f"{datetime.date.today()}, commit {git_head()}, "
                    f"`python benchmarks/mutation.py {' '.join(args.targets)}`\n\n"
                    + "\n".join(table) + "\n")
            (out / "summary.md").write_text(text)
            print("\n" + text)


if __name__ == "__main__":
    main()
