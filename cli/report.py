"""`minigrad report`: the optimizers' verdicts, computed from finished studies.

    minigrad report STUDY_DIR... [--noise-run RUN]... [--preface FILE] [--discussion FILE]
                    --out DIR|FILE.md

reads the summary files of `minigrad scaling`, `sensitivity` and `compare` studies (any number,
of any data sets and models; cli/report_data.py) and writes DIR/report.md, with its figures next
to it (scaling.png, robustness.png, noise-scale.png; matplotlib, cli/report_plots.py), or
FILE.md with its figures in the folder FILE/, and prints its main table. --preface and
--discussion set hand-written markdown before and after what it computes. One row per method
(an optimizer, with the train options a study fixed for it): its order, success cases, data efficiency, scalability, robustness and cost, each
cell a verdict with the figures it rests on; the words follow the rules of cli/report_rules.py,
which report.md states. Then each method's steps to the target per batch size at a glance, the
figures per data set and model, and the measured critical batch
sizes beside the gradient noise scale B_simple of the --noise-run reference runs.

Every number comes from the files; the report is deterministic (no dates, no absolute paths:
the files are named relative to DIR), so a committed report can be regenerated and compared byte
for byte. Without matplotlib, report.md says in place of each figure how to get it.
"""
import math
import os

import click

from . import plotting, report_plots
from . import report_data as data
from . import report_rules as rules
from .atomic import atomic_write
from .common import UserError, one_line_errors, table

REPORT_FILE = "report.md"
SCALING_PNG, ROBUSTNESS_PNG, NOISE_PNG = "scaling.png", "robustness.png", "noise-scale.png"
MAIN_HEADER = ("optimizer", "order", "success cases", "data efficiency (epochs to target)",
               "scalability (steps to target)", "robustness (grid reaching target)",
               "cost to target")


# ------------------------------------------------------------------------------ number formats
def _finite(x):
    return x is not None and math.isfinite(x)


def f2(x):
    return f"{x:.2f}" if _finite(x) else "-"


def count(x):
    """Steps and gradient evaluations: whole numbers as such (means over seeds with a decimal)."""
    if not _finite(x):
        return "-"
    return f"{x:.0f}" if x == round(x) else f"{x:.1f}"


def seconds(x):
    return f"{x:.3g}" if _finite(x) else "-"


def size(x):
    """Batch-size-like figures (B_simple, a fitted B_crit)."""
    if not _finite(x):
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


# ------------------------------------------------------------------------------ the main cells
def figure_text(point, field, text):
    if point is None:
        return "not studied"
    return text(getattr(point, field)) if point.reached else "not reached"


def versus(mine, base, field, text, notes=None):
    """(words, median, figures) of one figure (a Point field) of a method's points against the
    SGD points `base` ({B: Point}; None: no comparison): at each batch size the method was
    studied at "B: mine/SGD's = ratio", the ratio where both reached the target; `notes` {B:
    text} follow SGD's figure (which SGD row it is, sgd_compared)."""
    items, ratios = [], []
    for b, p in sorted(mine.items()):
        mine_text = figure_text(p, field, text)
        if base is None:
            items.append(f"{b}: {mine_text}")
            continue
        q = base.get(b)
        theirs = figure_text(q, field, text) + (notes or {}).get(b, "")
        if p.reached and q is not None and q.reached and getattr(q, field) > 0:
            ratio = getattr(p, field) / getattr(q, field)
            ratios.append(ratio)
            items.append(f"{b}: {mine_text}/{theirs} = {ratio:.2f}")
        else:
            items.append(f"{b}: {mine_text}/{theirs}")
    words, median = rules.ratio_verdict(ratios)
    return words, median, ", ".join(items)


def versus_cell(mine, base, is_base, field, text, notes=None):
    words, median, figures = versus(mine, None if is_base else base, field, text, notes)
    if is_base:
        return f"baseline ({figures})"
    if base is None:
        return f"no SGD baseline ({figures})"
    if words is None:
        return f"no batch size where both reached ({figures})"
    return f"**{words}**: median {median:.2f} ({figures})"


def scaling_of(points):
    sizes = sorted(points)
    return rules.scaling(sizes, [points[b].steps for b in sizes],
                         [points[b].reached for b in sizes])


def scaling_cell(points):
    s = scaling_of(points)
    verdict = f"**{rules.scaling_verdict(s)}**"
    if s is None:
        return verdict
    figures = []
    if s.pairs:
        figures.append("e per doubling " + ", ".join(f"{a}->{b}: {f2(e)}" for a, b, e in s.pairs))
    if s.last_reached > s.b0:
        figures.append(f"at B = {s.last_reached}: {count(s.last_steps)} steps, ideal "
                       f"{count(s.last_ideal)}, {s.last_steps / s.last_ideal:.2f}x")
    return verdict + (f" ({'; '.join(figures)})" if figures else "")


