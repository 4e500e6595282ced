"""`Function` (the base of every op), the graph `Node` it records, and grad mode.

A `Function` computes its output from raw backend arrays in `forward` and maps the
output gradient to input gradients in `backward`, written with minigrad Tensor ops.
Because backward is made of differentiable ops, running it with grad mode on
(`create_graph=True`) records the backward pass itself, and any order of derivative
follows. With `create_graph=False` the walk runs it under `no_grad()`, recording nothing.
"""
import functools
import threading

import numpy as np

from .backend import as_array, device_of
from .derivative_order import node_order
from .tensor import Tensor


class _GradState(threading.local):
    enabled = True  # a class default: every thread starts with grad mode on, lookups never miss


_state = _GradState()


def is_grad_enabled():
    return _state.enabled


def set_grad_enabled(mode):
    _state.enabled = bool(mode)


class _GradMode:
    """Context manager and decorator that sets grad mode and restores it on exit.

    Re-entrant: the same object may be entered again inside its own block.
    """

    mode = True

    def __init__(self):
        self._previous = []

    def __enter__(self):
        self._previous.append(_state.enabled)
        _state.enabled = self.mode

    def __exit__(self, *exc):
        _state.enabled = self._previous.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Ops run inside record nothing on the tape (inference, parameter updates)."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a `no_grad` block."""

    mode = True


class Node:
    """One recorded op application: the Function, its input edges, what forward saved.

    It is also the `ctx` that forward and backward receive. Class-level defaults keep
    creating one cheap: a node is made for every op call.
    """

    edges = None            # per input: its Node, itself if a leaf that requires grad, or None
    input_shapes = ()
    input_dtypes = ()
    needs_input_grad = ()   # set by the walk to the inputs whose gradient is wanted this time
    saved_tensors = ()
    out_data = None
    hooks = None
    freed = False
    order = 1               # the derivative this op is part of (minigrad/derivative_order.py)
    _save = None

    def __init__(self, fn, params):
        self.fn = fn
        self.params = params

    # -- used by forward ------------------------------------------------------------
    def save_inputs(self, *indices):
        """Keep inputs (by position) for backward; they keep their own graph."""
        self._save = indices

    def save_output(self, out):
        """Keep the output array; backward gets it back as a Tensor through `ctx.output`."""
        self.out_data = out

    # -- used by backward -----------------------------------------------------------
    @property
    def output(self):
        """The op's output as a Tensor on this node, so backward can differentiate through it."""
        return Tensor._make(self.out_data, self, True)

    def release(self):
        """Drop what forward saved once backward has run. The edges stay, so that a later walk
        still finds the graph's shape and can say exactly where it was freed."""
        self.saved_tensors = None
        self.out_data = None
        self.params = None
        self.freed = True

    def __repr__(self):
        return f"<Node {self.fn.__name__}>"


class Function:
    """Base class of every op. Subclasses define `forward(ctx, *arrays, **params)` and
    `backward(ctx, grad)`.

    `backward` returns a tuple with one gradient (a Tensor, or None for "no gradient") per
    input. Keyword arguments of `apply` reach forward as keywords and backward through
    `ctx.params`. An op's name in error messages is its class name in lower case.
    """

    @staticmethod
    def forward(ctx, *arrays, **params):  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        # Written as plain loops: this runs once per op call, and its cost is per-op overhead.
        try:
            arrays = [t.data for t in inputs]
        except AttributeError:
            bad = next(i for i, t in enumerate(inputs) if not isinstance(t, Tensor))
            raise TypeError(f"{cls.__name__.lower()}: input {bad} is a {type(inputs[bad]).__name__}, "
                            "not a Tensor; pass constants as keyword params or wrap them") from None
        if len(arrays) > 1:
            kind = type(arrays[0])
            for a in arrays:
                if type(a) is not kind:
                    _check_same_device(cls, arrays)
        ctx = Node(cls, params)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except ValueError as exc:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"{cls.__name__.lower()}: {exc} (input shapes {shapes})") from exc
        if type(out) is not np.ndarray:
            out = as_array(out)
        if not _state.enabled:
            return Tensor._make(out, None, False)
        edges, needs = [], []
        record = False
        for t in inputs:
            rg = t._requires_grad
            node = t._node
            if node is not None:
                edges.append(node)
            else:
                edges.append(t if rg else None)
            needs.append(rg)
            record = record or rg
        if not record:
            return Tensor._make(out, None, False)
        ctx.edges = edges
        order = node_order(inputs)
        if order != 1:  # most nodes keep the class default
            ctx.order = order
        ctx.needs_input_grad = needs
        ctx.input_shapes = [a.shape for a in arrays]
        ctx.input_dtypes = [a.dtype for a in arrays]
        if ctx._save is not None:
            ctx.saved_tensors = [inputs[i] for i in ctx._save]
        return Tensor._make(out, ctx, True)


def _check_same_device(fn, arrays):
    devices = sorted({device_of(a) for a in arrays})
    if len(devices) > 1:
        raise ValueError(f"{fn.__name__.lower()}: inputs are on different devices {devices}; "
                         "move them with .to(device) first")
