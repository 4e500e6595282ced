"""The interface every minigrad optimizer shares.

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()                      # or opt.step(closure), see below
        log(opt.info)

A closure is `closure(indices=None) -> loss`: it recomputes the MEAN loss on the current batch
with the graph (grad mode on), or, given row indices into the batch, on that subset only
(sub-sampled curvature). Second-order methods call it again at trial points.

Hyperparameters are declared in optim/hyperparameters.py (default, bounds, source) and checked
whenever they are set (a ValueError names the optimizer, the hyperparameter and the value). `lr`
is settable (schedules change it) and may be a number or a callable of the step number. A
non-finite loss or gradient never reaches the parameters: the step raises FloatingPointError
naming the step and the quantity, and the parameters stay as they were.
`state_dict()` / `load_state_dict()` hold everything needed to resume bit for bit.

Data parallelism (minigrad.distributed): `opt.distribute(comm)` makes every rank's optimizer
work on the global batch. Each rank computes its loss as the MEAN over its own rows of the
global batch; before each step `opt.shard(local_rows, global_rows)` gives its weight
w_r = n_r / N, and `reduce(arrays)` forms sum_r w_r x_r over ranks in one fused allreduce: the
global mean's gradient (or factor, or curvature product), exactly what one process would compute
on the whole batch, whatever the split (a short last batch may leave a rank with n_r = 0).
With one process these are no-ops and nothing is reduced.
"""
import numpy as np

from minigrad.backend import to_device, xp_of

from .hyperparameters import check_number


def agreed(error):
    """Mark a FloatingPointError as raised on every rank alike (it tests a value reduced over the
    ranks), so that a data-parallel run may end it together instead of aborting the job."""
    error.agreed = True
    return error


def all_finite(arrays):
    """A bool array (on the arrays' device), one flag per array: all its entries are finite.
    Reading it is one host synchronization however many arrays there are."""
    xp = xp_of(arrays[0])
    return xp.stack([xp.isfinite(a).all() for a in arrays])


def loss_and_outputs(result):
    """A closure's result, `loss` or `(loss, outputs)` (a tuple or a list), as (loss, outputs)."""
    if isinstance(result, (tuple, list)):
        if len(result) != 2:
            raise ValueError(f"a closure returns loss or (loss, outputs), got {len(result)} items")
        return result[0], result[1]
    return result, None


