"""Every optimizer's hyperparameters, each declared once: its default, the values it may take,
what it means and where the default comes from.

    from minigrad.optim import KFAC, defaults_of
    for h in KFAC.hyperparameters:              # the same tuple as hyperparameters_of("kfac")
        print(h.name, h.default, h.bounds(defaults_of("kfac")), h.source)
    KFAC.damping.check("my tool", 0.0)  # ValueError: my tool: damping must be in (0, inf), got 0.0

An optimizer class lists its declarations in `hyperparameters` (optim/optimizer.py installs each
as an attribute of the class), so that one declaration gives
  - the check of a value whenever it is set: at construction, by an assignment (`opt.lr = 0.01`,
    the adaptive damping, the trust radius's update) and when a checkpoint is loaded;
  - the bounds of a schedule's values (`Optimizer.value`);
  - what `state_dict()` saves, in the declarations' order;
  - the defaults, bounds and choices a command line or a config file offers.

A bound may name another hyperparameter (`low="radius"`: max_radius >= radius); the other one is
declared earlier, so that it is set, and checked, first.
"""
import numbers
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, replace

import numpy as np


class _Required:
    """The default of a hyperparameter the caller must give (no value fits every problem)."""

    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
KINDS = ("float", "int", "bool", "choice")


def interval_text(low=None, high=None, low_open=False, high_open=False):
    """"[0, 1)", "(0, inf)": the interval of the bounds, as the error messages write it."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def check_number(owner, name, value, low=None, high=None, low_open=False, high_open=False):
    """`value` as a float inside the given bounds, or a ValueError naming `owner` and `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    bad = (low is not None and (value < low or (low_open and value == low))) or \
          (high is not None and (value > high or (high_open and value == high)))
    if bad:
        raise ValueError(f"{owner}: {name} must be in "
                         f"{interval_text(low, high, low_open, high_open)}, got {value!r}")
    return float(value)


def check_int(owner, name, value, **bounds):
    """`value` as an int inside check_number's `bounds` (2.0 is not an int), or a ValueError
    naming `owner` and `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    check_number(owner, name, value, **bounds)
    return int(value)


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of an optimizer.

    kind: "float" (a finite number), "int", "bool" or "choice" (one of `choices`).
    low, high: the bounds (None: unbounded), excluded where low_open / high_open; `low` may be
    the name of another hyperparameter, whose value is then the bound.
    schedule: the value may also be a callable of the step, whose values are checked when the
    optimizer evaluates it. optional: None is a value too (it turns the feature off).
    default: REQUIRED where the caller must choose. source: where the default comes from.
    """

    name: str
    default: object
    _: KW_ONLY
    doc: str
    source: str
    kind: str = "float"
    low: object = None
    high: object = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    schedule: bool = False
    optional: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Hyperparameter {self.name}: kind must be one of {KINDS}, "
                             f"got {self.kind!r}")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"Hyperparameter {self.name}: choices go with kind='choice'")

    def bounds(self, given=None):
        """{low, high, low_open, high_open} as check_number takes them; a bound that names
        another hyperparameter is looked up in `given` (a mapping, or an object such as the
        optimizer, holding the values)."""
        low = self.low
        if isinstance(low, str):
            if given is None:
                raise TypeError(f"{self.name}'s lower bound is {low}: give its value")
            low = given[low] if isinstance(given, Mapping) else getattr(given, low)
        return dict(low=low, high=self.high, low_open=self.low_open, high_open=self.high_open)

    def check(self, owner, value, given=None):
        """The value as it is stored (a float, an int, a bool, one of the choices, a callable
        or None where allowed), or a ValueError naming `owner`, this hyperparameter and the
        value. `given`: the other values, for a bound that names one (see bounds)."""
        if (value is None and self.optional) or (self.schedule and callable(value)):
            return value
        if self.kind == "bool":   # strict: "no" or 2 would be truthy and silently mean True
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{owner}: {self.name} must be True or False, got {value!r}")
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{owner}: {self.name} must be "
                                 f"{' or '.join(map(repr, self.choices))}, got {value!r}")
            return value
        checked = check_int if self.kind == "int" else check_number
        return checked(owner, self.name, value, **self.bounds(given))

    # -- as an attribute of an optimizer class: the value is checked whenever it is set ----------
    def __get__(self, optimizer, cls=None):
        if optimizer is None:
            return self          # KFAC.damping: the declaration
        try:
            return optimizer.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{optimizer.name}: {self.name} is not set yet") from None

    def __set__(self, optimizer, value):
        optimizer.__dict__[self.name] = self.check(optimizer.name, value, optimizer)


LR = Hyperparameter(
    "lr", REQUIRED, low=0, schedule=True,
    doc="the step size: a number, or a callable of the step (optim/schedules.py)",
    source="none: the step size depends on the problem, the model and the batch size (as in "
           "torch.optim.SGD, the caller chooses it)")

WEIGHT_DECAY = Hyperparameter(
    "weight_decay", 0.0, low=0,
    doc="adds weight_decay theta to the gradient (an l2 term weight_decay/2 |theta|^2 in the loss)",
    source="off, as in torch.optim.SGD")

SGD_HYPERPARAMETERS = (
    LR,
    Hyperparameter(
        "momentum", 0.0, low=0, high=1, high_open=True,
        doc="b <- momentum b + (1 - dampening) g; 0: plain SGD",
        source="torch.optim.SGD (heavy ball: Polyak 1964; in deep learning Sutskever et al. 2013)"),
    Hyperparameter(
        "nesterov", False, kind="bool",
        doc="step along g + momentum b instead of b (needs momentum > 0 and dampening = 0)",
        source="torch.optim.SGD (Nesterov momentum as written by Sutskever et al. 2013)"),
    WEIGHT_DECAY,
    Hyperparameter(
        "dampening", 0.0, low=0, high=1,
        doc="scales the gradient's share of the momentum buffer by 1 - dampening",
        source="torch.optim.SGD"),
)

# Martens & Grosse 2015 (arXiv:1503.05671) is "M&G"; section numbers are theirs.
KFAC_HYPERPARAMETERS = (
    replace(LR, source="none: M&G choose the step from the quadratic model (Sec. 7); with a fixed "
                       "lr, as here and in KAISA or KFAC-PyTorch, it is tuned per problem"),
    Hyperparameter(
        "damping", REQUIRED, low=0, low_open=True, schedule=True,
        doc="lambda, the Tikhonov damping of the curvature (form: damping_form)",
        source="none: M&G adapt it from a problem-dependent start (Sec. 6.5); a fixed damping is "
               "tuned per problem"),
    Hyperparameter(
        "momentum", 0.9, low=0, high=1, high_open=True,
        doc="buf <- momentum buf + U, as SGD's",
        source="Ba, Grosse & Martens 2017 and KAISA (Pauloski et al. 2021); M&G choose the "
               "momentum from the quadratic model instead (Sec. 7)"),
    Hyperparameter(
        "factor_decay", 0.95, low=0, high=1, high_open=True,
        doc="the running average's weight of the old factors, A <- decay A + (1 - decay) A_batch",
        source="M&G Sec. 5: eps = min(1 - 1/k, 0.95)"),
    Hyperparameter(
        "cov_update_every", 1, kind="int", low=1,
        doc="update the factors every this many steps",
        source="M&G Sec. 5: the statistics are updated at every iteration"),
    Hyperparameter(
        "inv_update_every", 20, kind="int", low=1,
        doc="recompute the eigendecompositions every this many steps",
        source="M&G Sec. 8: the inverses every T3 = 20 iterations"),
    Hyperparameter(
        "kl_clip", 1e-3, low=0, low_open=True, optional=True,
        doc="scale the update so that lr^2 sum <V, V'> <= kl_clip; None: no clipping",
        source="Ba, Grosse & Martens 2017 (the clip); 1e-3 is KAISA's and KFAC-PyTorch's default"),
    Hyperparameter(
        "fisher", "true", kind="choice", choices=("true", "empirical"),
        doc="G from labels sampled from the model (true) or from the data's labels (empirical)",
        source="M&G Sec. 5: targets sampled from the model's predictive distribution"),
    Hyperparameter(
        "damping_form", "factored", kind="choice", choices=("factored", "eigen"),
        doc="factored: (G + sqrt(lambda)/pi I) (x) (A + pi sqrt(lambda) I); "
            "eigen: G (x) A + lambda I",
        source="M&G Sec. 6.3: factored Tikhonov damping"),
    Hyperparameter(
        "factor_init", "batch", kind="choice", choices=("batch", "identity"),
        doc="the factors before the first update: none (the first batch's) or the identity",
        source="M&G Sec. 5: eps = min(1 - 1/k, 0.95) is 0 at k = 1, so the first update is the "
               "batch's factors"),
    replace(WEIGHT_DECAY, doc="adds weight_decay [W, b] to the gradient before preconditioning",
            source="off, as SGD's"),
    Hyperparameter(
        "adaptive_damping", False, kind="bool",
        doc="adapt lambda by the Levenberg-Marquardt rule (needs a closure and a number for "
            "damping)",
        source="off in this implementation (it costs a closure call); M&G adapt it (Sec. 6.5)"),
    Hyperparameter(
        "adapt_every", 5, kind="int", low=1,
        doc="adapt the damping every this many steps (T1)",
        source="M&G Sec. 6.5: T1 = 5"),
    Hyperparameter(
        "min_damping", 1e-8, low=0, low_open=True,
        doc="the adapted damping's lower limit",
        source="this implementation (keeps lambda positive); not in M&G"),
    Hyperparameter(
        "max_damping", 1e8, low="min_damping",
        doc="the adapted damping's upper limit",
        source="this implementation (keeps lambda finite); not in M&G"),
)

# Xu, Roosta & Mahoney 2017/2020: the defaults of their released MATLAB code
# (subsampled_tr_cg.m in their Non-Convex-Newton repository), "XRM".
TRCG_HYPERPARAMETERS = (
    Hyperparameter(
        "radius", 5.0, low=0, low_open=True,
        doc="the initial trust radius Delta (then the current one)",
        source="XRM's code: delta = 5"),
    Hyperparameter(
        "max_radius", 20.0, low="radius",
        doc="the radius never grows past this",
        source="XRM's code: max_delta = 20"),
    Hyperparameter(
        "hessian_fraction", 0.05, low=0, low_open=True, high=1,
        doc="the curvature's share of the batch's rows, |S| = ceil(hessian_fraction N)",
        source="XRM's code: |S| = floor(0.05 n) (here ceil, at least 1 row)"),
    Hyperparameter(
        "cg_max_iters", 250, kind="int", low=1,
        doc="Steihaug-Toint CG's iteration limit",
        source="XRM's code: 250 CG iterations"),
    Hyperparameter(
        "cg_tol", 1e-9, low=0,
        doc="CG's relative residual tolerance",
        source="XRM's code: 1e-9"),
    Hyperparameter(
        "curvature", "hessian", kind="choice", choices=("hessian", "ggn"),
        doc="the sub-sampled Hessian, or the Gauss-Newton matrix J^T H_L J",
        source="XRM: the sub-sampled Hessian; 'ggn' is this implementation's alternative"),
    Hyperparameter(
        "reject_below", 1e-4, low=0, high=1, high_open=True,
        doc="eta: a step with rho below it is rejected and the radius halved",
        source="XRM's code: eta2 = 1e-4"),
    Hyperparameter(
        "expand_above", 0.8, low="reject_below", low_open=True,
        doc="a step with rho at or above it doubles the radius (else x1.2)",
        source="XRM's code: eta1 = 0.8"),
    Hyperparameter(
        "max_retries", 10, kind="int", low=0,
        doc="re-solves with the halved radius after a rejection, within one step",
        source="this implementation; XRM's code re-solves until a step is accepted"),
)

STRCG_HYPERPARAMETERS = TRCG_HYPERPARAMETERS[:-1] + (
    replace(TRCG_HYPERPARAMETERS[-1], default=0,
            source="this implementation: a rejected stochastic step is not retried on the same "
                   "mini-batch, the next mini-batch tries"),
)

BY_OPTIMIZER = {"sgd": SGD_HYPERPARAMETERS, "kfac": KFAC_HYPERPARAMETERS,
                "trcg": TRCG_HYPERPARAMETERS, "strcg": STRCG_HYPERPARAMETERS}


def hyperparameters_of(optimizer):
    """The declarations of an optimizer ("sgd", "kfac", "trcg", "strcg"; any case), in order."""
    try:
        return BY_OPTIMIZER[optimizer.lower()]
    except KeyError:
        raise ValueError(f"hyperparameters_of: optimizer must be one of {tuple(BY_OPTIMIZER)}, "
                         f"got {optimizer!r}") from None


def defaults_of(optimizer):
    """{name: default} of an optimizer's hyperparameters that have one (not REQUIRED)."""
    return {h.name: h.default for h in hyperparameters_of(optimizer) if h.default is not REQUIRED}
