"""`minigrad report` (cli/report.py): its tables against the study files read here with h5py.

A tiny digits study (`minigrad scaling` and `minigrad sensitivity` on a 64-8-10 MLP, 2-3 epochs)
and a `minigrad train --noise-scale-examples` run are reported on, and every cell of every table
of report.md is rebuilt here from the raw datasets of the study files and the run: efficiencies
from best/<opt>/steps_to_target, the critical batch size by walking the doublings, the ratios to
SGD, the grid fractions from maps/<opt>/reached, B_simple from evals/noise_*. Hand-made study
files with known numbers then drive every branch of the verdict rules, whose words are written
out literally here. Finally: the output is deterministic, and bad input is a one-line error.
"""
import json
import os
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minigrad.cli import main, plotting
from minigrad.cli.report import report
from minigrad.cli.scaling import scaling
from minigrad.cli.sensitivity import sensitivity
from minigrad.cli.train import train

STUDY = ["--hidden", "8", "--evals-per-epoch", "2", "--optimizers", "sgd,kfac",
         "--target-accuracy", "0.7", "--grid", "sgd.momentum=0.9", "--grid", "kfac.lr=0.05"]
SCALING = STUDY + ["--budget-epochs", "3", "--batch-sizes", "64,128,256", "--grid", "sgd.lr=0.2",
                   "--grid", "kfac.damping=0.01", "--grid", "kfac.kl_clip=0",
                   "--confirm-seeds", "2"]
SENSITIVITY = STUDY + ["--budget-epochs", "2", "--batch-sizes", "64,256",
                       "--grid", "sgd.lr=0.05,0.4", "--grid", "kfac.damping=0.01,1",
                       "--grid", "kfac.kl_clip=0"]
# both studies fix K-FAC's kl_clip off (--grid kfac.kl_clip=0): one method, named for it
LABEL = {"sgd": "sgd", "kfac": "kfac (kl_clip=0)"}
NOISE_RUN = ["--hidden", "8", "--epochs", "3", "--batch-size", "64", "--eval-every", "6",
             "--noise-scale-examples", "64"]


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(plotting, "pyplot", lambda: None)


# ----------------------------------------------------------------------- reading report.md
def tables(text, heading):
    """The markdown tables of the section `heading` (up to the next heading of its level or
    above): [(header, rows)] with stripped cells."""
    level = heading.split()[0]
    lines = text.splitlines()
    start = lines.index(heading) + 1
    section = []
    for line in lines[start:]:
        if line.startswith("#") and len(line.split()[0]) <= len(level):
            break
        section.append(line)
    found, current = [], None
    for line in section:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            if current is None:
                current = (cells, [])
            elif not all(set(c) <= {"-", " "} for c in cells):
                current[1].append(cells)
        elif current is not None:
            found.append(current)
            current = None
    if current is not None:
        found.append(current)
    return found


def main_table(text):
    (header, rows), = tables(text, "## Summary")
    return {row[0]: dict(zip(header, row)) for row in rows}


# -------------------------------------------------------------- the study files, read here
def best_points(path):
    """{optimizer: {B: figures}} of best/ of a scaling.h5 (or of a compare.h5)."""
    keys = ("batch_size", "reached", "steps_to_target", "epochs_to_target", "cost_to_target",
            "wall_to_target")
    out = {}
    with h5py.File(path, "r") as f:
        if f.attrs["command"] == "compare":
            g = f["best"]
            for row in zip(g["optimizer"][()], *(g[k][()] for k in keys)):
                out[row[0].decode()] = {int(row[1]): _figures(*row[2:])}
            return out
        for opt in f["best"]:
            g = f["best"][opt]
            out[opt] = {int(row[0]): _figures(*row[1:]) for row in
                        zip(*(g[k][()] for k in keys + ("steps_min", "steps_max")))}
            names = SEARCHED[opt]
            for b, *values in zip(g["batch_size"][()], *(g[k][()] for k in names)):
                out[opt][int(b)]["setting"] = " ".join(
                    f"{k}={'off' if k == 'kl_clip' and v == 0 else f'{v:.3g}'}"
                    for k, v in zip(names, values) if np.isfinite(v))
    return out


# the hyperparameters each optimizer's search varies in these studies, as the report names them
SEARCHED = {"sgd": ("lr", "momentum"), "kfac": ("lr", "damping", "kl_clip")}


def _figures(reached, steps, epochs, cost, wall, low=np.nan, high=np.nan):
    return {"reached": bool(reached), "steps": float(steps), "epochs": float(epochs),
            "cost": float(cost), "wall": float(wall), "low": float(low), "high": float(high)}


def spread(p, seeds):
    """The "steps over seeds" cell: min-max where several seeds all reached the target."""
    return f"{whole(p['low'])}-{whole(p['high'])}" if p and p["reached"] and seeds > 1 else "-"


def grid_fractions(path):
    """{optimizer: {B: (fraction, points reaching, grid points)}} recomputed from maps/reached."""
    out = {}
    with h5py.File(path, "r") as f:
        for opt in f["maps"]:
            reached = f["maps"][opt]["reached"][()]
            out[opt] = {int(b): (hit.sum() / hit.size, int(hit.sum()), hit.size)
                        for b, hit in zip(f["maps"][opt]["batch_size"][()], reached)}
    return out


def two(x):
    return f"{x:.2f}"


def whole(x):
    return f"{x:.0f}" if x == int(x) else f"{x:.1f}"


def secs(x):
    return f"{x:.3g}"


def median_words(ratios):
    """The data-efficiency / cost rule of docs/report.md."""
    m = float(np.median(ratios))
    return ("better than SGD" if m < 0.8 - 1e-9 else "worse than SGD" if m > 1.25 + 1e-9
            else "similar to SGD"), m


def versus(mine, sgd, key, form, baseline):
    """The expected text of a data-efficiency or cost cell part."""
    items, ratios = [], []
    for b in sorted(mine):
        p = mine[b]
        m = form(p[key]) if p["reached"] else "not reached"
        if baseline or sgd is None:
            items.append(f"{b}: {m}")
            continue
        q = sgd.get(b)
        t = "not studied" if q is None else form(q[key]) if q["reached"] else "not reached"
        if p["reached"] and q is not None and q["reached"]:
            ratios.append(p[key] / q[key])
            items.append(f"{b}: {m}/{t} = {ratios[-1]:.2f}")
        else:
            items.append(f"{b}: {m}/{t}")
    figures = ", ".join(items)
    if baseline:
        return f"baseline ({figures})"
    if sgd is None:
        return f"no SGD baseline ({figures})"
    if not ratios:
        return f"no batch size where both reached ({figures})"
    words, m = median_words(ratios)
    return f"**{words}**: median {m:.2f} ({figures})"


