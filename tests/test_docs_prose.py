"""The prose of a page with examples (docs/regenerate.py) quotes only figures its examples print,
so that a changed output cannot leave the text around it stale. Every number of the prose
(outside fenced blocks, `<!-- output as=markdown -->` regions and HTML comments; citation years,
list markers and names' numbers aside: tests/prose_numbers.py) must be one of:

1. a quote: a number printed in one of the page's blocks (fenced blocks, markdown output
   regions and hidden `<!-- run: CMD -->` commands), or in the blocks of a page with examples
   that the prose cites as `docs/NAME.md`; possibly rounded: prose with d decimals matches a
   printed number with at least d decimals that rounds to it at d (half-up or half-even:
   11.9388 -> 11.9, 47.3 -> 47; 0.5 does not match a printed 1);
2. a derivation, a hidden comment on a line of its own next to its paragraph,
   `<!-- derived: 780 = 14 * 55.71 -->`: the expression (numbers, + - * / and parentheses)
   rounds to the left-hand number at its decimals, and each operand is a quote, a given or
   the result of another derivation of the page;
3. a given, `<!-- given: 95 1437 -->`: an input or a fact, not a result (a target, a data set's
   size, an option's value no block shows), and not a quote already.

A derivation or a given that the prose no longer quotes is stale, and a malformed one an error:
both fail, naming the line.
"""
import ast
import importlib.util
import operator
import os
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest

from prose_numbers import figures

ROOT = os.path.join(os.path.dirname(__file__), "..")
spec = importlib.util.spec_from_file_location("regenerate", os.path.join(ROOT, "docs",
                                                                         "regenerate.py"))
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

LITERAL = r"\d+(?:\.\d+)?"
PRINTED = re.compile(r"(?<![\d.])" + LITERAL)
ANNOTATION = re.compile(r"<!-- (derived|given): (.*) -->")
MENTION = re.compile(r"<!--\s*(derived|given)\b")
CITED = re.compile(r"\bdocs/([\w-]+\.md)\b")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.Div: operator.truediv}


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def split(text):
    """(prose, blocks, annotations, problems) of a page: the prose with every other line
    blanked (so line numbers stay), the text of its blocks, [(line, kind, body)] of its
    derived/given comments, and the malformed ones."""
    prose, blocks, notes, problems = [], [], [], []
    fenced = markdown = False
    for number, line in enumerate(text.split("\n"), 1):
        directive = regenerate.DIRECTIVE.match(line.rstrip())
        if fenced or markdown or line.lstrip().startswith("```") or directive:
            # a hidden `run: CMD` is a block, a directive's options are not
            blocks.append((directive.group(1) or "") if directive else line)
            prose.append("")
            if line.lstrip().startswith("```"):
                fenced = not fenced
            markdown = (markdown and line.strip() != regenerate.END_MARKDOWN) or bool(
                directive and "as=markdown" in line)
            continue
        note = ANNOTATION.fullmatch(line.strip())
        if note:
            notes.append((number, *note.groups()))
        elif MENTION.search(line):
            problems.append(f"line {number}: malformed `{line.strip()}`")
        prose.append("" if note else re.sub(r"<!--.*?-->", "", line))
    return "\n".join(prose), "\n".join(blocks), notes, problems


def places(literal):
    return max(0, -Decimal(literal).as_tuple().exponent)


def shown(value, decimals):
    """`value` rounded to `decimals` places, half-up and half-even, as lookup keys."""
    step = Decimal(1).scaleb(-decimals)
    return {(decimals, str(Decimal(value).quantize(step, rounding=mode)))
            for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN)}


def key(literal):
    """How the prose number `literal` is looked up: (its decimals, its text)."""
    return (places(literal), str(Decimal(literal)))


def quotable(blocks):
    """The keys of every number the prose may quote from `blocks`: each printed number at each
    of 0, 1, ..., its own decimals."""
    return {k for literal in PRINTED.findall(blocks)
            for decimals in range(places(literal) + 1) for k in shown(literal, decimals)}


def evaluate(expression):
    """(value, operands as written) of an expression of numbers, + - * / and parentheses;
    ValueError for anything else."""
    operands = []

    def value(node):
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        written = ast.get_source_segment(expression, node) or ""
        if isinstance(node, ast.Constant) and re.fullmatch(LITERAL, written):
            operands.append(written)
            return Decimal(written)
        raise ValueError(f"`{written}` is not a number, + - * / or parentheses")

    try:
        return value(ast.parse(expression.strip(), mode="eval").body), operands
    except SyntaxError as error:
        raise ValueError(f"{error.msg}") from None
    except ArithmeticError:
        raise ValueError("it divides by zero") from None


