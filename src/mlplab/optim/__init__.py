"""Optimisers and learning-rate schedules."""

from mlplab.optim.optimizers import SGD, Adam, Optimizer, make_optimizer
from mlplab.optim.schedules import (
    Constant,
    Cosine,
    Cyclic,
    LinearDecay,
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
    "Schedule",
    "StepDecay",
    "make_optimizer",
]