def robustness_cell(mine, base, is_base):
    if is_base or base is None:
        figures = ", ".join(f"{b}: {f.fraction:.2f}" for b, f in sorted(mine.items()))
        return f"baseline ({figures})" if is_base else f"no SGD map ({figures})"
    words, mean, sgd = rules.robustness_verdict(
        {b: f.fraction for b, f in mine.items()}, {b: f.fraction for b, f in base.items()})
    figures = ", ".join(f"{b}: {f.fraction:.2f}/{f2(base[b].fraction) if b in base else '-'}"
                        for b, f in sorted(mine.items()))
    if words is None:
        return f"no batch size mapped for both ({figures})"
    return f"**{words}**: mean {mean:.2f} vs {sgd:.2f} ({figures})"


def success_part(points):
    hit = [b for b in sorted(points) if points[b].reached]
    missed = [b for b in sorted(points) if not points[b].reached]
    parts = [f"reached at B = {', '.join(map(str, hit))}"] if hit else []
    if missed:
        parts.append(f"not{' at' if hit else ' reached at'} B = {', '.join(map(str, missed))}")
    return "; ".join(parts)


def sgd_compared(c, method, problem, base):
    """({B: Point}, {B: note}) of the SGD that `method` is compared with on `problem`: SGD at
    its best (Collection.best_sgd) for the other optimizers, noted with the fixed options of
    the SGD row where it is not the baseline ("(warmup_epochs=5)"); the baseline (plain SGD)
    for an SGD row with fixed train options; (None, {}) without one."""
    if method.optimizer != "sgd":
        best = c.best_sgd(problem)
        notes = {b: " " + m.label[len(m.optimizer):].strip() for b, (m, _) in best.items()
                 if m != base}
        return ({b: p for b, (_, p) in best.items()} or None), notes
    return (c.points.get((base, problem)) if base else None), {}


def method_parts(c, method, problem):
    """{column: text} of one method on one problem (the parts of its main-table cells)."""
    out = {}
    points = c.points.get((method, problem))
    if points:
        base = c.baseline(problem, c.points)
        is_base = base == method
        base_points, notes = sgd_compared(c, method, problem, base)
        out["success"] = success_part(points)
        out["count"] = f"{sum(p.reached for p in points.values())} of {len(points)}"
        out["data"] = versus_cell(points, base_points, is_base, "epochs", f2, notes)
        out["scaling"] = scaling_cell(points)
        cost = versus_cell(points, base_points, is_base, "cost", count, notes)
        wall = versus_cell(points, base_points, is_base, "wall", seconds, notes)
        out["cost"] = f"grad evals {cost}; wall s {wall}"
    fractions = c.fractions.get((method, problem))
    if fractions:
        base = c.baseline(problem, c.fractions)
        out["robustness"] = robustness_cell(fractions, c.fractions.get((base, problem)),
                                            base == method)
    return out


def main_rows(c):
    """(markdown rows, printed rows): one markdown row per method (its problems' parts joined
    by <br>), one printed row per method and problem."""
    labels = c.labels()
    md, printed = [], []
    for m in c.methods:
        parts = {p: method_parts(c, m, p) for p in c.problems}
        parts = {p: v for p, v in parts.items() if v}
        cells = []
        studied = [pt for p in parts for pt in c.points.get((m, p), {}).values()]
        total = f"**{sum(pt.reached for pt in studied)} of {len(studied)}**"
        for key in ("success", "data", "scaling", "robustness", "cost"):
            lines = [f"{labels[p]}: {v[key]}" for p, v in parts.items() if key in v]
            if key == "success" and lines:
                lines.insert(0, total)
            cells.append("<br>".join(lines) or "-")
        md.append([m.label, rules.ORDER[m.optimizer]] + cells)
        for p, v in parts.items():
            success = f"{v['count']}: {v['success']}" if "count" in v else "-"
            printed.append([m.label, rules.ORDER[m.optimizer], labels[p], success] +
                           [v.get(k, "-").replace("**", "") for k in
                            ("data", "scaling", "robustness", "cost")])
    return md, printed


# ------------------------------------------------------------------------------ the sections
def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def budget_text(value):
    return ",".join(f"{b}={e}" for b, e in sorted(value.items(), key=lambda kv: int(kv[0]))) \
        if isinstance(value, dict) else str(value)


