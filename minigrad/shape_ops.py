"""Movement ops: reshape, permute, indexing (and its scatter-add adjoint), pad, concatenate,
and moves between devices.

Each is linear, so its backward is the adjoint movement: reshape back, the inverse
permutation, scatter-add for indexing (and indexing for scatter-add), a slice for pad, a move
back to the source device.
"""
import numpy as np

from .backend import device_of, normalize_device, to_device, xp_of
from .broadcast import BroadcastTo, broadcasts_to
from .function import Function
from .tensor import Tensor


def normalize_axis(op, axis, ndim):
    """One axis in [-ndim, ndim) as a non-negative int; anything else names `op` in the error."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {int(axis)} is out of range for a tensor with {ndim} dimensions")
    return int(axis) % ndim


class Identity(Function):
    """y = x, recorded: what a movement op returns when it has nothing to move, so that the
    result is still a tensor of its own (its hooks and gradient are its own, and under
    no_grad it carries no graph)."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return (g,)


def identity(x):
    return Identity.apply(Tensor.wrap(x))


def broadcast_to(x, shape):
    """Broadcast `x` to `shape` exactly as NumPy does (a read-only view)."""
    shape = tuple(shape)
    x = Tensor.wrap(x)
    if x.shape == shape:
        return identity(x)
    if not broadcasts_to(x.shape, shape):
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    return BroadcastTo.apply(x, shape=shape)


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.input_shapes[0]),)


def _shape_arg(op, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
        raise TypeError(f"{op}: the shape must be ints, got {shape!r}")
    return tuple(int(n) for n in shape)


def reshape(x, *shape):
    """x with a new shape of the same size; one entry may be -1 (inferred)."""
    x = Tensor.wrap(x)
    shape = _shape_arg("reshape", shape)
    size = x.size
    known = 1
    for n in shape:
        if n != -1:
            known *= n
    if shape.count(-1) > 1 or any(n < -1 for n in shape) or (
            -1 in shape and (known == 0 or size % known)) or (-1 not in shape and known != size):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({size} elements) "
                         f"into shape {shape}")
    if -1 in shape:
        shape = tuple(size // known if n == -1 else n for n in shape)
    if shape == x.shape:
        return identity(x)
    return Reshape.apply(x, shape=shape)


def flatten(x, start_axis=0, end_axis=-1):
    """Merge axes start_axis..end_axis into one."""
    x = Tensor.wrap(x)
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = normalize_axis("flatten", start_axis, x.ndim), normalize_axis("flatten", end_axis, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} "
                         f"for shape {x.shape}")
    return reshape(x, x.shape[:s] + (-1,) + x.shape[e + 1:])


