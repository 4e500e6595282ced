"""The graph walk: `grad()` and `backward()`.

The tape is the graph of `Node`s hanging off the outputs (see minigrad/function.py). A
backward pass has two steps:

1. the walk (`_propagate`): the reachable nodes, sorted topologically by an iterative DFS (no
   recursion limit), are visited outputs-first; each node's hooks run on the sum of the
   gradients that reached it, then its `backward`; every input gradient is summed back over the
   axes its input was broadcast along (`sum_to`) and cast to the input's dtype, all on every
   edge, so that no op has to. Unless `retain_graph`, each node drops what it saved once its
   backward has run (a second walk through it is an error that says so).
2. the delivery (`_deliver`): each leaf's hooks run on the gradient that reached it, which then
   goes to `.grad` (`backward()`) or back to the caller (`grad()`).

Both run with grad mode set to `create_graph` and inside `derivative_order.walk`, which tells
hooks which derivative is being computed.
"""
from . import derivative_order
from .backend import writeable, xp_of
from .broadcast import sum_to
from .arithmetic import astype
from .function import Node, enable_grad, is_grad_enabled, no_grad
from .tensor import Tensor


def _key(t):
    """What a tensor's gradient is accumulated under: its node, or itself if it is a leaf."""
    return t._node if t._node is not None else t


class _GradSums:
    """The gradient summed so far for each node or leaf, by the key's id. The keys themselves
    are kept too, so that they stay alive and their ids unique during the walk."""

    def __init__(self):
        self.grads, self.keys = {}, {}

    def add(self, key, g):
        k = id(key)
        if k in self.grads:
            if is_grad_enabled():  # create_graph: the sum must be on the tape too
                self.grads[k] = self.grads[k] + g
            else:  # plain arrays: same shape and dtype by now, and nothing to record
                self.grads[k] = Tensor._make(self.grads[k].data + g.data, None, False)
        else:
            self.grads[k] = g
            self.keys[k] = key

    def pop(self, node):
        """The summed gradient of `node` (None if none reached it), forgotten here."""
        return self.grads.pop(id(node), None)

    def leaves(self):
        """(id, leaf, gradient) for every leaf a gradient reached."""
        keys = self.keys
        return [(k, keys[k], g) for k, g in self.grads.items() if type(keys[k]) is not Node]


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
        for e in node.edges:
            if type(e) is Node and id(e) not in visited:
                stack.append((e, False))
    order.reverse()
    return order


def _reaching(nodes, target_ids):
    """The ids of the targets and of every node through which a target is reached: the edges
    worth following when only the targets' gradients are wanted."""
    reach = set(target_ids)
    for node in reversed(nodes):  # each node after the nodes it depends on
        if id(node) not in reach and any(e is not None and id(e) in reach for e in node.edges):
            reach.add(id(node))
    return reach


def _run_hooks(hooks, g):
    for hook in hooks:
        replacement = hook(g)
        if replacement is not None:
            g = Tensor.wrap(replacement)
    return g


def _checked(node, in_grads):
    """The gradients a backward returned, or an error naming the op and what is wrong."""
    name = f"{node.fn.__name__}.backward"
    if not isinstance(in_grads, (tuple, list)) or len(in_grads) != len(node.edges):
        got = f"a {type(in_grads).__name__}" if not isinstance(in_grads, (tuple, list)) \
            else f"{len(in_grads)} gradients"
        raise TypeError(f"{name} must return a tuple of {len(node.edges)} gradients "
                        f"(Tensor or None, one per input), got {got}")
    for i, gi in enumerate(in_grads):
        if gi is not None and not isinstance(gi, Tensor):
            raise TypeError(f"{name} returned a {type(gi).__name__} for input {i}; gradients must be "
                            "Tensors built from Tensor ops (that is what makes them differentiable)")
    return in_grads


def _input_grads(node, g, needs, where):
    """node's backward on `g`: one gradient per input, of the input's shape and dtype, or None
    where `needs` says no gradient is wanted (or backward gave none)."""
    if node.freed:
        raise RuntimeError(
            f"{where}: backward through {node.fn.__name__} a second time, but its saved buffers "
            "were freed after the first backward; pass retain_graph=True to the first call")
    node.needs_input_grad = needs
    in_grads = node.fn.backward(node, g)
    if type(in_grads) is not tuple or len(in_grads) != len(node.edges):
        in_grads = _checked(node, in_grads)
    out = []
    for shape, dtype, gi, need in zip(node.input_shapes, node.input_dtypes, in_grads, needs):
        if need and gi is not None:
            if not isinstance(gi, Tensor):
                _checked(node, in_grads)
            data = gi.data
            if data.shape != shape:
                gi = _summed_back(node, gi, shape)
            if data.dtype is not dtype and data.dtype != dtype:
                gi = astype(gi, dtype)
            out.append(gi)
        else:
            out.append(None)
    return out