def compute_cells(compute):
    if compute is None:
        return ["-"] * 3
    return [str(compute.trials), count(compute.steps), f"{compute.seconds / 3600:.3g}"]


def studies_table(c, out):
    rows = []
    for s in c.studies:
        o = s.options
        sizes = o.get("batch_sizes") or [o.get("batch_size")]
        rows.append([f"`{relative(s.path, out)}`", s.command, s.problem.dataset,
                     s.problem.model_text(), s.problem.target_text(),
                     ", ".join(map(str, sizes)), ", ".join(o.get("optimizers", [])),
                     budget_text(o.get("budget_epochs")),
                     ", ".join(o.get("train_options") or []) or "-"] + compute_cells(s.compute))
    return md_table(("study file", "command", "data set", "model", "target", "batch sizes",
                     "optimizers", "budget (epochs)", "fixed train options", "trials",
                     "optimizer steps", "step time (h)"), rows)


def compute_text(c):
    """The studies' compute in all: a sentence."""
    known = [s.compute for s in c.studies if s.compute is not None]
    if not known:
        return "The study files hold no trial tables: their compute is not known."
    hours = sum(k.seconds for k in known) / 3600
    steps = count(sum(k.steps for k in known))
    return (f"In all, {sum(k.trials for k in known)} trials took {steps} optimizer steps,"
            f" {count(sum(k.grad_evals for k in known))} gradient evaluations "
            f"and {hours:.1f} hours of step time (the optimizer steps' own time; evaluations and "
            "file writes excluded).")


def spread_text(p):
    """A point's steps over its seeds, "min-max", where there are several and all reached."""
    if p is None or p.seeds < 2 or not p.reached or not _finite(p.steps_min):
        return "-"
    return f"{count(p.steps_min)}-{count(p.steps_max)}"


def figures_table(c, problem):
    """Every figure of one problem: a row per method and batch size."""
    rows = []
    base = c.baseline(problem, c.points)
    for m in c.methods:
        points = c.points.get((m, problem), {})
        fractions = c.fractions.get((m, problem), {})
        s = scaling_of(points) if points else None
        e_to = {b: e for _, b, e in s.pairs} if s else {}
        base_points, notes = sgd_compared(c, m, problem, base) if base != m else ({}, {})
        base_points = base_points or {}
        for b in sorted(set(points) | set(fractions)):
            p, f, q = points.get(b), fractions.get(b), base_points.get(b)
            ratio = p.epochs / q.epochs if p and q and p.reached and q.reached else math.nan
            ratio_text = f2(ratio) + (notes.get(b, "") if _finite(ratio) else "")
            rows.append([m.label, b, "-" if p is None else "yes" if p.reached else "no",
                         count(p.steps) if p else "-", spread_text(p),
                         count(rules.ideal_steps(s.s0, s.b0, b)) if p and s else "-",
                         f2(e_to.get(b)), f2(p.epochs) if p else "-", ratio_text,
                         count(p.cost) if p else "-", seconds(p.wall) if p else "-",
                         f"{f.fraction:.2f} ({f.reached}/{f.grid})" if f else "-",
                         p.setting or "-" if p else "-"])
    return md_table(("optimizer", "B", "reached", "steps", "steps over seeds", "ideal steps",
                     "e per doubling",
                     "epochs", "epochs / SGD", "grad evals", "wall s",
                     "grid reaching target", "best setting"), rows)


def glance_table(c, problem):
    """Steps to the target (the seeds' mean) of every method at every batch size of one problem:
    a row per method, a column per batch size, the fewest steps of each column in bold."""
    methods = [m for m in c.methods if c.points.get((m, problem))]
    sizes = sorted({b for m in methods for b in c.points[(m, problem)]})
    if not methods:
        return ""
    fewest = {}
    for b in sizes:
        reached = [p.steps for m in methods if (p := c.points[(m, problem)].get(b))
                   and p.reached]
        fewest[b] = min(reached) if reached else None
    rows = []
    for m in methods:
        cells = [m.label]
        for b in sizes:
            p = c.points[(m, problem)].get(b)
            text = "-" if p is None else count(p.steps) if p.reached else "not reached"
            cells.append(f"**{text}**" if p and p.reached and p.steps == fewest[b] else text)
        rows.append(cells)
    return md_table(("method", *(f"B = {b}" for b in sizes)), rows)


