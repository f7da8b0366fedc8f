"""Training loop, experiment runner and the scikit-learn style estimator."""
