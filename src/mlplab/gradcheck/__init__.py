"""Gradient checks: analytic gradients against centred differences and against PyTorch.

- :mod:`~mlplab.gradcheck.check`: the checked objective, the reference loop (one
  perturbation at a time), the report and :func:`gradcheck`;
- :mod:`~mlplab.gradcheck.vectorized`: the same differences with the perturbations
  batched (the CLI's default), for any layer that keeps the layer contract;
- :mod:`~mlplab.gradcheck.autograd`: the same objective back-propagated by PyTorch
  (imported only when asked for).

Called, this package is :func:`~mlplab.gradcheck.check.gradcheck`.
"""

from mlplab import _callable_package
from mlplab.gradcheck.autograd import gradcheck_torch
from mlplab.gradcheck.check import (
    METHODS,
    GradcheckReport,
    ParamError,
    analytic_gradients,
    compare,
    gradcheck,
    numerical_gradients,
    relative_error,
)
from mlplab.gradcheck.vectorized import freeze_dropout, numerical_gradients_vectorized

__all__ = [
    "METHODS",
    "GradcheckReport",
    "ParamError",
    "analytic_gradients",
    "compare",
    "freeze_dropout",
    "gradcheck",
    "gradcheck_torch",
    "numerical_gradients",
    "numerical_gradients_vectorized",
    "relative_error",
]

_callable_package(__name__)
