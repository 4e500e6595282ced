"""The vocabulary of a run's configuration: the data sets, models and optimizers `minigrad train`
knows, and which options a resumed run may change. Each optimizer's options, the ones that apply
to it (APPLIES) and their defaults are cli/training/hyperparameters.py's.

A run's configuration is a flat dict {option name: value} (the names of `minigrad train`'s
options, with underscores), stored in every checkpoint and in run.h5; cli/train.py builds it
from the command line, the rest of cli/training/ reads it.
"""
from .hyperparameters import APPLIES, OPTIONS

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "svhn")
MODELS = ("mlp", "lenet", "resnet20", "autoencoder")
OPTIMIZERS = tuple(OPTIONS)
SCHEDULES = ("constant", "cosine", "step")
DEFAULT_EPOCHS = 20
# the lr schedule's options (sgd and kfac only: SCHEDULED) and the values that mean "none"
SCHEDULE_DEFAULTS = {"schedule": "constant", "warmup_steps": 0, "warmup_epochs": 0}
SCHEDULED = ("sgd", "kfac")


def applies_to(name):
    """The optimizers that take the train option `name`: a hyperparameter's (APPLIES), sgd and
    kfac for the lr schedule's options, every optimizer for the others."""
    return APPLIES.get(name, SCHEDULED if name in SCHEDULE_DEFAULTS else OPTIMIZERS)


# options that define the run: fixed at the first session, a resume may not change them
STRUCTURAL = ("dataset", "model", "hidden", "optimizer", "batch_size", *APPLIES, "seed", "dtype",
              *SCHEDULE_DEFAULTS)
# options a resume may give anew (the others keep the run's values)
CHANGEABLE_ON_RESUME = ("epochs", "steps", "eval_every", "checkpoint_every", "checkpoint_seconds",
                        "target_accuracy", "target_loss", "stop_at_target", "keep_checkpoints",
                        "device", "diverged_after", "diverged_epochs", "layer_stats",
                        "noise_scale_examples",
                        "threads")
