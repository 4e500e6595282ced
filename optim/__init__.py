"""minigrad.optim: SGD, K-FAC, TRCG and STRCG on one interface, and lr schedules.

Optimizers reach curvature only through the engine's public API (`minigrad.grad`,
`minigrad.curvature`, `minigrad.nn.capture`).
"""
from . import schedules
from .kfac import KFAC
from .optimizer import Optimizer
from .sgd import SGD
from .steihaug import SteihaugResult, steihaug_cg
from .trust_region import STRCG, TRCG

__all__ = ["Optimizer", "SGD", "KFAC", "TRCG", "STRCG", "steihaug_cg", "SteihaugResult", "schedules"]
