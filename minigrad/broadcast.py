"""Broadcasting and its adjoint: `BroadcastTo` and `SumTo`, each the other's derivative.

The tape calls `sum_to` on every edge whose gradient came back larger than its input
(because the op broadcast that input), so no op has to undo broadcasting itself.
"""
from .backend import xp_of
from .function import Function


class SumTo(Function):
    """Sum an array down to `shape` (the inverse of broadcasting); its derivative broadcasts back."""

    @staticmethod
    def forward(ctx, x, shape):
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                          if n == 1 and x.shape[i + lead] != 1)
        if axes:
            x = x.sum(axis=axes, keepdims=True)
        return x.reshape(shape) if x.shape != shape else x

    @staticmethod
    def backward(ctx, grad):
        return (BroadcastTo.apply(grad, shape=ctx.input_shapes[0]),)


class BroadcastTo(Function):
    """Broadcast to `shape` with NumPy's rules (a read-only view); the derivative sums back."""

    @staticmethod
    def forward(ctx, x, shape):
        return xp_of(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return (sum_to(grad, ctx.input_shapes[0]),)


def broadcasts_to(source, target):
    """True when an array of shape `source` broadcasts to exactly `target`."""
    if len(source) > len(target):
        return False
    return all(s == t or s == 1 for s, t in zip(source[::-1], target[::-1]))


def sum_to(x, shape):
    """Sum `x` over broadcast axes so that it has `shape` (which must broadcast to x's shape)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if not broadcasts_to(shape, x.shape):
        raise ValueError(f"sum_to: shape {shape} does not broadcast to {x.shape}, so a gradient of "
                         f"shape {x.shape} cannot be summed back to it")
    return SumTo.apply(x, shape=shape)
