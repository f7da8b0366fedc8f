"""Optimisers and learning-rate schedules."""

from mlplab.optim.optimizers import (
    OPTIMIZERS,
    SGD,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    make_optimizer,
)
from mlplab.optim.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Cyclic,
    LinearDecay,
    Ramp,
    Schedule,
    StepDecay,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "Constant",
    "Cosine",
    "Cyclic",
    "LinearDecay",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "Ramp",
    "Schedule",
    "StepDecay",
    "make_optimizer",
]
