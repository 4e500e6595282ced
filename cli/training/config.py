"""The vocabulary of a run's configuration: the data sets, models and optimizers `minigrad train`
knows, each optimizer's defaults and the options that apply to it, and which options a resumed
run may change.

A run's configuration is a flat dict {option name: value} (the names of `minigrad train`'s
options, with underscores), stored in every checkpoint and in run.h5; cli/train.py builds it
from the command line, the rest of cli/training/ reads it.
"""
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "svhn")
MODELS = ("mlp", "lenet", "resnet20", "autoencoder")
OPTIMIZERS = ("sgd", "kfac", "trcg", "strcg")
SCHEDULES = ("constant", "cosine", "step")
DEFAULT_EPOCHS = 20
# per-optimizer defaults of the options that are None on the command line
DEFAULTS = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "kfac": {"lr": 0.05, "momentum": 0.9, "damping": 1e-2, "kl_clip": 1e-3, "fisher": "empirical",
             "cov_update_every": 1, "inv_update_every": 20, "damping_form": "factored",
             "factor_init": "batch"},
    "trcg": {"radius": 1.0, "hessian_fraction": 0.1},
    "strcg": {"radius": 1.0, "hessian_fraction": 0.1},
}
APPLIES = {"lr": ("sgd", "kfac"), "momentum": ("sgd", "kfac"), "damping": ("kfac",),
           "kl_clip": ("kfac",), "fisher": ("kfac",), "cov_update_every": ("kfac",),
           "inv_update_every": ("kfac",), "damping_form": ("kfac",), "factor_init": ("kfac",),
           "radius": ("trcg", "strcg"), "hessian_fraction": ("trcg", "strcg")}
# options that define the run: fixed at the first session, a resume may not change them
STRUCTURAL = ("dataset", "model", "hidden", "optimizer", "batch_size", "lr", "momentum", "damping",
              "kl_clip", "fisher", "cov_update_every", "inv_update_every", "damping_form",
              "factor_init", "radius", "hessian_fraction", "seed", "dtype", "schedule",
              "warmup_steps")
# options a resume may give anew (the others keep the run's values)
CHANGEABLE_ON_RESUME = ("epochs", "steps", "eval_every", "checkpoint_every", "checkpoint_seconds",
                        "target_accuracy", "target_loss", "stop_at_target", "keep_checkpoints",
                        "device", "diverged_after", "layer_stats", "noise_scale_examples")
