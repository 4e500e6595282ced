"""Reverse mode on a tape: `Function`, the graph `Node`, grad mode, and the graph walk.

A `Function` computes its output from raw backend arrays in `forward` and maps the
output gradient to input gradients in `backward`, written with minigrad Tensor ops.
Because backward is made of differentiable ops, running it with grad mode on
(`create_graph=True`) records the backward pass itself, and any order of derivative
follows. With `create_graph=False` it runs under `no_grad()` and records nothing.

The tape is the graph of `Node`s hanging off an output. A node holds its Function, one
edge per input (the input's node, the input itself if it is a leaf that requires grad,
or None), the input shapes, and whatever forward saved. Broadcasting is undone on every
edge by one helper, `sum_to`, so no op has to think about it.
"""
import threading

import numpy as np

from .backend import as_array
from .tensor import Tensor

class _GradState(threading.local):
    enabled = True  # a class default: every thread starts with grad mode on, lookups never miss


_state = _GradState()


def is_grad_enabled():
    return _state.enabled


def _set_grad_enabled(mode):
    _state.enabled = mode


class _GradMode:
    """Context manager and decorator that sets grad mode and restores it on exit."""

    mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        _set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
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
    needs_input_grad = ()
    saved_tensors = ()
    out_data = None
    hooks = None
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
        """Drop what forward saved; the node can no longer be backpropagated through."""
        self.edges = None
        self.saved_tensors = None
        self.out_data = None

    def __repr__(self):
        return f"<Node {self.fn.__name__}>"


class Function:
    """Base class of every op. Subclasses define `forward(ctx, *arrays, **params)` and
    `backward(ctx, grad)`.

    `backward` returns one gradient (a Tensor, or None for "no gradient") per input.
    Keyword arguments of `apply` reach forward as keywords and backward through `ctx.params`.
    """

    @staticmethod
    def forward(ctx, *arrays, **params):  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        # Written as plain loops: this runs once per op call, and its overhead is per-op overhead.
        arrays = [t.data for t in inputs]
        if len(arrays) > 1:
            kind = type(arrays[0])
            for a in arrays:
                if type(a) is not kind:
                    _check_same_device(cls, inputs)
        ctx = Node(cls, params)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except ValueError as exc:
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
            raise ValueError(f"{cls.__name__.lower()}: {exc} (input shapes {shapes})") from None
        if type(out) is not np.ndarray:
            out = as_array(out)
        if not _state.enabled:
            return Tensor._make(out, None, False)
        edges, needs = [], []
        record = False
        for t in inputs:
            rg = t._requires_grad
            node = t._node
            edges.append(node if node is not None else (t if rg else None))
            needs.append(rg)
            record = record or rg
        if not record:
            return Tensor._make(out, None, False)
        ctx.edges = edges
        ctx.needs_input_grad = needs
        ctx.input_shapes = [a.shape for a in arrays]
        if ctx._save is not None:
            ctx.saved_tensors = [inputs[i] for i in ctx._save]
        return Tensor._make(out, ctx, True)


def _check_same_device(fn, inputs):
    devices = {t.device for t in inputs}
    if len(devices) > 1:
        raise ValueError(f"{fn.__name__.lower()}: inputs are on different devices {sorted(devices)}; "
                         "move them with .to(device) first")


