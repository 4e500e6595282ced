"""What one optimizer step costs, in gradient evaluations of its mini-batch.

The unit is one gradient: a forward and a backward pass over the step's B rows. A forward pass
alone counts 1/3 (the backward of a dense layer is two matrix products to the forward's one),
and a curvature-vector product on m rows counts 2 m / B (Pearlmutter's R-op: a second forward
and backward through the gradient's graph, about the price of another gradient; measured at
1.2x-1.9x a gradient in benchmarks/curvature.py). Per step, after `optimizer.step`:

    sgd, kfac     1                                      (K-FAC's empirical-Fisher factors come
                                                          from the same backward pass)
    kfac, true    1 + [factors updated] 2/3              the backward of the loss on labels
      Fisher                                              sampled from the model, on the steps
                                                          that update the factors
    trcg, strcg   1 + [m < B] m / (3B)                   gradient, and the forward of the
                    + 2 m / B * curvature_products        curvature sub-sample when it is one;
                    + trials / 3                          CG products; the ratio tests' forwards

with m = info["curvature_samples"] and trials = rejections + accepted (the re-solves that reached
a ratio test). K-FAC's eigendecompositions are not passes over data: they show in wall time, not
here. The counts themselves (cg_iterations, curvature_products, rejections) are logged too, so
another cost model can be applied to a run after the fact.
"""
FORWARD = 1.0 / 3.0
BACKWARD = 1.0 - FORWARD
CURVATURE_PRODUCT = 2.0


def step_cost(name, info, batch_size):
    """{series: value} for run.h5's steps/ group: "grad_equivalents" for every optimizer, and
    for trcg/strcg "cg_iterations", "curvature_products", "rejections" of the step."""
    if name in ("sgd", "kfac"):
        return {"grad_equivalents": 1.0 + (BACKWARD if info.get("sampled_backward") else 0.0)}
    m = info.get("curvature_samples") or batch_size
    share = m / batch_size
    products = int(info.get("curvature_products", 0))
    trials = int(info.get("rejections", 0)) + int(bool(info.get("accepted")))
    total = (1.0 + (FORWARD * share if m < batch_size else 0.0)
             + CURVATURE_PRODUCT * share * products + FORWARD * trials)
    return {"grad_equivalents": total, "cg_iterations": int(info.get("cg_iterations", 0)),
            "curvature_products": products, "rejections": int(info.get("rejections", 0))}
