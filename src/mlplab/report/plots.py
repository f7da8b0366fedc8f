"""Training curves in the style of the DD2424 figures (matplotlib, no display needed).

Text that comes from users (run, study, class, parameter and file names) goes through
:func:`literal` before it reaches matplotlib: a ``$`` in a name is drawn as a dollar sign,
never parsed as mathtext (which would draw ``$x$`` in italics, or fail on bad math).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlplab.fileio import atomic_write_bytes


def literal(text: object) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped (``\\$``), so that no
    part of it is parsed as mathtext."""
    return str(text).replace("$", r"\$")


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Save ``fig`` as PNG atomically and close it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(
    history: Sequence[dict[str, float]],
    path: str | os.PathLike,
    title: str = "",
    *,
    train_label: str = "training",
) -> None:
    """Cost, loss and accuracy (train and validation) and the learning rate against update step."""
    steps = [p["step"] for p in history]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [("cost", "cost"), ("loss", "loss"), ("accuracy", "accuracy")]
    for ax, (key, label) in zip(axes, panels, strict=False):
        ax.plot(steps, [p[f"train_{key}"] for p in history], label=literal(train_label))
        if history and f"val_{key}" in history[0]:
            ax.plot(steps, [p[f"val_{key}"] for p in history], label="validation")
        ax.set_xlabel("update step")
        ax.set_ylabel(label)
        ax.set_title(f"{label} plot")
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[3]
    ax.plot(steps, [p["lr"] for p in history], color="tab:green")
    ax.set_xlabel("update step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate (at recorded steps)")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(literal(title))
    save_figure(fig, path)


def plot_sensitivity(
    histories: Mapping[tuple[float, bool], Sequence[dict[str, float]]],
    sigmas: Sequence[float],
    path: str | os.PathLike,
) -> None:
    """Loss curves: one row per sigma, with batch norm left and without right."""
    fig, axes = plt.subplots(
        len(sigmas), 2, figsize=(11, 3.2 * len(sigmas)), squeeze=False, sharex=True
    )
    for r, sigma in enumerate(sigmas):
        for c, bn in enumerate((True, False)):
            ax = axes[r][c]
            hist = histories[(sigma, bn)]
            steps = [p["step"] for p in hist]
            ax.plot(steps, [p["train_loss"] for p in hist], label="training")
            if hist and "val_loss" in hist[0]:
                ax.plot(steps, [p["val_loss"] for p in hist], label="validation")
            ax.set_title(f"σ = {sigma:g}, {'with' if bn else 'without'} batch norm")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            ax.legend()
    for ax in axes[-1]:
        ax.set_xlabel("update step")
    fig.tight_layout()
    save_figure(fig, path)


def plot_lr_range(
    history: Sequence[dict[str, float]],
    eta_min: float,
    eta_max: float,
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Validation accuracy and training loss against the learning rate, with the suggestion."""
    lrs = [p["lr"] for p in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(lrs, [p["val_accuracy"] for p in history], marker=".", label="validation")
    axes[0].plot(lrs, [p["train_accuracy"] for p in history], marker=".", label="training")
    axes[0].set_ylabel("accuracy")
    axes[1].plot(lrs, [p["train_loss"] for p in history], marker=".", color="tab:red")
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.axvline(eta_min, color="gray", ls="--", label=f"suggested η_min = {eta_min:.3g}")
        ax.axvline(eta_max, color="black", ls="--", label=f"suggested η_max = {eta_max:.3g}")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(literal(f"learning-rate range test {title}".strip()))
    save_figure(fig, path)


def plot_search(
    axes_data: list[dict],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Validation accuracy (%) against each searched parameter, one panel per parameter.

    Each entry of ``axes_data``: ``name``, ``log`` (log x axis), ``points`` (label ->
    ``(xs, ys, sds)``), optional ``curve`` (``(xs, ys, band)``: a smoothed curve and the band
    below its maximum), ``interval`` (``(low, high)``, shaded) and ``best`` (``(x, y)``, starred).
    """
    n = len(axes_data)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.4), squeeze=False)
    for ax, d in zip(axes[0], axes_data, strict=True):
        colors = itertools.cycle(("tab:blue", "tab:orange", "tab:green"))  # each panel anew
        for label, (xs, ys, sds) in d["points"].items():
            ax.errorbar(
                xs,
                ys,
                yerr=sds if any(sds) else None,
                fmt="o",
                color=next(colors),
                alpha=0.8,
                label=literal(label),
            )
        if d.get("curve"):
            xs, ys, band = d["curve"]
            ax.plot(xs, ys, color="tab:blue", label="coarse, smoothed")
            top = max(ys)
            ax.fill_between(
                xs,
                top - band,
                top,
                color="grey",
                alpha=0.15,
                label=f"within the noise ({band:.2f}) of its peak",
            )
        if d.get("interval"):
            ax.axvspan(*d["interval"], color="tab:orange", alpha=0.12, label="fine interval")
        if d.get("best"):
            ax.scatter(*d["best"], marker="*", s=220, color="tab:red", zorder=5, label="best")
        if d["log"]:
            ax.set_xscale("log")
        ax.set_xlabel("λ (lam)" if d["name"] == "lam" else literal(d["name"]))
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(literal(title))
    save_figure(fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """The confusion matrix as a heat map: rows true class, columns predicted, each cell the
    share of its row (the count written in it)."""
    import numpy as np

    c = np.asarray(confusion, dtype=float)
    share = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * k, 0.8 + 0.55 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{int(c[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    names = [literal(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(literal(title) if title else "confusion matrix (counts; colour: share of the row)")
    save_figure(fig, path)


def plot_images(
    images: Sequence[Any] | np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    cols: int = 10,
    cell: float = 1.25,
) -> None:
    """A grid of pictures with a label over each: RGB ``(H, W, 3)`` or grayscale ``(H, W, 1)``
    or ``(H, W)``, of any size, uint8 (0..255) or floats in [0, 1]."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    size = (cell * cols, (cell + 0.2) * rows + 0.4)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(**_picture(images[i]), interpolation="nearest")
            ax.set_title(literal(labels[i]), fontsize=7)
    if title:
        fig.suptitle(literal(title))
    save_figure(fig, path)


def _picture(image: object) -> dict:
    """``imshow`` arguments for one picture: RGB as it is, grayscale in a gray colour map on
    the full range of its type (not stretched to its own min and max)."""
    import numpy as np

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        top = 255 if a.dtype == np.uint8 else 1.0
        return {"X": a, "cmap": "gray", "vmin": 0, "vmax": top}
    if a.ndim == 3 and a.shape[2] == 3:
        return {"X": a}
    raise ValueError(f"a picture must be (H, W), (H, W, 1) or (H, W, 3), got shape {a.shape}")


def plot_runs(
    runs: Sequence[tuple[str, Sequence[dict[str, float]]]],
    path: str | os.PathLike,
    metric: str = "val_accuracy",
) -> None:
    """``metric`` of several runs' histories against the update step, on one axis each for
    the metric and the training loss (the course reports compare runs side by side)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, history in runs:
        steps = [p["step"] for p in history]
        axes[0].plot(steps, [p.get(metric) for p in history], label=literal(label))
        axes[1].plot(steps, [p.get("train_loss") for p in history], label=literal(label))
    for ax, what in zip(axes, (metric.replace("_", " "), "training loss"), strict=True):
        ax.set_xlabel("update step")
        ax.set_ylabel(literal(what))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
