"""What an evaluation measures: loss and accuracy on a whole split, the per-layer statistics of
one batch (logged to run.h5 layers/) and the gradient noise scale (--noise-scale-examples).

Each runs in eval mode (BatchNorm uses its running statistics) and leaves the model's modes, its
parameters' .grad and every random number generator as they were, so evaluating never changes
the training that follows.
"""
import minigrad as mg
from minigrad.backend import to_device
from minigrad.nn import capture, models

from ..runlog import LAYER_METRICS
from .model import eval_mode, is_autoencoder, loss_of

EVAL_BATCH = 1000


def evaluate(model, images, labels, flatten, device="cpu", batch_size=None):
    """(mean loss, accuracy) on a whole split, in eval mode, without a graph; for the
    autoencoder (mean loss per image, mean reconstruction error per image: the squared error of
    sigmoid(logits) summed over pixels). `batch_size` (default EVAL_BATCH) only bounds memory.
    The model's modes are left as they were."""
    step = batch_size or EVAL_BATCH
    auto = is_autoencoder(model)
    total, correct = 0.0, 0
    with eval_mode(model), mg.no_grad():
        for start in range(0, len(labels), step):
            x = images[start:start + step]
            y = labels[start:start + step]
            x = to_device(x.reshape(len(x), -1) if flatten else x, device)
            logits = model(mg.tensor(x))
            target = x if auto else to_device(y, device)
            total += float(loss_of(model, logits, target, reduction="sum").item())
            if auto:
                correct += float(models.reconstruction_error(logits, target, "sum").item())
            else:
                correct += int((logits.numpy().argmax(1) == y).sum())
    return total / len(labels), correct / len(labels)


def layer_statistics(model, images, labels, device="cpu"):
    """stats.summary() of one forward/backward of (images, labels) inside nn.capture(model):
    {layer: {metric: float or None}} for runlog.LAYER_METRICS. The model is in eval mode
    (BatchNorm uses and keeps its running statistics), the gradient comes from minigrad.grad
    (the parameters' .grad are left alone) and no random numbers are drawn, so training is
    not disturbed."""
    with eval_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        with capture(model) as stats:
            x = mg.tensor(to_device(images, device))
            target = x.data if is_autoencoder(model) else to_device(labels, device)
            loss = loss_of(model, model(x), target)
            mg.grad(loss, params, allow_unused=True)
        summary = stats.summary()
    return {name: {k: info.get(k) for k in LAYER_METRICS} for name, info in summary.items()}


def noise_scale(model, images, labels, rows, device="cpu"):
    """minigrad.nn.noise_scale.NoiseScale (b_simple, trace_cov, grad_sq_norm) of the rows `rows`
    of the training split: exact per-example gradients of every Linear/Conv2d layer from one
    forward and backward inside nn.capture, in eval mode, without touching .grad."""
    with eval_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        with capture(model) as stats:
            x = mg.tensor(to_device(images[rows], device))
            target = x.data if is_autoencoder(model) else to_device(labels[rows], device)
            mg.grad(loss_of(model, model(x), target), params, allow_unused=True)
            return stats.noise_scale()
