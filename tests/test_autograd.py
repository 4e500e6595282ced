"""The tape itself: grad()/backward() semantics, grad mode, hooks, freeing, deep graphs, dtypes."""
import gc
import importlib.util
import weakref

import numpy as np
import pytest

import minigrad as mg


def t64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# ------------------------------------------------------------------------------ creation
def test_tensor_dtype_rules():
    assert mg.tensor([1.0, 2.0]).dtype == np.float32
    assert mg.tensor(3.5).dtype == np.float32
    assert mg.tensor(np.zeros(3, np.float64)).dtype == np.float64
    assert mg.tensor([1, 2]).dtype == np.int64
    assert mg.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert mg.tensor([True, False]).dtype == np.bool_


def test_set_default_dtype_changes_python_numbers_only():
    try:
        mg.set_default_dtype(np.float64)
        assert mg.tensor([1.0]).dtype == np.float64
        assert mg.tensor(np.zeros(2, np.float32)).dtype == np.float32
        assert mg.zeros(2).dtype == np.float64
    finally:
        mg.set_default_dtype(np.float32)
    assert mg.tensor([1.0]).dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        mg.set_default_dtype(np.int32)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        mg.tensor([1, 2], requires_grad=True)
    x = mg.tensor([1, 2])
    with pytest.raises(TypeError, match="floating"):
        x.requires_grad = True


def test_python_scalars_keep_the_tensor_dtype():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    for y in (x * 2.0, 2.0 * x, x + 1, 1 - x, x / 3.0, x ** 2, 2.0 ** x, -x):
        assert y.dtype == np.float32, y


def test_data_is_assignable_and_numpy_item_work():
    x = mg.tensor([1.0, 2.0])
    x.data = np.array([3.0, 4.0], np.float32)
    np.testing.assert_array_equal(x.numpy(), [3.0, 4.0])
    assert mg.tensor([[5.0]]).item() == 5.0
    with pytest.raises(ValueError, match="one element"):
        x.item()
    assert x.shape == (2,) and x.ndim == 1 and x.device == "cpu"


def test_detach_cuts_the_graph():
    x = t64([1.0, 2.0])
    y = (x * x).detach()
    assert not y.requires_grad and y.is_leaf
    z = (x * y).sum()
    (g,) = mg.grad(z, x)
    np.testing.assert_allclose(g.data, [1.0, 4.0])  # y treated as a constant


# ------------------------------------------------------------------------- grad semantics
def test_grad_of_reused_tensor_accumulates():
    x = t64([0.5, -1.5, 2.0])
    y = (x * x + x * 3.0 + x).sum()  # d/dx = 2x + 4
    (g,) = mg.grad(y, x)
    np.testing.assert_allclose(g.data, 2 * x.data + 4)


def test_same_tensor_twice_in_one_op():
    x = t64([3.0])
    (g,) = mg.grad((x * x).sum(), x)
    np.testing.assert_allclose(g.data, [6.0])


def test_grad_outputs_and_nonscalar_error():
    x = t64([1.0, 2.0, 3.0])
    y = x * x
    with pytest.raises(RuntimeError, match="shape \\(3,\\)"):
        mg.grad(y, x)
    with pytest.raises(RuntimeError, match="grad"):
        y.backward()
    (g,) = mg.grad(y, x, grad_outputs=t64([1.0, 0.0, -1.0], False))
    np.testing.assert_allclose(g.data, [2.0, 0.0, -6.0])
    with pytest.raises(ValueError, match="shape"):
        mg.grad(x * x, x, grad_outputs=t64([1.0, 2.0], False))


def test_allow_unused_and_not_requiring_grad():
    x, z = t64([1.0]), t64([2.0])
    y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="inputs\\[1\\].*not part of the graph"):
        mg.grad(y, [x, z], retain_graph=True)
    gx, gz = mg.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx.item() == 2.0
    c = t64([1.0], requires_grad=False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.grad((x * c).sum(), c)


def test_grad_does_not_touch_dot_grad_but_backward_accumulates():
    x = t64([1.0, 2.0])
    mg.grad((x * x).sum(), x)
    assert x.grad is None
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)


