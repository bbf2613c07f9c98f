"""Image grids, (target | reconstruction) pairs, labelled image tables and curves as PNG files (paper Figs. 1-5, 12)."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from wngan_jax.errors import ConfigError

# Images are enlarged (nearest neighbour, whole multiples) until their shorter side has at least this many
# pixels, so that a 16x16 digit is readable in a grid, a report or TensorBoard.
MIN_SIDE = 64


def to_uint8(images, *, rgb: bool = True) -> np.ndarray:
    """Float images in [0, 1] (or uint8) ``(N, H, W, C)`` -> uint8; gray expanded to RGB when ``rgb``."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    if rgb and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def upscale(images: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``(..., H, W, C)`` repeated ``k`` times along H and W, ``k`` the smallest with ``k*min(H, W) >= min_side``."""
    factor = max(1, -(-min_side // min(images.shape[-3], images.shape[-2])))
    return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def grid(images, columns: int | None = None, padding: int = 2, min_side: int = MIN_SIDE) -> np.ndarray:
    """Tile ``(N, H, W, C)`` images into one uint8 RGB image with a white border between tiles; tiles are
    enlarged by :func:`upscale` first (``min_side=0`` keeps them as they are)."""
    images = upscale(to_uint8(images), min_side) if min_side else to_uint8(images)
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


def check_figure_path(path, flag: str) -> None:
    """A figure path whose extension matplotlib can write (.png, .pdf, .svg, ...), or a ``ConfigError``
    naming ``flag``."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = pathlib.Path(path).suffix.lower()
    if suffix[1:] not in FigureCanvasBase.get_supported_filetypes():
        raise ConfigError(f"{flag}={path}: unknown figure extension {suffix or '(none)'!r}; use .png, .pdf or .svg")


def save_png(image: np.ndarray, path) -> pathlib.Path:
    """Write one uint8 image; the format follows the extension (PNG for ``.png``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def save_grid(images, path, columns: int | None = None) -> pathlib.Path:
    return save_png(grid(images, columns), path)


@dataclasses.dataclass(frozen=True)
class Line:
    """One curve of :func:`plot_lines`: ``group`` picks the colour (a model), ``label`` names the line (an
    instance), ``marks`` are points drawn as crosses on it (collapses); ``style`` (a matplotlib line style such
    as ``"--"``) replaces the group's cycle of styles, and ``steps`` draws a step function (each value held
    until the next x)."""

    group: str
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    marks: Sequence[tuple[float, float]] = ()
    style: str | None = None
    steps: bool = False


def plot_lines(
    lines: Sequence[Line],
    path,
    xlabel: str = "iteration",
    ylabel: str = "",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> pathlib.Path:
    """One colour per group, one line style per line of the group, crosses at the marks (paper Figs. 1, 13-14);
    ``ylim`` fixes the vertical range (fractions: ``(0, 1.02)``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(line.group for line in lines))}
    styles = ("-", "--", ":", "-.")
    seen: dict[str, int] = {}
    for line in lines:
        colour = colours[line.group]
        if line.style is None:
            k = seen[line.group] = seen.get(line.group, -1) + 1
        style = line.style or styles[k % len(styles)]
        ax.plot(
            line.xs,
            line.ys,
            style,
            color=colour,
            marker="" if line.steps else "o",
            markersize=2,
            label=line.label,
            drawstyle="steps-post" if line.steps else "default",
        )
        if line.marks:
            mx, my = zip(*line.marks)
            ax.plot(mx, my, "x", color=colour, markersize=12, markeredgewidth=2.5)
    if any(line.marks for line in lines):
        ax.plot([], [], "x", color="black", markersize=10, markeredgewidth=2.5, label="collapse")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if len(lines) > 6 else 1)
    return _save_figure(fig, path)


@dataclasses.dataclass(frozen=True)
class Interval:
    """One series of :func:`plot_intervals`: values at ``xs`` with their intervals ``[lows, highs]``."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    lows: Sequence[float]
    highs: Sequence[float]


def plot_intervals(series: Sequence[Interval], path, *, xlabel: str, ylabel: str, log_x: bool = False) -> pathlib.Path:
    """One colour per series, points joined by lines, error bars for the intervals (series side by side)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for k, s in enumerate(series):
        # Series share their xs: nudge each sideways (multiplicatively on a log axis) so the bars stay apart.
        shift = (k - (len(series) - 1) / 2) * 0.03
        xs = [x * (1 + shift) if log_x else x + shift for x in s.xs]
        ys = np.asarray(s.ys, float)
        errors = [ys - np.asarray(s.lows, float), np.asarray(s.highs, float) - ys]
        ax.errorbar(xs, ys, yerr=errors, color=f"C{k}", marker="o", capsize=3, label=s.label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


def plot_image_table(
    cells: Sequence[Sequence[np.ndarray]],
    path,
    *,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    title: str | None = None,
) -> pathlib.Path:
    """A table of images (uint8 ``(H, W, 3)``, e.g. from :func:`grid`) with row and column labels, drawn
    with nearest-neighbour pixels (paper Figs. 2-5, 9, 12)."""
    plt = _pyplot()
    rows, columns = len(cells), max(len(r) for r in cells)
    h, w = max(c.shape[0] for r in cells for c in r), max(c.shape[1] for r in cells for c in r)
    size = 1.0 / max(h, w)  # inches per pixel of the largest cell
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * w * size + 1.2, rows * h * size + 0.6 + 0.3 * bool(title)),
        dpi=120,
        squeeze=False,
    )
    for r in range(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(cells[r]):
                ax.imshow(cells[r][c], interpolation="nearest")
            if r == 0 and c < len(column_labels):
                ax.set_title(column_labels[c], fontsize="small")
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save_figure(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path) -> pathlib.Path:
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path
