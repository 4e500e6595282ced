"""The rules of `minigrad report`: how the figures of the study files become the words of its
table. Every threshold is a constant here and every verdict a function here; `rules_markdown()`
writes the rules the report states from the same constants, so the stated rule and the applied
one cannot drift apart.

Scalability (Shallue et al. 2019, "Measuring the effects of data parallelism on neural network
training", JMLR 20(112); Ma et al. 2020, "Inefficiency of K-FAC for large batch size training",
AAAI). S(B) is the steps to the target of the best trial at batch size B. From one studied batch
size to the next (B_prev -> B, in the order studied):

    efficiency = [S(B_prev) / S(B)] / (B / B_prev)           (cli/scaling.py's column)
    e          = efficiency ** (1 / log2(B / B_prev))        per doubling of the batch

so e is the efficiency itself when B = 2 B_prev, and its geometric mean per doubling when the
batch sizes are further apart. e = 1: the steps halve when the batch doubles (the ideal
hyperbola S(B0) B0 / B); e = 0.5: doubling the batch leaves the steps unchanged.

Critical batch size B_c: walk up the studied batch sizes from B0, the smallest at which the
method reached the target, while the next one was reached too and e to it is >= EFFICIENCY_MIN;
B_c is where the walk stops. So B_c is the largest B such that every doubling from B0 to B has
e >= 0.5 (a measurement at the resolution of the studied sizes; at the largest studied size it
is only a lower bound).

McCandlish et al. 2018 ("An empirical model of large-batch training", arXiv:1812.06162) model
the steps as S(B) = S_min (1 + B_crit / B); their B_crit = E_min / S_min is where training
needs twice the minimal steps and twice the minimal examples, and it is about the gradient
noise scale B_noise ~ B_simple = tr(Sigma) / |G|^2. In that model the per-doubling efficiency
is (B + B_crit) / (2 B + B_crit): 2/3 at B = B_crit, and above 0.5 at every B. The rule above
(e >= 0.5) therefore marks where doubling the batch stops buying any steps at all, at or beyond
McCandlish's B_crit; `fit_critical_batch` fits their model to the measured steps as well, so
that both can be set beside B_simple.
"""
import math
import statistics
from collections import namedtuple

import numpy as np

EFFICIENCY_MIN = 0.5        # per-doubling efficiency of the critical batch size rule
RATIO_BETTER = 0.8          # median ratio to SGD below this: "better than SGD"
RATIO_WORSE = 1.25          # ... above this: "worse than SGD" (in between: "similar to SGD")
ROBUST_MARGIN = 0.10        # mean fraction of the grid reaching the target, minus SGD's
NOISE_SKIP = 0.10           # B_simple summary: evaluations from this fraction of the run on
NOISE_FACTOR = 2.0          # B_c / B_simple within [1/2, 2]: "B_simple predicts it"
ROUNDING = 1e-9             # a figure on a threshold (e = 0.5 from equal steps, a ratio of
                            # 0.8) counts as on it whatever the float rounding

ORDER = {"sgd": "first", "kfac": "second", "trcg": "second", "strcg": "second"}

Scaling = namedtuple("Scaling", "b0 s0 critical pairs stop_at stop_efficiency "
                                "last_reached last_steps last_ideal")
Scaling.__doc__ = """What the report says about one method's steps to the target against batch size:
b0 (the smallest batch size reached) and s0 (its S), critical (B_c), pairs ((B_prev, B, e) from
b0 on, e nan where either end was not reached), stop_at (the size after B_c, None if B_c is the
largest studied), stop_efficiency (e to stop_at, nan if stop_at was not reached), last_reached
(the largest reached size), last_steps (its S) and last_ideal (S(b0) b0 / last_reached)."""


def efficiency_per_doubling(b_prev, s_prev, b, s):
    """e = ([S(B_prev) / S(B)] / (B / B_prev)) ** (1 / log2(B / B_prev))."""
    ratio = b / b_prev
    return ((s_prev / s) / ratio) ** (1.0 / math.log2(ratio))


