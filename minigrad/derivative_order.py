"""Derivative order: which derivative a backward walk is computing, so that a hook can tell a
gradient from a curvature product.

What "order" means. Differentiating a loss (`loss.backward()`, `grad(loss, x)`) is a walk of
order 1: what flows back is the gradient dL/d(each tensor). With `create_graph=True` that walk
records its own ops on the tape, so the gradient g it returns is itself a graph, and
differentiating g (`grad((g * v).sum(), x)`, a Hessian-vector product) is a walk of order 2,
and so on. Every recorded node carries the order of the derivative it is part of:

    forward ops                                                     order 1
    ops recorded by a create_graph walk of order k                  order k + 1
    an op on inputs of orders k1, k2, ... (such as g * v above)     order max(k1, k2, ...)

and a walk has the highest order among the nodes it starts from (`backward_order()` says which,
0 outside any walk).

Why minigrad.nn.capture needs it. A tensor hook fires in every walk that reaches its tensor, and
a second-order walk reaches the forward graph too: the backward of y = a * b recorded g * b,
which depends on b, so differentiating it flows back into b's graph. The hook that capture puts
on a layer output s therefore sees dL/ds in the gradient walk and a second-order quantity in an
HVP walk; it records only when `backward_order() == 1`.

Curvature products made of first-order walks. A Gauss-Newton product J^T H J v gets J^T u from
an ordinary first-order walk through the model's outputs (`vjp` in minigrad.curvature.products):
order 1 by the rules above, yet not a gradient of the loss. Such code runs its walks inside
`curvature_product()`, which makes every walk started inside count as order 2 at least.

The engine touches this module at two places: `Function.apply` stamps each recorded node with
`node_order(inputs)`, and the graph walk (minigrad/autograd.py) runs inside `walk(...)`.
The state is per thread, like grad mode.
"""
import contextlib
import threading


class _OrderState(threading.local):
    recording = 1   # order of the nodes recorded now: walk + 1 inside a create_graph walk
    walk = 0        # order of the backward walk under way (0: none)
    floor = 1       # least order of a walk started now: 2 inside curvature_product()


_state = _OrderState()


def backward_order():
    """The derivative order of the backward walk under way: 1 while a loss is differentiated
    (loss.backward(), grad(loss, ...), with or without create_graph), 2 while a gradient that
    was recorded with create_graph is differentiated (a Hessian-vector product), and so on;
    0 outside any walk. Hooks use it to tell a gradient from a curvature product."""
    return _state.walk


@contextlib.contextmanager
def curvature_product():
    """Backward walks started inside count as second order in `backward_order()`.

    For code that builds curvature products out of first-order walks (the vector-Jacobian
    products through the outputs of a Gauss-Newton product, the recorded gradient of a
    Hessian operator), so that hooks which record gradients (minigrad.nn.capture) skip them.
    """
    previous = _state.floor
    _state.floor = 2
    try:
        yield
    finally:
        _state.floor = previous


def node_order(inputs):
    """The order of a node recorded now on `inputs` (Tensors): the order being recorded, or
    the highest order among the inputs' nodes if that is higher."""
    order = _state.recording
    for t in inputs:
        node = t._node
        if node is not None and node.order > order:
            order = node.order
    return order


@contextlib.contextmanager
def walk(root_nodes, create_graph):
    """A backward walk from `root_nodes` is under way inside: `backward_order()` gives its
    order, and with `create_graph` the ops it records are one order higher."""
    previous = _state.recording, _state.walk
    order = max([node.order for node in root_nodes] + [_state.floor])
    _state.walk = order
    if create_graph:
        _state.recording = order + 1
    try:
        yield
    finally:
        _state.recording, _state.walk = previous
