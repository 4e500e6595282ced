"""`Module`, `Parameter` and `Sequential`: the containers every layer and model is made of.

A Module registers what is assigned to its attributes: a `Parameter` becomes a parameter,
a `Module` a submodule, and `register_buffer` adds a named array that is state but not a
parameter (BatchNorm's running statistics). Names are dotted paths, as in PyTorch
(`layers.0.weight`), and `state_dict` / `load_state_dict` use them.
"""
from collections import OrderedDict

import numpy as np

from ..backend import normalize_device, to_device, xp_of
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and that a Module registers as its parameter."""

    def __init__(self, data, requires_grad=True, dtype=None, device=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _Handle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Module:
    """Base class of layers and models: subclasses set attributes in __init__ and define forward."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration --------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning {name!r}")
        if name in self._buffers:
            if isinstance(value, Parameter):
                raise TypeError(f"{type(self).__name__}: {name!r} is a buffer; a Parameter cannot "
                                "replace it (delete it first)")
            if value is None or hasattr(value, "shape"):
                self._buffers[name] = value  # a new array for a registered buffer stays a buffer
                return
        if name in self._parameters and not isinstance(value, Parameter) and value is not None:
            raise TypeError(f"{type(self).__name__}: {name!r} is a parameter; assign a Parameter "
                            f"or None, not a {type(value).__name__}")
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        for store in ("_parameters", "_modules", "_buffers"):
            items = self.__dict__.get(store)
            if items is not None and name in items:
                return items[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._modules, self._buffers):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep `array` (a backend array, or None) as named state: saved, loaded and moved with
        the module, but not a parameter."""
        if name in self._parameters or name in self._modules or (
                name in self.__dict__ and name not in self._buffers):
            raise KeyError(f"{type(self).__name__}.register_buffer: attribute {name!r} already exists")
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"{type(self).__name__}.register_parameter: {name!r} must be a Parameter "
                            f"or None, got {type(param).__name__}")
        if name in self._buffers or name in self._modules:
            raise KeyError(f"{type(self).__name__}.register_parameter: attribute {name!r} already exists")
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # -- traversal -----------------------------------------------------------------------
    def named_modules(self, prefix=""):
        """(name, module) for this module and every submodule, depth first, each once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items()
                        if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter, each once even if shared."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for mod_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    # -- modes, devices, gradients ---------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to `device` ('cpu' or 'cuda'), in place; returns self."""
        device = normalize_device(device)
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = p.grad.to(device)
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = to_device(b, device)
        return self

    # -- state -----------------------------------------------------------------------------
    def state_dict(self):
        """Ordered {dotted name: host NumPy copy} of every parameter and buffer."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = np.array(to_device(p.data, "cpu"), copy=True)
        for name, b in self.named_buffers():
            state[name] = np.array(to_device(b, "cpu"), copy=True)
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays from `state` into the parameters and buffers (in their dtype and device).

        With strict=True, missing and unexpected keys are an error that lists them; a shape
        mismatch is always an error. Nothing is changed unless everything fits.
        """
        targets = dict(self.named_parameters())
        buffers = {}
        for mod_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    buffers[f"{mod_name}.{name}" if mod_name else name] = (module, name)
        expected = set(targets) | set(buffers)
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        wrong = []
        for key in sorted(expected & set(state)):
            have = targets[key].shape if key in targets else buffers[key][0]._buffers[buffers[key][1]].shape
            got = tuple(np.shape(state[key]))
            if tuple(have) != got:
                wrong.append(f"{key}: expected {tuple(have)}, got {got}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if wrong:
            problems.append("mis-shaped " + "; ".join(wrong))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + ", ".join(problems))
        staged = []  # convert everything first, so that a failure changes nothing
        for key in sorted(expected & set(state)):
            value = state[key].data if isinstance(state[key], Tensor) else state[key]
            value = np.asarray(to_device(value, "cpu"))
            if value.dtype.kind not in "fiub":
                raise ValueError(f"load_state_dict into {type(self).__name__}: {key} has dtype "
                                 f"{value.dtype}, not numbers")
            if key in targets:
                staged.append((targets[key], None, value.astype(targets[key].dtype)))
            else:
                module, name = buffers[key]
                staged.append((module, name, value.astype(module._buffers[name].dtype)))
        for owner, name, value in staged:
            if name is None:  # a Parameter: copy into its array, so that views of it stay valid
                try:
                    owner.data[...] = to_device(value, owner.device)
                except ValueError:  # a read-only array (a broadcast view someone assigned)
                    owner.data = to_device(value, owner.device)
            else:
                old = owner._buffers[name]
                owner._buffers[name] = to_device(value, "cpu" if xp_of(old) is np else "cuda")
        return missing, unexpected

    # -- calling ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def register_forward_hook(self, hook):
        """Call `hook(module, inputs, output)` after every forward; a non-None return replaces
        the output. Returns a handle whose `remove()` undoes it."""
        key = object()
        self._forward_hooks[key] = hook
        return _Handle(self._forward_hooks, key)

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            replacement = hook(self, args, out)
            if replacement is not None:
                out = replacement
        return out

    # -- printing --------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


class Sequential(Module):
    """Modules applied in order; indexable (`model[0]`, `model[1:]`), with a length."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        try:
            return items[index]
        except (IndexError, TypeError):
            raise IndexError(f"Sequential: index {index!r} out of range for {len(items)} modules") from None

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of submodules, registered under their positions."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __getitem__(self, index):
        return list(self._modules.values())[index]
