"""minigrad.optim: SGD, K-FAC, TRCG and STRCG (to come; see the optimizer issue).

Optimizers reach curvature only through the engine's public API (`minigrad.grad`,
`minigrad.curvature`, layer statistics).
"""