def test_grad_with_respect_to_intermediate():
    x = t64([1.0, 2.0])
    h = x.exp()
    y = (h * h).sum()
    gh, gx = mg.grad(y, [h, x])
    np.testing.assert_allclose(gh.data, 2 * np.exp(x.data))
    np.testing.assert_allclose(gx.data, 2 * np.exp(2 * x.data))


def test_multiple_outputs():
    x = t64([1.0, 2.0])
    a, b = (x * x).sum(), (x * 5.0).sum()
    (g,) = mg.grad([a, b], x)
    np.testing.assert_allclose(g.data, 2 * x.data + 5)


# ------------------------------------------------------------------------ higher orders
def test_third_derivative_of_x_to_the_fourth():
    x = t64([1.5, -2.0])
    y = (x ** 4).sum()
    (g1,) = mg.grad(y, x, create_graph=True)
    (g2,) = mg.grad(g1.sum(), x, create_graph=True)
    (g3,) = mg.grad(g2.sum(), x)
    np.testing.assert_allclose(g1.data, 4 * x.data ** 3)
    np.testing.assert_allclose(g2.data, 12 * x.data ** 2)
    np.testing.assert_allclose(g3.data, 24 * x.data)


def test_backward_create_graph_gives_differentiable_grad():
    x = t64([0.3, 0.7])
    (x.tanh() * x).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = mg.grad(x.grad.sum(), x)
    t = np.tanh(x.data)
    d1 = 1 - t ** 2
    np.testing.assert_allclose(h.data, 2 * d1 + x.data * (-2 * t * d1))


def test_without_create_graph_the_gradient_has_no_graph():
    x = t64([1.0, 2.0])
    (g,) = mg.grad((x ** 3).sum(), x)
    assert not g.requires_grad and g.is_leaf


# ---------------------------------------------------------------------------- grad mode
def test_no_grad_records_nothing_and_enable_grad_restores():
    x = t64([1.0])
    with mg.no_grad():
        y = x * 2.0
        with mg.enable_grad():
            z = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and not z.is_leaf
    assert mg.is_grad_enabled()

    @mg.no_grad()
    def f(t):
        return t * t

    assert not f(x).requires_grad


# -------------------------------------------------------------------------------- hooks
def test_leaf_hook_sees_and_replaces_the_gradient():
    x = t64([1.0, 2.0])
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.data.copy()))
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    handle.remove()
    x.grad = None
    x.register_hook(lambda g: g * 0.0)
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, [0.0, 0.0])
    assert len(seen) == 1


def test_intermediate_hook_replacement_flows_downstream():
    x = t64([1.0, 2.0])
    h = x * 2.0
    h.register_hook(lambda g: g * 10.0)
    (g,) = mg.grad((h * h).sum(), x)  # d/dh = 2h, replaced by 20h; dx = 2 * 20h
    np.testing.assert_allclose(g.data, 40 * h.data)


def test_hook_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).register_hook(lambda g: g)


# ------------------------------------------------------------------ freeing and retaining
def test_backward_frees_saved_buffers():
    x = t64(np.ones(1000))
    h = x.exp()  # kept alive only by the tape (Mul saves it)
    y = (h * h).sum()
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is not None
    y.backward()
    gc.collect()
    assert ref() is None


def test_second_backward_needs_retain_graph():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    x.grad = None
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.exp(x.data) * (1 + x.data))


def test_deep_chain_has_no_recursion_limit():
    x = t64([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0001 ** 10_000], rtol=1e-9)


def test_deep_chain_second_order():
    x = t64([0.5])
    y = x
    for _ in range(3000):
        y = y + x * x * 1e-3  # y = x + 3 x^2
    (g,) = mg.grad(y.sum(), x, create_graph=True)
    (h,) = mg.grad(g.sum(), x)
    np.testing.assert_allclose(g.data, [1 + 6 * 0.5], rtol=1e-9)
    np.testing.assert_allclose(h.data, [6.0], rtol=1e-9)


