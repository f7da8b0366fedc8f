"""A scikit-learn style estimator around :class:`~mlplab.train.trainer.Trainer`.

>>> clf = MLPClassifier(hidden=(50,), lam=0.01, n_s=500, cycles=1).fit(X, y)
>>> clf.score(X_test, y_test)

The constructor only stores its arguments; :meth:`fit` validates them, learns the
standardisation (``mean_``, ``std_``) and the network (``network_``) and returns
``self``. Learned attributes end in ``_``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.errors import ConfigError
from mlplab.nn.network import Network
from mlplab.train.run import build_network
from mlplab.train.trainer import Trainer

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)} - {
    "name",
    "description",
    "split",
    "n_train",
}


class MLPClassifier:
    """Fully-connected ReLU network trained by mini-batch gradient descent.

    Keyword arguments are the fields of :class:`mlplab.config.Config` (``hidden``,
    ``lam``, ``batch_size``, ``schedule``, ``eta_min``, ``eta_max``, ``n_s``,
    ``cycles``, ``batch_norm``, ``seed``, ...). ``standardize=True`` learns the
    per-feature mean and std of the training data in ``fit``.
    """

    def __init__(self, *, standardize: bool = True, progress: bool = False, **params: Any) -> None:
        self.standardize = standardize
        self.progress = progress
        self._params = dict(params)
        for k, v in params.items():
            setattr(self, k, v)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"standardize": self.standardize, "progress": self.progress, **self._params}

    def set_params(self, **params: Any) -> MLPClassifier:
        for k, v in params.items():
            if k in ("standardize", "progress"):
                setattr(self, k, v)
            else:
                self._params[k] = v
                setattr(self, k, v)
        return self

    def _config(self) -> Config:
        unknown = sorted(set(self._params) - _CONFIG_FIELDS)
        if unknown:
            raise ConfigError(f"unknown parameters {unknown}; known: {sorted(_CONFIG_FIELDS)}")
        params = dict(self._params)
        if "hidden" in params:
            params["hidden"] = [int(h) for h in params["hidden"]]
        return Config(name="MLPClassifier", **params).validate()

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> MLPClassifier:
        """Train on ``X`` ``(n, d)`` and labels ``y`` ``(n,)``; returns ``self``."""
        cfg = self._config()
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ConfigError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
        if not np.all(np.isfinite(X)):
            raise ConfigError("X contains NaN or infinite values")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        dt = np.dtype(cfg.dtype)
        if self.standardize:
            self.mean_ = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            self.std_ = np.where(std > 0, std, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.std_ = np.ones(X.shape[1])
        Xs = self._transform(X, dt)
        Xv = yv = None
        if X_val is not None and y_val is not None:
            Xv = self._transform(np.asarray(X_val), dt)
            yv = self._encode(np.asarray(y_val))
        rng = np.random.default_rng(cfg.seed)
        self.network_: Network = build_network(cfg, X.shape[1], len(self.classes_), rng)
        trainer = Trainer(self.network_, cfg, rng, progress=self.progress)
        self.history_ = trainer.fit(Xs, y_idx.astype(np.int64), Xv, yv)
        self.n_updates_ = trainer.step
        return self

    def _transform(self, X: np.ndarray, dt: np.dtype) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(f"X must have {self.n_features_in_} columns, got shape {X.shape}")
        return ((X - self.mean_) / self.std_).astype(dt)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            raise ConfigError("y contains labels not seen in fit")
        return idx.astype(np.int64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise ConfigError("this MLPClassifier is not fitted yet; call fit(X, y) first")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``."""
        self._check_fitted()
        Xs = self._transform(np.asarray(X), self.network_.dtype)
        return self.network_.predict_proba(Xs)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels ``(n,)``."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> float:
        """Mean accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