def scaling(sizes, steps, reached):
    """Scaling(...) of one method from its batch sizes (ascending), steps to the target and
    reached flags; None if it never reached the target."""
    reached_at = [k for k, ok in enumerate(reached) if ok]
    if not reached_at:
        return None
    first = reached_at[0]
    pairs = []
    for k in range(first, len(sizes) - 1):
        both = reached[k] and reached[k + 1]
        e = efficiency_per_doubling(sizes[k], steps[k], sizes[k + 1], steps[k + 1]) if both \
            else math.nan
        pairs.append((sizes[k], sizes[k + 1], e))
    # B_c: up from B0 while the next size was reached and the doubling to it paid off
    k = first
    while k + 1 < len(sizes) and reached[k + 1] and \
            pairs[k - first][2] >= EFFICIENCY_MIN - ROUNDING:
        k += 1
    stop = k + 1 < len(sizes)
    last = reached_at[-1]
    return Scaling(b0=sizes[first], s0=steps[first], critical=sizes[k], pairs=pairs,
                   stop_at=sizes[k + 1] if stop else None,
                   stop_efficiency=pairs[k - first][2] if stop else math.nan,
                   last_reached=sizes[last], last_steps=steps[last],
                   last_ideal=ideal_steps(steps[first], sizes[first], sizes[last]))


def ideal_steps(s0, b0, b):
    """The ideal hyperbola S(B0) B0 / B through the first reached point (S(B0) = s0)."""
    return s0 * b0 / b


def scaling_verdict(s):
    """The words for Scaling `s` (None: never reached)."""
    if s is None:
        return "never reached the target"
    if s.stop_at is None:
        if s.critical == s.b0:
            return f"reached only at B = {s.critical}, the largest studied: no doubling measured"
        return f"scales to B = {s.critical} (the largest studied) with efficiency >= " \
               f"{EFFICIENCY_MIN:g}"
    why = (f"not reached at B = {s.stop_at}" if math.isnan(s.stop_efficiency)
           else f"efficiency {s.stop_efficiency:.2f} from {s.critical} to {s.stop_at}")
    if s.critical == s.b0:
        return f"does not scale beyond B = {s.critical} ({why})"
    return f"scales to B = {s.critical} with efficiency >= {EFFICIENCY_MIN:g}, not beyond ({why})"


def ratio_verdict(ratios):
    """(words, median) of the ratios method / SGD (lower is better) at the common batch sizes:
    median < RATIO_BETTER "better than SGD", > RATIO_WORSE "worse than SGD", else "similar to
    SGD"; (None, nan) without any ratio."""
    if not ratios:
        return None, math.nan
    median = statistics.median(ratios)
    if median < RATIO_BETTER - ROUNDING:
        return "better than SGD", median
    if median > RATIO_WORSE + ROUNDING:
        return "worse than SGD", median
    return "similar to SGD", median


def robustness_verdict(fractions, sgd_fractions):
    """(words, mean fraction, SGD's mean fraction) over the batch sizes both were mapped at:
    mean - SGD's mean > ROBUST_MARGIN "more robust than SGD", < -ROBUST_MARGIN "less robust
    than SGD", else "as robust as SGD"; (None, nan, nan) without a common batch size."""
    common = sorted(set(fractions) & set(sgd_fractions))
    if not common:
        return None, math.nan, math.nan
    mean = float(np.mean([fractions[b] for b in common]))
    sgd = float(np.mean([sgd_fractions[b] for b in common]))
    if mean - sgd > ROBUST_MARGIN + ROUNDING:
        return "more robust than SGD", mean, sgd
    if mean - sgd < -ROBUST_MARGIN - ROUNDING:
        return "less robust than SGD", mean, sgd
    return "as robust as SGD", mean, sgd


