"""Optimisers and learning-rate schedules."""

from mlplab.optim.optimizers import SGD, Adam, Optimizer, make_optimizer
from mlplab.optim.schedules import (
    Constant,
    Cosine,
    Cyclic,
    LinearDecay,
    Ramp,
    Schedule,
    StepDecay,
)

__all__ = [
    "SGD",
    "Adam",
    "Constant",
    "Cosine",
    "Cyclic",
    "LinearDecay",
    "Optimizer",
    "Ramp",
    "Schedule",
    "StepDecay",
    "make_optimizer",
]
