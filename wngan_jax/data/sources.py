"""Image sources named by a spec string (the ``--data`` flag of every command).

Spec forms:

- ``tfds:<name>[:<split>]``: a TFDS dataset prepared as ``array_record`` (see `python -m wngan_jax.data
  prepare``), read with ``tfds.data_source` (TensorFlow is not needed). Default splits use the whole
  dataset, as the paper does before drawing its own split (§5.1): ``celeb_a`` ->
  ``train+validation+test``, ``cifar10`` -> ``train+test``, anything else -> ``train``.
- ``folder:<path>``: every JPEG/PNG/WebP file under ``path``, recursively, in sorted order.
- ``lmdb:<path>``: an LSUN-style LMDB database (the directory holding ``data.mdb``), values being encoded
  images, read in key order.
- ``digits``: scikit-learn's 1797 handwritten 8x8 digits (values 0-16 scaled to 0-255, kept as white
  strokes on black, like MNIST).
- ``lfw_subset``: scikit-image's 200 25x25 grayscale images (100 faces, 100 non-faces).

Default centre crops (paper §5.1): CelebA 160 (central 160x160 patch of the 218x178 image), LSUN 256
(``tfds:lsun/...`` and ``lmdb:``; LSUN images have a 256 shorter side, so this keeps the central 256x256
patch without downsampling), none elsewhere.
"""

from __future__ import annotations

import abc
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wngan_jax.errors import ConfigError, DataError, MissingDataError, MissingDependency

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
TFDS_DEFAULT_SPLITS = {"celeb_a": "train+validation+test", "cifar10": "train+test"}
CELEBA_CROP = 160
LSUN_CROP = 256
SPEC_HELP = "expected 'tfds:<name>[:<split>]', 'folder:<path>', 'lmdb:<path>', 'digits' or 'lfw_subset'"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")


