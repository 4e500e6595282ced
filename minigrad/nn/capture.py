"""Per-layer statistics for K-FAC and monitoring, recorded inside an explicit `capture` context.

    with capture(model) as stats:
        logits = model(x)
        loss = F.cross_entropy(logits, y)                     # a MEAN over the N examples
        loss.backward(retain_graph=True)                      # backward pass 0: the gradient
        sampled = ...                                         # labels drawn from softmax(logits)
        F.cross_entropy(logits, sampled).backward()           # backward pass 1: for the Fisher
    A, G = stats.kfac_factors(model[0], backward=1)           # F_block ~= kron(G, A)
    norms = stats.per_example_grad_norms(backward=0)          # ||grad of example n's own loss||
    print(stats.noise_scale(backward=0).b_simple, stats.summary())

What is recorded. For every `Linear` and `Conv2d` of the model (or the `layers` given), a
forward hook keeps, for every call of the layer, the input array `a` the layer was fed, and
registers a tensor hook on the layer's output s (the pre-activation) that appends the gradient
g = dL/ds of every backward pass run through it (`loss.backward()` or `minigrad.grad`).
Only backend arrays are kept (`Tensor.data`, no graph, no copy: do not edit them in place).
Only gradients count as passes: walks that compute curvature products (a Hessian-vector
product, the vector-Jacobian products of a GGN or Fisher matvec from minigrad.curvature)
reach the same outputs but are skipped (they are walks of derivative order 2, see
minigrad/derivative_order.py), so curvature operators may be used inside the block. Nothing is
recorded outside the `with` block: on exit, even on an error, the forward hooks and every tensor
hook still attached to a recorded output are removed, and a backward run after the block
records nothing. The statistics stay readable after the block.

Calls and passes. A layer called R times in one forward (weight sharing, a recurrent step)
keeps all R calls in order; every statistic treats them as R more groups of locations of the
same examples (the "expand" setting of Eschenhagen et al. 2023), which is what conv already
does with its spatial locations. All calls must therefore share the batch size N: one capture
context is meant for one batch (one forward, then any number of backward passes; call
`stats.clear()` or open a new context for the next batch). Each backward pass appends one
gradient per call; statistics take the pass to use as `backward=` (an index, -1 the latest)
and `kfac_factors` can also sum or average the outer products over all passes.

Memory. Per call: the input (for Conv2d the image, not its patches: those are kh*kw/stride^2
times larger and are rebuilt with im2col when a statistic asks for them) and one output-sized
gradient per backward pass. The layer outputs themselves are not kept.

Notation (used in every docstring below). A layer call maps inputs a_{n,t} in R^D to outputs
s_{n,t} = W a_{n,t} + b in R^O for examples n = 1..N and locations t = 1..T:
- Linear on (N, in): T = 1; on (N, L1, ..., in): T = L1*...; a 1-D input is one example.
- Conv2d: a_{n,t} is the im2col patch of output position t = (oh, ow), T = OH*OW, flattened
  in the order (C, kh, kw), so that s_{n,:,t} = W.reshape(O, -1) @ a_{n,t} + b.
- R calls: T is the total over the calls (their locations are concatenated).
a~ = [a; 1] when the layer has a bias (homogeneous coordinate LAST), else a~ = a.
The loss is the MEAN of N per-example losses, L = (1/N) sum_n l_n, so the recorded gradient is
g_{n,t} = dL/ds_{n,t} = (1/N) dl_n/ds_{n,t}, and d_{n,t} = N g_{n,t} is the gradient of example
n's own loss. The parameter block is theta = the (O, D+1) matrix [W.reshape(O, -1), b]
flattened ROW-major (the way `W.reshape(-1)` flattens); example n's own gradient with respect
to it is the matrix sum_t d_{n,t} a~_{n,t}^T, whose row-major vec is sum_t d_{n,t} (x) a~_{n,t}.

References: Martens & Grosse 2015 (K-FAC, arXiv:1503.05671); Grosse & Martens 2016 (KFC,
arXiv:1602.01407); Eschenhagen et al. 2023 (K-FAC expand/reduce, arXiv:2311.00636);
McCandlish, Kaplan, Amodei et al. 2018 (gradient noise scale, arXiv:1812.06162);
Goodfellow 2015 / Dangel et al. 2020 (BackPACK) for per-example gradient norms.
"""
import math
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from ..backend import xp_of
from ..derivative_order import backward_order
from ..functional.conv import _pair, im2col
from ..functional.conv_op import channel_moments, out_size, patch_moments
from ..tensor import Tensor
from .layers import Conv2d, Linear, _BatchNorm
from .noise_scale import gradient_noise_scale

