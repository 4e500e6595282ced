"""docs/results.md, the project's answer on real data, is generated: the command its preface
names, run on a copy of the committed study files, writes it again byte for byte, and every
figure the hand-written discussion (and the README's summary of it) quotes is one the report
computed."""
import os
import re
import shlex
import shutil

import pytest
from click.testing import CliRunner

from minigrad.cli import main, search
from minigrad.cli.study.trials import fixed_train_options
from prose_numbers import numbers

ROOT = os.path.join(os.path.dirname(__file__), "..")
PAGE = os.path.join(ROOT, "docs", "results.md")
RESULTS = os.path.join(ROOT, "docs", "results")
PREFACE = os.path.join(RESULTS, "preface.md")
DISCUSSION = os.path.join(RESULTS, "discussion.md")


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def named_command():
    """The `minigrad report ...` command line of the page's preface, as words."""
    found = re.findall(r"^minigrad report .*$", read(PREFACE), flags=re.MULTILINE)
    assert len(found) == 1, "the preface names one `minigrad report` command"
    return shlex.split(found[0])


def test_the_page_is_what_its_command_writes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the page's figure lines need matplotlib")
    words = named_command()
    # a copy of what the command reads, at the same paths relative to the repository's root
    shutil.copytree(RESULTS, tmp_path / "docs" / "results",
                    ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, words[1:])
    assert result.exit_code == 0, (result.output, result.exception)
    out = words[words.index("--out") + 1]
    assert out == "docs/results.md"
    assert (tmp_path / out).read_text(encoding="utf-8") == read(PAGE)
    for image in re.findall(r"\]\((results/[^)]+\.png)\)", read(PAGE)):
        assert (tmp_path / "docs" / image).read_bytes()[:4] == b"\x89PNG"
        assert read_png_head(os.path.join(ROOT, "docs", image)) == b"\x89PNG", image


def read_png_head(path):
    with open(path, "rb") as fh:
        return fh.read(4)


def computed_part():
    """The page less its hand-written preface and discussion."""
    page = read(PAGE)
    for own in (read(PREFACE).rstrip(), read(DISCUSSION).rstrip()):
        assert own in page
        page = page.replace(own, "")
    return page


def test_the_discussion_quotes_only_computed_figures():
    quoted = numbers(read(DISCUSSION))
    computed = numbers(computed_part())
    assert quoted, "the discussion quotes figures"
    assert quoted <= computed, f"typed, not computed: {sorted(quoted - computed)}"


def test_the_readme_answer_quotes_only_computed_figures():
    readme = read(os.path.join(ROOT, "README.md"))
    answer = readme.split("**The answer.**", 1)[1].split("\n\n", 1)[0]
    assert "docs/results.md" in answer
    quoted = numbers(answer)
    assert quoted <= numbers(computed_part()), \
        f"typed, not computed: {sorted(quoted - numbers(computed_part()))}"


def test_numbers_finds_figures_and_skips_years_and_list_markers():
    assert numbers("1. K-FAC took 34.3 steps at B = 4096 (Ma et al. 2020), 0.49 e; 520-690 "
                   "on LeNet-5 as Zhang et al. (2019) say, 3.7x on 8x8") == \
        {"34.3", "4096", "0.49", "520", "690", "3.7"}


def test_every_command_of_the_study_script_parses(tmp_path):
    """The study script's minigrad command lines, recorded by a stand-in `minigrad` on PATH,
    each parse with the command's own options, and the study commands' grids and fixed train
    options pass the checks the commands make before they run anything."""
    import json
    import subprocess
    import sys

    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "minigrad"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, sys; "
                    f"print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n")
    fake.chmod(0o755)
    script = os.path.join(RESULTS, "fashion-mnist", "run-study.sh")
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", script, str(tmp_path / "studies"), "2"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    names = [c[0] for c in calls]
    assert names == ["scaling", "train", "scaling", "scaling", "compare", "scaling", "train",
                     "scaling", "sensitivity", "scaling", "scaling", "sensitivity", "scaling",
                     "scaling", "scaling"]
    for argv in calls:
        with main.commands[argv[0]].make_context(argv[0], argv[1:]) as ctx:
            assert ctx.params["out"].startswith(str(tmp_path / "studies"))
            if argv[0] != "train":   # what the study commands check before anything runs
                grids = search.parse_grid(ctx.params["grid_entries"])
                assert set(grids) <= set(ctx.params["optimizers"]), argv
                fixed_train_options(ctx.params["train_options"], ctx.params["optimizers"])
    # FIRST_STEP and LAST_STEP select the steps
    log.unlink()
    subprocess.run(["bash", script, str(tmp_path / "studies"), "2", "5", "5"], env=env,
                   check=True, capture_output=True, timeout=60)
    assert [json.loads(line)[0] for line in log.read_text().splitlines()] == ["scaling", "train"]


