"""The README's quick start: a gradient and a Hessian-vector product of a small model."""
import numpy as np

import minigrad as mg

rng = np.random.default_rng(0)
X = mg.tensor(rng.standard_normal((64, 5)))                  # NumPy arrays keep their dtype
y = mg.tensor(rng.standard_normal(64))
w = mg.tensor(rng.standard_normal(5), requires_grad=True)    # the parameters

loss = (((X @ w).tanh() - y) ** 2).mean()
(g,) = mg.grad(loss, w, create_graph=True)                   # gradient, recorded on the tape
v = mg.tensor(rng.standard_normal(5))
(hv,) = mg.grad((g * v).sum(), w)                            # Hessian-vector product H v
print("loss", loss.item())
print("gradient", g.numpy())
print("H v", hv.numpy())