def fit_critical_batch(sizes, steps):
    """McCandlish et al.'s B_crit from S(B) = S_min (1 + B_crit / B) fitted to the reached points.

    The model is linear in 1/B: S = a + b / B with a = S_min and b = S_min B_crit. It is fitted
    by least squares on the relative residuals (S_i - a - b / B_i) / S_i (every batch size
    counts alike, not only the small ones with many steps), i.e. the least-squares solution of
    [1/S_i, 1/(B_i S_i)] [a, b]^T = 1. B_crit = b / a; None with fewer than 2 points, or when
    a <= 0 or b <= 0 (the steps do not fall like the model)."""
    b = np.asarray(sizes, np.float64)
    s = np.asarray(steps, np.float64)
    if len(b) < 2:
        return None
    design = np.column_stack([1.0 / s, 1.0 / (b * s)])
    (a, slope), *_ = np.linalg.lstsq(design, np.ones(len(b)), rcond=None)
    if a <= 0 or slope <= 0:
        return None
    return float(slope / a)


def noise_summary(step, trace, grad_sq):
    """(B_simple, first step, evaluations) over the evaluations at steps >= NOISE_SKIP times the
    last evaluated step: mean tr(Sigma) / mean |G|^2 (McCandlish et al. average the two unbiased
    parts before dividing; a ratio of single noisy estimates is biased and can be negative).
    Evaluations with a non-finite part are left out; B_simple is nan when no evaluation is left
    or the mean |G|^2 is <= 0."""
    step, trace, grad_sq = (np.asarray(x, np.float64) for x in (step, trace, grad_sq))
    if not step.size:
        return math.nan, math.nan, 0
    keep = np.isfinite(trace) & np.isfinite(grad_sq) & (step >= NOISE_SKIP * step.max())
    if not keep.any():
        return math.nan, math.nan, 0
    return (_ratio(trace[keep].mean(), grad_sq[keep].mean()), float(step[keep].min()),
            int(keep.sum()))


def noise_by_epoch(step, trace, grad_sq, per_epoch):
    """[(epoch, B_simple)] with both parts averaged over the evaluations of each epoch: epoch k
    holds the evaluations at steps in (k per_epoch, (k + 1) per_epoch] (step 0 joins epoch 0),
    and is drawn at its middle, k + 0.5."""
    step, trace, grad_sq = (np.asarray(x, np.float64) for x in (step, trace, grad_sq))
    ok = np.isfinite(trace) & np.isfinite(grad_sq)
    epoch = np.maximum(step - 1, 0) // per_epoch
    out = []
    for k in np.unique(epoch[ok]):
        inside = ok & (epoch == k)
        out.append((float(k) + 0.5, _ratio(trace[inside].mean(), grad_sq[inside].mean())))
    return out


def _ratio(trace, grad_sq):
    return float(trace / grad_sq) if grad_sq > 0 else math.nan


def noise_verdict(critical, censored, b_simple):
    """Does B_simple predict the measured critical batch size B_c? r = B_c / B_simple:
    1/NOISE_FACTOR <= r <= NOISE_FACTOR "B_simple predicts it", r > NOISE_FACTOR "scaling stops
    above B_simple", r < 1/NOISE_FACTOR "scaling stops below B_simple"; when B_c is the largest
    studied size (a lower bound) only r > NOISE_FACTOR can be told: "scaling goes on above
    B_simple", else "cannot tell"."""
    if critical is None:
        return "never reached the target"
    if not (b_simple > 0 and math.isfinite(b_simple)):
        return "no B_simple (mean |G|^2 <= 0)"
    r = critical / b_simple
    factor = f"{NOISE_FACTOR:g}"
    if censored:
        return (f"scaling goes on above B_simple (B_c >= {factor} B_simple)" if r > NOISE_FACTOR
                else "cannot tell (scaling had not stopped at the largest size studied)")
    if r > NOISE_FACTOR:
        return f"scaling stops above B_simple (B_c > {factor} B_simple)"
    if r < 1 / NOISE_FACTOR:
        return f"scaling stops below B_simple (B_c < B_simple / {factor})"
    return f"B_simple predicts it (within a factor of {factor})"


