"""Regenerate the example outputs and figures of the pages in docs/ from the commands that make
them, or check that the pages still show what those commands print.

    python docs/regenerate.py [PAGE.md ...]           rewrite the pages (default: all of docs/)
    python docs/regenerate.py --check [PAGE.md ...]   exit 1, with a diff, where a page differs

A page says how its examples are made with directives: HTML comments on a line of their own,
which a rendered page does not show. Each applies to the fenced block right below it:

    <!-- run -->          run the block (bash; Python for a ```python block); output not shown
    <!-- run: CMD -->     run CMD (bash), a step the page does not show (no block below it)
    <!-- output -->       the block is the standard output of the last `run` before it
    <!-- transcript -->   the block is a terminal session: every `$ CMD` line is run and the
                          lines below it, up to the next `$ ` line, are its standard output

`output` and `transcript` take `head=N` (keep the first N lines and a "..." line), `tail=N`
(a "..." line and the last N) and `skip=progress` (leave out a study's "[ i/n] ..." line per
trial, whose order depends on which parallel trial ends first). `<!-- output as=markdown -->`
governs the lines up to `<!-- end output -->` instead of a fenced block: output that is itself
Markdown (a table), shown rendered.

Other HTML comments are prose to the regenerator, left as they are. Two kinds account for the
numbers the prose quotes from the examples, which tests/test_docs_prose.py checks against the
outputs: `<!-- derived: 780 = 14 * 55.71 -->` (a figure computed from printed ones) and
`<!-- given: 95 1437 -->` (inputs and facts, not results).

The commands of a page run in order in one scratch folder, with `minigrad` on PATH, one BLAS
thread (and on x86-64 the AVX2 kernels of OpenBLAS and NumPy: PORTABLE), the repository's root
in $REPOSITORY, and a `docs/img/` folder inside it: a figure a command writes there replaces
the page's figure of that name (`docs/img/NAME.png`), and --check requires that every
`img/...png` the page shows was written there.

The same seed gives the same run, so the outputs are reproducible except for wall times:
--check compares the pages with every number in a "wall s" column and after "wall time"
masked (in a Markdown table row, all of a cell from "wall s" on, verdicts included), and the
other numbers to a relative 1e-3 (a float's last printed digit may still move between CPUs;
integers, such as steps to target, must be equal).
"""
import argparse
import difflib
import glob
import os
import platform
import re
import subprocess
import sys
import tempfile

DOCS = os.path.dirname(os.path.abspath(__file__))
# `<!-- run: CMD -->`, or a kind with options (`<!-- output tail=5 -->`); a line that starts like
# a directive but is not one is an error, not a block left unchecked
DIRECTIVE = re.compile(r"^<!-- (?:run: (.+?)|(run|output|transcript)((?: \w+=\w+)*)) -->$")
LOOKS_LIKE = re.compile(r"^\s*<!--\s*(run|output|transcript)\b")
OPTIONS = {"run": {}, "output": {"head": r"\d+", "tail": r"\d+", "skip": "progress",
                                 "as": "markdown"},
           "transcript": {"head": r"\d+", "tail": r"\d+", "skip": "progress"}}