#: |a| at or above this counts as saturated in `summary` (tanh-like units: tanh(2.65) = 0.99).
SATURATION_THRESHOLD = 0.99


@contextmanager
def capture(model, layers=None):
    """Record layer inputs and output gradients of `model` inside a `with` block.

    `layers`: None for every Linear and Conv2d in `model` (its `named_modules`, the model itself
    included), or a list of such modules / their dotted names. Yields a `CaptureStats`; the
    hooks are removed when the block ends, however it ends. See the module docstring.
    """
    stats = CaptureStats(model, layers)
    stats._attach()
    try:
        yield stats
    finally:
        stats._detach()


class CaptureStats:
    """What `capture` recorded, and the statistics computed from it (see the module docstring).

    Every method takes a layer as the module itself or its dotted name in the model.
    """

    def __init__(self, model, layers=None):
        self._model = model
        names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}
        if layers is None:
            layers = [m for m in model.modules() if isinstance(m, (Linear, Conv2d))]
        else:
            by_name = dict(model.named_modules())
            chosen = []
            for item in layers:
                if isinstance(item, str):
                    if item not in by_name:
                        raise ValueError(f"capture: the model has no submodule named {item!r}")
                    item = by_name[item]
                if not isinstance(item, (Linear, Conv2d)):
                    raise TypeError(f"capture: can record Linear and Conv2d layers only, got "
                                    f"{type(item).__name__} ({item!r})")
                if id(item) not in names:
                    raise ValueError(f"capture: layer {item!r} is not a submodule of the model")
                chosen.append(item)
            layers = chosen
        self._records = OrderedDict()   # name -> _Record
        self._by_id = {}
        for m in layers:
            if id(m) not in self._by_id:
                rec = _Record(names[id(m)], m)
                self._records[rec.name] = rec
                self._by_id[id(m)] = rec
        self._forward_handles = []
        self._grad_handles = []
        self.active = False

    def _check_independent_examples(self, what):
        coupled = [name for name, m in self._model.named_modules()
                   if isinstance(m, _BatchNorm) and m.training]
        if coupled:
            raise ValueError(f"capture.{what}: BatchNorm layers {coupled} are in training mode, so "
                             "examples share batch statistics and have no separate gradients; "
                             "call model.eval() for per-example statistics")

    # -- recording -------------------------------------------------------------------------
    def _attach(self):
        for rec in self._records.values():
            self._forward_handles.append(rec.module.register_forward_hook(self._forward_hook(rec)))
        self.active = True

    def _detach(self):
        for handle in self._forward_handles + self._grad_handles:
            handle.remove()
        self._forward_handles, self._grad_handles = [], []
        self.active = False

    def _forward_hook(self, rec):
        def hook(module, inputs, output):
            if not inputs:
                raise TypeError(f"capture: {rec.label} was called without a positional input; "
                                "call captured layers as layer(x)")
            if any(c.grads for c in rec.calls):
                warnings.warn(f"capture: {rec.label} is called again after a backward pass was "
                              "recorded; its calls are all treated as one batch (weight sharing). "
                              "Use stats.clear() or a new capture block per batch.", stacklevel=3)
            x = inputs[0]
            call = _Call(x.data if isinstance(x, Tensor) else Tensor.wrap(x).data, output.shape,
                         output.requires_grad)
            rec.calls.append(call)
            if output.requires_grad:
                def grad_hook(g):
                    # Only first-order walks are passes: a curvature product (a Hessian-vector
                    # product, a GGN matvec) also reaches this output, with a second-order quantity.
                    if backward_order() == 1:
                        call.grads.append(g.data)
                self._grad_handles.append(output.register_hook(grad_hook))
        return hook

    def clear(self):
        """Forget everything recorded so far (the hooks stay while the block is open)."""
        for handle in self._grad_handles:
            handle.remove()
        self._grad_handles = []
        for rec in self._records.values():
            rec.calls = []

    # -- raw records -------------------------------------------------------------------------
    @property
    def names(self):
        """Dotted names of the captured layers, in model order."""
        return list(self._records)

    def inputs(self, layer):
        """The input array of each call of `layer`, in call order."""
        return [c.a for c in self._called(layer).calls]

    def output_grads(self, layer, backward=-1):
        """dL/ds of each call of `layer` (the output's shape) in backward pass `backward`."""
        rec = self._called(layer)
        k = self._single_pass(rec, backward)
        return [c.grads[k] for c in rec.calls]

    def num_backward(self, layer):
        """How many backward passes were recorded through `layer`."""
        rec = self._called(layer)
        return len(rec.calls[0].grads) if rec.calls[0].requires_grad else 0

    # -- K-FAC -----------------------------------------------------------------------------
    def kfac_factors(self, layer, backward=-1):
        """The Kronecker factors (A, G) of `layer`, so that its Fisher block F ~= kron(G, A).

            A = (1/(N T)) sum_n sum_t a~_{n,t} a~_{n,t}^T                 ((D+1) x (D+1))
            G = (1/N)     sum_n sum_t d_{n,t} d_{n,t}^T,  d = N g            (O x O)

        Ordering: theta = [W.reshape(O, -1), b] flattened row-major (bias column last), whose
        per-example gradient is sum_t d_t (x) a~_t; hence F ~= G (x) A = np.kron(G, A). (Martens
        & Grosse 2015 stack columns, vec([W b]), and write the same matrix as A (x) G.)

        Linear on (N, in), T = 1: A and G are the K-FAC factors of Martens & Grosse 2015, and
        kron(G, A) is exact for one example when G comes from the exact output Hessian.
        Conv2d (and Linear on sequences, and repeated calls): the KFC factors of Grosse &
        Martens 2016. Under their assumptions (activations independent of derivatives, spatial
        homogeneity, spatially uncorrelated derivatives) example n's Fisher block is
        sum_t E[d_t d_t^T] (x) E[a~_t a~_t^T] = T * (mean_t d d^T) (x) (mean_t a~ a~^T): one
        factor is a MEAN over the T locations and the other a SUM. Only the product is fixed by
        the method; where the factor T sits is a convention (kfac-jax divides both of its
        factors by N*T and multiplies the block by T, its `fixed_scale`). We keep A a
        per-location second moment, on the same scale as a Linear layer's A and independent of
        the image size, so that a damping added to A means the same for every layer, and put T
        in G. The product is exact when the model's output is the conv output itself under a
        squared-error loss (G is then constant): kron(G, A) equals the Gauss-Newton block for
        every N, T, stride and padding, which the tests check.

        `backward`: which recorded pass gives g: an index (-1, the latest, by default), "sum"
        (G summed over all passes), or "mean" (for several sampled-label passes). With "sum",
        the exact GGN / type-2 Fisher block comes from backpropagating, as gradients at the
        outputs, the columns of (1/N) S_n for every example n, where S_n S_n^T = H_n is the
        Hessian of example n's own loss in its outputs: the recorded g is then (1/N) S_n[:, c],
        d = S_n[:, c], and G = (1/N) sum_n S_n S_n^T (backpropagating columns of a square root
        of the MEAN loss's Hessian instead gives N times that). A and G are backend arrays in the dtype of the recorded arrays.
        """
        rec = self._called(layer)
        if rec.kind == "conv":
            passes = self._passes(rec, backward)
            A, G = self._conv_kfac_factors(rec, passes)
        else:
            a = self._homogeneous_inputs(rec)
            n, t = a.shape[:2]
            a2 = a.reshape(n * t, -1)
            A = a2.T @ a2 / (n * t)
            G = None
            passes = self._passes(rec, backward)
            for k in passes:
                g2 = self._output_grads(rec, k, n, t).reshape(n * t, -1)
                term = (g2.T @ g2) * n          # (1/N) sum (N g)(N g)^T
                G = term if G is None else G + term
        if backward == "mean":
            G = G / len(passes)
        return A, G

    def _conv_kfac_factors(self, rec, passes):
        """kfac_factors' (A, G) of a Conv2d, summed over its calls and passes from the patches'
        and the output gradients' moments (functional/conv_op.py), chunk by chunk: the same sums
        as the other layers', without an (N, T, C kh kw + 1) array of every patch (at B = 4096
        on LeNet-5 those arrays and their copies took half of K-FAC's step)."""
        m = rec.module
        _same_batch(rec, [c.a for c in rec.calls])
        n = rec.calls[0].a.shape[0]
        kernel, stride, padding = (_pair("kfac_factors", name, getattr(m, name), low) for name, low
                                   in (("kernel_size", 1), ("stride", 1), ("padding", 0)))
        xp, t, big, small = xp_of(rec.calls[0].a), 0, 0, 0
        for call in rec.calls:   # in the dtype the forward computed in (uint8 images: float)
            x = call.a.astype(xp.result_type(call.a.dtype, m.weight.data.dtype), copy=False)
            b, s = patch_moments(x, kernel, stride, padding)
            big, small = big + b, small + s
            t += math.prod(out_size(call.a.shape[2:], kernel, stride, padding))
        if m.bias is not None:   # the bias input a~ = 1: its moments are the sums and N T
            d = len(small)
            whole = xp.empty((d + 1, d + 1), dtype=big.dtype)
            whole[:d, :d], whole[:d, d], whole[d, :d], whole[d, d] = big, small, small, n * t
            big = whole
        G = None
        for k in passes:
            term = sum(channel_moments(call.grads[k]) for call in rec.calls) * n
            G = term if G is None else G + term
        return big / (n * t), G

    def grad_matrix(self, layer, backward=-1):
        """dL/d[W.reshape(O, -1), b] = sum_{n,t} g_{n,t} a~_{n,t}^T, an (O, D+1) array (no bias
        column without a bias): the gradient of the mean loss in backward pass `backward`."""
        rec = self._called(layer)
        a = self._homogeneous_inputs(rec)
        n, t = a.shape[:2]
        g = self._output_grads(rec, self._single_pass(rec, backward), n, t)
        return g.reshape(n * t, -1).T @ a.reshape(n * t, -1)

    # -- per-example gradients and the noise scale ---------------------------------------------
    def per_example_grad_norms(self, layer=None, backward=-1, squared=False, method="auto"):
        """||grad of example n's own loss l_n w.r.t. the layer's [W, b]||, an (N,) array, exact.

        Example n's gradient is the matrix D_n = sum_t d_{n,t} a~_{n,t}^T with d = N g, so
        - T = 1 (Linear on (N, in)): ||D_n||^2 = ||d_n||^2 ||a~_n||^2, with ||a~||^2 = ||a||^2 + 1
          when there is a bias;
        - T > 1 (conv, sequences, repeated calls), "gram": ||D_n||_F^2 =
          sum_{t,t'} (a~_t . a~_t')(d_t . d_t'), the elementwise product of the two T x T Gram
          matrices (Goodfellow 2015), costing N T^2 (D+O); "direct": form each D_n, N T D O.
        `method="auto"` takes the cheaper (gram covers T = 1). `layer=None`: the norm over all
        captured layers that were called (the root of the sum of their squares).
        Examples must not interact: with BatchNorm in training mode each example's loss depends
        on the whole batch, d = N g no longer holds, and this is an error.
        """
        self._check_independent_examples("per_example_grad_norms")
        if method not in ("auto", "gram", "direct"):
            raise ValueError(f"per_example_grad_norms: method must be 'auto', 'gram' or 'direct', "
                             f"got {method!r}")
        recs = self._selected(layer)
        sq = None
        for rec in recs:
            part = self._per_example_sq_norms(rec, backward, method)
            if sq is not None and part.shape != sq.shape:
                raise ValueError(f"per_example_grad_norms: layer {rec.label} has batch size "
                                 f"{part.shape[0]}, the layers before it {sq.shape[0]}")
            sq = part if sq is None else sq + part
        return sq if squared else xp_of(sq).sqrt(sq)

    def noise_scale(self, layers=None, backward=-1):
        """The gradient noise scale B_simple over the parameters of `layers` (None: all captured
        layers that were called), from the exact per-example gradients of this batch:
        `gradient_noise_scale(per-example squared norms, squared norm of their mean)`. Only the
        captured layers' weights and biases count (not BatchNorm's, for example). Not defined
        with BatchNorm in training mode (see per_example_grad_norms)."""
        self._check_independent_examples("noise_scale")
        if isinstance(layers, (list, tuple)):
            recs = [self._called(x) for x in layers]
        else:
            recs = self._selected(layers)
        sq, mean_sq = None, 0.0
        for rec in recs:
            part = self._per_example_sq_norms(rec, backward, "auto")
            sq = part if sq is None else sq + part
            gm = self.grad_matrix(rec.module, backward)
            mean_sq += float((gm * gm).sum())
        return gradient_noise_scale(sq, mean_sq)

    # -- monitoring ---------------------------------------------------------------------------
    def summary(self, saturation=SATURATION_THRESHOLD, backward=-1):
        """{layer name: statistics} for every captured layer that was called.

        Of the layer's input a (all calls, every element): `input_mean`, `input_std`,
        `input_zero_fraction` (exactly 0, as after ReLU), `input_saturated_fraction`
        (|a| >= `saturation`, default 0.99: for tanh-like units, whose outputs saturate at
        +-1); of backward pass `backward`, when one was recorded (else None):
        `output_grad_norm` = ||dL/ds|| over all calls and `grad_norm` = ||dL/d[W, b]||.
        Also `calls` and `batch_size`. Values are Python floats.
        """
        out = {}
        for name, rec in self._records.items():
            if not rec.calls:
                continue
            flat = [c.a.reshape(-1) for c in rec.calls]
            xp = xp_of(flat[0])
            a = flat[0] if len(flat) == 1 else xp.concatenate(flat)
            info = {
                "calls": len(rec.calls),
                "batch_size": _batch_size(rec.calls[0].a, rec.kind),
                "input_mean": float(a.mean()),
                "input_std": float(a.std()),
                "input_zero_fraction": float((a == 0).mean()),
                "input_saturated_fraction": float((abs(a) >= saturation).mean()),
                "output_grad_norm": None,
                "grad_norm": None,
            }
            if all(c.requires_grad and c.grads for c in rec.calls):
                k = self._single_pass(rec, backward)
                info["output_grad_norm"] = math.sqrt(sum(float((c.grads[k] ** 2).sum())
                                                         for c in rec.calls))
                gm = self.grad_matrix(rec.module, backward)
                info["grad_norm"] = math.sqrt(float((gm * gm).sum()))
            out[name] = info
        return out

    # -- helpers -----------------------------------------------------------------------------
    def __repr__(self):
        calls = ", ".join(f"{n}: {len(r.calls)}" for n, r in self._records.items())
        return f"CaptureStats(active={self.active}, calls={{{calls}}})"

    def _record(self, layer):
        if isinstance(layer, str):
            rec = self._records.get(layer)
            label = repr(layer)
        else:
            rec = self._by_id.get(id(layer))
            label = repr(layer)
        if rec is None:
            raise ValueError(f"capture: layer {label} was not captured; captured layers: {self.names}")
        return rec

    def _called(self, layer):
        rec = layer if isinstance(layer, _Record) else self._record(layer)
        if not rec.calls:
            raise RuntimeError(f"capture: no forward pass of layer {rec.label} was recorded; run the "
                               "model inside the `with capture(model) as stats:` block")
        return rec

    def _selected(self, layer):
        if layer is not None:
            return [self._called(layer)]
        recs = [r for r in self._records.values() if r.calls]
        if not recs:
            raise RuntimeError("capture: no forward pass of any captured layer was recorded; run the "
                               "model inside the `with capture(model) as stats:` block")
        return recs

    def _passes(self, rec, backward):
        """The backward-pass indices that `backward` selects, after checking they exist."""
        for i, c in enumerate(rec.calls):
            if not c.requires_grad:
                raise RuntimeError(
                    f"capture: the output of layer {rec.label} (call {i}) did not require grad, so "
                    "no gradient was recorded for it (was the forward run under no_grad(), or do "
                    "neither its input nor its parameters require grad?)")
        counts = {len(c.grads) for c in rec.calls}
        if counts == {0}:
            raise RuntimeError(f"capture: no backward pass through layer {rec.label} was recorded; "
                               "run loss.backward() or minigrad.grad(...) inside the `with capture` "
                               "block, after the forward")
        if len(counts) > 1:
            raise RuntimeError(f"capture: the {len(rec.calls)} calls of layer {rec.label} received "
                               f"different numbers of backward passes {sorted(counts)}; "
                               "cannot tell which gradients belong together")
        count = counts.pop()
        if backward in ("sum", "mean"):
            return list(range(count))
        if isinstance(backward, (int, np.integer)) and not isinstance(backward, bool):
            if -count <= backward < count:
                return [int(backward) % count]
            raise ValueError(f"capture: backward={backward} is out of range for layer {rec.label}, "
                             f"which recorded {count} backward pass(es)")
        raise ValueError(f"capture: backward must be an int, 'sum' or 'mean', got {backward!r}")

    def _single_pass(self, rec, backward):
        if isinstance(backward, str):
            raise TypeError(f"capture: this statistic needs one backward pass (an int), "
                             f"got backward={backward!r}")
        return self._passes(rec, backward)[0]

    def _homogeneous_inputs(self, rec):
        """a~ of all calls as one (N, T, D [+1]) array, locations of the calls concatenated."""
        parts = [_locations(rec, c.a, "input") for c in rec.calls]
        _same_batch(rec, parts)
        xp = xp_of(parts[0])
        a = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=1)
        if rec.module.bias is not None:
            a = xp.concatenate([a, xp.ones(a.shape[:2] + (1,), dtype=a.dtype)], axis=2)
        return a

    def _output_grads(self, rec, k, n, t):
        """g of backward pass k, all calls, as one (N, T, O) array."""
        parts = [_locations(rec, c.grads[k], "output gradient") for c in rec.calls]
        xp = xp_of(parts[0])
        g = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=1)
        if g.shape[:2] != (n, t):
            raise RuntimeError(f"capture: layer {rec.label}: output gradients cover {g.shape[:2]} "
                               f"(examples, locations) but the inputs {(n, t)}")
        return g

    def _per_example_sq_norms(self, rec, backward, method):
        a = self._homogeneous_inputs(rec)
        n, t, d_in = a.shape
        g = self._output_grads(rec, self._single_pass(rec, backward), n, t)
        d_out = g.shape[2]
        if method == "auto":
            method = "gram" if t * (d_in + d_out) <= d_in * d_out else "direct"
        if method == "gram":
            gram_a = a @ a.transpose(0, 2, 1)
            gram_g = g @ g.transpose(0, 2, 1)
            sq = (gram_a * gram_g).sum(axis=(1, 2))
        else:
            per_example = g.transpose(0, 2, 1) @ a          # (N, O, D+1): sum_t g_t a~_t^T
            sq = (per_example * per_example).sum(axis=(1, 2))
        return sq * (n * n)                                 # d = N g


