"""02. Three things the graph walk does for every op: undo broadcasting, add up the gradients of a
reused tensor, and visit each node only once all its gradients have arrived.

1. Broadcasting. x (3, 1) + b (4,) gives a (3, 4) result, so the gradient that flows back is
   (3, 4) too. Each element of b was used 3 times (once per row), so its gradient is the sum of
   those 3 contributions: the output gradient summed over the broadcast axes ("sum_to").
   The walk does this on every edge, so no op has to.
2. Reuse. In y = x * x + x the tensor x feeds three edges; dy/dx = x + x + 1 is the SUM of
   what comes back along each (the multivariate chain rule).
3. Order. The walk sorts the graph topologically (a depth-first search from the output, reversed
   post-order; written as a loop, not a recursion, so a 10000-op chain is fine) and visits it
   outputs first. A node therefore runs its backward once, on the sum of everything that reached
   it. Tensor hooks (register_hook) show the order in which gradients arrive.
"""
import numpy as np

import minigrad as mg

rng = np.random.default_rng(0)
f64 = mg.float64

# -- 1. broadcasting undone by summing over the broadcast axes --------------------------------
x = mg.tensor(rng.standard_normal((3, 1)), requires_grad=True)
b = mg.tensor(rng.standard_normal(4), requires_grad=True)
c = rng.standard_normal((3, 4))                      # dL/d(result), a fixed output gradient
gx, gb = mg.grad(((x * b + b) * mg.tensor(c)).sum(), [x, b])
print("broadcasting: x", x.shape, "b", b.shape, "-> result", (x * b).shape)
print("  grad x", gx.shape, " grad b", gb.shape, " (the inputs' shapes, not the result's)")
# d/dx of sum c * (x b + b) = sum over the broadcast axis 1 of c * b, kept as a column
assert gx.shape == (3, 1) and gb.shape == (4,)
np.testing.assert_allclose(gx.numpy(), (c * b.numpy()).sum(axis=1, keepdims=True),
                           rtol=1e-12, atol=1e-14)
# d/db: b was broadcast over axis 0, so the gradient is summed over axis 0
np.testing.assert_allclose(gb.numpy(), (c * x.numpy() + c).sum(axis=0), rtol=1e-12, atol=1e-14)

# -- 2. a reused tensor: the gradients of its edges are added -------------------------------
x = mg.tensor(np.array([0.5, -2.0, 3.0]), requires_grad=True)
(g,) = mg.grad((x * x + x).sum(), x)
print("reuse: d(x*x + x)/dx =", g.numpy(), " 2x + 1 =", 2 * x.numpy() + 1)
np.testing.assert_array_equal(g.numpy(), 2 * x.numpy() + 1)
# .backward() accumulates into .grad across calls too (that is why optimizers zero_grad())
(x * 3.0).sum().backward()
(x * 4.0).sum().backward()
np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 7.0))

# -- 3. the order of the walk, seen through hooks -------------------------------------------
#        x -> a = exp(x) -> p = 2 a   \
#                        -> q = a^2   -> d = p + q -> out = sum(d)
x = mg.tensor(np.array([0.1, 0.2]), requires_grad=True)
a = x.exp()
p, q = a * 2.0, a ** 2
d = p + q
arrivals = []
for name, t in (("a", a), ("p", p), ("q", q), ("d", d)):
    t.register_hook(lambda grad, name=name: arrivals.append((name, grad.numpy().copy())))
(gx,) = mg.grad(d.sum(), x)
print("walk order:", " -> ".join(name for name, _ in arrivals))
names = [name for name, _ in arrivals]
assert names[0] == "d" and names[-1] == "a" and names.count("a") == 1   # a: once, after p and q
got_a = arrivals[-1][1]
np.testing.assert_allclose(got_a, 2.0 + 2 * a.numpy(), rtol=1e-15)     # dp/da + dq/da, summed
np.testing.assert_allclose(gx.numpy(), (2.0 + 2 * a.numpy()) * a.numpy(), rtol=1e-15)
print("  a received", got_a, "= 2 + 2a, the two edges' sum, in one visit")

# -- a long chain: the sort is a loop, so depth is not limited by Python's recursion limit --
x = mg.tensor(1.0, dtype=f64, requires_grad=True)
y = x
for _ in range(10_000):
    y = y * 1.0001
(g,) = mg.grad(y, x)
print(f"10000-op chain: dy/dx = {g.item():.6f}, 1.0001^10000 = {1.0001 ** 10_000:.6f}")
assert np.isclose(g.item(), 1.0001 ** 10_000, rtol=1e-10)
print("ok: broadcast gradients summed back, reused gradients added, each node visited once")
