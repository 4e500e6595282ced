"""Exact curvature-matrix products: Hessian, generalized Gauss-Newton, Fisher (true and empirical).

All three come from `minigrad.grad` on a graph recorded with `create_graph=True`; nothing is
approximated. Notation: theta the parameters, z = f(theta) the outputs (logits), shape (N, ...),
L(z) the loss, J = dz/dtheta, H_L = d^2 L / dz^2.

- Hessian (Pearlmutter 1994): H v = d/dtheta (g . v), g = dL/dtheta, by double backward.
- GGN (Schraudolph 2002; Martens 2010): G v = J^T H_L J v. J^T u is one vector-Jacobian product
  (vjp); J v needs a Jacobian-vector product, which a reverse-mode engine gets by the double-vjp
  trick: J^T u = grad(z, theta, u, create_graph=True) is linear in a dummy u, so its vjp with v,
  grad(J^T u, u, v) = J v, whatever the value of u.
- Fisher: see `fisher_vp`.

Vectors are lists of Tensors (or arrays) shaped like the params; results are lists of Tensors.
The graph of the loss is kept (retain_graph), so products can be taken again on it.
"""
from ..autograd import grad
from ..backend import xp_of
from ..derivative_order import curvature_product
from ..elementwise import const
from ..functional.activation import softmax
from ..functional.loss import class_labels
from ..tensor import Tensor

LOSSES = ("cross_entropy", "mse")
KINDS = ("true", "empirical")


def zeros_like_data(t):
    return const(xp_of(t.data).zeros_like(t.data))


def check_vectors(where, params, vectors):
    """`vectors` as a list of Tensors matching `params` in number, shape and device."""
    if isinstance(vectors, Tensor) or not isinstance(vectors, (list, tuple)):
        vectors = [vectors]
    if len(vectors) != len(params):
        raise ValueError(f"{where}: got {len(vectors)} vectors for {len(params)} params")
    out = []
    for i, (p, v) in enumerate(zip(params, vectors)):
        v = Tensor.wrap(v)
        if v.shape != p.shape:
            raise ValueError(f"{where}: vectors[{i}] has shape {v.shape}, expected {p.shape} "
                             f"(the shape of params[{i}])")
        if v.device != p.device:
            raise ValueError(f"{where}: vectors[{i}] is on {v.device} but params[{i}] is on {p.device}")
        out.append(v)
    return out


def check_params(where, params):
    params = [params] if isinstance(params, Tensor) else list(params)
    if not params:
        raise ValueError(f"{where}: params is empty")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or not p.requires_grad:
            what = type(p).__name__ if not isinstance(p, Tensor) else f"Tensor of shape {p.shape}"
            raise ValueError(f"{where}: params[{i}] must be a Tensor that requires grad, got a {what}")
    return params


def check_scalar(where, loss):
    if not isinstance(loss, Tensor) or loss.size != 1:
        what = f"shape {loss.shape}" if isinstance(loss, Tensor) else f"a {type(loss).__name__}"
        raise ValueError(f"{where}: loss must be a scalar Tensor, got {what}")
    if not loss.requires_grad:
        raise ValueError(f"{where}: loss does not require grad (was it built inside no_grad()?)")


def vjp(outputs, inputs, cotangents, create_graph=False):
    """sum_i cotangents[i]^T d outputs[i] / d inputs, one Tensor per input, zero where there is no
    path (an output that is None or constant, e.g. the gradient of a loss linear in a parameter).
    The graph is retained."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o is not None and o.requires_grad]
    if not pairs:
        return [zeros_like_data(t) for t in inputs]
    with curvature_product():  # hooks that record gradients (nn.capture) skip these walks
        got = grad([o for o, _ in pairs], inputs, grad_outputs=[c for _, c in pairs],
                   retain_graph=True, create_graph=create_graph, allow_unused=True)
    return [zeros_like_data(t) if g is None else g for g, t in zip(got, inputs)]


def transpose_jacobian(outputs, params):
    """(u, J^T u): a dummy u shaped like the outputs and J^T u recorded as a function of u.

    u's value never matters (J^T u is linear in it); zeros keep it cheap to make."""
    u = Tensor(xp_of(outputs.data).zeros_like(outputs.data), requires_grad=True)
    return u, vjp([outputs], params, [u], create_graph=True)


def jvp(u, jtu, vectors):
    """J v = d (J^T u . v) / du, the double-vjp trick."""
    return vjp(jtu, [u], vectors)[0]


