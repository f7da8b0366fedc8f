"""A scikit-learn compatible classifier around :class:`~mlplab.train.trainer.Trainer`.

>>> clf = MLPClassifier(hidden=(50,), lam=0.01, n_s=500, cycles=1).fit(X, y)
>>> clf.score(X_test, y_test)

It keeps scikit-learn's estimator conventions without importing scikit-learn:
the constructor only stores its keyword arguments; :meth:`~MLPClassifier.get_params`
and :meth:`~MLPClassifier.set_params` read and write them (so ``sklearn.clone``,
``GridSearchCV`` and ``Pipeline`` work); :meth:`~MLPClassifier.fit` validates them
and ``X``, ``y``, learns the standardisation (``mean_``, ``std_``) and the network
(``network_``) and returns ``self``. Learned attributes end in ``_``. Bad input
raises :class:`InvalidInput`, a ``ValueError`` as scikit-learn expects.
``tests/test_estimator.py`` runs scikit-learn's ``check_estimator`` on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.errors import ConfigError, DataError
from mlplab.images import ImageShape
from mlplab.nn.network import Network
from mlplab.nn.serialize import legacy_shape
from mlplab.train.build import build_network, image_needs
from mlplab.train.trainer import Trainer
from mlplab.transform import InputTransform, mirror_for

#: Fields of :class:`~mlplab.config.Config` that are not parameters of the estimator, and why:
#: the caller passes the data (``split``, ``n_train``, and ``size``: resizing is the reader's);
#: ``n_s`` alone sets the cycle length (``n_s_k``); the history keeps the default spacing
#: (``record_*``) and evaluation batch;
#: there is no run directory (``name``, ``description``, ``checkpoint_every``); BLAS threads
#: are the caller's (``threads``); the estimator keeps one network (``snapshot_ensemble``).
NOT_PARAMETERS = (
    "name",
    "description",
    "split",
    "n_train",
    "size",
    "n_s_k",
    "record_per_cycle",
    "record_every",
    "record_train_samples",
    "eval_batch",
    "checkpoint_every",
    "threads",
    "snapshot_ensemble",
)
#: ``batch_size=None`` takes this many samples per update, or all when there are fewer.
DEFAULT_BATCH_SIZE = 100


class InvalidInput(ConfigError, ValueError):
    """``X`` or ``y`` cannot be used (shape, NaN, sparse, continuous labels, unseen labels)."""


class NotFittedError(ConfigError, ValueError, AttributeError):
    """``predict``, ``predict_proba`` or ``score`` before ``fit`` (the bases of scikit-learn's)."""


class MLPClassifier:
    """Fully-connected ReLU network trained by mini-batch gradient descent.

    Every parameter except ``standardize``, ``batch_size``, ``image_shape`` and ``progress``
    is the :class:`~mlplab.config.Config` field of the same name, with the same default
    and meaning (docs/explanations/training.md, "Conventions", gives the formulas).

    Parameters
    ----------
    hidden : sequence of int, default (50,)
        Widths of the hidden layers.
    activation : str, default "relu"
        The activation between them (``relu``, ``gelu``, ``leaky_relu``, ``tanh``, or any
        name registered in :data:`mlplab.nn.activations.ACTIVATIONS`).
    layers : list or None, default None
        The hidden part as a list of layer specs (:mod:`mlplab.nn.specs`), instead of
        ``hidden``/``activation``/``batch_norm``/``drop_prob``.
    options : dict or None, default None
        Options of the optimiser, schedule and augmentations that are not parameters here
        (``{"beta2": 0.99}`` for Adam, ``{"cutout": 4}``), each checked by its component.
    init : {"course", "he", "xavier", "normal"}, default "course"
        Weight initialisation; ``init_sigma`` is the std of ``"normal"``.
    init_sigma : float, default 0.0
    batch_norm : bool, default False
        Batch normalisation in every hidden layer, at ``bn_position``
        (``"before_relu"`` or ``"after_relu"``), running averages with ``bn_alpha``.
    bn_position : str, default "before_relu"
    bn_alpha : float, default 0.9
    drop_prob : float, default 0.0
        Dropout probability of the hidden activations.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the network and of the standardised inputs.
    lam : float, default 0.0
        L2 penalty: cost = mean cross-entropy + ``lam`` * sum of squared dense weights.
    label_smoothing : float, default 0.0
    optimizer : {"sgd", "momentum", "nesterov", "adam"}, default "sgd"
    momentum : float, default 0.9
        Momentum of ``"momentum"``/``"nesterov"``.
    weight_decay : float, default 0.0
        Decoupled weight decay of the dense weights (Adam with it is AdamW).
    batch_size : int or None, default None
        Samples per update; ``None``: 100, or all samples when there are fewer.
    schedule : {"cyclic", "constant", "step", "linear", "cosine"}, default "cyclic"
        Learning-rate schedule. Cyclic: from ``eta_min`` to ``eta_max`` and back in
        ``2 * n_s`` updates, ``cycles`` times. The others start at ``eta`` and run
        ``epochs`` epochs; ``step`` multiplies by ``gamma`` every ``step_size`` updates.
    eta : float, default 0.01
    eta_min : float, default 1e-05
    eta_max : float, default 0.1
    n_s : int, default 500
    cycles : int, default 1
    epochs : float, default 0.0
    step_size : int, default 0
    gamma : float, default 0.1
    flip, translate, noise_std : default False, 0, 0.0
        Augmentation of each mini-batch: horizontal flips, shifts of up to ``translate``
        pixels (both need ``image_shape``), Gaussian noise.
    flip_average : bool, default False
        Predict with the mean probabilities of each row and of its mirror image (needs
        ``image_shape``).
    keep_best : bool, default False
        End with the weights of the best validation accuracy (``fit``'s ``X_val``).
    early_stop : int, default 0
        Stop after this many history points without validation improvement (0: off).
    seed : int, default 0
        Seeds the one generator of initialisation, shuffling, dropout and augmentation.
    standardize : bool, default True
        Learn per-feature mean and std in ``fit`` and standardise every input with them.
    zca_eps : float, default 0.0
        If > 0, also learn the ZCA whitening matrix of the standardised training features
        (:func:`mlplab.transform.whiten.fit_zca` with this ``eps``; mirror-symmetric when the
        rows are images that are flipped) and whiten every input. At most 8192 features.
    image_shape : (height, width, channels) or None, default None
        The rows are images of this shape, in plane order (:mod:`mlplab.images`); needed by
        flips, translations, crops, cutout and ``flip_average``. ``None`` with 3072
        features means CIFAR-10's 32x32 RGB for those.
    progress : bool, default False
        Show a progress bar while training.

    Attributes
    ----------
    classes_ : (n_classes,) array, the sorted labels seen in ``fit``.
    n_features_in_ : int.
    mean_, std_ : (n_features,) float64 standardisation (zeros and ones without it).
    whiten_ : (n_features, n_features) float64 ZCA matrix, or None (``zca_eps=0``).
    flip_average_ : bool, ``flip_average`` as it was at ``fit``.
    network_ : :class:`~mlplab.nn.network.Network`.
    history_ : list of dict, the training history points.
    n_updates_ : int, the updates made.
    """

    # the parameters, stored by __init__ under their own names (for the type checker)
    hidden: Sequence[int]
    layers: list[Any] | None
    options: dict[str, Any] | None
    image_shape: Sequence[int] | None
    standardize: bool
    progress: bool
    whiten_: np.ndarray | None
    transform_: InputTransform

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (50,),
        activation: str = "relu",
        layers: list[Any] | None = None,
        init: str = "course",
        init_sigma: float = 0.0,
        batch_norm: bool = False,
        bn_position: str = "before_relu",
        bn_alpha: float = 0.9,
        drop_prob: float = 0.0,
        dtype: str = "float32",
        lam: float = 0.0,
        label_smoothing: float = 0.0,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        schedule: str = "cyclic",
        eta: float = 0.01,
        eta_min: float = 1e-5,
        eta_max: float = 1e-1,
        n_s: int = 500,
        cycles: int = 1,
        epochs: float = 0.0,
        step_size: int = 0,
        gamma: float = 0.1,
        flip: bool = False,
        translate: int = 0,
        noise_std: float = 0.0,
        flip_average: bool = False,
        keep_best: bool = False,
        early_stop: int = 0,
        seed: int = 0,
        standardize: bool = True,
        zca_eps: float = 0.0,
        options: dict[str, Any] | None = None,
        image_shape: Sequence[int] | None = None,
        progress: bool = False,
    ) -> None:
        # Store every argument under its own name and nothing else (scikit-learn's rule):
        # validation waits for fit, so set_params and clone see exactly what was passed.
        args = locals()
        for name in self._param_names():
            setattr(self, name, args[name])

    # -- parameters (scikit-learn's BaseEstimator protocol) -----------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The keyword parameters of ``__init__``, sorted (as scikit-learn lists them)."""
        return sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters as passed to ``__init__`` or :meth:`set_params` (no nested estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> MLPClassifier:
        """Store new values for parameters (checked in :meth:`fit`); returns ``self``."""
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ValueError(f"invalid parameter {name!r} for MLPClassifier; valid: {names}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if repr(v) != repr(defaults[k].default)
        ]
        return f"MLPClassifier({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn's checks; only scikit-learn calls this, so it may import it."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )

    def _config(self, n_samples: int) -> Config:
        """The validated training configuration (raises :class:`ConfigError`)."""
        params = {k: _plain(v) for k, v in self.get_params().items()}
        for name in ("standardize", "progress"):
            if not isinstance(params.pop(name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        del params["image_shape"]
        if params["batch_size"] is None:
            params["batch_size"] = min(DEFAULT_BATCH_SIZE, n_samples)
        hidden = self.hidden
        if (
            isinstance(hidden, str)
            or not isinstance(hidden, Sequence | np.ndarray)
            or not all(isinstance(h, int | np.integer) and not isinstance(h, bool) for h in hidden)
        ):  # (5.9,) is not silently 5, nor (True,) 1
            raise ConfigError(f"hidden must be a sequence of integer widths, got {hidden!r}")
        params["hidden"] = [int(h) for h in hidden]
        if self.layers is not None and not isinstance(self.layers, list | tuple):
            raise ConfigError(f"layers must be a list of layer specs, got {self.layers!r}")
        params["layers"] = list(self.layers) if self.layers is not None else []
        if self.options is not None and not isinstance(self.options, dict):
            raise ConfigError(f"options must be a dict, got {self.options!r}")
        params["options"] = dict(self.options or {})
        return Config(name="MLPClassifier", **params).validate()

    def _image_shape(self, d: int) -> ImageShape | None:
        """The geometry of the rows: ``image_shape``, CIFAR-10's for 3072 features, or None."""
        if self.image_shape is None:
            return legacy_shape(d)  # as a model file without a shape is read
        value = self.image_shape
        if (
            not isinstance(value, list | tuple | np.ndarray)
            or len(value) != 3
            or not all(type(_plain(v)) is int for v in value)
        ):  # (2, 2, 3.0) is not silently 3 channels
            raise ConfigError(f"image_shape must be 3 integers (height, width, channels): {value}")
        shape = ImageShape.parse(tuple(int(v) for v in value), "image_shape")
        if shape.size != d:
            raise ConfigError(f"image_shape {shape} has {shape.size} values per row, X has {d}")
        return shape

    # -- learning -----------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
    ) -> MLPClassifier:
        """Train on ``X`` ``(n, d)`` and labels ``y`` ``(n,)``; returns ``self``.

        ``X_val``, ``y_val`` (optional) are recorded in ``history_`` and serve
        ``keep_best`` and ``early_stop``.
        """
        X = _features(X)
        y = _labels(y, X.shape[0])
        cfg = self._config(X.shape[0])
        shape = self._image_shape(X.shape[1])
        if image_needs(cfg) and shape is None:
            raise ConfigError(
                f"{', '.join(image_needs(cfg))} need images: give the rows' "
                "image_shape=(height, width, channels)"
            )
        if cfg.zca_eps and not self.standardize:
            raise ConfigError("zca_eps needs standardize=True (whitening centred features)")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        mirror = mirror_for(shape, cfg.flip or cfg.flip_average)
        self.transform_ = InputTransform.fit(
            X, standardise=self.standardize, zca_eps=cfg.zca_eps, mirror=mirror
        )
        self.mean_, self.std_ = self.transform_.mean, self.transform_.std
        self.whiten_ = self.transform_.whiten
        dt = np.dtype(cfg.dtype)
        self.flip_average_ = cfg.flip_average  # as fitted: set_params changes it at the next fit
        self.mirror_ = shape.flip_permutation() if cfg.flip_average and shape else None
        Xs = self._standardized(X, dt)
        Xv = yv = None
        if X_val is not None and y_val is not None:
            Xv = self._standardized(_features(X_val), dt)
            yv = self._encode(_labels(y_val, Xv.shape[0]))
        rng = np.random.default_rng(cfg.seed)
        self.network_: Network = build_network(cfg, X.shape[1], len(self.classes_), rng)
        trainer = Trainer(
            self.network_,
            cfg,
            rng,
            progress=self.progress,
            image_shape=shape,
        )
        self.history_ = trainer.fit(Xs, y_idx.astype(np.int64), Xv, yv)
        self.n_updates_ = trainer.step
        return self

    def _standardized(self, X: np.ndarray, dt: np.dtype | type) -> np.ndarray:
        """The network inputs of ``X`` in ``dt``: the fitted :class:`InputTransform`
        (standardised in float64, as features may sit far from 0, then ``@ whiten_``)."""
        if X.shape[1] != self.n_features_in_:
            raise InvalidInput(
                f"X has {X.shape[1]} features, but MLPClassifier is expecting "
                f"{self.n_features_in_} features as input"
            )
        try:
            return self.transform_(X, dt, what="X")
        except DataError as e:
            raise InvalidInput(str(e)) from None

    def _encode(self, y: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            raise InvalidInput("y contains labels not seen in fit")
        return idx.astype(np.int64)

    # -- prediction ---------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``."""
        if not hasattr(self, "network_"):
            raise NotFittedError("this MLPClassifier is not fitted yet; call fit(X, y) first")
        Xs = self._standardized(_features(X), self.network_.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            p = self.network_.predict_proba(Xs, mirror=self.mirror_)
        bad = int(np.count_nonzero(~np.isfinite(p).all(axis=1)))
        if bad:  # never NaN probabilities (and class 0) without a word
            raise InvalidInput(
                f"out of range: the network's outputs are not finite numbers for {bad} of "
                f"{len(p)} rows of X (values far outside those it was fitted on)"
            )
        return p

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels ``(n,)``."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (``np.True_`` -> ``True``, as a
    scikit-learn search over an array of values passes them); anything else unchanged."""
    return value.item() if isinstance(value, np.bool_ | np.integer | np.floating) else value


def _features(X: Any) -> np.ndarray:
    """``X`` as a finite float64 ``(n, d)`` array with n, d >= 1, or :class:`InvalidInput`."""
    if hasattr(X, "toarray"):  # scipy.sparse
        raise InvalidInput("sparse X is not supported; pass a dense array (X.toarray())")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise InvalidInput("Complex data not supported")
    X = X.astype(np.float64, copy=False)  # objects through float(): TypeError for a non-number
    if X.ndim != 2:
        raise InvalidInput(
            f"X must be 2-D (n_samples, n_features), got shape {X.shape}. Reshape your data: "
            "X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample"
        )
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise InvalidInput(
                f"X has 0 {what}(s) (shape={X.shape}) while a minimum of 1 is required."
            )
    if not np.all(np.isfinite(X)):
        raise InvalidInput("X contains NaN or infinite values")
    return X


def _labels(y: Any, n: int) -> np.ndarray:
    """``y`` as ``(n,)`` class labels, or :class:`InvalidInput`."""
    if y is None:
        raise InvalidInput("MLPClassifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidInput(f"y must hold one label per row of X, shape ({n},); got {y.shape}")
    if y.dtype.kind in "fc":
        if not np.all(np.isfinite(y)):
            raise InvalidInput("y contains NaN or infinite values")
        if y.dtype.kind == "c" or np.any(y != np.round(y)):
            raise InvalidInput(
                "Unknown label type: y holds continuous values; MLPClassifier needs class labels"
            )
    return y
