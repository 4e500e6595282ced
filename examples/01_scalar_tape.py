"""01. Reverse mode by hand: a scalar expression on a tape.

    f(a, b) = tanh(a b + b^2) exp(a)

Forward: evaluate f one primitive at a time and write each step on a tape: its value, and the
derivative of its output with respect to each of its inputs (the "local" derivatives).
Backward: start from adjoint(f) = df/df = 1 and walk the tape from the end; each step adds

    adjoint(input) += adjoint(output) * d output / d input

to each of its inputs (the chain rule, one edge at a time). When the walk reaches the inputs,
adjoint(a) = df/da and adjoint(b) = df/db. That is all of reverse mode; minigrad.grad does the
same on tensors, with ops in place of these hand-written steps. We check the hand tape against
minigrad.grad and against central finite differences.
"""
import math

import minigrad as mg

a0, b0 = 0.7, -1.3

# -- forward: each step records (output name, [(input name, d output / d input), ...]) --------
values = {"a": a0, "b": b0}
tape = []


def record(name, value, local):
    values[name] = value
    tape.append((name, local))


record("u", a0 * b0, [("a", b0), ("b", a0)])                            # u = a b
record("v", b0 ** 2, [("b", 2 * b0)])                                   # v = b^2
record("w", values["u"] + values["v"], [("u", 1.0), ("v", 1.0)])        # w = u + v
record("t", math.tanh(values["w"]), [("w", 1 - math.tanh(values["w"]) ** 2)])  # t = tanh w
record("e", math.exp(a0), [("a", math.exp(a0))])                        # e = exp a
record("f", values["t"] * values["e"], [("t", values["e"]), ("e", values["t"])])  # f = t e

print("forward:")
for name, local in tape:
    print(f"  {name} = {values[name]:+.6f}   local derivatives "
          + ", ".join(f"d{name}/d{i} = {d:+.4f}" for i, d in local))

# -- backward: walk the tape in reverse, pushing each adjoint to the inputs of its step -------
adjoint = dict.fromkeys(values, 0.0)
adjoint["f"] = 1.0
print("backward (from the end of the tape):")
for name, local in reversed(tape):
    for inp, d in local:
        adjoint[inp] += adjoint[name] * d        # += : a and b feed two steps each
    print(f"  {name}: adjoint {adjoint[name]:+.6f} sent to "
          + ", ".join(f"{i} (x {d:+.4f})" for i, d in local))
print(f"hand tape:       df/da = {adjoint['a']:+.12f}   df/db = {adjoint['b']:+.12f}")

# -- the same with minigrad: the ops build the tape, grad() walks it -------------------------
a = mg.tensor(a0, dtype=mg.float64, requires_grad=True)
b = mg.tensor(b0, dtype=mg.float64, requires_grad=True)
f = (a * b + b ** 2).tanh() * a.exp()
ga, gb = mg.grad(f, [a, b])
print(f"minigrad.grad:   df/da = {ga.item():+.12f}   df/db = {gb.item():+.12f}")


# -- central differences: (f(x + eps) - f(x - eps)) / (2 eps), error O(eps^2) --------------
def f_plain(a, b):
    return math.tanh(a * b + b ** 2) * math.exp(a)


eps = 1e-6
fd_a = (f_plain(a0 + eps, b0) - f_plain(a0 - eps, b0)) / (2 * eps)
fd_b = (f_plain(a0, b0 + eps) - f_plain(a0, b0 - eps)) / (2 * eps)
print(f"finite diff.:    df/da = {fd_a:+.12f}   df/db = {fd_b:+.12f}")

assert math.isclose(f.item(), values["f"], rel_tol=1e-14)
assert math.isclose(ga.item(), adjoint["a"], rel_tol=1e-14)
assert math.isclose(gb.item(), adjoint["b"], rel_tol=1e-14)
assert math.isclose(fd_a, adjoint["a"], rel_tol=1e-8)
assert math.isclose(fd_b, adjoint["b"], rel_tol=1e-8)
print("ok: the hand tape, minigrad.grad and finite differences agree")