def derivations(notes):
    """{line: (result, value, operands)} of the derived comments, and the malformed ones."""
    found, problems = {}, []
    for line, kind, body in notes:
        if kind != "derived":
            continue
        result, sep, expression = body.partition("=")
        try:
            if not sep or not re.fullmatch(LITERAL, result.strip()):
                raise ValueError("it is not `NUMBER = EXPRESSION`")
            found[line] = (result.strip(), *evaluate(expression.strip()))
        except ValueError as error:
            problems.append(f"line {line}: malformed `<!-- derived: {body} -->`: {error}")
    return found, problems


def cited_blocks(prose, folder):
    """The blocks of the pages with examples that `prose` cites as docs/NAME.md."""
    texts = [read(os.path.join(folder, name)) for name in sorted(set(CITED.findall(prose)))
             if os.path.exists(os.path.join(folder, name))]
    return "\n".join(split(text)[1] for text in texts if regenerate.has_directives(text))


def givens(notes, quoted):
    """{key: line} of the given numbers, and the problems: malformed, or quoted already."""
    found, problems = {}, []
    for line, kind, body in notes:
        for literal in body.split() if kind == "given" else []:
            if not re.fullmatch(LITERAL, literal):
                problems.append(f"line {line}: malformed given `{literal}`: not a number")
            elif key(literal) in quoted:
                problems.append(f"line {line}: given {literal} is quoted from a block: drop it")
            else:
                found[key(literal)] = line
    return found, problems


def founded(derived, known):
    """`known` and the results of the derivations whose operands are known, or the results
    of such derivations in turn; and {line: derivation} of the others."""
    known, pending, ready = set(known), dict(derived), True
    while ready:
        ready = [line for line, (_, _, operands) in pending.items()
                 if all(key(o) in known for o in operands)]
        known.update(key(pending.pop(line)[0]) for line in ready)
    return known, pending


def check(path):
    """The problems of a page's prose as `line N: ...` strings: unaccounted numbers, wrong or
    unfounded derivations, stale or redundant annotations, malformed ones."""
    prose, blocks, notes, problems = split(read(path))
    quoted = quotable(blocks + "\n" + cited_blocks(prose, os.path.dirname(path)))
    derived, malformed = derivations(notes)
    given, redundant = givens(notes, quoted)
    problems += malformed + redundant
    for line, (result, value, _) in derived.items():
        if key(result) not in shown(value, places(result)):
            problems.append(f"line {line}: derived {result} is {value:.{places(result) + 2}f}")
    known, unfounded = founded(derived, quoted | given.keys())
    problems += [f"line {line}: derived {result} from "
                 f"{', '.join(o for o in operands if key(o) not in known)}: "
                 "not quoted, given or derived" for line, (result, _, operands) in unfounded.items()]
    present = {key(number) for number, _ in figures(prose)}
    annotated = [(line, f"derived {d[0]}", key(d[0])) for line, d in derived.items()]
    annotated += [(line, f"given {k[1]}", k) for k, line in given.items()]
    problems += [f"line {line}: {what} is not in the prose (stale)"
                 for line, what, k in annotated if k not in present]
    problems += [f"line {line}: {number} is not quoted, derived or given"
                 for number, line in figures(prose) if key(number) not in known]
    return sorted(problems, key=lambda p: int(p.split(":")[0].split()[1]))


# ------------------------------------------------------------------------ the checker
def problems_of(tmp_path, *lines, cited=None):
    """check() of a page made of `lines` (and of docs/cited.md, a page with examples)."""
    if cited is not None:
        (tmp_path / "cited.md").write_text("\n".join(["<!-- run -->", "```", *cited, "```"]))
    (tmp_path / "page.md").write_text("\n".join(lines) + "\n")
    return check(str(tmp_path / "page.md"))


BLOCK = ["<!-- run -->", "```", "echo 11.9388 0.774212 47.3 14 55.71 41 12.37 0.125 1", "```"]


def test_a_number_printed_in_a_block_may_be_quoted_rounded(tmp_path):
    assert problems_of(tmp_path, *BLOCK, "Falls from 11.9 (0.774, 47, 0.12 or 0.13) to 1.") == []
    # stale: the block no longer prints it; fewer printed decimals than quoted do not match
    assert problems_of(tmp_path, *BLOCK, "", "From 11.8", "to 1.0.") == [
        "line 6: 11.8 is not quoted, derived or given",
        "line 7: 1.0 is not quoted, derived or given"]


def test_blocks_and_comments_are_not_prose_but_a_cited_pages_blocks_are_quoted(tmp_path):
    assert problems_of(tmp_path, "```", "99", "```", "<!-- output as=markdown -->", "| 98 |",
                       "<!-- end output -->", "<!-- run: echo 97 -->", "<!-- 96 -->",
                       "Prints 99, 98 and 97.") == []
    assert problems_of(tmp_path, "Per docs/cited.md: 3.14.", cited=["echo 3.14159"]) == []
    assert problems_of(tmp_path, "Per cited.md: 3.14.", cited=["echo 3.14159"]) == [
        "line 1: 3.14 is not quoted, derived or given"]


