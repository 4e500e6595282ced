"""Running a module with other tensors in place of its parameters."""
from contextlib import contextmanager


@contextmanager
def parameters_replaced(module, tensors):
    """Inside the block, `module` uses `tensors` ({dotted name: Tensor}) instead of those
    parameters, and its own come back on exit however it ends. For checking a module's
    derivatives in other copies of its parameters (gradcheck's float64 copies), or evaluating
    it at trial parameters without touching the originals."""
    saved = []
    try:
        for name, t in tensors.items():
            *path, attr = name.split(".")
            owner = module
            for part in path:
                owner = getattr(owner, part)
            if attr not in owner._parameters:
                raise KeyError(f"parameters_replaced: {type(module).__name__} has no parameter {name!r}")
            saved.append((owner, attr, owner._parameters[attr]))
            owner._parameters[attr] = t
        yield module
    finally:
        for owner, attr, p in reversed(saved):
            owner._parameters[attr] = p
