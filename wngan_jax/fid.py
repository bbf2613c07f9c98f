"""FID, KID and precision/recall of generated images against reference images, on Inception features.

The paper proposes its reconstruction loss (§4) because the sample-quality measures of 2017 were unreliable;
these are the measures that became standard since, so that the two can be put side by side (docs/metrics.md):

* **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the two feature sets,
  ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``; equal to pytorch-fid's ``calculate_frechet_distance``.
* **KID** (Bińkowski et al. 2018): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged over
  random subsets; torch-fidelity's defaults and subset draws (100 subsets of 1000, ``RandomState(2020)``).
* **Precision and recall** (Kynkäänniemi et al. 2019): the share of generated features inside the reference
  manifold (the union of balls reaching each reference feature's k-th nearest neighbour, k = 3) and the share
  of reference features inside the generated manifold; as the ``prdc`` package computes them.

Features come from :mod:`wngan_jax.inception` (pytorch-fid's network); all statistics are in float64.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from wngan_jax import inception
from wngan_jax.errors import ConfigError, DataError

METRICS = ("fid", "kid", "pr")
MIN_FID_SAMPLES = 2048  # below the feature dimension the covariance is singular and FID strongly biased
NEAREST_K = 3  # precision/recall's k (prdc's default)
PER_DEVICE_BATCH = 32


def extractor(weights=None, dtype=jnp.float32) -> inception.Extractor:
    """The Inception feature extractor for ``weights``: an :class:`~wngan_jax.inception.Extractor` (returned as
    it is when its dtype matches), :class:`~wngan_jax.inception.InceptionWeights`, a path to pytorch-fid's
    ``.pth`` or its ``.npz`` export, or None for ``$WNGAN_INCEPTION_WEIGHTS``. Building one uploads the
    parameters to the devices: code that measures repeatedly (FID during training) builds it once."""
    if isinstance(weights, inception.Extractor) and weights.dtype == jnp.dtype(dtype):
        return weights
    if isinstance(weights, inception.Extractor):
        weights = weights.weights
    if not isinstance(weights, inception.InceptionWeights):
        weights = inception.load_weights(weights)
    return weights.extractor(dtype)


def inception_features(images, weights=None, batch_size: int | None = None, dtype=jnp.float32) -> np.ndarray:
    """The (N, 2048) float32 pool3 features of ``images``.

    ``images``: an NHWC array (uint8, or float in [0, 1]; 1 or 3 channels; any size) or an iterable of such
    batches (e.g. generated on the fly, NumPy or device arrays). ``weights``: as for :func:`extractor`. An array is
    cut into batches of ``batch_size`` (default 32 per local device), the last padded, so that one shape is
    compiled; ``dtype=jnp.bfloat16`` trades accuracy for speed.
    """
    extract = extractor(weights, dtype)
    if hasattr(images, "shape"):  # an array (NumPy or JAX), not an iterable of batches
        array = inception.check_images(images)
        devices = extract.num_devices
        size = min(batch_size or PER_DEVICE_BATCH * devices, -(-max(len(array), 1) // devices) * devices)
        batches = (array[start : start + size] for start in range(0, len(array), size))
    else:
        size, batches = None, images
    out, pending = [], None
    for batch in batches:
        n = len(batch)
        if size is not None and n < size:  # the last batch, padded to the compiled shape
            batch = np.concatenate([batch, np.zeros((size - n,) + batch.shape[1:], batch.dtype)])
        started = extract.dispatch(batch), n
        if pending is not None:  # fetched while the next batch runs
            out.append(np.asarray(pending[0])[: pending[1]])
        pending = started
    if pending is not None:
        out.append(np.asarray(pending[0])[: pending[1]])
    return np.concatenate(out) if out else np.zeros((0, inception.FEATURES), np.float32)


def _as_features(features, what: str) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise DataError(f"{what}: expected (N >= 2, D) features, got shape {features.shape}")
    return features


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov``, N - 1 denominator) of (N, D) features, in float64."""
    features = _as_features(features, "statistics")
    return features.mean(axis=0), np.cov(features, rowvar=False)


@dataclasses.dataclass(frozen=True)
class Reference:
    """The Inception features of a reference image set, with their mean and covariance (computed once)."""

    features: np.ndarray

    @functools.cached_property
    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return statistics(self.features)

    def __len__(self) -> int:
        return len(self.features)