# ------------------------------------------------------------------------------ devices
@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_names_the_install_command():
    with pytest.raises(RuntimeError, match="pip install cupy-cuda12x"):
        mg.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="pip install cupy-cuda12x"):
        mg.tensor([1.0]).to("cuda")


def test_to_cpu_is_identity_and_bad_device_is_an_error():
    x = mg.tensor([1.0])
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")


# ------------------------------------------------------------------------------- layout
def test_weight_gradients_come_out_row_major_like_the_weights():
    """x @ W.T makes W.T a transposed view; its gradient must still land row-major on W,
    and the Hessian-vector product too (updates and flattening then run on contiguous memory)."""
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((8, 5)))
    W = t64(rng.standard_normal((4, 5)))
    loss = ((x @ W.T).tanh() ** 2).sum()
    (g,) = mg.grad(loss, W, create_graph=True)
    (hv,) = mg.grad((g * mg.tensor(rng.standard_normal((4, 5)))).sum(), W)
    assert g.data.flags.c_contiguous and hv.data.flags.c_contiguous
    z = np.tanh(x.data @ W.data.T)
    np.testing.assert_allclose(g.data, (2 * z * (1 - z ** 2)).T @ x.data, rtol=1e-12)


# ------------------------------------------------- graph-walk semantics (as in PyTorch)
def test_grad_of_an_intermediate_does_not_free_the_graph_below_it():
    x = t64([1.0, 2.0])
    h = x * x
    l1, l2 = h.sum(), (h * 3.0).sum()
    (gh,) = mg.grad(l1, h)  # stops at h: h's own backward never ran, so nothing below is freed
    np.testing.assert_allclose(gh.data, [1.0, 1.0])
    l2.backward()
    np.testing.assert_allclose(x.grad.data, 6 * x.data)


def test_backward_then_grad_of_an_intermediate_of_another_branch():
    x = t64([1.0, 2.0])
    h = x * x
    l1, l2 = h.sum(), (h * 3.0).sum()
    l1.backward()  # frees the Mul that made h
    (gh,) = mg.grad(l2, h)  # needs only the nodes above h
    np.testing.assert_allclose(gh.data, [3.0, 3.0])
    with pytest.raises(RuntimeError, match="Mul a second time"):
        mg.grad((h * 2.0).sum(), x)


def test_dot_grad_is_never_shared_and_always_writable():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    G = t64([1.0, 1.0], requires_grad=False)
    (a + b).backward(G)
    assert a.grad is not b.grad and a.grad.data is not G.data
    a.grad.data *= 10
    np.testing.assert_allclose(b.grad.data, [1.0, 1.0])
    np.testing.assert_allclose(G.data, [1.0, 1.0])
    x = t64([1.0, 2.0, 3.0])
    x.mean().backward()  # the gradient is a broadcast (read-only) view until it lands in .grad
    x.grad.data *= 3.0
    np.testing.assert_allclose(x.grad.data, [1.0, 1.0, 1.0])


def test_a_hook_on_a_noop_reshape_sees_only_its_own_gradient():
    x = t64([1.0, 2.0])
    h = x * 1.0
    h2 = h.reshape(h.shape)  # a tensor of its own, not h itself
    assert h2 is not h
    g2, g = mg.grad((h * 3.0).sum() + (h2 * 2.0).sum(), [h2, h])
    np.testing.assert_allclose(g2.data, [2.0, 2.0])
    np.testing.assert_allclose(g.data, [5.0, 5.0])
    with mg.no_grad():
        assert not x.reshape(x.shape).requires_grad


def test_index_arrays_are_copied_at_the_call():
    x = t64(np.arange(6.0).reshape(3, 2))
    idx = np.array([0, 0])
    y = x[idx]
    idx[:] = 2  # the caller reuses their array; the tape must not notice
    (g,) = mg.grad(y.sum(), x)
    np.testing.assert_allclose(g.data, [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]])


