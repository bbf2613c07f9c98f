"""Image grids, (target | reconstruction) pairs and loss curves as PNG files (paper Figs. 1-4, 12)."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from wngan_jax.errors import ConfigError


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (or uint8) ``(N, H, W, C)`` -> uint8, gray expanded to RGB."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile ``(N, H, W, C)`` images into one uint8 RGB image with a white border between tiles."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        out[y : y + h, x : x + w] = img
    return out


def pairs(targets, reconstructions) -> np.ndarray:
    """``(N, H, 2W, C)``: each target with its reconstruction on the right (paper Fig. 2)."""
    return np.concatenate([to_uint8(targets), to_uint8(reconstructions)], axis=2)


def check_image_path(path, flag: str) -> None:
    """An image path whose extension PIL can write, or a ``ConfigError`` naming ``flag``."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in Image.registered_extensions():
        raise ConfigError(f"{flag}={path}: unknown image extension {suffix or '(none)'!r}; use .png or .jpg")


def save_png(image: np.ndarray, path) -> pathlib.Path:
    """Write one uint8 image; the format follows the extension (PNG for ``.png``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def save_grid(images, path, columns: int | None = None) -> pathlib.Path:
    return save_png(grid(images, columns), path)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path,
    *,
    xlabel: str = "iteration",
    ylabel: str = "50-step reconstruction loss",
    title: str | None = None,
) -> pathlib.Path:
    """One line per name from ``{name: (iterations, losses)}`` (paper Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
