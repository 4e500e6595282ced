"""The hyperparameter declarations (optim/hyperparameters.py) against the optimizers that use
them. Every case is generated from the declarations, so that a new declaration is tested as soon
as it is written: values at and just inside its bounds are accepted by the constructor and by
load_state_dict, values at and just outside are refused with a message naming the optimizer,
the hyperparameter and the value; each default is inside its bounds and is the constructor's."""
import inspect
import math

import numpy as np
import pytest

import minigrad.nn as nn
from minigrad.optim import KFAC, REQUIRED, SGD, STRCG, TRCG, defaults_of, hyperparameters_of

OPTIMIZERS = (SGD, KFAC, TRCG, STRCG)
# values a hyperparameter needs from the others to be set at all (not a bound)
COMPANIONS = {("SGD", "nesterov"): {"momentum": 0.9}}


def build(cls, **kwargs):
    """`cls` on a small model with its REQUIRED hyperparameters set to 1.0, and `kwargs`."""
    model = nn.Sequential(nn.Linear(3, 2, rng=0, dtype=np.float64))
    values = {h.name: 1.0 for h in cls.hyperparameters if h.default is REQUIRED}
    values.update(kwargs)
    return cls(model if cls is KFAC else model.parameters(), **values)


def given(cls):
    """The values a constructor call without hyperparameters has (REQUIRED ones 1.0)."""
    return {h.name: 1.0 if h.default is REQUIRED else h.default for h in cls.hyperparameters}


def just_past(value, direction, kind):
    """The next representable value past `value` towards `direction` (+-inf): an int's next int."""
    if kind == "int":
        return int(value) + (1 if direction > 0 else -1)
    return float(np.nextafter(float(value), direction))


def inside_values(cls, h):
    """Values the declaration accepts: its closed ends, one value strictly inside, None where
    it turns the feature off, a callable where it may be a schedule."""
    if h.kind == "bool":
        return [True, False]
    if h.kind == "choice":
        return list(h.choices)
    b = h.bounds(given(cls))
    low, high = b["low"], b["high"]
    values = [end for end, is_open in ((low, b["low_open"]), (high, b["high_open"]))
              if end is not None and not is_open]
    if high is None:
        values.append((0 if low is None else low) + 1)
    else:
        values.append((low + high) / 2 if h.kind == "float" else low + (high - low) // 2)
    values = [int(v) if h.kind == "int" else float(v) for v in values]
    if h.optional:
        values.append(None)
    return values


def outside_values(cls, h):
    """Values the declaration refuses: its open ends, the next values past its ends, values
    that are not numbers (or not whole, or not finite), not one of the choices, or None."""
    if h.kind == "bool":
        return ["no", 1, 0, None]
    if h.kind == "choice":
        return ["not " + h.choices[0], None]
    b = h.bounds(given(cls))
    values = []
    for end, is_open, direction in ((b["low"], b["low_open"], -math.inf),
                                    (b["high"], b["high_open"], math.inf)):
        if end is not None:
            values += ([end] if is_open else []) + [just_past(end, direction, h.kind)]
    values += [math.nan, math.inf, True, "1"]
    if h.kind == "int":
        values += [float(b["low"]) + 0.5, float(b["low"] + 1)]
    if not h.optional:
        values.append(None)
    return values


def cases(values_of):
    return [pytest.param(cls, h, v, id=f"{cls.name}-{h.name}-{v!r}")
            for cls in OPTIMIZERS for h in cls.hyperparameters for v in values_of(cls, h)]


def same(a, b):
    return a is b or a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("cls, h, value", cases(inside_values))
def test_the_constructor_accepts_values_inside_the_bounds(cls, h, value):
    opt = build(cls, **{h.name: value, **COMPANIONS.get((cls.name, h.name), {})})
    stored = getattr(opt, h.name)
    assert same(stored, value) and type(stored) is type(value)


@pytest.mark.parametrize("cls, h, value", cases(outside_values))
def test_the_constructor_refuses_values_outside_the_bounds_naming_them(cls, h, value):
    with pytest.raises(ValueError) as error:
        build(cls, **{h.name: value})
    message = str(error.value)
    assert message.startswith(f"{cls.name}: {h.name} must be") and repr(value) in message


@pytest.mark.parametrize("cls, h, value", cases(inside_values))
def test_a_checkpoint_with_values_inside_the_bounds_loads(cls, h, value):
    opt = build(cls, **COMPANIONS.get((cls.name, h.name), {}))
    saved = opt.state_dict()
    saved["hyperparameters"][h.name] = value
    opt.load_state_dict(saved)
    assert same(getattr(opt, h.name), value)


@pytest.mark.parametrize("cls, h, value", cases(outside_values))
def test_a_checkpoint_with_values_outside_the_bounds_is_refused_and_changes_nothing(cls, h, value):
    opt = build(cls)
    saved = opt.state_dict()
    before = dict(saved["hyperparameters"])
    saved["hyperparameters"][h.name] = value
    with pytest.raises(ValueError) as error:
        opt.load_state_dict(saved)
    message = str(error.value)
    assert message.startswith(f"{cls.name}.load_state_dict: {h.name} must be")
    assert repr(value) in message
    assert opt.state_dict()["hyperparameters"] == before


@pytest.mark.parametrize("cls, h", [(cls, h) for cls in OPTIMIZERS for h in cls.hyperparameters
                                    if h.schedule])
def test_a_schedule_is_accepted_and_its_values_checked_against_the_bounds(cls, h):
    inside, outside = inside_values(cls, h)[0], outside_values(cls, h)[0]
    opt = build(cls, **{h.name: lambda step: inside})
    assert opt.value(h.name) == inside
    setattr(opt, h.name, lambda step: outside)
    with pytest.raises(ValueError, match=rf"^{cls.name}: {h.name}\(0\) must be in"):
        opt.value(h.name)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda cls: cls.name)
