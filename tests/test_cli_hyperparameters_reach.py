"""Every hyperparameter a study sweeps or fixes reaches the optimizer `minigrad train` builds.

Comparing the recorded configuration is not enough: a value can be recorded and never used. Each
case runs `minigrad train` for three steps with one non-default value, then replays those steps
by hand, outside the CLI: the same seeded MLP (minigrad.nn.models.mlp), the same batches
(minigrad.datasets.batches with the documented order default_rng([seed, epoch])), and the
optimizer built here with the intended value (SGD by its formula, the others with their classes,
whose own steps are checked against dense references in test_sgd/test_kfac/test_trust_region).
The CLI's parameters must equal the replay's bit for bit, and a replay with a different value
must differ (so the value did matter within the three steps).
"""
import numpy as np
import pytest
from click.testing import CliRunner
from minigrad.cli import main
from minigrad.cli.checkpoint import read_checkpoint
from minigrad.cli.runlog import read_run
from minigrad.optim import KFAC, STRCG, TRCG

import minigrad as mg
import minigrad.functional as F
from minigrad import datasets
from minigrad.nn import models

SEED, BATCH, STEPS, HIDDEN = 3, 256, 3, 16
# the CLI's defaults before they were the library's, which the replay starts from (given to the
# CLI explicitly)
BASE = {"sgd": {"lr": 0.1, "momentum": 0.9},
        "kfac": {"lr": 0.05, "momentum": 0.9, "damping": 1e-2, "kl_clip": 1e-3,
                 "fisher": "empirical", "cov_update_every": 1, "inv_update_every": 20,
                 "damping_form": "factored", "factor_init": "batch"},
        "trcg": {"radius": 1.0, "hessian_fraction": 0.1},
        "strcg": {"radius": 1.0, "hessian_fraction": 0.1}}
# (optimizer, option, the value given to the CLI, another value the replay must tell apart,
#  other options given to both, so that the option matters within STEPS steps)
CASES = [("sgd", "lr", 0.3, 0.2, {}), ("sgd", "momentum", 0.5, 0.6, {}),
         ("kfac", "lr", 0.2, 0.1, {"kl_clip": 0.0}),   # an active KL clip overrides the lr
         ("kfac", "momentum", 0.5, 0.9, {}), ("kfac", "damping", 0.3, 0.1, {}),
         ("kfac", "kl_clip", 1e-4, 1e-5, {}), ("kfac", "fisher", "true", "empirical", {}),
         ("kfac", "cov_update_every", 2, 1, {"inv_update_every": 1}),
         ("kfac", "inv_update_every", 2, 20, {}),
         ("kfac", "damping_form", "eigen", "factored", {}),
         ("kfac", "factor_init", "identity", "batch", {}),
         ("trcg", "radius", 0.05, 0.02, {}), ("trcg", "hessian_fraction", 0.3, 0.1, {}),
         ("strcg", "radius", 0.05, 0.02, {}), ("strcg", "hessian_fraction", 0.3, 0.1, {})]


def data():
    images, labels, _ = datasets.load("digits", "train")
    return images.reshape(len(images), -1).astype(np.float64), labels


def replay(optimizer, hyper):
    """The parameters after STEPS steps of `optimizer` with hyperparameters `hyper`."""
    images, labels = data()
    model = models.mlp([images.shape[1], HIDDEN, 10], activation="relu", rng=SEED, dtype=np.float64)
    params = model.parameters()
    batches = datasets.batches(images, labels, BATCH, seed=np.random.default_rng([SEED, 0]))
    if optimizer == "kfac":
        opt = KFAC(model, rng=SEED, kl_clip=hyper["kl_clip"] or None,
                   **{k: v for k, v in hyper.items() if k != "kl_clip"})
    elif optimizer in ("trcg", "strcg"):
        cls = TRCG if optimizer == "trcg" else STRCG
        opt = cls(params, radius=hyper["radius"], max_radius=max(20.0, hyper["radius"]),
                  hessian_fraction=hyper["hessian_fraction"], seed=SEED)
    buffers = [None] * len(params)
    for _ in range(STEPS):
        xb, yb = next(batches)
        if optimizer == "sgd":   # b <- m b + g (b = g at the first step); w <- w - lr b
            loss = F.cross_entropy(model(mg.tensor(xb)), yb)
            grads = mg.grad(loss, params)
            for k, (p, g) in enumerate(zip(params, grads)):
                buffers[k] = g.data if buffers[k] is None else hyper["momentum"] * buffers[k] + g.data
                p.data = p.data - hyper["lr"] * buffers[k]
        elif optimizer == "kfac":
            opt.zero_grad()
            logits = model(mg.tensor(xb))
            F.cross_entropy(logits, yb).backward(retain_graph=True)
            opt.step(outputs=logits if hyper["fisher"] == "true" else None)
        else:
            def closure(indices=None, xb=xb, yb=yb):
                x, y = (xb, yb) if indices is None else (xb[indices], yb[indices])
                logits = model(mg.tensor(x))
                return F.cross_entropy(logits, y), logits
            opt.step(closure, batch_size=len(yb))
    return [p.data for p in params]


def cli_run(tmp_path, optimizer, option, value, extra):
    out = tmp_path / "run"
    flags = [arg for name, v in dict(BASE[optimizer], **extra, **{option: value}).items()
             for arg in ("--" + name.replace("_", "-"), str(v))]
    result = CliRunner().invoke(main, ["train", "--optimizer", optimizer, *flags,
                                       "--hidden", str(HIDDEN), "--batch-size", str(BATCH),
                                       "--steps", str(STEPS), "--seed", str(SEED),
                                       "--dtype", "float64", "--no-layer-stats", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert read_run(str(out))["attrs"][option] == value   # recorded as given ...
    weights, state = read_checkpoint(str(out))
    built = state["optimizer"]   # the optimizer object's own state_dict: its class and values
    assert built["name"] == {"sgd": "SGD", "kfac": "KFAC", "trcg": "TRCG", "strcg": "STRCG"}[optimizer]
    if optimizer in ("trcg", "strcg"):   # the library's max_radius, 20 (--radius is at most that)
        assert built["hyperparameters"]["max_radius"] == max(20.0, float(value if option == "radius"
                                                                         else BASE[optimizer]["radius"]))
    return [weights[k] for k in sorted(weights, key=lambda k: list(weights).index(k))]


@pytest.mark.parametrize("optimizer, option, value, other, extra", CASES,
                         ids=[f"{o}-{n}" for o, n, _, _, _ in CASES])
def test_the_value_given_to_train_is_the_one_the_optimizer_uses(tmp_path, optimizer, option,
                                                                value, other, extra):
    trained = cli_run(tmp_path, optimizer, option, value, extra)
    expected = replay(optimizer, dict(BASE[optimizer], **extra, **{option: value}))
    alternative = replay(optimizer, dict(BASE[optimizer], **extra, **{option: other}))
    assert len(trained) == len(expected)
    for got, want in zip(trained, expected):   # ... and used: the replay with it, bit for bit
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(a, b) for a, b in zip(alternative, expected)), \
        f"{optimizer} {option}: {value} and {other} train alike in {STEPS} steps; pick others"