def noise_runs_table(runs, out):
    rows = []
    for r in runs:
        b_simple, first, used = rules.noise_summary(r.step, r.trace, r.grad_sq)
        epochs = rules.noise_by_epoch(r.step, r.trace, r.grad_sq, r.per_epoch)
        rows.append([f"`{relative(r.path, out)}`",
                     f"{r.dataset} {data.model_text(r.model, r.hidden)}",
                     f"{r.optimizer}, B = {r.batch_size}", f"{used} of {len(r.step)}",
                     f"{count(first)}-{count(r.step.max()) if len(r.step) else '-'}",
                     size(b_simple),
                     f"{size(epochs[0][1])} -> {size(epochs[-1][1])}" if epochs else "-"])
    return md_table(("run", "data set, model", "optimizer, batch", "evaluations used",
                     "steps used", "B_simple", "B_simple first -> last epoch"), rows)


def critical_table(c, problem, runs, out):
    rows = []
    mine = [r for r in runs if (r.dataset, r.model, r.hidden) ==
            (problem.dataset, problem.model, problem.hidden)]
    for m in c.methods:
        points = c.points.get((m, problem))
        if not points:
            continue
        s = scaling_of(points)
        hit = sorted(b for b in points if points[b].reached)
        fit = rules.fit_critical_batch(hit, [points[b].steps for b in hit])
        critical = None if s is None else s.critical
        b_c = "-" if s is None else f"{s.critical}" + (" (largest studied)"
                                                     if s.stop_at is None else "")
        for r in mine or [None]:
            if r is None:
                rows.append([m.label, b_c, size(fit), "-", "-", "-",
                             "no --noise-run of this data set and model"])
                continue
            b_simple = rules.noise_summary(r.step, r.trace, r.grad_sq)[0]
            ratio = critical / b_simple if critical and _finite(b_simple) and b_simple > 0 \
                else math.nan
            rows.append([m.label, b_c, size(fit), f"`{relative(r.path, out)}`", size(b_simple),
                         f2(ratio), rules.noise_verdict(critical, s is not None and
                                                        s.stop_at is None, b_simple)])
    return md_table(("optimizer", "B_c", "B_crit fit", "run", "B_simple", "B_c / B_simple",
                     "verdict"), rows) if rows else ""


class Layout:
    """Where the report goes: `out` a folder (OUT/report.md, figures beside it) or a markdown
    file (OUT.md, figures in the folder OUT/, named after it). Paths in the report are relative
    to the markdown file's folder."""

    def __init__(self, out):
        if out.endswith(".md"):
            self.md, self.figures = out, os.path.splitext(out)[0]
        else:
            self.md, self.figures = os.path.join(out, REPORT_FILE), out
        self.base = os.path.dirname(self.md) or "."

    def figure_path(self, name):
        return os.path.join(self.figures, name)

    def link(self, path):
        return relative(path, self.base)


def figure(layout, name, drawn, alt):
    if drawn:
        return f"![{alt}]({layout.link(layout.figure_path(name))})"
    return (f"(figure {name} not drawn: matplotlib is not installed; run "
            f"`{plotting.INSTALL_HINT}` and `minigrad report` again)")


def relative(path, out):
    return os.path.relpath(os.path.abspath(path), os.path.abspath(out)).replace(os.sep, "/")


