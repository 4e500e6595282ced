"""minigrad.optim: SGD (and, to come, K-FAC, TRCG and STRCG) on one interface, and lr schedules.

Optimizers reach curvature only through the engine's public API (`minigrad.grad`,
`minigrad.curvature`, `minigrad.nn.capture`).
"""
from . import schedules
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "schedules"]