def test_defaults_are_inside_their_bounds_and_are_the_constructors(cls):
    signature = inspect.signature(cls.__init__).parameters
    opt = build(cls)
    for h in cls.hyperparameters:
        expected = inspect.Parameter.empty if h.default is REQUIRED else h.default
        assert signature[h.name].default == expected, h.name
        if h.default is not REQUIRED:
            assert h.check("test", h.default, given(cls)) == h.default
            assert getattr(opt, h.name) == h.default
    assert defaults_of(cls.name) == {h.name: h.default for h in cls.hyperparameters
                                     if h.default is not REQUIRED}


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda cls: cls.name)
def test_declarations_are_complete_and_a_named_bound_comes_first(cls):
    names = [h.name for h in cls.hyperparameters]
    assert len(set(names)) == len(names)
    assert hyperparameters_of(cls.name.lower()) is cls.hyperparameters
    assert list(build(cls).state_dict()["hyperparameters"]) == names
    for i, h in enumerate(cls.hyperparameters):
        assert h.doc and h.source and getattr(cls, h.name) is h
        if isinstance(h.low, str):
            assert h.low in names[:i], f"{h.name}'s bound {h.low} must be declared before it"


def test_an_assignment_is_checked_like_the_constructors_argument():
    opt = build(SGD, momentum=0.9)
    with pytest.raises(ValueError, match=r"^SGD: momentum must be in \[0, 1\), got 1.5"):
        opt.momentum = 1.5
    assert opt.momentum == 0.9
    trcg = build(TRCG)
    with pytest.raises(ValueError, match=r"^TRCG: max_radius must be in \[5.0, inf\), got 4.0"):
        trcg.max_radius = 4.0


def test_a_checkpoint_with_an_unknown_hyperparameter_is_refused():
    opt = build(SGD)
    saved = opt.state_dict()
    saved["hyperparameters"]["beta"] = 0.5
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: .* does not have: \['beta'\]"):
        opt.load_state_dict(saved)


def test_hyperparameters_of_an_unknown_optimizer():
    with pytest.raises(ValueError, match="hyperparameters_of: optimizer must be one of"):
        hyperparameters_of("adam")