def test_no_trial_the_divergence_rule_stopped_would_change_a_figure():
    """Each study's recheck-diverged.md (`minigrad recheck-diverged`: the
    trials the rule stopped, trained again without it) counts its rows right and finds no rerun
    that changes a figure: a page with such a figure would be wrong."""
    import glob

    tables = sorted(glob.glob(os.path.join(RESULTS, "*", "*", "recheck-diverged.md")))
    assert tables, "the MLP study's recheck is committed"
    counts = {}
    for path in tables:
        lines = read(path).strip().splitlines()
        rows = [line.split(" | ") for line in lines if line.startswith("| ")][2:]
        count = re.fullmatch(r"(\d+) trials stopped by the rule; (\d+) of them would change a "
                             r"figure\.", lines[-1])
        assert count and int(count.group(1)) == len(rows), path
        changed = [row[0].lstrip("| ") for row in rows if row[-1].rstrip(" |") != "no"]
        assert int(count.group(2)) == len(changed) == 0, f"{path}: {changed} change a figure"
        counts[os.path.basename(os.path.dirname(path))] = int(count.group(1))
    # the preface gives each table's count by its study ("(mlp 26, lenet-b128 0 trials)")
    quoted = re.search(r"\(((?:[\w-]+\s+\d+,\s+)*[\w-]+\s+\d+)\s+trials\)", read(PREFACE))
    assert quoted, "the preface gives the rechecks' counts"
    pairs = re.findall(r"([\w-]+)\s+(\d+)", quoted.group(1))
    assert {name: int(n) for name, n in pairs} == counts


def test_lenet_trust_region_radius_is_step_4s_best():
    """LeNet-5's trust-region searches use one initial radius per method (the study script's
    step 10): the one that ended best at B = 128 in step 4, whose radii 0.1, 1 and 10 end within
    0.05 of each other's test accuracy for each method (the preface says so): checked on the
    committed compare.h5."""
    import h5py
    import numpy as np

    with h5py.File(os.path.join(RESULTS, "fashion-mnist", "lenet-b128", "compare.h5")) as f:
        trials = {k: f["trials"][k][()] for k in ("optimizer", "radius", "final_test_accuracy",
                                                   "batch_size")}
    best = {}
    for method in ("trcg", "strcg"):
        rows = trials["optimizer"] == method.encode()
        assert sorted(trials["radius"][rows]) == [0.1, 1.0, 10.0]
        assert set(trials["batch_size"][rows]) == {128}
        accuracy = trials["final_test_accuracy"][rows]
        assert np.ptp(accuracy) <= 0.05, (method, accuracy)
        best[method] = f"{trials['radius'][rows][np.argmax(accuracy)]:g}"
    script = read(os.path.join(RESULTS, "fashion-mnist", "run-study.sh"))
    step10 = script[script.index("step 10 &&"):script.index("step 11 &&")]
    assert dict(re.findall(r"(\w+)\.radius=([\d.,]+)", step10)) == best
    preface = " ".join(read(PREFACE).split())
    assert "each method's three final test accuracies there lie within 0.05" in preface.lower()
    assert f"(TRCG {best['trcg']}, STRCG {best['strcg']};" in preface


def test_lenet_sgd_runs_without_the_rule_that_changed_its_first_searches():
    """LeNet-5's first SGD searches ran with the divergence rule; their recheck (committed
    beside the study) found a B = 4096 trial the rule stopped that reached the target before
    its search's best when trained on. So the script runs LeNet-5's SGD trials without the
    rule (every command that trains them), and the preface says why."""
    evidence = read(os.path.join(RESULTS, "fashion-mnist", "lenet",
                                 "recheck-diverged-first-sgd-searches.md"))
    changed = [line.split(" | ") for line in evidence.splitlines()
               if line.startswith("| sgd-b4096-") and line.rstrip().endswith("| **yes** |")]
    assert changed, "the rerun that changed a figure"
    row = changed[0]
    reached, bound = int(row[5].removeprefix("target at ")), int(row[4])
    assert int(row[3]) < reached < bound      # stopped early, then reached before the bound
    script = read(os.path.join(RESULTS, "fashion-mnist", "run-study.sh"))
    lenet_sgd = script[script.index("LENET_SGD=("):]
    assert lenet_sgd[:lenet_sgd.index(")")].split()[-1] == "sgd.diverged_after=0"
    for step in ("step 5 &&", "step 10 &&", "step 11 && minigrad scaling \"${LENET[@]}\""):
        command = script[script.index(step):]
        assert '"${LENET_SGD[@]}"' in command[:command.index("--out")], step
    assert "at B = 4096 a trial the rule had stopped at chance reached 88%" in \
        " ".join(read(PREFACE).split())
