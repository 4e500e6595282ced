"""The figures a hand-written text quotes, as the tests of the generated pages read them
(tests/test_results_doc.py, tests/test_docs_prose.py): its numbers, less

- citation years: a year 1950-2049 after "al." or after a capitalised name or venue, with an
  optional comma or parenthesis between ("et al. 2019", "et al. (2019)", "Ma et al., 2020",
  "Martens & Grosse 2015", "Krizhevsky 2014", "ICML 2019", "(AAAI 2020)");
- numbered-list markers ("1. " at the start of a line);
- the numbers of names ("LeNet-5", "CIFAR-10") and inside words ("float64", "8x8", "1e-3").

A ratio's "x" is not part of its number ("3.7x" is 3.7).
"""
import re

CITATION_YEAR = re.compile(r"(?:\bal\.|\b[A-Z][A-Za-z-]+),?\s+\(?((?:19[5-9]|20[0-4])\d)\b")
LIST_MARKER = re.compile(r"^(\s*)(\d+\.) ", flags=re.MULTILINE)
# a number, with a ratio's "x" ("3.7x"), not inside a word or a name ("8x8", "LeNet-5")
FIGURE = re.compile(r"(?<![\w.])(?<![A-Za-z]-)(\d+(?:\.\d+)?)x?(?![\w]|\.\d)")


def _blank(match, group):
    """The match with its `group` replaced by as many spaces (offsets and lines are kept)."""
    start, end = match.span(group)
    whole = match.group(0)
    return whole[:start - match.start()] + " " * (end - start) + whole[end - match.start():]


def figures(text):
    """[(number as written, line number)] of the figures `text` quotes, in order."""
    text = CITATION_YEAR.sub(lambda m: _blank(m, 1), text)
    text = LIST_MARKER.sub(lambda m: _blank(m, 2), text)
    return [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in FIGURE.finditer(text)]


def numbers(text):
    """The set of the figures `text` quotes (see `figures`)."""
    return {number for number, _ in figures(text)}
