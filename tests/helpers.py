"""Small synthetic data sets shared by the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplab.data import RawDataset
from mlplab.images import ImageShape


def synthetic_raw(
    n_train: int = 600,
    n_test: int = 200,
    k: int = 10,
    seed: int = 0,
    noise: float = 40.0,
    side: int = 32,
) -> RawDataset:
    """A learnable set of ``side`` x ``side`` RGB images (CIFAR-shaped by default): one random
    mean image per class plus noise. A smaller ``side`` makes whitening (a d x d fit) cheap."""
    rng = np.random.default_rng(seed)
    shape = ImageShape(side, side, 3)
    means = rng.uniform(60, 190, (k, shape.size))

    def draw(n):
        y = rng.integers(0, k, n)
        x = np.clip(means[y] + rng.normal(0, noise, (n, shape.size)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    xt, yt = draw(n_train)
    xs, ys = draw(n_test)
    return RawDataset(
        x_train=xt,
        y_train=yt,
        x_test=xs,
        y_test=ys,
        classes=tuple(f"c{i}" for i in range(k)),
        train_batch=None,
        source="synthetic",
        image_shape=shape,
    )


def small_images_npz(path: Path, side: int = 8, n_train: int = 2600, n_test: int = 500) -> Path:
    """An ``.npz`` of ``side`` x ``side`` RGB images (uint8, ``(N, H, W, 3)``) in 10
    learnable classes, for a whole pipeline in seconds where CIFAR-10's 3072 values are not
    the point (its whitening is a 3072 x 3072 fit per run)."""
    rng = np.random.default_rng(0)
    means = rng.uniform(60, 190, (10, side, side, 3))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = np.clip(means[y] + rng.normal(0, 40, (n, side, side, 3)), 0, 255)
        return x.astype(np.uint8), y

    (x, y), (xt, yt) = draw(n_train), draw(n_test)
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    return path


def assert_drawn(png: os.PathLike[str] | str, min_width: int = 300, min_height: int = 200) -> None:
    """``png`` is a readable image of at least that size with something drawn on it: more
    than a few colours and at least 1 % of its pixels away from the background colour."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        assert im.width >= min_width and im.height >= min_height, im.size
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    drawn = np.abs(rgb - background).sum(axis=2) > 30
    assert len(colours) > 8 and drawn.mean() > 0.01, (len(colours), drawn.mean())


@contextlib.contextmanager
def headless_chromium(profile: Path, *, log_console: bool = False) -> Iterator[Any]:
    """A Selenium driver of headless Chromium at 1366x900 (a laptop screen), quit after the
    block. Skips without chromium and chromedriver, but fails in CI (``.ci/run`` installs
    them)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (browser and driver_path):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run)")
        pytest.skip("chromium/chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1366,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.binary_location = browser
    if log_console:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