def test_a_derivation_accounts_for_its_result_if_it_holds_on_quoted_operands(tmp_path):
    prose = ["14 x 55.71 = 780 ms against 41 x 12.37 = 507 ms, 1.5x; 95% of 16 is 15.",
             "<!-- derived: 780 = 14 * 55.71 -->", "<!-- derived: 1.5 = 780 / 507 -->",
             "<!-- derived: 507 = (41 * 12.37) -->", "<!-- derived: 15 = 95 * 16 / 100 -->",
             "<!-- given: 95 16 -->"]
    # operands may be quoted, derived (in any order) or given
    assert problems_of(tmp_path, *BLOCK, *prose) == [
        "line 5: 15 is not quoted, derived or given",
        "line 9: derived 15 from 100: not quoted, given or derived"]
    prose[0] = prose[0].replace("is 15.", "is 15 of 100.")
    prose[-1] = "<!-- given: 95 16 100 -->"
    assert problems_of(tmp_path, *BLOCK, *prose) == []
    wrong = [line.replace("780 = 14 *", "780 = 15 *") for line in prose]
    assert problems_of(tmp_path, *BLOCK, *wrong) == ["line 6: derived 780 is 835.65"]
    unfounded = [line.replace("55.71 -->", "55.72 -->") for line in prose]
    assert problems_of(tmp_path, *BLOCK, *unfounded) == [
        "line 5: 780 is not quoted, derived or given",
        "line 5: 1.5 is not quoted, derived or given",
        "line 6: derived 780 from 55.72: not quoted, given or derived",
        "line 7: derived 1.5 from 780: not quoted, given or derived"]


def test_a_given_is_in_the_prose_and_not_a_quote(tmp_path):
    assert problems_of(tmp_path, *BLOCK, "A target of 95.", "<!-- given: 95 -->") == []
    assert problems_of(tmp_path, *BLOCK, "A target.", "<!-- given: 95 -->") == [
        "line 6: given 95 is not in the prose (stale)"]
    assert problems_of(tmp_path, *BLOCK, "At 14.", "<!-- given: 14 -->") == [
        "line 6: given 14 is quoted from a block: drop it"]
    assert problems_of(tmp_path, *BLOCK, "A target.", "<!-- derived: 28 = 14 * 2 -->",
                       "<!-- given: 2 -->") == [
        "line 6: derived 28 is not in the prose (stale)",
        "line 7: given 2 is not in the prose (stale)"]


@pytest.mark.parametrize("comment, words", [
    ("<!-- derived: 780 -->", "it is not `NUMBER = EXPRESSION`"),
    ("<!-- derived: ~780 = 14 * 55.71 -->", "it is not `NUMBER = EXPRESSION`"),
    ("<!-- derived: 780 = 14 * x -->", "`x` is not a number"),
    ("<!-- derived: 780 = __import__('os').getpid() -->", "is not a number"),
    ("<!-- derived: 780 = 14 ** 2 -->", "`14 ** 2` is not a number"),
    ("<!-- derived: 780 = -14 -->", "`-14` is not a number"),
    ("<!-- derived: 780 = 14 / (2 - 2) -->", "it divides by zero"),
    ("<!-- derived: 780 = 14 * -->", "invalid syntax"),
    ("<!-- given: 95% -->", "malformed given `95%`: not a number"),
    ("<!--given: 95-->", "malformed `<!--given: 95-->`"),
    ("At 780 <!-- given: 780 --> ms.", "malformed `At 780"),
])
def test_a_malformed_annotation_is_an_error_naming_its_line(tmp_path, comment, words):
    found = problems_of(tmp_path, "At 780 ms.", "", comment)
    assert any(p.startswith("line 3: ") and words in p for p in found), found


def test_citation_years_list_markers_and_names_are_not_figures():
    assert figures("1. From 34.3 (Ma et al., 2020; Martens & Grosse 2015; Ba et\n"
                   "  al. 2017; ICML 2019, Krizhevsky 2014) on LeNet-5, 3.7x\n"
                   "2. B = 2014 in float64, 1e-3 at 1024") == [
        ("34.3", 1), ("3.7", 2), ("2014", 3), ("1024", 3)]


def test_the_regenerator_leaves_the_annotations_as_prose(tmp_path):
    text = "Took 780 ms.\n<!-- derived: 780 = 14 * 55.71 -->\n<!-- given: 95 -->\n"
    assert regenerate.regenerate(text, str(tmp_path)) == text


# ------------------------------------------------------------------------ the pages
PAGES = regenerate.pages([])


@pytest.mark.parametrize("path", PAGES, ids=os.path.basename)
def test_the_prose_quotes_only_what_the_examples_print(path):
    problems = check(path)
    assert not problems, (
        f"docs/{os.path.basename(path)}: numbers in the prose that no example prints (quote "
        "them as printed, or annotate them: see this module's docstring):\n  "
        + "\n  ".join(problems))