class _Call:
    __slots__ = ("a", "out_shape", "requires_grad", "grads")

    def __init__(self, a, out_shape, requires_grad):
        self.a, self.out_shape, self.requires_grad, self.grads = a, out_shape, requires_grad, []


class _Record:
    __slots__ = ("name", "module", "kind", "calls")

    def __init__(self, name, module):
        self.name, self.module, self.calls = name, module, []
        self.kind = "conv" if isinstance(module, Conv2d) else "linear"

    @property
    def label(self):
        return f"{self.name!r} ({self.module!r})"


def _batch_size(a, kind):
    return 1 if (kind == "linear" and a.ndim == 1) else a.shape[0]


def _locations(rec, x, what):
    """A layer input (patches for conv) or output gradient as an (N, T, features) array."""
    if rec.kind == "conv":
        if what == "input":
            m = rec.module
            cols = im2col(x, m.kernel_size, m.stride, m.padding).data    # (N, C, kh, kw, OH, OW)
            n, c, kh, kw, oh, ow = cols.shape
            return cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1)
        n, o = x.shape[:2]
        return x.reshape(n, o, -1).transpose(0, 2, 1)
    if x.ndim == 1:
        return x.reshape(1, 1, -1)
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _same_batch(rec, parts):
    sizes = {p.shape[0] for p in parts}
    if len(sizes) > 1:
        raise RuntimeError(f"capture: the {len(parts)} calls of layer {rec.label} have different batch "
                           f"sizes {sorted(sizes)}; one capture context holds one batch "
                           "(use stats.clear() or a new context per batch)")
