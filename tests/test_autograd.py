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
    with pytest.raises(RuntimeError, match='pip install "minigrad\\[gpu\\]"'):
        mg.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="minigrad\\[gpu\\]"):
        mg.tensor([1.0]).to("cuda")


def test_to_cpu_is_identity_and_bad_device_is_an_error():
    x = mg.tensor([1.0])
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")