def critical(points):
    """(B0, B_c, [(B_prev, B, efficiency or None)], index of B_c) by walking the doublings from
    the first reached batch size while the next is reached with efficiency >= 0.5."""
    sizes = sorted(points)
    hit = [i for i, b in enumerate(sizes) if points[b]["reached"]]
    if not hit:
        return None
    first = hit[0]
    pairs = []
    for i in range(first, len(sizes) - 1):
        a, b = sizes[i], sizes[i + 1]
        assert b == 2 * a   # the studies here double the batch: e is the efficiency
        both = points[a]["reached"] and points[b]["reached"]
        pairs.append((a, b, (points[a]["steps"] / points[b]["steps"]) / 2 if both else None))
    i = first
    while i + 1 < len(sizes) and pairs[i - first][2] is not None and pairs[i - first][2] >= 0.5:
        i += 1
    return sizes[first], sizes[i], pairs, i


def scalability(points):
    found = critical(points)
    if found is None:
        return "**never reached the target**"
    b0, bc, pairs, i = found
    sizes = sorted(points)
    if bc == sizes[-1]:
        words = (f"reached only at B = {bc}, the largest studied: no doubling measured" if bc == b0
                 else f"scales to B = {bc} (the largest studied) with efficiency >= 0.5")
    else:
        nxt = sizes[i + 1]
        e = pairs[i - sizes.index(b0)][2]
        why = f"not reached at B = {nxt}" if e is None else f"efficiency {e:.2f} from {bc} to {nxt}"
        words = (f"does not scale beyond B = {bc} ({why})" if bc == b0 else
                 f"scales to B = {bc} with efficiency >= 0.5, not beyond ({why})")
    figures = []
    if pairs:
        figures.append("e per doubling " + ", ".join(
            f"{a}->{b}: {'-' if e is None else two(e)}" for a, b, e in pairs))
    last = max(b for b in sizes if points[b]["reached"])
    if last > b0:
        ideal = points[b0]["steps"] * b0 / last
        figures.append(f"at B = {last}: {whole(points[last]['steps'])} steps, ideal "
                       f"{whole(ideal)}, {points[last]['steps'] / ideal:.2f}x")
    return f"**{words}**" + (f" ({'; '.join(figures)})" if figures else "")


def success(points):
    hit = [str(b) for b in sorted(points) if points[b]["reached"]]
    missed = [str(b) for b in sorted(points) if not points[b]["reached"]]
    if not hit:
        return f"not reached at B = {', '.join(missed)}"
    return f"reached at B = {', '.join(hit)}" + (f"; not at B = {', '.join(missed)}" if missed
                                                  else "")


def robustness(mine, sgd, baseline):
    if baseline or sgd is None:
        figures = ", ".join(f"{b}: {two(mine[b][0])}" for b in sorted(mine))
        return f"baseline ({figures})" if baseline else f"no SGD map ({figures})"
    common = sorted(set(mine) & set(sgd))
    figures = ", ".join(f"{b}: {two(mine[b][0])}/{two(sgd[b][0]) if b in sgd else '-'}"
                        for b in sorted(mine))
    mean = sum(mine[b][0] for b in common) / len(common)
    base = sum(sgd[b][0] for b in common) / len(common)
    words = ("more robust than SGD" if mean - base > 0.1 + 1e-9 else
             "less robust than SGD" if mean - base < -0.1 - 1e-9 else "as robust as SGD")
    return f"**{words}**: mean {mean:.2f} vs {base:.2f} ({figures})"