def _propagate(nodes, sums, reach, target_ids, retain_graph, where):
    """Step 1, the walk: visit `nodes` outputs-first, each with the sum of the gradients that
    reached it (after its hooks), and add what its backward gives to the sums of its inputs.

    `reach`/`target_ids`: None to follow every edge, else the ids worth following and the ids
    of the targets; the gradients of targets that are nodes are returned, by id.
    """
    results = {}
    for node in nodes:
        g = sums.pop(node)
        if g is None:
            continue
        if node.hooks:
            g = _run_hooks(node.hooks, g)
        edges = node.edges
        if reach is None:
            needs = [e is not None for e in edges]  # a recorded node always has one
        else:
            if id(node) in target_ids:
                results[id(node)] = g
            needs = [e is not None and id(e) in reach for e in edges]
            if not any(needs):
                continue
        for e, gi in zip(edges, _input_grads(node, g, needs, where)):
            if gi is not None:
                sums.add(e, gi)
        if not retain_graph:
            node.release()
    return results


def _owned(g, taken):
    """g, or a copy of it when its array is read-only (a broadcast view) or already handed out
    (to the caller, or to another leaf), so that every `.grad` may be edited in place."""
    data = g.data
    base = data if data.base is None else data.base
    if not writeable(data) or id(base) in taken:
        return Tensor._make(xp_of(data).array(data, copy=True), None, False)
    taken.add(id(base))
    return g


def _deliver(sums, target_ids, results, create_graph, taken):
    """Step 2, the delivery: run each leaf's hooks on the gradient that reached it, then add it
    to `leaf.grad` (target_ids None: `backward()`), or put the targets' in `results` (`grad()`).

    A first `.grad` is the gradient itself with `create_graph` (it is part of the graph), else
    an array the leaf owns alone (`_owned`; `taken`: the array bases handed out so far).
    """
    for k, leaf, g in sums.leaves():
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g)
        if target_ids is None:
            if leaf.grad is not None:
                leaf.grad = leaf.grad + g
            else:
                leaf.grad = g if create_graph else _owned(g, taken)
        elif k in target_ids:
            results[k] = g


def run_backward(roots, root_grads, retain_graph, create_graph, targets=None, where="backward"):
    """Propagate `root_grads` from `roots` back through the tape (the walk), then hand what
    reached the leaves to them (the delivery); see the module docstring.

    With `targets=None` every leaf that requires grad gets its gradient accumulated into
    `.grad`; otherwise the gradients of `targets` are returned in a dict keyed by the id of
    their node (or of the leaf itself).
    """
    sums = _GradSums()
    for i, (t, g) in enumerate(zip(roots, root_grads)):
        if not t.requires_grad:
            raise RuntimeError(f"{where}: output {i} (shape {t.shape}) does not require grad and has "
                               "no graph; make the inputs with requires_grad=True")
        sums.add(_key(t), g)
    root_nodes = [t._node for t in roots if t._node is not None]
    nodes = _topological_order(root_nodes)
    target_ids = None if targets is None else {id(_key(t)) for t in targets}
    reach = None if targets is None else _reaching(nodes, target_ids)
    taken = {id(g.data if g.data.base is None else g.data.base) for g in root_grads}
    with (enable_grad() if create_graph else no_grad()), \
            derivative_order.walk(root_nodes, create_graph):
        results = _propagate(nodes, sums, reach, target_ids, retain_graph, where)
        _deliver(sums, target_ids, results, create_graph, taken)
    return results


def _summed_back(node, g, shape):
    try:
        return sum_to(g, shape)
    except ValueError:
        raise ValueError(f"{node.fn.__name__}.backward returned a gradient of shape {g.shape} for an "
                         f"input of shape {shape}") from None


def _as_tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _grad_outputs(outputs, grad_outputs, where):
    """The gradient to start from at each output: given (cast to its dtype), or 1 for a scalar."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    grad_outputs = _as_tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{where}: got {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    result = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"{where}: output {i} is a {type(out).__name__}, not a Tensor")
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(
                    f"{where}: output {i} has shape {out.shape}; a gradient can be implied only for "
                    "a scalar output, so pass grad_outputs (or grad=) of that shape")
            g = Tensor._make(xp_of(out.data).ones_like(out.data), None, False)
        else:
            g = Tensor.wrap(g)
            if g.shape != out.shape:
                raise ValueError(f"{where}: grad_outputs[{i}] has shape {g.shape} "
                                 f"but output {i} has shape {out.shape}")
            if g.dtype != out.dtype:
                g = astype(g, out.dtype)
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
    gouts = _grad_outputs(outputs, grad_outputs, "grad")
    if retain_graph is None:
        retain_graph = create_graph
    results = run_backward(outputs, gouts, retain_graph, create_graph, targets=inputs, where="grad")
    out = []
    for i, t in enumerate(inputs):
        g = results.get(id(_key(t)))
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: inputs[{i}] (shape {t.shape}) is not part of the graph of the "
                               "outputs; pass allow_unused=True to get None for it")
        out.append(g)
    return tuple(out)


def backward(tensor, grad=None, retain_graph=None, create_graph=False):
    """Accumulate d tensor / d leaf into `leaf.grad` for every leaf that requires grad.

    `grad` is needed unless the tensor has one element. `retain_graph` defaults to
    `create_graph`; without it the graph's saved buffers are freed. (Tensor.backward.)
    """
    gouts = _grad_outputs((tensor,), None if grad is None else (grad,), "backward")
    if retain_graph is None:
        retain_graph = create_graph
    run_backward((tensor,), gouts, retain_graph, create_graph)