def squeeze(x, axis=None):
    """Drop size-1 axes (all of them, or those in `axis`)."""
    x = Tensor.wrap(x)
    if axis is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    axes = {normalize_axis("squeeze", a, x.ndim)
            for a in (axis if isinstance(axis, (tuple, list)) else (axis,))}
    bad = [a for a in axes if x.shape[a] != 1]
    if bad:
        raise ValueError(f"squeeze: axis {bad[0]} of shape {x.shape} has size {x.shape[bad[0]]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis):
    """Insert a size-1 axis at position `axis` of the result."""
    x = Tensor.wrap(x)
    axis = normalize_axis("unsqueeze", axis, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def expand_dims(x, axis):
    """NumPy's name for unsqueeze."""
    return unsqueeze(x, axis)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, axes):
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return (permute(g, *np.argsort(ctx.params["axes"]).tolist()),)


def permute(x, *axes, op="permute"):
    """Reorder the axes: result axis i is input axis axes[i]."""
    x = Tensor.wrap(x)
    axes = tuple(normalize_axis(op, a, x.ndim) for a in _shape_arg(op, axes))
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"{op}: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    if axes == tuple(range(x.ndim)):
        return identity(x)
    return Permute.apply(x, axes=axes)


def transpose(x, *axes):
    """NumPy's transpose: reverse the axes, or permute them by `axes` (use `swapaxes` for two)."""
    x = Tensor.wrap(x)
    if not axes or (len(axes) == 1 and axes[0] is None):
        return permute(x, *reversed(range(x.ndim)), op="transpose")
    return permute(x, *axes, op="transpose")


def swapaxes(x, axis1, axis2):
    x = Tensor.wrap(x)
    axis1, axis2 = normalize_axis("swapaxes", axis1, x.ndim), normalize_axis("swapaxes", axis2, x.ndim)
    axes = list(range(x.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return permute(x, *axes, op="swapaxes")


# ------------------------------------------------------------------------------ indexing
def _is_basic(index):
    """True when the index has no integer or boolean arrays, so each element is hit at most once."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) for i in items)


def _normalize_index(index, xp):
    """The index with tensors and lists as arrays, each array copied: backward uses it later,
    and the caller may change theirs in the meantime."""
    if isinstance(index, tuple):
        return tuple(_normalize_index(i, xp) for i in index)
    if isinstance(index, Tensor):
        return index.data.copy()
    if isinstance(index, list):
        return xp.asarray(index)
    if hasattr(index, "ndim") and hasattr(index, "copy") and not isinstance(index, np.generic):
        return index.copy()
    return index


class GetItem(Function):
    """y = x[index]; the adjoint scatters the gradient back, adding where an element repeats."""

    @staticmethod
    def forward(ctx, x, index):
        try:
            return x[index]
        except IndexError as exc:
            raise ValueError(f"index {index!r} does not fit shape {x.shape}: {exc}") from None

    @staticmethod
    def backward(ctx, g):
        return (scatter_add(g, ctx.params["index"], ctx.input_shapes[0]),)


class ScatterAdd(Function):
    """z = zeros(shape); z[index] += g. Its adjoint is indexing."""

    @staticmethod
    def forward(ctx, g, index, shape):
        xp = xp_of(g)
        z = xp.zeros(shape, dtype=g.dtype)
        if _is_basic(index):
            z[index] = g
        else:  # integer or boolean arrays: repeated indices must add up (cupy.add.at on the GPU)
            xp.add.at(z, index, g)
        return z

    @staticmethod
    def backward(ctx, gg):
        return (getitem(gg, ctx.params["index"]),)


def getitem(x, index):
    x = Tensor.wrap(x)
    return GetItem.apply(x, index=_normalize_index(index, xp_of(x.data)))


def scatter_add(g, index, shape):
    g = Tensor.wrap(g)
    return ScatterAdd.apply(g, index=_normalize_index(index, xp_of(g.data)), shape=tuple(shape))


# ------------------------------------------------------------------------- pad, concat
class Pad(Function):
    """Constant padding; the adjoint cuts the padding off again."""

    @staticmethod
    def forward(ctx, x, pad_width, value):
        return xp_of(x).pad(x, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        inner = tuple(slice(before, before + n)
                      for (before, _), n in zip(ctx.params["pad_width"], ctx.input_shapes[0]))
        return (getitem(g, inner),)


def pad(x, pad_width, value=0.0):
    """Pad with a constant. `pad_width` as in NumPy: an int, (before, after), or one pair per axis."""
    x = Tensor.wrap(x)
    if x.ndim == 0:
        return identity(x)
    try:
        width = np.broadcast_to(np.asarray(pad_width, dtype=object), (x.ndim, 2))
        width = tuple((int(b), int(a)) for b, a in width)
    except (ValueError, TypeError):
        raise ValueError(f"pad: pad_width {pad_width!r} is not an int, a (before, after) pair or one "
                         f"pair per axis of shape {x.shape}") from None
    if any(b < 0 or a < 0 for b, a in width):
        raise ValueError(f"pad: widths must be >= 0, got {pad_width!r} for shape {x.shape}")
    return Pad.apply(x, pad_width=width, value=value)


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        return xp_of(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        axis = ctx.params["axis"]
        grads, start = [], 0
        for shape, need in zip(ctx.input_shapes, ctx.needs_input_grad):
            stop = start + shape[axis]
            grads.append(getitem(g, (slice(None),) * axis + (slice(start, stop),)) if need else None)
            start = stop
        return tuple(grads)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis; all other axes must match."""
    tensors = [Tensor.wrap(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    first = tensors[0].shape
    nd = len(first)
    if nd == 0:
        raise ValueError("concatenate: 0-d tensors cannot be concatenated; use stack")
    axis = normalize_axis("concatenate", axis, nd)
    for t in tensors[1:]:
        if t.ndim != nd or any(a != b for i, (a, b) in enumerate(zip(t.shape, first)) if i != axis):
            raise ValueError(f"concatenate: shapes {first} and {t.shape} differ off axis {axis}")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join same-shaped tensors along a new axis."""
    tensors = [Tensor.wrap(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have one shape, got {tensors[0].shape} and {t.shape}")
    axis = normalize_axis("stack", axis, tensors[0].ndim + 1)
    return concatenate([unsqueeze(t, axis) for t in tensors], axis=axis)


class ToDevice(Function):
    """The same array on another device; the gradient is moved back to the source device."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.params["source"] = device_of(x)
        return to_device(x, device)

    @staticmethod
    def backward(ctx, g):
        return (g.to(ctx.params["source"]),)


def to(x, device):
    """x on `device` ('cpu' or 'cuda'); x itself if it is there already (Tensor.to).

    The move is differentiable: the gradient is moved back.
    """
    if device is None:
        raise ValueError("to: give a device, 'cpu' or 'cuda'")
    device = normalize_device(device)
    if device == x.device:
        return x
    return ToDevice.apply(x, device=device)