class SumTo(Function):
    """Sum an array down to `shape` (the inverse of broadcasting); its derivative broadcasts back."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.params["in_shape"] = x.shape
        return _sum_to_array(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return (broadcast_to(grad, ctx.params["in_shape"]),)


def _sum_to_array(x, shape):
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and x.shape[i + lead] != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return x.reshape(shape) if x.shape != tuple(shape) else x


class BroadcastTo(Function):
    """Broadcast to `shape` with NumPy's rules; the derivative sums back (`sum_to`)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.params["in_shape"] = x.shape
        return Tensor._xp(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return (sum_to(grad, ctx.params["in_shape"]),)


def sum_to(x, shape):
    """Sum `x` over broadcast axes so that it has `shape`."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return SumTo.apply(x, shape=shape)


def broadcast_to(x, shape):
    """Broadcast `x` to `shape` exactly as NumPy does (a read-only view)."""
    shape = tuple(shape)
    x = Tensor.wrap(x)
    if x.shape == shape:
        return x
    try:
        Tensor._xp(x.data).broadcast_shapes(x.shape, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}") from None
    return BroadcastTo.apply(x, shape=shape)


# ------------------------------------------------------------------------------- the walk
def _key(t):
    return t._node if t._node is not None else t


def _topological_order(roots):
    """Nodes reachable from `roots`, each before all nodes it depends on (iterative DFS)."""
    order, visited = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.edges is not None:
            for e in node.edges:
                if type(e) is Node and id(e) not in visited:
                    stack.append((e, False))
    order.reverse()
    return order


def _useful_nodes(order, target_ids):
    """ids of nodes through which some target is reached (the rest need no gradient)."""
    useful = set()
    for node in reversed(order):
        if id(node) in target_ids or (node.edges is not None and any(
                e is not None and id(e) in (useful if type(e) is Node else target_ids)
                for e in node.edges)):
            useful.add(id(node))
    return useful


def _accumulate(grads, keep, key, g):
    k = id(key)
    if k in grads:
        grads[k] = grads[k] + g
    else:
        grads[k] = g
        keep[k] = key


def _run_hooks(hooks, g):
    for hook in hooks:
        r = hook(g)
        if r is not None:
            g = Tensor.wrap(r)
    return g


def run_backward(roots, root_grads, retain_graph, create_graph, targets=None):
    """Propagate `root_grads` from `roots` back through the tape.

    With `targets=None` every leaf that requires grad gets its gradient accumulated into
    `.grad`; otherwise the gradients of `targets` are returned in a dict keyed by id.
    """
    grads, keep = {}, {}
    for t, g in zip(roots, root_grads):
        if not t.requires_grad:
            raise RuntimeError("backward: the tensor does not require grad and has no graph; "
                               "create inputs with requires_grad=True")
        _accumulate(grads, keep, _key(t), g)
    order = _topological_order([t._node for t in roots if t._node is not None])
    target_ids = None if targets is None else {id(_key(t)) for t in targets}
    useful = None if targets is None else _useful_nodes(order, target_ids)
    results = {}
    prev_mode = is_grad_enabled()
    _set_grad_enabled(bool(create_graph))
    try:
        for node in order:
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.edges is None:
                raise RuntimeError(
                    f"backward through {node.fn.__name__} a second time: its saved buffers were freed "
                    "after the first backward; pass retain_graph=True to the first call")
            if node.hooks:
                g = _run_hooks(node.hooks, g)
            edges = node.edges
            if target_ids is None:
                needs = [e is not None for e in edges]  # a recorded node always has one
            else:
                if id(node) in target_ids:
                    results[id(node)] = g
                needs = [e is not None and id(e) in (useful if type(e) is Node else target_ids)
                         for e in edges]
                if True not in needs:
                    if not retain_graph:
                        node.release()
                    continue
            node.needs_input_grad = needs
            in_grads = node.fn.backward(node, g)
            for e, shape, gi, need in zip(edges, node.input_shapes, in_grads, needs):
                if need and gi is not None:
                    if gi.shape != shape:
                        gi = sum_to(gi, shape)
                    _accumulate(grads, keep, e, gi)
            if not retain_graph:
                node.release()
        for k, g in grads.items():
            leaf = keep[k]
            if type(leaf) is Node:
                continue
            if leaf._hooks:
                g = _run_hooks(leaf._hooks, g)
            if targets is None:
                leaf.grad = g if leaf.grad is None else leaf.grad + g
            elif k in target_ids:
                results[k] = g
    finally:
        _set_grad_enabled(prev_mode)
    return results


def _as_tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _default_grad_outputs(outputs, grad_outputs, where):
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    grad_outputs = _as_tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{where}: got {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    result = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(
                    f"{where}: output {i} has shape {out.shape}; a gradient can be implied only for "
                    "a scalar output, so pass grad_outputs (or grad=) of that shape")
            g = Tensor._make(Tensor._xp(out.data).ones_like(out.data), None, False)
        else:
            g = Tensor.wrap(g, dtype=out.dtype)
            if g.shape != out.shape:
                raise ValueError(f"{where}: grad_outputs[{i}] has shape {g.shape} "
                                 f"but output {i} has shape {out.shape}")
        result.append(g)
    return result


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`: sum_i grad_outputs[i]^T d outputs[i]/d inputs.

    Returns a tuple with one Tensor per input. `create_graph=True` records the computation
    so the result can be differentiated again (Hessian-vector products by double backward).
    `retain_graph` defaults to `create_graph`. An input that the outputs do not depend on
    is an error, or None with `allow_unused=True`. Nothing is written to `.grad`.
    """
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] (shape {t.shape}) does not require grad")
    gouts = _default_grad_outputs(outputs, grad_outputs, "grad")
    if retain_graph is None:
        retain_graph = create_graph
    results = run_backward(outputs, gouts, retain_graph, create_graph, targets=inputs)
    out = []
    for i, t in enumerate(inputs):
        g = results.get(id(_key(t)))
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: inputs[{i}] (shape {t.shape}) is not part of the graph of the "
                               "outputs; pass allow_unused=True to get None for it")
        out.append(g)
    return tuple(out)


def backward(tensor, grad=None, retain_graph=None, create_graph=False):
    """Accumulate d tensor / d leaf into `leaf.grad` for every leaf that requires grad."""
    gouts = _default_grad_outputs((tensor,), None if grad is None else (grad,), "backward")
    if retain_graph is None:
        retain_graph = create_graph
    run_backward((tensor,), gouts, retain_graph, create_graph)
