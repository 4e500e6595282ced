"""minigrad.optim: SGD, K-FAC, TRCG and STRCG on one interface, and lr schedules.

Optimizers reach curvature only through the engine's public API (`minigrad.grad`,
`minigrad.curvature`, `minigrad.nn.capture`). Their hyperparameters (defaults, bounds, the
sources of the defaults) are declared in optim/hyperparameters.py: `KFAC.hyperparameters`, or
`hyperparameters_of("kfac")` and `defaults_of("kfac")` by the optimizer's name.
"""
from . import schedules
from .hyperparameters import REQUIRED, Hyperparameter, defaults_of, hyperparameters_of
from .kfac import KFAC
from .optimizer import Optimizer
from .sgd import SGD
from .steihaug import SteihaugResult, steihaug_cg
from .trust_region import STRCG, TRCG

__all__ = ["Optimizer", "SGD", "KFAC", "TRCG", "STRCG", "steihaug_cg", "SteihaugResult",
           "schedules", "Hyperparameter", "REQUIRED", "hyperparameters_of", "defaults_of"]
