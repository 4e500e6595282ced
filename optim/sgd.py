"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

The usual framework semantics, so that a trajectory matches the reference step for step:

    g <- grad + weight_decay * theta
    b <- g                                   on the first step
    b <- momentum * b + (1 - dampening) * g  afterwards
    d <- g + momentum * b  (nesterov)   or   d <- b   (momentum > 0)   or   d <- g
    theta <- theta - lr * d
"""
from minigrad import enable_grad

from .hyperparameters import SGD_HYPERPARAMETERS
from .optimizer import Optimizer, loss_and_outputs


class SGD(Optimizer):
    """SGD on `params`; the hyperparameters' meaning, bounds and the sources of their defaults
    are declared in optim/hyperparameters.py (SGD.hyperparameters)."""

    name = "SGD"
    hyperparameters = SGD_HYPERPARAMETERS

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        super().__init__(params)
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.dampening = dampening
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"{self.name}: nesterov needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum}, dampening={dampening}")

    def step(self, closure=None):
        """One update from the parameters' .grad (or from closure(): loss, then its backward)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss, _ = loss_and_outputs(closure())
            value = self.check_finite_loss(self.reduce_value(float(loss.item())))
            self.zero_grad()
            loss.backward()
        grads = self.gradients()
        lr = self.value("lr")
        updates = []
        for p, g, state in zip(self.params, grads, self.state):
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                if "momentum_buffer" not in state:
                    buf = g.copy()
                else:
                    buf = self.momentum * state["momentum_buffer"] + (1 - self.dampening) * g
                updates.append((state, buf))
                g = g + self.momentum * buf if self.nesterov else buf
            p.data = p.data - lr * g
        for state, buf in updates:
            state["momentum_buffer"] = buf
        self.steps += 1
        self.info = {"lr": lr}
        if loss is not None:
            self.info["loss"] = value
        return loss
