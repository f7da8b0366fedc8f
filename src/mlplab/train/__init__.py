"""Training loop, experiment runner and the scikit-learn style estimator.

Called, this package is :func:`mlplab.train.run.train` (``mlplab.train("assignment2/ex3")``).
"""

from mlplab import _callable_package

_callable_package(__name__)