def b_simple(path):
    """(summary B_simple, evaluations used, first step used, per-epoch values) of a run.h5 read
    here: mean tr(Sigma) over mean |G|^2 from 10% of the last evaluated step on; per epoch
    over the evaluations in (k E, (k+1) E]."""
    with h5py.File(os.path.join(path, "run.h5"), "r") as f:
        step = f["evals/step"][()]
        trace = f["evals/noise_trace_cov"][()]
        grad_sq = f["evals/noise_grad_sq_norm"][()]
        per_epoch = json.loads(f.attrs["config"])["steps_per_epoch"]
    used = step >= 0.1 * step.max()
    epochs = [trace[(np.maximum(step - 1, 0) // per_epoch) == k].mean() /
              grad_sq[(np.maximum(step - 1, 0) // per_epoch) == k].mean()
              for k in sorted(set(np.maximum(step - 1, 0) // per_epoch))]
    return trace[used].mean() / grad_sq[used].mean(), int(used.sum()), int(step[used].min()), \
        epochs, len(step), int(step.max())


def size(x):
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def mccandlish_fit(points):
    """B_crit of S(B) = S_min (1 + B_crit / B) by weighted polyfit in 1/B (relative residuals)."""
    sizes = [b for b in sorted(points) if points[b]["reached"]]
    if len(sizes) < 2:
        return None
    steps = np.array([points[b]["steps"] for b in sizes])
    slope, intercept = np.polyfit(1.0 / np.array(sizes, float), steps, 1, w=1.0 / steps)
    return slope / intercept if intercept > 0 and slope > 0 else None


# -------------------------------------------------------------------------- the real study
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    ok(invoke(scaling, *SCALING, "--out", root / "studies" / "scaling"))
    ok(invoke(sensitivity, *SENSITIVITY, "--out", root / "studies" / "sensitivity"))
    ok(invoke(train, *NOISE_RUN, "--out", root / "runs" / "sgd-noise"))
    result = ok(invoke(report, root / "studies" / "scaling", root / "studies" / "sensitivity",
                       "--noise-run", root / "runs" / "sgd-noise", "--out", root / "report"))
    text = (root / "report" / "report.md").read_text()
    return root, result, text


def test_every_main_table_cell_follows_from_the_study_files(real):
    root, result, text = real
    points = best_points(root / "studies" / "scaling" / "scaling.h5")
    grids = grid_fractions(root / "studies" / "sensitivity" / "sensitivity.h5")
    rows = main_table(text)
    assert list(rows) == [LABEL["sgd"], LABEL["kfac"]]
    for opt, row in zip(("sgd", "kfac"), rows.values()):
        mine, base = points[opt], opt == "sgd"
        hit = sum(p["reached"] for p in mine.values())
        assert row["order"] == ("first" if opt == "sgd" else "second")
        assert row["success cases"] == f"**{hit} of 3**<br>digits mlp 8: {success(mine)}"
        assert row["data efficiency (epochs to target)"] == \
            "digits mlp 8: " + versus(mine, points["sgd"], "epochs", two, base)
        assert row["scalability (steps to target)"] == "digits mlp 8: " + scalability(mine)
        assert row["robustness (grid reaching target)"] == \
            "digits mlp 8: " + robustness(grids[opt], grids["sgd"], base)
        assert row["cost to target"] == (
            "digits mlp 8: grad evals " + versus(mine, points["sgd"], "cost", whole, base) +
            "; wall s " + versus(mine, points["sgd"], "wall", secs, base))
        # the printed table has the same cells, without the markdown emphasis
        printed = row["data efficiency (epochs to target)"].split(": ", 1)[1].replace("**", "")
        assert printed in result.output


def test_every_figure_cell_follows_from_the_study_files(real):
    root, _, text = real
    points = best_points(root / "studies" / "scaling" / "scaling.h5")
    grids = grid_fractions(root / "studies" / "sensitivity" / "sensitivity.h5")
    (header, rows), = tables(text, "### digits mlp 8: digits, mlp 8, test accuracy >= 0.7")
    expected = []
    for opt in ("sgd", "kfac"):
        found = critical(points[opt])
        for b in sorted(set(points[opt]) | set(grids[opt])):
            p, g, q = points[opt].get(b), grids[opt].get(b), points["sgd"].get(b)
            e = next((e for _, to, e in found[2] if to == b), None) if found else None
            both = opt != "sgd" and p and q and p["reached"] and q["reached"]
            expected.append([
                LABEL[opt], str(b), "-" if p is None else "yes" if p["reached"] else "no",
                whole(p["steps"]) if p and p["reached"] else "-",
                spread(p, seeds=2),
                whole(points[opt][found[0]]["steps"] * found[0] / b) if p and found else "-",
                "-" if e is None else two(e),
                two(p["epochs"]) if p and p["reached"] else "-",
                two(p["epochs"] / q["epochs"]) if both else "-",
                whole(p["cost"]) if p and p["reached"] else "-",
                secs(p["wall"]) if p and p["reached"] else "-",
                f"{two(g[0])} ({g[1]}/{g[2]})" if g else "-",
                p["setting"] if p else "-"])
    assert header[:3] == ["optimizer", "B", "reached"] and rows == expected
    assert any(row[-1].endswith("kl_clip=off") for row in rows)


def test_steps_at_a_glance_follow_from_the_study_files(real):
    """The "Steps to the target" table: each method's steps at each batch size, the fewest of
    each batch size in bold."""
    root, _, text = real
    points = best_points(root / "studies" / "scaling" / "scaling.h5")
    (header, rows), = tables(text, "### digits mlp 8: test accuracy >= 0.7")
    sizes = sorted(points["sgd"])
    assert header == ["method"] + [f"B = {b}" for b in sizes]
    fewest = {b: min((points[o][b]["steps"] for o in points if points[o][b]["reached"]),
                     default=None) for b in sizes}
    expected = []
    for opt in ("sgd", "kfac"):
        cells = [LABEL[opt]]
        for b in sizes:
            p = points[opt][b]
            cell = whole(p["steps"]) if p["reached"] else "not reached"
            cells.append(f"**{cell}**" if p["reached"] and p["steps"] == fewest[b] else cell)
        expected.append(cells)
    assert rows == expected
    assert any(c.startswith("**") for row in rows for c in row)
    assert text.index("## Summary") < text.index("## Steps to the target") < \
        text.index("## Rules")


def test_noise_scale_tables_follow_from_the_run_and_the_study(real):
    root, _, text = real
    run = root / "runs" / "sgd-noise"
    value, used, first, epochs, evals, last = b_simple(run)
    assert 8 <= evals and used == evals - 1   # the first evaluation (step 6 < 6.9) left out
    runs_table, critical_table = tables(text, "## Critical batch size and the gradient noise "
                                              "scale")
    assert runs_table[1] == [["`../runs/sgd-noise`", "digits mlp 8", "sgd, B = 64",
                              f"{used} of {evals}", f"{first}-{last}", size(value),
                              f"{size(epochs[0])} -> {size(epochs[-1])}"]]
    points = best_points(root / "studies" / "scaling" / "scaling.h5")
    expected = []
    for opt in ("sgd", "kfac"):
        found = critical(points[opt])
        fit = mccandlish_fit(points[opt])
        bc = None if found is None else found[1]
        largest = found is not None and bc == max(points[opt])
        r = None if bc is None else bc / value
        if bc is None:
            verdict = "never reached the target"
        elif largest:
            verdict = ("scaling goes on above B_simple (B_c >= 2 B_simple)" if r > 2 else
                       "cannot tell (scaling had not stopped at the largest size studied)")
        else:
            verdict = ("scaling stops above B_simple (B_c > 2 B_simple)" if r > 2 else
                       "scaling stops below B_simple (B_c < B_simple / 2)" if r < 0.5 else
                       "B_simple predicts it (within a factor of 2)")
        shown = "-" if bc is None else f"{bc}" + (" (largest studied)" if largest else "")
        expected.append([LABEL[opt], shown,
                         "-" if fit is None else size(fit), "`../runs/sgd-noise`", size(value),
                         "-" if r is None else two(r), verdict])
    assert critical_table[1] == expected


def test_studies_table_and_figures(real):
    root, result, text = real
    (header, rows), = tables(text, "## Studies")
    compute = {}
    for kind in ("scaling", "sensitivity"):
        with h5py.File(root / "studies" / kind / f"{kind}.h5", "r") as f:
            t = f["trials"]
            compute[kind] = (len(t["optimizer"]), t["steps"][()].sum(), t["wall_time"][()].sum())
    cells = {k: [str(n), whole(steps), f"{seconds / 3600:.3g}"]
             for k, (n, steps, seconds) in compute.items()}
    assert header[-3:] == ["trials", "optimizer steps", "step time (h)"]
    assert rows == [
        ["`../studies/scaling/scaling.h5`", "scaling", "digits", "mlp 8", "test accuracy >= 0.7",
         "64, 128, 256", "sgd, kfac", "3", "-"] + cells["scaling"],
        ["`../studies/sensitivity/sensitivity.h5`", "sensitivity", "digits", "mlp 8",
         "test accuracy >= 0.7", "64, 256", "sgd, kfac", "2", "-"] + cells["sensitivity"]]
    # scaling: 2 optimizers x 3 sizes x 1 grid point, and the best setting's second seed
    assert compute["scaling"][0] == 12
    n, steps, seconds = (sum(v[i] for v in compute.values()) for i in range(3))
    assert (f"In all, {n} trials took {whole(steps)} optimizer steps" in text
            and f"{seconds / 3600:.1f} hours of step time" in text)
    for name in ("scaling.png", "robustness.png", "noise-scale.png"):
        assert f"]({name})" in text
        assert (root / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(root) not in text and "report written to" in result.output


def test_a_markdown_out_puts_the_figures_in_its_own_folder_with_preface_and_discussion(real):
    root, _, text = real
    (root / "own").mkdir()
    (root / "own" / "preface.md").write_text("How the studies were run.\n\n\n")
    (root / "own" / "discussion.md").write_text("## Discussion\n\nWhat the figures say.\n")
    page = root / "docs" / "results.md"
    ok(invoke(report, root / "studies" / "scaling", root / "studies" / "sensitivity",
              "--noise-run", root / "runs" / "sgd-noise", "--preface", root / "own" / "preface.md",
              "--discussion", root / "own" / "discussion.md", "--out", page))
    written = page.read_text()
    for name in ("scaling.png", "robustness.png", "noise-scale.png"):
        assert f"](results/{name})" in written
        assert (root / "docs" / "results" / name).read_bytes()[:4] == b"\x89PNG"
    assert "`../studies/scaling/scaling.h5`" in written   # paths relative to the page's folder
    # the preface right after the title (trailing blank lines dropped), the discussion last
    assert written.startswith("# Optimizer report\n\nHow the studies were run.\n\nWritten by")
    assert written.endswith("\n## Discussion\n\nWhat the figures say.\n")
    # between them, what the report computes: the same as the folder form's, figures aside
    body = written.split("How the studies were run.\n\n", 1)[1].rsplit("## Discussion", 1)[0]
    assert body.replace("](results/", "](") == text.split("# Optimizer report\n\n", 1)[1] + "\n"


def test_an_unreadable_preface_is_a_one_line_error(real, tmp_path):
    root, _, _ = real
    line = one_line_error(invoke(report, root / "studies" / "scaling", "--preface",
                                 tmp_path / "missing.md", "--out", tmp_path / "r"))
    assert "--preface" in line and "missing.md" in line


def test_report_is_deterministic_and_independent_of_argument_order(real, no_plots):
    root, _, _ = real
    studies = [root / "studies" / "scaling", root / "studies" / "sensitivity"]
    noise = ["--noise-run", root / "runs" / "sgd-noise"]
    ok(invoke(report, *studies, *noise, "--out", root / "a" / "report"))
    ok(invoke(report, *reversed(studies), *noise, "--out", root / "b" / "report"))
    first = (root / "a" / "report" / "report.md").read_bytes()
    assert first == (root / "b" / "report" / "report.md").read_bytes()
    # without matplotlib the figures are replaced by how to get them
    assert b"![" not in first and first.count(b'pip install matplotlib') == 3
    assert not (root / "a" / "report" / "scaling.png").exists()


# ------------------------------------------------------------------- hand-made study files
N_MADE = 102400   # ceil(n / B) = n / B for every batch size below


def write_study(folder, command, curves, dataset="digits", target=0.9, train_options=(),
                batch_size=None, grid_entries=()):
    """A study file with known numbers. scaling/compare: curves {opt: {B: (steps, epochs, cost,
    wall) or None (not reached)}}; sensitivity: {opt: {B: (points reaching, grid points)}}."""
    os.makedirs(folder, exist_ok=True)
    sizes = sorted({b for c in curves.values() for b in c})
    options = {"dataset": dataset, "model": "mlp", "hidden": [8], "target_accuracy": target,
               "target_loss": None, "optimizers": list(curves), "budget_epochs": 10,
               "train_options": list(train_options), "grid_entries": list(grid_entries)}
    options.update({"batch_size": batch_size} if command == "compare" else {"batch_sizes": sizes})
    with h5py.File(os.path.join(folder, f"{command}.h5"), "w") as f:
        f.attrs["command"] = command
        f.attrs["options"] = json.dumps(options)
        f.attrs["train_examples"] = N_MADE
        if command == "sensitivity":
            for opt, c in curves.items():
                g = f.create_group(f"maps/{opt}")
                reached = np.zeros((len(c), 2, 5), bool)
                for k, b in enumerate(sorted(c)):
                    reached[k].flat[:c[b][0]] = True
                g["batch_size"] = np.array(sorted(c))
                g["reached"] = reached
                g["fraction_reached"] = reached.reshape(len(c), -1).mean(axis=1)
            return
        if command == "scaling":   # best/<optimizer>/, one entry per batch size
            for opt, c in curves.items():
                sizes = sorted(c)
                _columns(f.create_group(f"best/{opt}"), sizes, [c[b] for b in sizes])
            return
        g = f.create_group("best")   # compare: one row per optimizer
        g["optimizer"] = np.array(list(curves), dtype=h5py.string_dtype())
        _columns(g, [batch_size] * len(curves), [c[batch_size] for c in curves.values()])
        # as compare writes it with one seed: int64, -1 where not reached
        del g["steps_to_target"]
        g["steps_to_target"] = np.array([-1 if c[batch_size] is None else c[batch_size][0]
                                         for c in curves.values()])


def _columns(group, sizes, values):
    group["batch_size"] = np.array(sizes)
    group["reached"] = np.array([v is not None for v in values])
    for k, name in enumerate(("steps_to_target", "epochs_to_target", "cost_to_target",
                              "wall_to_target")):
        group[name] = np.array([np.nan if v is None else v[k] for v in values], float)


SIZES = (128, 256, 512, 1024, 2048, 4096)


def curve(steps, epochs, cost=None, wall=None):
    return {b: None if s is None else (s, e, s if cost is None else cost[k],
                                       0.01 * s if wall is None else wall[k])
            for k, (b, s, e) in enumerate(zip(SIZES, steps, epochs))}


MADE = {   # the scaling study on digits, target 0.9
    # efficiency 1 up to 1024, 0.4 to 2048 (steps go up), then 1.04: B_c = 1024
    "sgd": curve([800, 400, 200, 100, 125, 60], [1, 1, 1, 1, 2.5, 2.4]),
    "kfac": curve([None] * 6, [None] * 6),   # never reaches the target
    # McCandlish's S(B) = S_min (1 + B_crit / B) with S_min = 20, B_crit = 2048: e from 0.94
    # down to 2/3 (at B_crit), B_c = the largest studied; half SGD's epochs (0.4 at 2048)
    "trcg": curve([340, 180, 100, 60, 40, 30], [0.5, 0.5, 0.5, 0.5, 1.0, 1.2]),
    # reaches at 128 and 256 only; 1.5 times SGD's epochs
    "strcg": curve([1200, 700, None, None, None, None], [1.5, 1.5, None, None, None, None]),
}
# K-FAC with fixed train options, its own row: 0.8 of SGD's epochs (on the "similar" edge),
# 1.25 times its gradient evaluations (the other edge), 3 times its wall time
EIGEN = curve([800, 1000, None, None, None, None], [0.8, 0.8, None, None, None, None],
              cost=[1000, 500], wall=[24, 12])


@pytest.fixture
def made(tmp_path):
    write_study(tmp_path / "scaling", "scaling", MADE)
    write_study(tmp_path / "eigen", "scaling", {"kfac": EIGEN},
                train_options=["kfac.factor_init=identity", "kfac.damping_form=eigen",
                               "diverged_after=3", "layer_stats=false"])
    write_study(tmp_path / "sensitivity", "sensitivity", {   # grids of 10 points
        "sgd": {128: (5, 10), 1024: (1, 10)},     # mean fraction 0.3
        "kfac": {128: (6, 10), 1024: (2, 10)},    # 0.4: +0.1, the "as robust" edge
        "trcg": {128: (9, 10), 1024: (7, 10)},    # 0.8: more robust
        "strcg": {128: (1, 10), 1024: (0, 10)}})  # 0.05: less robust
    write_study(tmp_path / "compare", "compare", {"sgd": {512: (50, 2.0, 50, 0.5)},
                                                  "kfac": {512: (20, 0.8, 20, 0.4)},
                                                  "trcg": {512: None}},
                dataset="fashion-mnist", target=0.85, batch_size=512)
    return tmp_path


def test_scalability_words_follow_the_rule(made, no_plots):
    result = ok(invoke(report, made / "scaling", made / "eigen", "--out", made / "r"))
    rows = main_table((made / "r" / "report.md").read_text())
    cells = {k: v["scalability (steps to target)"] for k, v in rows.items()}
    assert cells["sgd"] == (
        "digits mlp 8: **scales to B = 1024 with efficiency >= 0.5, not beyond (efficiency 0.40 "
        "from 1024 to 2048)** (e per doubling 128->256: 1.00, 256->512: 1.00, 512->1024: 1.00, "
        "1024->2048: 0.40, 2048->4096: 1.04; at B = 4096: 60 steps, ideal 25, 2.40x)")
    assert cells["kfac"] == "digits mlp 8: **never reached the target**"
    assert cells["trcg"] == (
        "digits mlp 8: **scales to B = 4096 (the largest studied) with efficiency >= 0.5** "
        "(e per doubling 128->256: 0.94, 256->512: 0.90, 512->1024: 0.83, 1024->2048: 0.75, "
        "2048->4096: 0.67; at B = 4096: 30 steps, ideal 10.6, 2.82x)")
    assert cells["strcg"] == (
        "digits mlp 8: **scales to B = 256 with efficiency >= 0.5, not beyond (not reached at "
        "B = 512)** (e per doubling 128->256: 0.86, 256->512: -, 512->1024: -, 1024->2048: -, "
        "2048->4096: -; at B = 256: 700 steps, ideal 600, 1.17x)")
    eigen = "kfac (factor_init=identity, damping_form=eigen)"
    assert cells[eigen] == (
        "digits mlp 8: **does not scale beyond B = 128 (efficiency 0.40 from 128 to 256)** "
        "(e per doubling 128->256: 0.40, 256->512: -, 512->1024: -, 1024->2048: -, "
        "2048->4096: -; at B = 256: 1000 steps, ideal 400, 2.50x)")
    assert list(rows) == ["sgd", "kfac", eigen, "trcg", "strcg"]
    assert rows["kfac"]["success cases"] == \
        "**0 of 6**<br>digits mlp 8: not reached at B = 128, 256, 512, 1024, 2048, 4096"
    assert rows["strcg"]["success cases"] == \
        "**2 of 6**<br>digits mlp 8: reached at B = 128, 256; not at B = 512, 1024, 2048, 4096"
    assert "scales to B = 1024 with efficiency >= 0.5, not beyond" in result.output


def test_data_efficiency_and_cost_words_follow_the_rule(made, no_plots):
    ok(invoke(report, made / "scaling", made / "eigen", "--out", made / "r"))
    rows = main_table((made / "r" / "report.md").read_text())
    data = {k: v["data efficiency (epochs to target)"] for k, v in rows.items()}
    assert data["sgd"] == ("digits mlp 8: baseline (128: 1.00, 256: 1.00, 512: 1.00, "
                           "1024: 1.00, 2048: 2.50, 4096: 2.40)")
    # ratios 0.5, 0.5, 0.5, 0.5, 0.4, 0.5: median 0.5
    assert data["trcg"].startswith("digits mlp 8: **better than SGD**: median 0.50 (128: "
                                   "0.50/1.00 = 0.50, 256: 0.50/1.00 = 0.50,")
    assert data["strcg"] == ("digits mlp 8: **worse than SGD**: median 1.50 (128: 1.50/1.00 = "
                             "1.50, 256: 1.50/1.00 = 1.50, 512: not reached/1.00, 1024: not "
                             "reached/1.00, 2048: not reached/2.50, 4096: not reached/2.40)")
    eigen = "kfac (factor_init=identity, damping_form=eigen)"
    assert data[eigen].startswith("digits mlp 8: **similar to SGD**: median 0.80 (128: "
                                  "0.80/1.00 = 0.80, 256: 0.80/1.00 = 0.80, 512: not reached/1.00")
    assert data["kfac"].startswith("digits mlp 8: no batch size where both reached (128: not "
                                   "reached/1.00,")
    assert rows[eigen]["cost to target"] == (
        "digits mlp 8: grad evals **similar to SGD**: median 1.25 (128: 1000/800 = 1.25, "
        "256: 500/400 = 1.25, 512: not reached/200, 1024: not reached/100, 2048: not "
        "reached/125, 4096: not reached/60); wall s **worse than SGD**: median 3.00 (128: "
        "24/8 = 3.00, 256: 12/4 = 3.00, 512: not reached/2, 1024: not reached/1, 2048: not "
        "reached/1.25, 4096: not reached/0.6)")


def test_second_order_methods_are_compared_with_sgd_at_its_best(made, no_plots):
    """With an SGD row that has a fixed train option (a warmup) studied at B = 2048 and 4096,
    better than plain SGD at 2048 (100 steps against 125) and worse at 4096 (80 against 60):
    TRCG is compared with the better SGD at each batch size, the warmup row's figure noted with
    its option; the warmup row is compared with plain SGD, the baseline, which stays the
    baseline. STRCG, which reached only at 128 and 256, is compared with plain SGD there."""
    write_study(made / "warm", "scaling", {"sgd": {2048: (100, 1.5, 100, 1.0),
                                                   4096: (80, 3.0, 80, 0.8)}},
                train_options=["sgd.warmup_epochs=5"])
    ok(invoke(report, made / "scaling", made / "warm", "--out", made / "r"))
    text = (made / "r" / "report.md").read_text()
    rows = main_table(text)
    data = {k: v["data efficiency (epochs to target)"] for k, v in rows.items()}
    assert data["sgd"].startswith("digits mlp 8: baseline (")
    # epochs: TRCG 1.0 at 2048 against the warmup's 1.5 (plain SGD's 2.5); 1.2 at 4096 against
    # plain SGD's 2.4 (the warmup's 3.0 took more steps)
    assert data["trcg"] == ("digits mlp 8: **better than SGD**: median 0.50 (128: 0.50/1.00 = "
                            "0.50, 256: 0.50/1.00 = 0.50, 512: 0.50/1.00 = 0.50, 1024: "
                            "0.50/1.00 = 0.50, 2048: 1.00/1.50 (warmup_epochs=5) = 0.67, 4096: "
                            "1.20/2.40 = 0.50)")
    assert rows["trcg"]["cost to target"].startswith(
        "digits mlp 8: grad evals **better than SGD**: median 0.47 (128: 340/800 = 0.42,")
    assert "2048: 40/100 (warmup_epochs=5) = 0.40" in rows["trcg"]["cost to target"]
    assert data["sgd (warmup_epochs=5)"] == ("digits mlp 8: **similar to SGD**: median 0.93 "
                                             "(2048: 1.50/2.50 = 0.60, 4096: 3.00/2.40 = 1.25)")
    figures = {(r[0], r[1]): r for r in tables(text, "### digits mlp 8: digits, mlp 8, test "
                                                     "accuracy >= 0.9")[0][1]}
    assert figures[("trcg", "2048")][8] == "0.67 (warmup_epochs=5)"
    assert figures[("trcg", "4096")][8] == "0.50"
    assert figures[("sgd (warmup_epochs=5)", "2048")][8] == "0.60"
    assert "with SGD at its best there" in text


def test_sgd_at_its_best_is_the_row_that_reached_where_only_one_did(tmp_path, no_plots):
    """Plain SGD misses the target at B = 512 where the warmup row reaches it: K-FAC is compared
    with the warmup row there; with no plain SGD row at all (both rows have options) there is
    no baseline, and K-FAC is still compared with SGD at its best."""
    write_study(tmp_path / "a", "scaling", {"sgd": {256: (400, 2.0, 400, 4), 512: None},
                                            "kfac": {256: (100, 0.5, 150, 2),
                                                     512: (60, 0.6, 90, 1.2)}})
    write_study(tmp_path / "w", "scaling", {"sgd": {512: (300, 3.0, 300, 3)}},
                train_options=["sgd.warmup_epochs=5"])
    ok(invoke(report, tmp_path / "a", tmp_path / "w", "--out", tmp_path / "r"))
    data = {k: v["data efficiency (epochs to target)"]
            for k, v in main_table((tmp_path / "r" / "report.md").read_text()).items()}
    assert data["kfac"] == ("digits mlp 8: **better than SGD**: median 0.22 (256: 0.50/2.00 = "
                            "0.25, 512: 0.60/3.00 (warmup_epochs=5) = 0.20)")
    write_study(tmp_path / "m", "scaling", {"sgd": {256: (500, 2.5, 500, 5)}},
                train_options=["sgd.momentum=0.5"])
    write_study(tmp_path / "k", "scaling", {"kfac": {256: (100, 0.5, 150, 2),
                                                     512: (60, 0.6, 90, 1.2)}})
    ok(invoke(report, tmp_path / "m", tmp_path / "w", tmp_path / "k", "--out", tmp_path / "s"))
    rows = main_table((tmp_path / "s" / "report.md").read_text())
    assert rows["sgd (momentum=0.5)"]["data efficiency (epochs to target)"].startswith(
        "digits mlp 8: no SGD baseline")
    assert rows["kfac"]["data efficiency (epochs to target)"] == (
        "digits mlp 8: **better than SGD**: median 0.20 (256: 0.50/2.50 (momentum=0.5) = 0.20, "
        "512: 0.60/3.00 (warmup_epochs=5) = 0.20)")


def test_robustness_words_follow_the_rule(made, no_plots):
    ok(invoke(report, made / "scaling", made / "sensitivity", "--out", made / "r"))
    rows = main_table((made / "r" / "report.md").read_text())
    cells = {k: v["robustness (grid reaching target)"] for k, v in rows.items()}
    assert cells == {
        "sgd": "digits mlp 8: baseline (128: 0.50, 1024: 0.10)",
        "kfac": "digits mlp 8: **as robust as SGD**: mean 0.40 vs 0.30 (128: 0.60/0.50, "
                "1024: 0.20/0.10)",
        "trcg": "digits mlp 8: **more robust than SGD**: mean 0.80 vs 0.30 (128: 0.90/0.50, "
                "1024: 0.70/0.10)",
        "strcg": "digits mlp 8: **less robust than SGD**: mean 0.05 vs 0.30 (128: 0.10/0.50, "
                 "1024: 0.00/0.10)"}


def test_several_data_sets_share_a_row_per_method(made, no_plots):
    ok(invoke(report, made / "scaling", made / "compare", "--out", made / "r"))
    text = (made / "r" / "report.md").read_text()
    rows = main_table(text)
    assert rows["kfac"]["success cases"] == (
        "**1 of 7**<br>digits mlp 8: not reached at B = 128, 256, 512, 1024, 2048, 4096<br>"
        "fashion-mnist mlp 8: reached at B = 512")
    assert rows["kfac"]["data efficiency (epochs to target)"].endswith(
        "<br>fashion-mnist mlp 8: **better than SGD**: median 0.40 (512: 0.80/2.00 = 0.40)")
    assert rows["trcg"]["scalability (steps to target)"].endswith(
        "<br>fashion-mnist mlp 8: **never reached the target**")
    assert "### fashion-mnist mlp 8: fashion-mnist, mlp 8, test accuracy >= 0.85" in text


GRAD_SQ = np.array([1.0] + [0.5, 1.5] * 9 + [1.0])


def write_noise_run(folder, value, first=1e6):
    """A run.h5 with 20 evaluations every 5 steps (10 steps per epoch): tr(Sigma) = value, but
    `first` at the first evaluation (step 5, before 10% of the run, left out of the summary);
    |G|^2 estimates GRAD_SQ, whose mean over the other 19 is 1. B_simple after averaging the
    parts is then `value`, while the mean of the single ratios would be about 4/3 value."""
    os.makedirs(folder, exist_ok=True)
    config = {"dataset": "digits", "model": "mlp", "hidden": [8], "optimizer": "sgd",
              "batch_size": 128, "steps_per_epoch": 10, "train_examples": 1280}
    with h5py.File(os.path.join(folder, "run.h5"), "w") as f:
        f.attrs["config"] = json.dumps(config)
        f["evals/step"] = np.arange(5, 105, 5)
        f["evals/noise_trace_cov"] = np.array([first] + [value] * 19, float)
        f["evals/noise_grad_sq_norm"] = GRAD_SQ
        f["evals/noise_scale"] = f["evals/noise_trace_cov"][()] / f["evals/noise_grad_sq_norm"][()]


def test_noise_scale_is_averaged_before_dividing_and_set_beside_the_critical_sizes(made, no_plots):
    for value in (256, 512, 4096):
        write_noise_run(made / "runs" / f"b{value}", value)
    runs = [a for v in (256, 512, 4096) for a in ("--noise-run", made / "runs" / f"b{v}")]
    ok(invoke(report, made / "scaling", *runs, "--out", made / "r"))
    text = (made / "r" / "report.md").read_text()
    runs_table, critical_table = tables(text, "## Critical batch size and the gradient noise "
                                              "scale")
    # epoch 0 holds steps 5 and 10: (1e6 + value) / 2 over (1 + 0.5) / 2; the last epoch
    # steps 95 and 100: value over (1.5 + 1) / 2
    assert runs_table[1] == [
        [f"`../runs/b{v}`", "digits mlp 8", "sgd, B = 128", "19 of 20", "10-100", str(v),
         f"{size((1e6 + v) / 2 / 0.75)} -> {size(v / 1.25)}"] for v in (256, 4096, 512)]
    verdicts = {(row[0], row[4]): (row[1], row[5], row[6]) for row in critical_table[1]}
    assert verdicts[("sgd", "512")] == ("1024", "2.00", "B_simple predicts it (within a factor "
                                                        "of 2)")
    assert verdicts[("sgd", "256")] == ("1024", "4.00", "scaling stops above B_simple (B_c > 2 "
                                                        "B_simple)")
    assert verdicts[("sgd", "4096")] == ("1024", "0.25", "scaling stops below B_simple (B_c < "
                                                         "B_simple / 2)")
    assert verdicts[("trcg", "512")] == ("4096 (largest studied)", "8.00", "scaling goes on "
                                         "above B_simple (B_c >= 2 B_simple)")
    assert verdicts[("trcg", "4096")] == ("4096 (largest studied)", "1.00", "cannot tell "
                                          "(scaling had not stopped at the largest size studied)")
    assert verdicts[("strcg", "512")] == ("256", "0.50", "B_simple predicts it (within a factor "
                                                         "of 2)")
    assert verdicts[("kfac", "512")] == ("-", "-", "never reached the target")
    # McCandlish's model fitted to the steps: trcg's follow it exactly with B_crit = 2048;
    # strcg's two points 1200 and 700 give S_min = 200 and B_crit = 640; kfac has none
    fits = {row[0]: row[2] for row in critical_table[1]}
    assert (fits["trcg"], fits["strcg"], fits["kfac"]) == ("2048", "640", "-")
    sgd = {b: {"reached": True, "steps": float(v[0])} for b, v in MADE["sgd"].items()}
    assert fits["sgd"] == size(mccandlish_fit(sgd))


def test_method_labels_come_from_the_fixed_train_options(tmp_path, no_plots):
    write_study(tmp_path / "a", "scaling", {"sgd": curve([800], [1]), "kfac": curve([400], [0.5])},
                train_options=["diverged_after=5", "kfac.damping-form=eigen",
                               "noise_scale_examples=64"])
    ok(invoke(report, tmp_path / "a", "--out", tmp_path / "r"))
    rows = main_table((tmp_path / "r" / "report.md").read_text())
    # an unprefixed option applies to every optimizer; bookkeeping options and the divergence
    # rule (the study's protocol) name no method
    assert list(rows) == ["sgd", "kfac (damping_form=eigen)"]


def test_a_grid_entry_fixing_kl_clip_off_names_another_method(tmp_path, no_plots):
    """K-FAC's sensitivity maps with the KL clip at its default and off are two methods, two
    rows; a grid entry for a default search axis, or kl_clip at its default or over several
    values, names none."""
    write_study(tmp_path / "clip", "sensitivity", {"kfac": {256: (10, 10)}, "sgd": {256: (5, 10)}},
                grid_entries=["sgd.lr=0.2", "kfac.kl_clip=0.001"])
    write_study(tmp_path / "off", "sensitivity", {"kfac": {256: (2, 10)}},
                grid_entries=["kfac.kl_clip=0", "kfac.lr=0.05"])
    write_study(tmp_path / "both", "scaling", {"kfac": curve([400], [0.5])},
                grid_entries=["kfac.kl_clip=0,0.001"])
    # spelled otherwise, and the last entry for an axis wins, as the study read it
    write_study(tmp_path / "off2", "sensitivity", {"kfac": {512: (3, 10)}},
                grid_entries=["kfac.kl_clip=0.001", "kfac.kl_clip=0.0"])
    ok(invoke(report, tmp_path / "clip", tmp_path / "off", tmp_path / "both", tmp_path / "off2",
              "--out", tmp_path / "r"))
    rows = main_table((tmp_path / "r" / "report.md").read_text())
    assert list(rows) == ["sgd", "kfac", "kfac (kl_clip=0)"]
    robustness = "robustness (grid reaching target)"
    assert "(256: 1.00/0.50)" in rows["kfac"][robustness]
    assert "(256: 0.20/0.50, 512: 0.30/-)" in rows["kfac (kl_clip=0)"][robustness]


# ---------------------------------------------------------------------------------- errors
def test_help_names_the_options():
    result = ok(invoke(main, "report", "--help"))
    assert "STUDY_DIR..." in result.output and "--noise-run" in result.output
    assert "--out" in result.output


def test_bad_input_is_a_one_line_error(made, no_plots):
    os.makedirs(made / "empty")
    (made / "broken").mkdir()
    (made / "broken" / "scaling.h5").write_bytes(b"not an HDF5 file")
    with h5py.File(made / "other.h5", "w") as f:
        f.attrs["command"] = "train"
    os.makedirs(made / "run")
    with h5py.File(made / "run" / "run.h5", "w") as f:
        f.attrs["config"] = json.dumps({"dataset": "digits"})
        f["evals/step"] = np.arange(3)
    os.makedirs(made / "copy")
    os.link(made / "scaling" / "scaling.h5", made / "copy" / "scaling.h5")
    (made / "file").write_text("")
    out = ("--out", made / "r")
    cases = [((made / "missing", *out), "not found"),
             ((made / "empty", *out), "holds no study file (scaling.h5, sensitivity.h5, "
                                      "compare.h5)"),
             ((made / "broken", *out), "not a readable HDF5 file"),
             ((made / "other.h5", *out), "not a study file"),
             ((made / "scaling", "--noise-run", made / "run", *out), "--noise-scale-examples N"),
             ((made / "scaling", made / "copy", *out), "give only one of them"),
             ((made / "scaling", "--out", made / "file"), "is a file")]
    for args, words in cases:
        message = one_line_error(invoke(report, *args))
        assert words in message, message
    # the same folder twice is read once, not a duplicate
    ok(invoke(report, made / "scaling", made / "scaling" / "scaling.h5", *out))
    assert re.search(r"\*\*0 of 6\*\*", (made / "r" / "report.md").read_text())


def test_the_report_and_its_docs_state_the_rules_it_applies(real):
    """The rules text is written from the constants the verdicts use (cli/report_rules.py);
    report.md and docs/report.md must both state it as it is now."""
    from minigrad.cli.report_rules import rules_markdown

    _, _, text = real
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "report.md")).read()
    stated = rules_markdown()
    assert "e >= 0.5" in stated and "median < 0.8" in stated and "> 0.1" in stated
    assert stated in text and stated in docs


def test_best_settings_are_marked_where_they_sit_on_an_edge_of_what_was_tried(tmp_path):
    # K-FAC at B = 64 tried lr {0.1, 0.2, 0.4}, damping {0.01, 0.1}, kl_clip {0 (off), 0.001,
    # 0.01}; at B = 128 only lr 0.2 and 0.4. The best: lr 0.2 (inside at 64, the smallest at 128),
    # damping 0.1 (the largest), kl_clip 0.01 (inside: off is beyond every clip)
    from minigrad.cli.report_data import _settings
    rows = [(b, lr, d, c) for b, lrs in ((64, (0.1, 0.2, 0.4)), (128, (0.2, 0.4)))
            for lr in lrs for d in (0.01, 0.1) for c in (0.0, 0.001, 0.01)]
    with h5py.File(tmp_path / "s.h5", "w") as f:
        t = f.create_group("trials")
        t["optimizer"] = np.array(["kfac"] * len(rows), dtype=object).astype("S")
        for k, name in enumerate(("batch_size", "lr", "damping", "kl_clip")):
            t[name] = np.array([r[k] for r in rows])
        g = f.create_group("best/kfac")
        for name, values in (("lr", [0.2, 0.2]), ("damping", [0.1, 0.1]),
                             ("kl_clip", [0.01, 0.0]), ("momentum", [np.nan, np.nan])):
            g[name] = np.array(values)
        assert _settings(f, g, ["kfac", "kfac"], [64, 128]) == [
            "lr=0.2 damping=0.1 (edge) kl_clip=0.01",
            "lr=0.2 (edge) damping=0.1 (edge) kl_clip=off"]


def edge_table(f, rows, best, seeds=1):
    """A K-FAC study file at B = 64 whose trial table holds `rows` (lr, kl_clip, seed, steps to
    target or None, cost, final test accuracy; damping 0.1) and whose best/ row is trial
    `best`."""
    f.attrs["options"] = json.dumps({"seeds": seeds})
    t = f.create_group("trials")
    t["optimizer"] = np.array(["kfac"] * len(rows), dtype=object).astype("S")
    t["batch_size"] = np.full(len(rows), 64)
    t["damping"] = np.full(len(rows), 0.1)
    lr, clip, seed, steps, cost, acc = zip(*rows)
    t["lr"], t["kl_clip"], t["seed"] = np.array(lr), np.array(clip), np.array(seed)
    t["reached"] = np.array([s is not None for s in steps])
    t["steps_to_target"] = np.array([-1 if s is None else s for s in steps])
    t["cost_to_target"], t["final_test_accuracy"] = np.array(cost), np.array(acc)
    g = f.create_group("best/kfac")
    g["trial"], g["damping"] = [best], [0.1]
    g["lr"], g["kl_clip"] = [lr[best]], [clip[best]]
    return g


def test_an_edge_tied_by_the_trial_next_to_it_inside_the_grid_is_not_marked(tmp_path):
    # lr {0.1, 0.2, 0.4} x kl_clip {0.001, 0.01}. With the clip 0.001 every lr reaches the
    # target at step 30 at the same cost and accuracy (the clip sets the step length): the
    # best, lr 0.1, ties its neighbour lr 0.2 on everything the search ranks by, so lr is
    # flat there, not on an edge; kl_clip 0.001 beats 0.01 (40 steps): an edge
    from minigrad.cli.report_data import _settings

    def rows(neighbour=(30, 50.0, 0.9)):
        return [(lr, c, 0, *((40, 60.0, 0.9) if c == 0.01 else
                             neighbour if lr == 0.2 else (30, 50.0, 0.9)))
                for lr in (0.1, 0.2, 0.4) for c in (0.001, 0.01)]
    for k, (neighbour, marked) in enumerate([
            ((30, 50.0, 0.9), "lr=0.1"),            # a tie: not an edge
            ((35, 55.0, 0.9), "lr=0.1 (edge)"),     # more steps
            ((30, 50.0, 0.89), "lr=0.1 (edge)"),    # the same steps, lower accuracy
            ((None, np.nan, 0.7), "lr=0.1 (edge)")]):   # not reached
        with h5py.File(tmp_path / f"s{k}.h5", "w") as f:
            g = edge_table(f, rows(neighbour), best=0)
            assert _settings(f, g, ["kfac"], [64]) == [f"{marked} damping=0.1 kl_clip=0.001 (edge)"]


def test_with_several_seeds_an_edge_compares_the_settings_means(tmp_path):
    # --seeds 2: lr 0.1 reaches the target at steps 20 and 30 (mean 25), lr 0.2 at 20 and 40
    # (mean 30): the setting lr 0.1 is better, an edge, though its first seed ties lr 0.2's;
    # with lr 0.2 at 25 and 25 the means tie and lr 0.1 is no edge, though the seeds differ
    from minigrad.cli.report_data import _settings
    for k, (steps, marked) in enumerate([((20, 40), "lr=0.1 (edge)"), ((25, 25), "lr=0.1")]):
        table = [(0.1, 0.0, seed, s, 50.0, 0.9) for seed, s in enumerate((20, 30))] + \
                [(0.2, 0.0, seed, s, 50.0, 0.9) for seed, s in enumerate(steps)] + \
                [(0.4, 0.0, seed, 50, 50.0, 0.9) for seed in range(2)]
        with h5py.File(tmp_path / f"s{k}.h5", "w") as f:
            g = edge_table(f, table, best=0, seeds=2)
            assert _settings(f, g, ["kfac"], [64]) == [f"{marked} damping=0.1 kl_clip=off"]
