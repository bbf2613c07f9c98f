"""Preprocessed image cache and the paper's train / test split (§5.1).

A source is decoded, cropped and resized once into ``images.npy``, a uint8 ``(rows, H, W, C)`` array
opened memory-mapped. Rows are stored in the order of the split permutation: one permutation of
the dataset drawn from ``split_seed``; its first ``final_test`` images form the final test set, the
first ``running_test`` of those the running test set, and the rest the training set. The three sets
are therefore contiguous slices of the memory map. ``split.npy`` beside it records, for each row, the
index of its image in the source, so every run on the same cache shares the same split.

``meta.json`` records what the cache was built from (spec, fingerprint, size, channels, crop,
split seed); a cache whose record differs from the request is rebuilt, never reused, and so is one
whose ``meta.json`` is unreadable or whose arrays do not have the size it records (a warning names the
file). Files are written under temporary names (``files.temp_path``) and renamed, ``meta.json`` last.

One process builds a cache at a time: the build holds ``build.lock`` in the cache directory (a
``locks.FileLock``), and a second process, on this host or another one sharing the disk, waits for it
and then uses its cache. The holder of that lock removes the temporary files of builds that were
killed; a build that fails removes its own. The image array's full size is reserved on the disk
before decoding starts, so a full disk is reported at once instead of crashing the build later.

Unreadable images are skipped: their rows are filled with the last readable rows so that the
readable images stay a contiguous prefix of ``images.npy`` (``meta.json`` holds their ``count``). Images
over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) count as unreadable.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from wngan_jax import files, locks
from wngan_jax.data import sources, transforms
from wngan_jax.errors import CacheDirError, ConfigError, DataError
from wngan_jax.models import image_hw

CACHE_FORMAT = 1
SHOWN_SKIPPED = 5
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
BUILD_LOCK = "build.lock"
UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
CACHE_DIR_HINT = "choose a writable cache root with cache_dir=... (--cache_dir) or the WNGAN_CACHE environment variable"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The paper's split of one preprocessed source; arrays are uint8 ``(N, H, W, C)`` memory maps."""

    train: np.ndarray
    final_test: np.ndarray
    running_test: np.ndarray
    info: dict


def default_cache_root() -> Path:
    """``$WNGAN_CACHE``, or ``~/.cache/wngan_jax``."""
    return Path(os.environ.get("WNGAN_CACHE") or "~/.cache/wngan_jax").expanduser()


def _check_split(count: int, final_test: int, running_test: int, spec: str) -> None:
    if not 0 < running_test <= final_test:
        raise ConfigError(
            f"need 0 < running_test <= final_test, got running_test={running_test}, final_test={final_test}"
        )
    if final_test >= count:
        raise ConfigError(
            f"final_test={final_test} leaves no training image: {spec} has {count} readable "
            f"images. Lower final_test (and running_test) for this dataset."
        )