def read_text(path, option):
    """The markdown of --preface/--discussion, without trailing blank lines."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip() + "\n"
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{option} {path}: cannot be read ({e.__class__.__name__}: "
                        f"{getattr(e, 'strerror', None) or e})")


def write_report(c, runs, layout, preface=None, discussion=None):
    """The text of the report (the figures drawn on the way); also returns the printed rows.
    preface, discussion: markdown set verbatim after the title and at the end."""
    labels = c.labels()
    md_rows, printed = main_rows(c)
    lines = ["# Optimizer report", ""]
    if preface:
        lines += [preface]
    lines += [(f"Written by `minigrad report` from {len(c.studies)} study file(s) and "
              f"{len(runs)} reference run(s). Every figure below is read from them or computed "
              "from what they hold, by the rules stated below (cli/report_rules.py)."), "",
              "## Studies", "", studies_table(c, layout.base), "", compute_text(c), "",
              "## Summary", "",
              ("One row per method: an optimizer, with the train options a study fixed for it. "
              "Each cell gives its verdict, per data set and model, and the figures it rests on "
              "(B: the batch size; x/y: the method's figure and SGD's)."), "",
              md_table(MAIN_HEADER, md_rows), "",
              "## Steps to the target", "",
              ("Each method's steps to the target at each batch size (its seeds' mean; the "
              "fewest of each batch size in bold), the figure behind the scalability column; "
              "the tables further down give the rest."), ""]
    for p in c.problems:
        table = glance_table(c, p)
        if table:
            lines += [f"### {labels[p]}: {p.target_text()}", "", table, ""]
    lines += ["## Rules", "", rules.rules_markdown(),
              "## Figures by data set and model", ""]
    for p in c.problems:
        lines += [f"### {labels[p]}: {p.dataset}, {p.model_text()}, {p.target_text()}", "",
                  figures_table(c, p), ""]
    if c.points:
        drawn = report_plots.scaling_figure(c, layout.figure_path(SCALING_PNG))
        lines += [figure(layout, SCALING_PNG, drawn, "steps and epochs to the target against "
                                                     "batch size, with the ideal hyperbolas"), "",
                  ("Dotted: the ideal S(B0) B0 / B (epochs: the same steps over ceil(n / B) "
                  "steps per epoch); bars: the range over the seeds; x: not reached."), ""]
    if c.fractions:
        drawn = report_plots.robustness_figure(c, layout.figure_path(ROBUSTNESS_PNG))
        lines += [figure(layout, ROBUSTNESS_PNG, drawn, "fraction of the sensitivity grid "
                                                        "reaching the target against batch size"),
                  ""]
    lines += ["## Critical batch size and the gradient noise scale", "",
              ("B_c by the rule above; B_crit fit: McCandlish et al.'s S(B) = S_min (1 + B_crit "
              "/ B) fitted to the steps; B_simple: the --noise-run reference runs' gradient "
              "noise scale (McCandlish et al. 2018)."), ""]
    if runs:
        lines += [noise_runs_table(runs, layout.base), ""]
    for p in c.problems:
        table = critical_table(c, p, runs, layout.base)
        if table:
            lines += [f"### {labels[p]}", "", table, ""]
    if runs:
        drawn = report_plots.noise_figure(runs, c, layout.figure_path(NOISE_PNG))
        lines += [figure(layout, NOISE_PNG, drawn, "gradient noise scale over training"), "",
                  ("Line: B_simple of each epoch (both parts averaged over its evaluations); "
                  "dots: single evaluations; dashed: the summary value; dotted: the critical "
                  "batch sizes B_c of the same data set and model."), ""]
    if discussion:
        lines += [discussion]
    return "\n".join(lines).rstrip("\n") + "\n", printed


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("studies", nargs=-1, required=True, metavar="STUDY_DIR...")
@click.option("--noise-run", "noise_runs", multiple=True, metavar="RUN",
              help="A `minigrad train` run folder that logged the gradient noise scale "
                   "(--noise-scale-examples N): its B_simple is set beside the critical batch "
                   "sizes of its data set and model (repeatable).")
@click.option("--preface", type=click.Path(dir_okay=False), metavar="FILE",
              help="Markdown set verbatim after the report's title (the protocol, the machine).")
@click.option("--discussion", type=click.Path(dir_okay=False), metavar="FILE",
              help="Markdown set verbatim at the end of the report (a reading of its figures).")
@click.option("--out", required=True, type=click.Path(), metavar="OUT",
              help="A folder (OUT/report.md, its figures beside it, created), or a markdown file "
                   "OUT.md (its figures in the folder OUT/).")
@one_line_errors
def report(studies, noise_runs, preface, discussion, out):
    """The optimizers' verdicts from finished studies: order, success cases, data efficiency,
    scalability (critical batch size), robustness and cost, per data set and model, and the
    gradient noise scale beside the critical batch sizes.

    STUDY_DIR: folders of `minigrad scaling`, `sensitivity` or `compare` (their scaling.h5,
    sensitivity.h5, compare.h5 are read; never trials/), or those files. Writes OUT/report.md
    (or OUT.md), and scaling.png, robustness.png and noise-scale.png beside it (in OUT/;
    matplotlib), and prints the main table.
    """
    collection = data.collect([data.read_study(p) for p in data.study_files(studies)])
    runs = sorted((data.read_noise_run(r) for r in noise_runs), key=lambda r: r.path)
    texts = [read_text(p, o) if p else None
             for p, o in ((preface, "--preface"), (discussion, "--discussion"))]
    layout = Layout(out)
    for folder in (layout.base, layout.figures):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UserError(f"--out {out}: {folder} is a file, not a folder")
        os.makedirs(folder, exist_ok=True)
    text, printed = write_report(collection, runs, layout, *texts)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    atomic_write(layout.md, write)
    click.echo(table(("optimizer", "order", "problem", "success cases", "data efficiency",
                      "scalability", "robustness", "cost"), printed))
    click.echo(f"report written to {layout.md}")