def _path_slug(prefix: str, path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"{prefix}-{_slug(path.name)}-{digest}"


class Source(abc.ABC):
    """A finite, ordered collection of images.

    ``items()`` yields ``(name, raw)`` pairs sequentially (names identify skipped images in reports);
    ``decode(raw)`` turns one raw item into a PIL image and may run on worker threads.
    """

    spec: str
    slug: str
    default_crop: int = 0

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of images, skipped ones included."""

    @abc.abstractmethod
    def items(self) -> Iterator[tuple[str, Any]]:
        """Yields ``(name, raw)`` for every image, in order."""

    @abc.abstractmethod
    def decode(self, raw: Any) -> Image.Image:
        """Decodes one raw item; raises OSError/ValueError on corrupt data."""

    @abc.abstractmethod
    def fingerprint(self) -> dict:
        """What identifies the source content; a cache built from a different fingerprint is stale."""


class TfdsSource(Source):
    """A prepared ``array_record`` TFDS dataset, read through ``tfds.data_source`` without TensorFlow."""

    def __init__(self, name: str, split: str | None, data_dir: str | None):
        import tensorflow_datasets as tfds

        self.name = name
        self.split = split or TFDS_DEFAULT_SPLITS.get(name, "train")
        self.data_dir = str(Path(data_dir).expanduser()) if data_dir else None
        self.spec = f"tfds:{name}:{self.split}"
        self.slug = _slug(f"tfds-{name}-{self.split}")
        if name == "celeb_a":
            self.default_crop = CELEBA_CROP
        elif name.startswith("lsun"):
            self.default_crop = LSUN_CROP
        try:
            self._source = tfds.data_source(name, split=self.split, data_dir=data_dir, download=False)
        except (
            NotImplementedError,
            FileNotFoundError,
            AssertionError,
            KeyError,
            tfds.core.registered.DatasetNotFoundError,
        ) as err:
            raise MissingDataError(self._missing_message(err)) from err

    def _missing_message(self, err: Exception) -> str:
        where = self.data_dir or "the default TFDS data dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
        text = (
            f"TFDS dataset '{self.name}' (split '{self.split}') is not prepared as array_record in "
            f"{where} ({type(err).__name__}).\n"
            f"Prepare it once from the raw files with:\n"
            f"  python -m wngan_jax.data prepare {self.name} --manual_dir <raw files> "
            f"--data_dir <tfds data dir>\nand pass the same data dir here (see docs/data.md)."
        )
        if self.name.startswith("lsun"):
            text += "\nFor LSUN, 'lmdb:<path to the extracted *_lmdb directory>' needs no preparation."
        return text

    def __len__(self) -> int:
        return len(self._source)

    def items(self) -> Iterator[tuple[str, int]]:
        for index in range(len(self._source)):
            yield f"{self.name}[{index}]", index

    def decode(self, raw: int) -> Image.Image:
        image = np.asarray(self._source[raw]["image"])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        return Image.fromarray(image)

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "split": self.split,
            "count": len(self),
            "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None,
        }


class FolderSource(Source):
    """Every JPEG/PNG/WebP under a directory, recursively, sorted by relative path."""

    def __init__(self, path: str):
        self.root = Path(path).expanduser().resolve()
        self.spec = f"folder:{self.root}"
        self.slug = _path_slug("folder", self.root)
        layout = (
            f"'folder:<path>' reads every {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} file under "
            "<path>, recursively (any layout, e.g. <path>/img_0001.jpg or <path>/class/img.png)."
        )
        if not self.root.is_dir():
            raise MissingDataError(f"image folder {self.root} does not exist. {layout}")
        self.files = sorted(
            (p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.files:
            raise MissingDataError(f"image folder {self.root} holds no image. {layout}")

    def __len__(self) -> int:
        return len(self.files)

    def items(self) -> Iterator[tuple[str, Path]]:
        for path in self.files:
            yield str(path), path

    def decode(self, raw: Path) -> Image.Image:
        with Image.open(raw) as img:
            img.load()
            return img

    def fingerprint(self) -> dict:
        digest = hashlib.sha256()
        for path in self.files:
            stat = path.stat()
            rel = path.relative_to(self.root).as_posix()
            digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return {"root": str(self.root), "count": len(self.files), "files_sha256": digest.hexdigest()}


class LmdbSource(Source):
    """An LSUN-style LMDB database: keys are image ids, values encoded images (JPEG/WebP/PNG)."""

    default_crop = LSUN_CROP

    def __init__(self, path: str):
        try:
            import lmdb
        except ImportError as err:
            raise MissingDependency("'lmdb:' specs need the lmdb package: pip install 'wngan_jax[prepare]'") from err
        given = Path(path).expanduser().resolve()
        self.root = given.parent if given.name == "data.mdb" else given
        self.spec = f"lmdb:{self.root}"
        self.slug = _path_slug("lmdb", self.root)
        if not (self.root / "data.mdb").is_file():
            raise MissingDataError(
                f"no LMDB database at {self.root} (expected {self.root / 'data.mdb'}). For LSUN, "
                "unzip e.g. bedroom_train_lmdb.zip (or run `python -m wngan_jax.data prepare "
                "lsun/bedroom --manual_dir <dir with the zip> --data_dir <out>`) and pass "
                "'lmdb:<out>/bedroom_train_lmdb'."
            )
        database = self.root / "data.mdb"
        redo = "Extract it again from its zip (see docs/data.md)."
        try:
            self._env = lmdb.open(str(self.root), readonly=True, lock=False, readahead=False, subdir=True)
            pages = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
            self._entries = self._env.stat()["entries"]
        except lmdb.Error as err:
            raise DataError(f"{database} is not a readable LMDB database ({err}). {redo}") from err
        if database.stat().st_size < pages:  # reading past its end would kill the process (SIGBUS)
            raise DataError(
                f"{database} is cut off: {database.stat().st_size} bytes where the database needs {pages}. {redo}"
            )

    def __len__(self) -> int:
        return self._entries

    def items(self) -> Iterator[tuple[str, bytes]]:
        import lmdb

        try:
            with self._env.begin(write=False) as txn:
                for key, value in txn.cursor():
                    yield key.decode(errors="replace"), value
        except lmdb.Error as err:
            raise DataError(f"{self.root / 'data.mdb'} is corrupt ({err}). Extract it again from its zip.") from err

    def decode(self, raw: bytes) -> Image.Image:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            return img

    def fingerprint(self) -> dict:
        stat = (self.root / "data.mdb").stat()
        return {"root": str(self.root), "count": len(self), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class ArraySource(Source):
    """Small gray datasets shipped inside Python wheels, held in memory as uint8 ``(N, h, w)``."""

    def __init__(self, spec: str, images: np.ndarray, package: str, version: str):
        self.spec = self.slug = spec
        self.images = images
        self.package, self.version = package, version

    def __len__(self) -> int:
        return len(self.images)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for index, image in enumerate(self.images):
            yield f"{self.spec}[{index}]", image

    def decode(self, raw: np.ndarray) -> Image.Image:
        return Image.fromarray(raw, mode="L")

    def fingerprint(self) -> dict:
        return {self.package: self.version, "count": len(self)}


def _digits() -> ArraySource:
    import sklearn
    from sklearn.datasets import load_digits

    images = np.rint(load_digits().images * (255.0 / 16.0)).astype(np.uint8)
    return ArraySource("digits", images, "scikit-learn", sklearn.__version__)


def _lfw_subset() -> ArraySource:
    try:
        import skimage
        from skimage.data import lfw_subset
    except ImportError as err:
        raise MissingDependency("'lfw_subset' needs scikit-image: pip install scikit-image") from err
    images = np.rint(lfw_subset() * 255.0).astype(np.uint8)
    return ArraySource("lfw_subset", images, "scikit-image", skimage.__version__)


def open_source(spec: str, data_dir: str | None = None) -> Source:
    """Returns the ``Source`` named by ``spec``; ``data_dir`` is the TFDS data dir for ``tfds:`` specs."""
    kind, _, rest = spec.partition(":")
    if kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return TfdsSource(name, split or None, data_dir)
    if kind == "folder" and rest:
        return FolderSource(rest)
    if kind == "lmdb" and rest:
        return LmdbSource(rest)
    if spec == "digits":
        return _digits()
    if spec == "lfw_subset":
        return _lfw_subset()
    raise ConfigError(f"unknown data spec {spec!r} (--data): {SPEC_HELP}")