def load(
    spec: str,
    image_size: tuple[int, int] | int,
    *,
    channels: int = 3,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | None = None,
    final_test: int = 2000,
    running_test: int = 200,
    split_seed: int = 0,
    crop: int | None = None,
    progress: bool = True,
) -> Dataset:
    """Loads ``spec`` (see ``sources``) at ``image_size``, building the cache on first use.

    ``crop``: None uses the source's default centre crop (CelebA 160, LSUN 256), 0 none, an int a
    ``crop x crop`` centre crop before resizing. ``cache_dir`` is the cache root (default
    ``$WNGAN_CACHE`` or ``~/.cache/wngan_jax``); each request gets the subdirectory
    ``<source>_<H>x<W>_<C>c_<crop>_split<seed>`` of it.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    size = image_hw(image_size)
    source = sources.open_source(spec, data_dir=data_dir)
    _check_split(len(source), final_test, running_test, source.spec)
    crop = source.default_crop if crop is None else int(crop)
    params = {
        "format": CACHE_FORMAT,
        "source": source.spec,
        "fingerprint": source.fingerprint(),
        "size": list(size),
        "channels": channels,
        "crop": crop,
        "split_seed": split_seed,
    }
    crop_name = f"crop{crop}" if crop else "nocrop"
    name = f"{source.slug}_{size[0]}x{size[1]}_{channels}c_{crop_name}_split{split_seed}"
    directory = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
    directory = directory / name
    meta = _read_meta(directory, params)
    if meta is None:
        meta = _locked_build(directory, source, params, progress)
    count = meta["count"]
    _check_split(count, final_test, running_test, source.spec)
    images = np.load(directory / "images.npy", mmap_mode="r")[:count]
    info = {
        "source": source.spec,
        "crop": crop,
        "size": size,
        "channels": channels,
        "count": count,
        "fingerprint": params["fingerprint"],
        "content_sha256": meta.get("content_sha256"),  # absent in caches built by 0.1.0 and 0.2.0
        "skipped": meta["skipped"],
        "split_seed": split_seed,
        "final_test": final_test,
        "running_test": running_test,
        "train": count - final_test,
        "cache_dir": str(directory),
    }
    return Dataset(
        train=images[final_test:],
        final_test=images[:final_test],
        running_test=images[:running_test],
        info=info,
    )


def _read_meta(directory: Path, params: dict) -> dict | None:
    """Returns the cache record if ``directory`` holds a complete cache built for ``params``."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        built_for, count, rows = meta["params"], int(meta["count"]), int(meta["rows"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("rebuilding the data cache in %s: %s is unreadable (%s)", directory, meta_path, err)
        return None
    if built_for != params:
        log.warning("rebuilding the data cache in %s: it was built for different data or settings", directory)
        return None
    if not ((directory / "images.npy").is_file() and (directory / "split.npy").is_file()):
        return None
    problem = _check_arrays(directory, params, count, rows)
    if problem:
        log.warning("rebuilding the data cache in %s: %s", directory, problem)
        return None
    return meta


def _check_arrays(directory: Path, params: dict, count: int, rows: int) -> str | None:
    """What is wrong with the cache's arrays (a truncated or foreign file), or None."""
    expected = (rows, *params["size"], params["channels"])
    for name, shape in (("images.npy", expected), ("split.npy", (count,))):
        path = directory / name
        try:
            array = np.load(path, mmap_mode="r")  # a truncated file fails here: shorter than its header says
        except (OSError, ValueError, EOFError) as err:
            return f"{path} is unreadable ({err})"
        if array.shape != shape or (name == "images.npy" and array.dtype != np.uint8):
            return f"{path} holds a {array.dtype} {array.shape} array, not the {shape} one that meta.json records"
    return None


def _prepare_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise CacheDirError(f"cannot write the data cache in {directory} ({err}); {CACHE_DIR_HINT}") from err


def _locked_build(directory: Path, source: sources.Source, params: dict, progress: bool) -> dict:
    """Builds the cache holding ``build.lock``, or waits for the process that holds it and uses its cache."""
    _prepare_dir(directory)
    lock = locks.FileLock(directory / BUILD_LOCK)
    try:
        if not lock.acquire():
            log.warning("waiting for %s, which is building the data cache in %s", lock.holder(), directory)
            lock.acquire(blocking=True)
            meta = _read_meta(directory, params)
            if meta is not None:
                lock.release()
                return meta
    except OSError as err:
        if err.errno not in locks.UNSUPPORTED:
            raise CacheDirError(f"cannot lock {lock.path} ({err}); {CACHE_DIR_HINT}") from err
        log.warning(
            "cannot lock %s (%s): two builds of this cache at once are not prevented, and the temporary "
            "files of killed builds are not removed",
            lock.path,
            err,
        )
    try:
        if lock.held:  # no other build runs: temporary files here were left by killed ones
            for path in directory.iterdir():
                if files.is_temp(path):
                    log.warning("removing %s, left by a cache build that was stopped", path)
                    path.unlink(missing_ok=True)
        return _build(directory, source, params, progress)
    except OSError as err:
        if err.errno not in UNWRITABLE:
            raise
        raise CacheDirError(f"cannot write the data cache in {directory} ({err}); {CACHE_DIR_HINT}") from err
    finally:
        lock.release()