def output_matrix(outputs, labels, loss, kind, where):
    """The (N, ...)-blockwise matrix M of the Fisher in output space, F = J^T M J, as a function
    acting on the outputs-shaped array Jv. See `fisher_vp` for the formulas."""
    if loss not in LOSSES:
        raise ValueError(f"{where}: loss must be one of {LOSSES}, got {loss!r}")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    z = outputs.data
    xp = xp_of(z)
    n = z.shape[0] if z.ndim else 1
    per_example = z.size // max(n, 1)  # D, the elements of one example
    if kind == "empirical" and labels is None:
        raise ValueError(f"{where}: kind='empirical' needs the labels (targets for loss='mse')")
    if loss == "cross_entropy":
        if z.ndim != 2:
            raise ValueError(f"{where}: loss='cross_entropy' needs outputs of shape (N, C), got {z.shape}")
        p = softmax(const(z), axis=1).data
        if kind == "true":
            return lambda a: (p * a - p * (p * a).sum(axis=1, keepdims=True)) / n
        r = p.copy()
        r[xp.arange(n), class_labels(where, labels, outputs)] -= 1
    else:
        if kind == "true":
            return lambda a: a * (2.0 / z.size)
        target = labels.data if isinstance(labels, Tensor) else xp.asarray(labels)
        if target.shape != z.shape:
            raise ValueError(f"{where}: targets have shape {target.shape}, outputs {z.shape}")
        r = (z - target) * (2.0 / per_example)
    axes = tuple(range(1, z.ndim))
    return lambda a: r * (r * a).sum(axis=axes, keepdims=True) / n


def hvp(loss, params, vectors):
    """H v for the Hessian H = d^2 loss / dtheta^2, exactly, by double backward:
    g = grad(loss, theta, create_graph=True); H v = grad(g, theta, grad_outputs=v)."""
    check_scalar("hvp", loss)
    params = check_params("hvp", params)
    vectors = check_vectors("hvp", params, vectors)
    g = vjp([loss], params, [None], create_graph=True)
    return vjp(g, params, vectors)


def ggn_vp(loss, outputs, params, vectors):
    """G v = J^T H_L J v, the generalized Gauss-Newton product (Schraudolph 2002, Martens 2010).

    J v by the double-vjp trick, H_L (J v) by double backward of the loss in the outputs,
    then one vjp J^T(...). G is the Hessian without the term sum_k dL/dz_k d^2 z_k/dtheta^2,
    so it equals H for a model linear in theta, and is PSD whenever the loss is convex in z."""
    check_scalar("ggn_vp", loss)
    params = check_params("ggn_vp", params)
    vectors = check_vectors("ggn_vp", params, vectors)
    u, jtu = transpose_jacobian(outputs, params)
    dloss = vjp([loss], [outputs], [None], create_graph=True)
    hjv = vjp(dloss, [outputs], [jvp(u, jtu, vectors)])[0]
    return vjp([outputs], params, [hjv])


def fisher_vp(outputs, params, vectors, labels=None, loss="cross_entropy", kind="true"):
    """F v for the Fisher of the MEAN loss over the N rows of `outputs`, L = (1/N) sum_n l_n(z_n).

    kind="true": the Fisher information of the model's predictive distribution,
    F = (1/N) sum_n J_n^T E_{y ~ p(y|z_n)}[r r^T] J_n with r = dl_n/dz_n. For softmax
    cross-entropy E[r r^T] = diag(p_n) - p_n p_n^T (p_n = softmax(z_n)), which is also the
    Hessian of l_n in z_n: the loss is the negative log-likelihood of an exponential family in
    its natural parameter z, so the true Fisher EQUALS the GGN (Martens 2014). For MSE
    (F.mse_loss, mean over all N*D elements, so l_n = |z_n - t_n|^2 / D) the loss is the
    negative log-likelihood of a Gaussian of variance D/2 per element, for which the same
    argument gives F = G = J^T (2 / (N D)) J. Labels are not used.

    kind="empirical": F_emp = (1/N) sum_n g_n g_n^T with g_n = J_n^T r_n the gradient of example
    n's own loss at the TRUE labels (r_n = softmax(z_n) - onehot(y_n) for cross-entropy,
    2 (z_n - t_n) / D for MSE). Computed without a loop over examples:
    F_emp v = J^T [r_n (r_n . (J v)_n) / N]. It is a second moment of gradients, NOT a
    curvature matrix in general: it matches the Fisher only where the model's predictions
    match the labels' distribution, and it is rank <= N. `labels`: integer classes (N,) for
    cross-entropy, targets shaped like the outputs for MSE.
    """
    params = check_params("fisher_vp", params)
    vectors = check_vectors("fisher_vp", params, vectors)
    matrix = output_matrix(outputs, labels, loss, kind, "fisher_vp")
    u, jtu = transpose_jacobian(outputs, params)
    mjv = const(matrix(jvp(u, jtu, vectors).data))
    return vjp([outputs], params, [mjv])
