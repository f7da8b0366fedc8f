"""The numbers of a trained network on its splits: accuracies, losses, the confusion matrix
and the snapshot ensemble, flip-averaged where the recipe asks for it."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.data import Splits
from mlplab.errors import ConfigError
from mlplab.nn.network import Network


def _mirror(cfg: Config, splits: Splits) -> np.ndarray | None:
    """The flip permutation of the splits' images when ``cfg`` averages over flips."""
    if not cfg.flip_average:
        return None
    if splits.image_shape is None:
        raise ConfigError("flip_average needs images; these data are flat features")
    return splits.image_shape.flip_permutation()


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y))


def final_metrics(net: Network, cfg: Config, splits: Splits) -> dict[str, Any]:
    """Accuracy, loss and cost of the trained network on each non-empty part of ``splits``.

    With ``cfg.flip_average`` the accuracies are those of the saved model's predictions
    (the mean over each image and its mirror) and ``{part}_accuracy_single_view`` keeps
    the plain ones; losses and costs are always those of the single view.
    """
    metrics: dict[str, Any] = {}
    mirror = _mirror(cfg, splits)
    for part in ("train", "val", "test"):
        X, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if len(X):
            ev = net.evaluate(X, y, cfg.lam, cfg.eval_batch)
            metrics.update(
                {
                    f"{part}_accuracy": ev["accuracy"],
                    f"{part}_loss": ev["loss"],
                    f"{part}_cost": ev["cost"],
                }
            )
            if mirror is not None:
                metrics[f"{part}_accuracy_single_view"] = ev["accuracy"]
                probs = net.predict_proba(X, cfg.eval_batch, mirror=mirror)
                metrics[f"{part}_accuracy"] = _accuracy(probs, y)
        else:
            metrics.update({f"{part}_accuracy": None, f"{part}_loss": None, f"{part}_cost": None})
    return metrics


def breakdown_on_test(net: Network, cfg: Config, splits: Splits) -> dict[str, Any]:
    """Per-class test accuracy and the confusion matrix (rows true class, columns predicted)."""
    from mlplab.train.inspect import confusion_matrix, per_class_accuracy

    if not len(splits.x_test):
        return {}
    probs = net.predict_proba(splits.x_test, cfg.eval_batch, mirror=_mirror(cfg, splits))
    conf = confusion_matrix(splits.y_test, probs.argmax(1), len(splits.classes))
    return {"test_per_class_accuracy": per_class_accuracy(conf), "test_confusion": conf.tolist()}


def snapshot_metrics(
    net: Network, snapshots: list[dict[str, np.ndarray]], cfg: Config, splits: Splits
) -> dict[str, Any]:
    """Accuracy of each snapshot and of their average probabilities on validation and test
    (each snapshot's predictions flip-averaged with ``cfg.flip_average``, and then the
    ensemble of single views kept as ``ensemble_{part}_accuracy_single_view``)."""
    from mlplab.train.ensemble import combine

    out: dict[str, Any] = {"n_snapshots": len(snapshots)}
    snap_net = Network.from_spec(net.spec(), cfg.dtype)
    mirror = _mirror(cfg, splits)
    for part in ("val", "test"):
        X, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if not len(X):
            continue
        probs, single = [], []
        for snap in snapshots:
            snap_net.set_state(snap)
            single.append(snap_net.predict_proba(X, cfg.eval_batch))
            if mirror is not None:  # as predict_proba(mirror=...), one forward fewer
                mirrored = snap_net.mirror_proba(X, cfg.eval_batch, mirror)
                probs.append((single[-1] + mirrored) * 0.5)
        probs = probs or single
        out[f"snapshot_{part}_accuracies"] = [_accuracy(p, y) for p in probs]
        out[f"ensemble_{part}_accuracy"] = float(np.mean(combine(probs, "mean") == y))
        if mirror is not None:
            out[f"ensemble_{part}_accuracy_single_view"] = float(
                np.mean(combine(single, "mean") == y)
            )
    return out
