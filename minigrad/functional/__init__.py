"""minigrad.functional (import as F): activations, losses, linear, conv2d, pooling, batch norm, dropout."""