# a study's line per finished trial: their order depends on which of the parallel trials ends first
PROGRESS = re.compile(r"^\[\s*\d+/\d+\] ")
FENCE = re.compile(r"^```(\w*)\s*$")
END_MARKDOWN = "<!-- end output -->"
ELIDED = "..."
# One BLAS/OpenMP thread: a run is bit-identical for the same thread count (minigrad train
# --threads), so the outputs do not depend on the machine's cores; and on a loaded machine
# threads that wait for busy cores make the examples several times slower. On x86-64, the AVX2
# kernels of OpenBLAS and NumPy whatever the CPU has: AVX-512 ones round differently, and a
# last bit can move a step to the target, so the pages would differ between machines.
PORTABLE = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
if platform.machine().lower() in ("x86_64", "amd64"):
    PORTABLE.update(OPENBLAS_CORETYPE="Haswell",
                    NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR")


class PageError(Exception):
    """A page's directives are malformed or one of its commands failed."""


def parse(lines):
    """The page as a list of items: a plain line (str), or a dict for a directive with the
    block it governs (fenced, or up to END_MARKDOWN): kind, command (a hidden `run: CMD`),
    options, language, opening and closing lines (open None for as=markdown), body lines."""
    items, i = [], 0
    while i < len(lines):
        match = DIRECTIVE.match(lines[i].rstrip("\r"))
        if not match:
            if LOOKS_LIKE.match(lines[i]):
                raise PageError(f"line {i + 1}: `{lines[i].strip()}` is not a directive (see "
                                "docs/regenerate.py)")
            items.append(lines[i])
            i += 1
            continue
        command, kind = match.group(1), match.group(2) or "run"
        item = {"kind": kind, "line": lines[i], "command": command,
                "options": _options(kind, match.group(3) or "", i)}
        i += 1
        if kind == "output" and item["options"].get("as") == "markdown":
            end = next((j for j in range(i, len(lines)) if lines[j].strip() == END_MARKDOWN), None)
            if end is None:
                raise PageError(f"line {i}: `{item['line']}` has no `{END_MARKDOWN}` after it")
            item.update(open=None, close=lines[end], body=lines[i:end])
            i = end + 1
        elif command is None:
            fence = FENCE.match(lines[i]) if i < len(lines) else None
            if not fence:
                raise PageError(f"line {i}: `{item['line']}` must be followed by a ``` block")
            end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
            if end is None:
                raise PageError(f"line {i + 1}: the ``` block is not closed")
            item.update(language=fence.group(1), open=lines[i], close=lines[end],
                        body=lines[i + 1:end])
            i = end + 1
        items.append(item)
    return items


def _options(kind, text, i):
    """{name: value} of a directive's options, each one its kind takes, with a valid value."""
    options = dict(o.split("=") for o in text.split())
    for name, value in options.items():
        allowed = OPTIONS[kind].get(name)
        if allowed is None or not re.fullmatch(allowed, value):
            raise PageError(f"line {i + 1}: `{kind}` takes {', '.join(OPTIONS[kind]) or 'no'} "
                            f"options, not {name}={value}")
    return options


def shell(command, folder, language=""):
    """Run `command` in `folder` (bash, or Python for language "python"); its stdout lines."""
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="100", REPOSITORY=os.path.dirname(DOCS),
               **PORTABLE,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    argv = [sys.executable, "-"] if language == "python" else ["bash", "-euo", "pipefail", "-s"]
    done = subprocess.run(argv, input=command, cwd=folder, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise PageError(f"`{command.strip()}` exited with {done.returncode} in {folder}:\n"
                        f"{done.stderr.strip()}")
    return done.stdout.rstrip("\n").split("\n") if done.stdout.strip() else []


def excerpt(lines, options):
    """`lines` cut as the directive's skip=progress, head=N and tail=N ask."""
    if options.get("skip") == "progress":
        lines = [line for line in lines if not PROGRESS.match(line)]
    if "head" in options and len(lines) > int(options["head"]):
        return lines[:int(options["head"])] + [ELIDED]
    if "tail" in options and len(lines) > int(options["tail"]):
        return [ELIDED] + lines[len(lines) - int(options["tail"]):]
    return lines


def replay(body, folder, options):
    """A transcript block rerun: every `$ CMD` line followed by CMD's output."""
    out = []
    for line in body:
        if line.startswith("$ "):
            if line.rstrip().endswith("\\"):
                raise PageError(f"`{line}`: a transcript's command is one line (each `$ ` line "
                                "runs in a bash of its own)")
            out.append(line)
            out.extend(excerpt(shell(line[2:], folder), options))
    if not out:
        raise PageError("a transcript block has no `$ ` command line")
    return out


def regenerate(text, folder):
    """The page's text with every output and transcript block rewritten by running its
    commands in `folder`, in order."""
    items, last, out = parse(text.split("\n")), None, []
    for item in items:
        if isinstance(item, str):
            out.append(item)
            continue
        out.append(item["line"])
        if item["command"] is not None:
            last = shell(item["command"], folder)
            continue
        if item["kind"] == "run":
            body = item["body"]
            last = shell("\n".join(body) + "\n", folder, item["language"])
        elif item["kind"] == "output":
            if last is None:
                raise PageError(f"`{item['line']}` has no `run` before it")
            body = excerpt(last, item["options"])
        else:
            body = replay(item["body"], folder, item["options"])
        out.extend([item["open"]] * (item["open"] is not None) + [*body, item["close"]])
    return "\n".join(out)


def has_directives(text):
    return any(DIRECTIVE.match(line) for line in text.split("\n"))


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def masked(text):
    """The page with wall times replaced by `*`: numbers after "wall time", and the cells of
    a table column headed "wall s" (cells are separated by two or more spaces)."""
    text = re.sub(r"(wall time\s+)[\d.]+(\s?s\b)", r"\1*\2", text)
    text = re.sub(r"^(\|.*?wall s\b)[^|\n]*", r"\1 *", text, flags=re.MULTILINE)
    out, wall = [], None
    for line in text.split("\n"):
        cells = re.split(r"\s{2,}", line.strip())
        if "wall s" in cells:
            wall = (cells.index("wall s"), len(cells))
        elif wall and len(cells) == wall[1]:
            cells[wall[0]] = "*"
        else:
            wall = None   # the table ends at the first row of another shape
        out.append("  ".join(cells) if wall else line.strip())
    return out


def same_line(a, b):
    """Whether two masked lines agree: the same words, equal integers, floats to 1e-3."""
    words_a, words_b = NUMBER.split(a), NUMBER.split(b)
    nums_a, nums_b = NUMBER.findall(a), NUMBER.findall(b)
    if [w.split() for w in words_a] != [w.split() for w in words_b] or len(nums_a) != len(nums_b):
        return False
    for x, y in zip(nums_a, nums_b):
        if re.fullmatch(r"-?\d+", x) or re.fullmatch(r"-?\d+", y):
            if x != y:
                return False
        elif abs(float(x) - float(y)) > 1e-3 * max(abs(float(x)), abs(float(y))):
            return False
    return True


def differences(old, new):
    """A unified diff of two versions of a page, or "" when they agree as `same_line` says."""
    a, b = masked(old), masked(new)
    if len(a) == len(b) and all(same_line(x, y) for x, y in zip(a, b)):
        return ""
    return "\n".join(difflib.unified_diff(a, b, "page", "regenerated", lineterm=""))


def figures(text):
    """The file names of the figures a page shows from img/."""
    return sorted(set(re.findall(r"\]\(img/([^)\s]+\.png)\)", text)))


def run_page(path, folder):
    """Run a page's commands in `folder`: the regenerated text and the figures they wrote."""
    os.makedirs(os.path.join(folder, "docs", "img"), exist_ok=True)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        new = regenerate(text, folder)
    except PageError as error:
        raise PageError(f"{os.path.relpath(path)}: {error}") from None
    written = {os.path.basename(p) for p in glob.glob(os.path.join(folder, "docs", "img", "*.png"))}
    return text, new, written


def write_atomically(path, data, mode="w"):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
        fh.write(data)
    os.replace(temporary, path)


def update(path, folder):
    """Rewrite the page and copy the figures its commands wrote into docs/img."""
    text, new, written = run_page(path, folder)
    for name in sorted(written):
        with open(os.path.join(folder, "docs", "img", name), "rb") as fh:
            write_atomically(os.path.join(DOCS, "img", name), fh.read(), "wb")
    if new != text:
        write_atomically(path, new)
    return new != text, sorted(written)


def check(path, folder):
    """The problems of one page: its differences from what its commands print now, and the
    figures it shows from img/ that they did not write."""
    text, new, written = run_page(path, folder)
    problems = [d for d in [differences(text, new)] if d]
    missing = [name for name in figures(text) if name not in written]
    if missing:
        problems.append(f"figures shown but not written by the page's commands: {missing}")
    return problems


def pages(names):
    if names:
        return [os.path.abspath(n) for n in names]
    found = []
    for path in sorted(glob.glob(os.path.join(DOCS, "*.md"))):
        with open(path, encoding="utf-8") as fh:
            if has_directives(fh.read()):
                found.append(path)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to regenerate (default: all of docs/)")
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    args = parser.parse_args(argv)
    failed = False
    for path in pages(args.pages):
        with tempfile.TemporaryDirectory(prefix="minigrad-docs-") as folder:
            try:
                if args.check:
                    problems = check(path, folder)
                    failed |= bool(problems)
                    print(f"{os.path.relpath(path)}: " + ("\n".join(problems) or "up to date"))
                else:
                    changed, written = update(path, folder)
                    print(f"{os.path.relpath(path)}: {'rewritten' if changed else 'unchanged'}"
                          + (f"; figures {', '.join(written)}" if written else ""))
            except PageError as error:
                print(str(error), file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
