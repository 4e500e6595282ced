"""The example outputs and figures in docs/ are generated: every page with directives
(docs/regenerate.py) shows what its commands print today, and the figures it shows are the ones
they write. On a failure, `python docs/regenerate.py docs/PAGE.md` rewrites the page from the
commands (and its figures in docs/img/); read the diff, and the page's prose, before committing.
The regenerator's own rules (directives, masking, tolerance) are tested on small pages first."""
import importlib.util
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
spec = importlib.util.spec_from_file_location("regenerate", os.path.join(ROOT, "docs",
                                                                         "regenerate.py"))
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)


def page(*lines):
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ the regenerator
def test_output_and_transcript_blocks_are_rewritten_from_their_commands(tmp_path):
    text = page("Intro.",
                "<!-- run -->", "```", "printf 'a\\nb\\nc\\n' > f.txt; cat f.txt", "```",
                "<!-- output tail=2 -->", "```", "stale", "```",
                "<!-- run: echo hidden > g.txt -->",
                "<!-- transcript head=1 -->", "```", "$ cat f.txt", "old", "$ cat g.txt", "```",
                "<!-- run -->", "```python", "print(6 * 7)", "```",
                "<!-- output -->", "```", "```", "End.")
    assert regenerate.regenerate(text, str(tmp_path)) == page(
        "Intro.",
        "<!-- run -->", "```", "printf 'a\\nb\\nc\\n' > f.txt; cat f.txt", "```",
        "<!-- output tail=2 -->", "```", "...", "b", "c", "```",
        "<!-- run: echo hidden > g.txt -->",
        "<!-- transcript head=1 -->", "```", "$ cat f.txt", "a", "...", "$ cat g.txt", "hidden",
        "```",
        "<!-- run -->", "```python", "print(6 * 7)", "```",
        "<!-- output -->", "```", "42", "```", "End.")


def test_skip_progress_leaves_out_a_studys_line_per_trial(tmp_path):
    text = page("<!-- run -->", "```", "printf '[ 1/12] x\\n[12/12] y\\ntable\\n'", "```",
                "<!-- output skip=progress -->", "```", "```")
    assert regenerate.regenerate(text, str(tmp_path)).split("\n")[5:8] == ["```", "table", "```"]


def test_markdown_output_is_shown_rendered_up_to_its_end_line(tmp_path):
    text = page("<!-- run: printf '| a | b |\\n| --- | --- |\\n| 1 | 2 |\\n' -->",
                "<!-- output as=markdown -->", "| stale |", "<!-- end output -->", "After.")
    assert regenerate.regenerate(text, str(tmp_path)) == page(
        "<!-- run: printf '| a | b |\\n| --- | --- |\\n| 1 | 2 |\\n' -->",
        "<!-- output as=markdown -->", "| a | b |", "| --- | --- |", "| 1 | 2 |",
        "<!-- end output -->", "After.")


@pytest.mark.parametrize("lines, words", [
    (["<!-- output as=markdown -->", "| a |"], "has no `<!-- end output -->` after it"),
    (["<!--output-->", "```", "```"], "is not a directive"),
    (["<!-- output: echo x -->"], "is not a directive"),          # only `run` takes a command
    (["<!-- output tails=2 -->", "```", "```"], "not tails=2"),
    (["<!-- output tail=-1 -->", "```", "```"], "is not a directive"),
    (["<!-- run head=2 -->", "```", "```"], "`run` takes no options, not head=2"),
    (["<!-- transcript -->", "```", "$ echo a \\", "```"], "a transcript's command is one line"),
    (["<!-- output -->", "```", "```"], "has no `run` before it"),
    (["<!-- run -->", "no fence"], "must be followed by a ``` block"),
    (["<!-- run -->", "```", "echo open"], "is not closed"),
    (["<!-- transcript -->", "```", "no prompt", "```"], "has no `$ ` command line"),
    (["<!-- run: echo to stderr >&2; exit 3 -->"], "exited with 3"),
    (["<!-- run: make N=3 -->"], "make: "),                       # all of it is the command
])
def test_a_malformed_page_or_a_failing_command_is_an_error_naming_it(tmp_path, lines, words):
    with pytest.raises(regenerate.PageError, match=re.escape(words)):
        regenerate.regenerate(page(*lines), str(tmp_path))


def test_wall_times_are_masked_and_other_numbers_compared_to_their_last_digit():
    old = page("```", "optimizer  steps  wall s  loss", "sgd        48     0.18    0.1208",
               "```", "  wall time                2.9 s", "done, wall time 0.8s")
    new = page("```", "optimizer  steps  wall s  loss", "sgd        48     10.25   0.12081",
               "```", "  wall time                12.0 s", "done, wall time 1.8s")
    assert regenerate.differences(old, new) == ""
    # a Markdown table cell from "wall s" on: its figures and the verdict drawn from them
    row = "| kfac | 12 | grad evals 0.60; wall s **better than SGD**: median 0.77 (64: 0.70) |"
    assert regenerate.differences(page(row), page(row.replace(
        "**better than SGD**: median 0.77 (64: 0.70)", "**worse than SGD**: median 1.3 (64: 1.3)"))) == ""
    assert regenerate.differences(page(row), page(row.replace("0.60", "0.61")))
    # a table ends at its first row of another shape: a later line is compared whole
    table = page("```", "optimizer  steps  wall s", "sgd        48     0.18", "note: done",
                 "x  12  3", "```")
    assert regenerate.differences(table, table.replace("x  12  3", "x  99  3"))
    for changed in ("sgd        49     0.18    0.1208",     # an integer: steps to target
                    "sgd        48     0.18    0.1210",     # a float beyond 1e-3
                    "kfac       48     0.18    0.1208"):    # a word
        diff = regenerate.differences(old, old.replace("sgd        48     0.18    0.1208", changed))
        assert diff and changed.split()[0] in diff


def test_check_names_a_figure_shown_but_not_written(tmp_path, monkeypatch):
    doc = tmp_path / "p.md"
    doc.write_text(page("<!-- run: echo x > docs/img/a.png -->", "![a](img/a.png) ![b](img/b.png)"))
    problems = regenerate.check(str(doc), str(tmp_path / "scratch"))
    assert problems == ["figures shown but not written by the page's commands: ['b.png']"]


# ------------------------------------------------------------------------ the pages
PAGES = regenerate.pages([])


def test_the_pages_with_examples_are_found():
    names = {os.path.basename(p) for p in PAGES}
    assert names == {"compare.md", "distributed.md", "hessian.md", "landscape.md", "plot.md",
                     "report.md", "scaling.md", "sensitivity.md"}


@pytest.mark.parametrize("path", PAGES, ids=os.path.basename)
def test_a_page_shows_what_its_commands_print(path, tmp_path):
    pytest.importorskip("matplotlib", reason="the pages' figures need matplotlib")
    problems = regenerate.check(path, str(tmp_path))
    assert not problems, "\n".join(problems) + \
        f"\n(regenerate with: python docs/regenerate.py docs/{os.path.basename(path)})"