def _moments(x) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(x, Reference):
        return x.moments
    if isinstance(x, tuple) and len(x) == 2:
        return np.asarray(x[0], np.float64), np.asarray(x[1], np.float64)
    return statistics(x)


def frechet_distance(a, b) -> float:
    """FID between two feature sets, each (N, D) features, a ``(mu, sigma)`` pair or a :class:`Reference`.

    ``tr (S_a S_b)^(1/2)`` is the sum of the square roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)``
    (similar to ``S_a S_b``, and symmetric positive semi-definite), computed with symmetric eigensolvers;
    pytorch-fid takes ``scipy.linalg.sqrtm(S_a S_b)``, the same number in exact arithmetic but slower and
    complex-valued when the covariances are singular.
    """
    (mu_a, s_a), (mu_b, s_b) = _moments(a), _moments(b)
    if mu_a.shape != mu_b.shape or s_a.shape != s_b.shape:
        raise DataError(f"frechet_distance: features of dimension {mu_a.shape} and {mu_b.shape}")
    vals, vecs = np.linalg.eigh(s_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root_a @ s_b @ root_a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)


def kernel_inception_distance(
    features_a,
    features_b,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets of the unbiased MMD^2 estimate with
    the polynomial kernel ``(gamma x.y + coef0)^degree`` (``gamma`` default ``1 / D``).

    Defaults and subset draws are torch-fidelity's (``RandomState(seed).choice(n, subset_size,
    replace=False)``, first set then second), so the numbers equal its ``kernel_inception_distance_mean`` and
    ``_std``. With fewer than ``subset_size`` features in a set the subsets shrink to the smaller set (a
    warning): the estimate stays unbiased but varies more.
    """
    a, b = _as_features(features_a, "KID"), _as_features(features_b, "KID")
    m = min(subset_size, len(a), len(b))
    if m < subset_size:
        warnings.warn(f"KID: {len(a)} and {len(b)} features; subsets of {m} instead of {subset_size}", stacklevel=2)
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((u @ v.T * gamma + coef0) ** degree for u, v in ((x, x), (y, y), (x, y)))
        off_diagonal = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
        mmds[i] = off_diagonal / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std())


def _distance_blocks(a: np.ndarray, b: np.ndarray, block: int = 1024):
    """(start, Euclidean distances of ``a[start:start + block]`` to all of ``b``), in float64."""
    b_sq = np.sum(b * b, axis=1)
    for start in range(0, len(a), block):
        x = a[start : start + block]
        sq = np.sum(x * x, axis=1)[:, None] + b_sq[None, :] - 2 * x @ b.T
        yield start, np.sqrt(np.clip(sq, 0, None))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest other row (the (k+1)-th smallest, self included)."""
    radii = np.empty(len(x))
    for start, d in _distance_blocks(x, x):
        radii[start : start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The share of ``points`` strictly inside at least one ball (``centres``, ``radii``)."""
    inside = np.zeros(len(points), bool)
    for start, d in _distance_blocks(points, centres):
        inside[start : start + len(d)] = np.any(d < radii[None, :], axis=1)
    return float(inside.mean())


def precision_recall(reference_features, generated_features, nearest_k: int = NEAREST_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k = ``nearest_k``, as ``prdc`` computes
    them: precision is the share of generated features closer (strictly) than its k-NN radius to some
    reference feature; recall the share of reference features closer than its k-NN radius to some generated
    feature. Distances are computed in blocks, so memory stays at block x N."""
    real, fake = (
        _as_features(reference_features, "precision/recall"),
        _as_features(generated_features, "precision/recall"),
    )
    if min(len(real), len(fake)) <= nearest_k:
        raise DataError(f"precision/recall: need more than nearest_k={nearest_k} features in each set")
    precision = _coverage(fake, real, _knn_radii(real, nearest_k))
    recall = _coverage(real, fake, _knn_radii(fake, nearest_k))
    return precision, recall


def _warn_few(n: int, what: str) -> None:
    if n < MIN_FID_SAMPLES:
        warnings.warn(
            f"{what}: {n} images, fewer than {MIN_FID_SAMPLES}: their covariance is singular and FID is strongly "
            "biased upwards; compare FIDs only at equal sample sizes (docs/metrics.md)",
            stacklevel=3,
        )


def reference(
    images,
    weights=None,
    *,
    cache_dir: str | os.PathLike | None = None,
    fingerprint: str | None = None,
    batch_size: int | None = None,
) -> Reference:
    """The :class:`Reference` of ``images`` (an array, as for :func:`inception_features`).

    With ``cache_dir`` and ``fingerprint`` (any string that identifies the images, e.g. the data cache's
    fingerprint and split), the features are stored once in ``cache_dir`` under a name made of a hash of the
    fingerprint, the number of images and the weights' SHA-256, and read from there afterwards. Warns below
    2048 images.
    """
    extract = extractor(weights)
    n = len(images)
    _warn_few(n, "reference set")
    path = None
    if cache_dir is not None and fingerprint is not None:
        key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        path = Path(cache_dir).expanduser() / f"inception-{key}-{n}-{extract.weights.sha256[:16]}.npz"
        try:
            with np.load(path) as f:
                return Reference(f["features"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # not there yet, or unreadable: computed and written again
    features = inception_features(images, extract, batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, features=features)
        os.replace(tmp, path)
    return Reference(features)


def dataset_reference(dataset, weights=None, *, num: int = 10_000, batch_size: int | None = None) -> Reference:
    """The :class:`Reference` of the first ``num`` training images of a ``wngan_jax.data.load`` dataset (all of
    them when it has fewer), cached in the dataset's cache directory under its source fingerprint and split.

    The cache stores images in the order of the split permutation, so the first ``num`` training rows are a
    uniform random sample of the training split.
    """
    info = dataset.info
    fields = ("source", "fingerprint", "size", "channels", "crop", "split_seed", "final_test")
    fingerprint = json.dumps([info[f] for f in fields], sort_keys=True, default=str)
    return reference(
        dataset.train[:num], weights, cache_dir=info["cache_dir"], fingerprint=fingerprint, batch_size=batch_size
    )


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` validated against :data:`METRICS` (a :class:`ConfigError` naming ``--metrics`` otherwise)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    return tuple(metrics)


def min_images(metrics: Sequence[str]) -> int:
    """The fewest images a set may hold for ``metrics``: two for a covariance (FID) or an unbiased MMD (KID),
    ``NEAREST_K + 1`` for a k-nearest-neighbour radius (precision/recall)."""
    return max([2] + [NEAREST_K + 1 for m in metrics if m == "pr"])


def check_set_sizes(metrics: Sequence[str], sizes: dict[str, int]) -> None:
    """Each set of images, ``{flag: count}``, large enough for ``metrics`` (a ``ConfigError`` naming the flag),
    checked before any image is generated or any feature computed."""
    need = min_images(metrics)
    for flag, count in sizes.items():
        if count < need:
            raise ConfigError(
                f"{flag} must be at least {need} for --metrics {','.join(metrics)} (a covariance needs two images; "
                f"precision/recall {NEAREST_K + 1}), got {count}; use {MIN_FID_SAMPLES} or more for a usable FID"
            )


def sample_metrics(
    generated: np.ndarray | Iterable[np.ndarray],
    reference_set: Reference | np.ndarray,
    weights=None,
    metrics: Sequence[str] = METRICS,
    *,
    batch_size: int | None = None,
    dtype=jnp.float32,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    nearest_k: int = NEAREST_K,
) -> dict:
    """FID, KID and/or precision/recall of ``generated`` images against ``reference_set`` (a :class:`Reference`
    from :func:`reference`, or images), as a JSON-ready dict: ``fid``; ``kid`` and ``kid_std``; ``precision``
    and ``recall``; ``num_generated`` and ``num_reference``. ``metrics`` is a subset of ``("fid", "kid",
    "pr")``."""
    metrics = check_metrics(metrics)
    extract = extractor(weights, dtype)
    if not isinstance(reference_set, Reference):
        reference_set = reference(reference_set, extract, batch_size=batch_size)
    fake = inception_features(generated, extract, batch_size, dtype)
    out: dict = {"num_generated": len(fake), "num_reference": len(reference_set)}
    if "fid" in metrics:
        _warn_few(len(fake), "generated set")
        out["fid"] = frechet_distance(fake, reference_set)
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kernel_inception_distance(
            fake, reference_set.features, subsets=kid_subsets, subset_size=kid_subset_size
        )
    if "pr" in metrics:
        out["precision"], out["recall"] = precision_recall(reference_set.features, fake, nearest_k)
    return out