def rules_markdown():
    """The rules as report.md states them (from the constants above)."""
    e, lo, hi = f"{EFFICIENCY_MIN:g}", f"{RATIO_BETTER:g}", f"{RATIO_WORSE:g}"
    m, skip, k = f"{ROBUST_MARGIN:g}", f"{NOISE_SKIP:.0%}", f"{NOISE_FACTOR:g}"
    return f"""\
- **Order**: SGD is a first-order method; K-FAC, TRCG and STRCG are second-order.
- **Success cases**: the (data set, model, batch size) cells of the scaling and compare studies
  in which the method's best trial reached the target, out of those it was studied in.
- **Efficiency** from one studied batch size to the next (Shallue et al. 2019; Ma et al. 2020):
  efficiency = [S(B_prev) / S(B)] / (B / B_prev), S the steps to the target; quoted **per
  doubling**, e = efficiency^(1 / log2(B / B_prev)) (the efficiency itself when B = 2 B_prev).
  e = 1 is the ideal hyperbola S(B0) B0 / B; e = 0.5 means a doubling that buys no steps.
- **Critical batch size B_c**: the largest B such that every doubling from B0 (the smallest batch
  size at which the method reached the target) up to B reached the target with e >= {e}.
  Wording: "scales to B = B_c with efficiency >= {e}" (", not beyond" and the reason when a
  larger size was studied; "(the largest studied)" when B_c is the largest size, a lower bound);
  "does not scale beyond B = B0" when the first doubling fails; "never reached the target".
  McCandlish et al. (2018) define a related B_crit = E_min / S_min from the model
  S(B) = S_min (1 + B_crit / B), in which e = (B + B_crit) / (2 B + B_crit) is 2/3 at B_crit and
  above 0.5 everywhere: B_c marks where doubling stops paying at all. Their B_crit, fitted to the
  steps (least squares on relative residuals), is shown beside B_c as "B_crit fit".
- **Ideal steps** at the largest batch size the method reached: S(B0) B0 / B.
- **Data efficiency**: ratio of epochs to the target to SGD's (same data set, model, target and
  batch size), over the batch sizes where both reached it; median < {lo}: "better than SGD",
  median > {hi}: "worse than SGD", otherwise "similar to SGD".
- **Cost**: the same rule for gradient-evaluation equivalents to the target and for wall time
  (seconds of optimizer steps) to the target. One gradient evaluation is a forward and a
  backward pass over the step's batch; a forward alone counts 1/3, a curvature-vector product
  on m of the B rows 2 m / B, and K-FAC's true Fisher adds 2/3 on the steps that update its
  factors (the backward on sampled labels); eigendecompositions show in wall time only
  (cli/cost.py).
- **Robustness** (Ma et al. 2020): the fraction of the sensitivity grid reaching the target at
  each batch size; the mean over the batch sizes mapped for both, minus SGD's: > {m}: "more
  robust than SGD", < -{m}: "less robust than SGD", otherwise "as robust as SGD".
- **Gradient noise scale** (McCandlish et al. 2018): B_simple = tr(Sigma) / |G|^2 with both
  unbiased parts averaged before dividing, over the evaluations from {skip} of the run on (the
  summary), and over each epoch (the plot). With r = B_c / B_simple: 1/{k} <= r <= {k}:
  "B_simple predicts it"; r > {k}: "scaling stops above B_simple"; r < 1/{k}: "scaling stops
  below B_simple"; when B_c is the largest size studied only r > {k} is told ("scaling goes on
  above B_simple"), otherwise "cannot tell".
- A method is compared with SGD on the same data set, model and target. K-FAC, TRCG and STRCG
  are compared, at each batch size, with SGD at its best there: of its rows (without fixed
  train options and with them, such as a warmup), the one that reached the target in the
  fewest steps (each row's figures are its seeds' mean), a fixed option counting as one more
  hyperparameter of SGD; SGD's figure is then followed by that row's options, "(...)", where
  it is not the row without (the baseline). An SGD row with fixed train options is compared
  with the baseline, and has no comparison where there is none (every SGD row has options).
  Robustness compares with the baseline's maps.
"""