class Optimizer:
    """Base class: parameters, step counter, per-parameter state, `info`, checkpointing."""

    name = "Optimizer"
    hyperparameters = ()   # a subclass's declarations (optim/hyperparameters.py), in order

    def __init_subclass__(cls, **kwargs):
        """Each declared hyperparameter becomes an attribute of the class that checks every value
        set (`SGD.momentum` is the declaration, `opt.momentum` the value)."""
        super().__init_subclass__(**kwargs)
        for declaration in cls.hyperparameters:
            setattr(cls, declaration.name, declaration)

    def __init__(self, params):
        params = list(params)
        if not params:
            raise ValueError(f"{self.name}: got an empty parameter list")
        for i, p in enumerate(params):
            if not getattr(p, "requires_grad", False):
                raise ValueError(f"{self.name}: parameter {i} (shape {getattr(p, 'shape', None)}) "
                                 "does not require grad")
        self.params = params
        self.state = [dict() for _ in params]
        self.steps = 0
        self.info = {}
        self.comm = None
        self.shard_weight = 1.0
        self.shard_rows = None   # (lo, hi, N) of the current step, once shard() was called

    # -- data parallelism ----------------------------------------------------------------
    def distribute(self, comm):
        """Reduce over the ranks of `comm` (a minigrad.distributed communicator); returns self."""
        self.comm = comm
        return self

    @property
    def distributed(self):
        return self.comm is not None and self.comm.world_size > 1

    def shard(self, local_rows, global_rows, first_row=0):
        """This rank holds local_rows of the step's global batch of global_rows, starting at
        row first_row of it."""
        if global_rows < 1 or not 0 <= local_rows <= global_rows or \
                not 0 <= first_row <= global_rows - local_rows:
            raise ValueError(f"{self.name}.shard: need 0 <= local_rows <= global_rows, global_rows "
                             f">= 1 and the rows inside the batch, got local_rows={local_rows}, "
                             f"global_rows={global_rows}, first_row={first_row}")
        self.shard_weight = local_rows / global_rows
        self.shard_rows = (first_row, first_row + local_rows, global_rows)

    def reduce(self, arrays, weight=None):
        """sum over ranks of weight * array (weight: this rank's share, default shard_weight),
        fused into one allreduce; the arrays themselves with one process."""
        if not self.distributed:
            return list(arrays)
        w = self.shard_weight if weight is None else weight
        return self.comm.allreduce_sum([a * w for a in arrays])

    def reduce_value(self, value, weight=None):
        """reduce() for one number (a loss): a float."""
        if not self.distributed:
            return float(value)
        w = self.shard_weight if weight is None else weight
        return self.comm.allreduce_scalars([float(value) * w])[0]

    # -- hyperparameters -----------------------------------------------------------------
    def value(self, name):
        """A hyperparameter's value at the current step (schedules are callables of the step,
        their values checked against the hyperparameter's bounds)."""
        v = getattr(self, name)
        if callable(v):
            bounds = getattr(type(self), name).bounds(self)
            v = check_number(self.name, f"{name}({self.steps})", v(self.steps), **bounds)
        return v

    # -- the loop ------------------------------------------------------------------------
    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self, closure=None):  # pragma: no cover - interface
        raise NotImplementedError

    def gradients(self):
        """The parameters' .grad arrays (zeros where none), reduced over the ranks when
        distributed (one fused allreduce), checked to be finite."""
        grads = []
        for i, p in enumerate(self.params):
            g = p.grad.data if p.grad is not None else xp_of(p.data).zeros_like(p.data)
            grads.append(g)
        grads = self.reduce(grads)
        self.check_finite("gradient", grads)
        return grads

    def check_finite(self, what, arrays):
        """FloatingPointError naming the first array that is not finite. One host
        synchronization for all of them: a flag per array, stacked on the device, read once."""
        arrays = list(arrays)
        if not arrays:
            return
        finite = all_finite(arrays)
        if bool(finite.all()):
            return
        i = int(np.argmin(to_device(finite, "cpu")))
        raise agreed(FloatingPointError(
            f"{self.name} step {self.steps + 1}: non-finite {what} (parameter {i}, shape "
            f"{tuple(arrays[i].shape)}); the parameters were left unchanged"))

    def check_finite_loss(self, loss):
        """The loss as a float; FloatingPointError if it is not finite. Distributed, call it on
        reduced values only (every rank must raise alike)."""
        value = float(loss.item() if hasattr(loss, "item") else loss)
        if not np.isfinite(value):
            raise agreed(FloatingPointError(f"{self.name} step {self.steps + 1}: non-finite loss "
                                            f"{value}; the parameters were left unchanged"))
        return value

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self):
        """Host copies of the step count, hyperparameters and per-parameter state."""
        hyper = {h.name: getattr(self, h.name) for h in self.hyperparameters
                 if not callable(getattr(self, h.name))}   # a schedule is the caller's to rebuild
        state = [{k: (np.array(to_device(v, "cpu"), copy=True) if hasattr(v, "shape") else v)
                  for k, v in s.items()} for s in self.state]
        return {"name": self.name, "steps": self.steps, "hyperparameters": hyper, "state": state}

    def load_state_dict(self, saved):
        if saved.get("name") != self.name:
            raise ValueError(f"{self.name}.load_state_dict: the state is of a {saved.get('name')!r}")
        if len(saved["state"]) != len(self.params):
            raise ValueError(f"{self.name}.load_state_dict: the state has {len(saved['state'])} "
                             f"parameters, this optimizer {len(self.params)}")
        self._load_hyperparameters(saved["hyperparameters"])
        self.steps = int(saved["steps"])
        self.state = []
        for p, s in zip(self.params, saved["state"]):
            self.state.append({k: (to_device(np.array(v, copy=True), p.device) if hasattr(v, "shape") else v)
                               for k, v in s.items()})

    def _load_hyperparameters(self, saved):
        """Check every saved value against its declaration (a bound naming another hyperparameter
        against the saved one), all before setting any, so that a refused checkpoint changes
        nothing; then set them in the declarations' order (a bound's hyperparameter first)."""
        owner = f"{self.name}.load_state_dict"
        unknown = set(saved) - {h.name for h in self.hyperparameters}
        if unknown:
            raise ValueError(f"{owner}: the state has hyperparameters {self.name} does not have: "
                             f"{sorted(unknown)}")
        given = {h.name: getattr(self, h.name) for h in self.hyperparameters}
        given.update(saved)
        for h in self.hyperparameters:
            if h.name in saved:
                h.check(owner, saved[h.name], given)
        for h in self.hyperparameters:
            if h.name in saved:
                setattr(self, h.name, saved[h.name])