def _decoded(
    source: sources.Source, size: tuple[int, int], crop: int, channels: int, progress: bool
) -> Iterator[tuple[str, np.ndarray | str]]:
    """Yields ``(name, image or error text)`` in source order, decoding on a thread pool."""

    def work(raw):
        try:
            return transforms.preprocess(source.decode(raw), size, crop, channels)
        except DECODE_ERRORS as err:
            return f"{type(err).__name__}: {err}"

    workers = os.cpu_count() or 1
    items = iter(source.items())
    with (
        warnings.catch_warnings(),  # the filter below is seen by the worker threads too
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(source), unit="img", desc=f"caching {source.spec}", disable=not progress) as bar,
    ):
        # An image over PIL's decompression-bomb limit is skipped, not decoded on every thread at once.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        while chunk := list(itertools.islice(items, 64 * workers)):
            names = [name for name, _ in chunk]
            yield from zip(names, pool.map(work, [raw for _, raw in chunk]))
            bar.update(len(chunk))


def _build(directory: Path, source: sources.Source, params: dict, progress: bool) -> dict:
    """Decodes ``source`` into ``directory`` and returns the new ``meta.json`` record."""
    (directory / "meta.json").unlink(missing_ok=True)
    height, width = params["size"]
    total = len(source)
    order = np.random.default_rng(params["split_seed"]).permutation(total)
    row_of = np.empty(total, np.int64)
    row_of[order] = np.arange(total)
    with files.removed_on_error(files.temp_path(directory / "images.npy")) as tmp_images:
        count, skipped, errors = _fill(tmp_images, source, params, order, row_of, progress)
        os.replace(tmp_images, directory / "images.npy")
    with files.removed_on_error(files.temp_path(directory / "split.npy")) as tmp_split:
        np.save(tmp_split, order[:count])
        os.replace(tmp_split, directory / "split.npy")

    if skipped:
        shown = "\n  ".join(f"{n} ({e})" for n, e in zip(skipped, errors[:SHOWN_SKIPPED]))
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) of {source.spec}:\n  {shown}"
            + ("\n  ..." if len(skipped) > SHOWN_SKIPPED else ""),
            stacklevel=4,
        )
    digest = content_digest(np.load(directory / "images.npy", mmap_mode="r")[:count])
    meta = {"params": params, "count": count, "rows": total, "skipped": skipped, "content_sha256": digest}
    files.write_atomic(directory / "meta.json", json.dumps(meta, indent=1))
    return meta


def content_digest(images: np.ndarray, rows: int = 1024) -> str:
    """SHA-256 of the decoded images in split order: what the data is, wherever its files are."""
    digest = hashlib.sha256()
    for start in range(0, len(images), rows):
        digest.update(np.ascontiguousarray(images[start : start + rows]).tobytes())
    return digest.hexdigest()


def _fill(
    path: Path, source: sources.Source, params: dict, order: np.ndarray, row_of: np.ndarray, progress: bool
) -> tuple[int, list[str], list[str]]:
    """Decodes ``source`` into a new image array at ``path``; returns the readable count and the skipped images."""
    height, width = params["size"]
    total = len(source)
    images = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(total, height, width, params["channels"])
    )
    _reserve(path)
    skipped, errors, holes = [], [], []
    for index, (name, image) in enumerate(
        _decoded(source, (height, width), params["crop"], params["channels"], progress)
    ):
        if isinstance(image, str):
            skipped.append(name)
            errors.append(image)
            holes.append(row_of[index])
        else:
            images[row_of[index]] = image
    count = total - len(skipped)
    if count == 0:
        raise DataError(f"no readable image in {source.spec} (first error: {errors[0]})")
    # Move the readable rows past `count` into the holes left by skipped images below it.
    hole_set = set(int(h) for h in holes)
    low_holes = sorted(h for h in hole_set if h < count)
    tail_rows = [r for r in range(count, total) if r not in hole_set]
    for hole, row in zip(low_holes, tail_rows):
        images[hole] = images[row]
        order[hole] = order[row]
    images.flush()
    del images
    return count, skipped, errors


def _reserve(path: Path) -> None:
    """Allocates the whole file now: writing a memory map on a full disk would kill the process (SIGBUS)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot reserve space
            return
        size = os.fstat(fd).st_size
        raise CacheDirError(
            f"cannot reserve {size / 1e9:.2f} GB for {path} ({err.strerror}); free space there or {CACHE_DIR_HINT}"
        ) from err
    finally:
        os.close(fd)