# ------------------------------------------------------------------ custom Functions
class _Two(mg.Function):
    @staticmethod
    def forward(ctx, a, b):
        return a * b


def test_a_backward_returning_the_wrong_number_of_gradients_is_named():
    class OneForTwo(_Two):
        @staticmethod
        def backward(ctx, g):
            return (g,)

    a, b = t64([1.0]), t64([2.0])
    with pytest.raises(TypeError, match="OneForTwo.backward must return a tuple of 2 gradients"):
        mg.grad(OneForTwo.apply(a, b).sum(), [a, b])


def test_a_backward_returning_raw_arrays_or_wrong_shapes_is_named():
    class Raw(_Two):
        @staticmethod
        def backward(ctx, g):
            return g.data, g.data

    class Transposed(_Two):
        @staticmethod
        def backward(ctx, g):
            return g.T, g.T

    a, b = t64(np.ones((2, 3))), t64(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Raw.backward returned a ndarray for input 0"):
        mg.grad(Raw.apply(a, b).sum(), [a, b])
    with pytest.raises(ValueError, match=r"Transposed.backward returned a gradient of shape \(3, 2\)"):
        mg.grad(Transposed.apply(a, b).sum(), [a, b])


def test_apply_with_a_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="_two: input 1 is a float"):
        _Two.apply(t64([1.0]), 2.0)


# ------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("make", [
    lambda x: x * np.int64(3), lambda x: x / np.float64(2.0), lambda x: x ** np.int64(2),
    lambda x: x * mg.tensor([2, 3]), lambda x: x + mg.tensor([True, False]),
    lambda x: mg.where(np.array([True, False]), x, np.float64(0.0)), lambda x: x @ mg.tensor([1, 2]),
], ids=["np-int", "np-float", "np-pow", "int-tensor", "bool-tensor", "where", "matmul-int"])
def test_float32_stays_float32_beside_numpy_numbers_and_integer_tensors(make):
    x = mg.tensor(np.array([1.5, 2.5], np.float32), requires_grad=True)
    y = make(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_gradients_are_cast_back_to_each_input_dtype():
    x = mg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    (g,) = mg.grad(x * x, x, grad_outputs=mg.tensor(np.ones(2, np.float64)))
    assert g.dtype == np.float32
    y = x.astype(np.float64) * mg.tensor(np.array([3.0, 4.0]))  # float64 downstream of float32
    assert y.dtype == np.float64
    (g,) = mg.grad(y.sum(), x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, [3.0, 4.0])


def test_numbers_beside_integer_and_bool_tensors_follow_the_kinds():
    assert (mg.tensor([True, False]) + 3).tolist() == [4, 3]
    y = mg.tensor([1, 2]) * 2.5
    assert y.dtype == np.float32 and y.tolist() == [2.5, 5.0]
    assert mg.sigmoid(mg.tensor([0, 3])).dtype == np.float32
    with pytest.raises(ValueError, match="300 does not fit in the tensor's dtype uint8"):
        mg.tensor(np.array([1], np.uint8)) + 300


# ------------------------------------------------------------------- small API points
def test_grad_mode_objects_are_reentrant():
    ng = mg.no_grad()
    with ng:
        with ng:
            assert not mg.is_grad_enabled()
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


def test_factories_and_comparisons_with_none():
    np.testing.assert_array_equal(mg.arange(5, step=2).numpy(), [0, 2, 4])
    assert mg.full(np.int64(3), 1.0).shape == (3,)
    x = mg.tensor([1.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711 - the point of the test
    with pytest.raises(ValueError, match="give a device"):
        x.to(None)


def test_backward_order_tells_gradients_from_curvature_products():
    x = t64([1.0, 2.0])
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(mg.backward_order()))
    loss = (h * h).sum()
    (g,) = mg.grad(loss, x, create_graph=True)   # order 1: the gradient of the loss
    mg.grad((g * 1.0).sum(), x, retain_graph=True)  # order 2: differentiating the gradient
    loss.backward()                              # order 1 again
    assert seen == [1, 2, 1] and mg.backward_order() == 0
