"""minigrad.nn: modules, layers, initialization, models and per-layer statistics.

    import minigrad.nn as nn
    model = nn.Sequential(nn.Linear(784, 256, rng=0), nn.ReLU(), nn.Linear(256, 10, rng=1))
    loss = F.cross_entropy(model(x), labels)
"""
from . import init, models
from .capture import CaptureStats, capture
from .noise_scale import NoiseScale, gradient_noise_scale, gradient_noise_scale_two_batches
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, LeakyReLU, Linear,
                     MaxPool2d, ReLU, Sigmoid, Softplus, Tanh)
from .module import Module, ModuleList, Parameter, Sequential
from .utils import parameters_replaced

__all__ = ["Module", "ModuleList", "Parameter", "Sequential", "Linear", "Conv2d", "MaxPool2d",
           "AvgPool2d", "Flatten", "ReLU", "Tanh", "Sigmoid", "Softplus", "LeakyReLU", "Dropout",
           "BatchNorm1d", "BatchNorm2d", "init", "models", "capture", "CaptureStats", "NoiseScale",
           "gradient_noise_scale", "gradient_noise_scale_two_batches", "parameters_replaced"]
