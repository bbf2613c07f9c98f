"""Turning raw dataset files into something ``load`` reads (docs/data.md).

CelebA and CIFAR-10 are built into TFDS ``array_record`` datasets (random access without
TensorFlow afterwards); building them needs TensorFlow once (``pip install 'wngan_jax[prepare]'``).
LSUN is not built with TFDS (its builder needs tensorflow-io): its LMDB zip is extracted and read
directly through the ``lmdb:`` spec.
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from wngan_jax.errors import ConfigError, DataError, MissingDataError, MissingDependency

TFDS_RAW_FILES = {
    "celeb_a": (
        "img_align_celeba.zip",
        "list_eval_partition.txt",
        "list_attr_celeba.txt",
        "list_landmarks_align_celeba.txt",
        "identity_CelebA.txt",
    ),
    "cifar10": ("cifar-10-binary.tar.gz",),
}
PREPARE_HELP = "supported: " + ", ".join(TFDS_RAW_FILES) + ", lsun/<category> (e.g. lsun/bedroom)"


def _require(manual_dir: Path, files: tuple[str, ...], name: str) -> None:
    missing = [f for f in files if not (manual_dir / f).is_file()]
    if missing:
        raise MissingDataError(
            f"{name} needs these files, as downloaded, directly in {manual_dir}:\n  "
            + "\n  ".join(files)
            + "\nmissing:\n  "
            + "\n  ".join(missing)
        )


def prepare(name: str, manual_dir: str, data_dir: str) -> list[str]:
    """Prepares dataset ``name`` from the raw files in ``manual_dir``; returns the specs to load it."""
    manual = Path(manual_dir).expanduser().resolve()
    out = Path(data_dir).expanduser().resolve()
    if name.startswith("lsun/"):
        return _prepare_lsun(name.split("/", 1)[1], manual, out)
    if name not in TFDS_RAW_FILES:
        raise ConfigError(f"cannot prepare {name!r}; {PREPARE_HELP}")
    _require(manual, TFDS_RAW_FILES[name], name)
    if importlib.util.find_spec("tensorflow") is None:  # TFDS builders generate examples with it
        raise MissingDependency(
            "building a TFDS dataset needs TensorFlow (only for this step): pip install 'wngan_jax[prepare]'"
        )
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(out))
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)),
    )
    return [f"tfds:{name}"]


def _prepare_lsun(category: str, manual: Path, out: Path) -> list[str]:
    """Extracts ``<category>_train_lmdb.zip`` (and ``_val_`` when present) into ``out/lsun/``.

    Each archive is extracted into a hidden ``.<name>.extracting`` directory that is renamed into place when
    complete and removed when anything fails (one left by a killed extraction is removed first).
    """
    train_zip = f"{category}_train_lmdb.zip"
    _require(manual, (train_zip,), f"lsun/{category}")
    specs = []
    for split in ("train", "val"):
        archive = manual / f"{category}_{split}_lmdb.zip"
        if not archive.is_file():
            continue
        target = out / "lsun"
        database = target / f"{category}_{split}_lmdb"
        if not (database / "data.mdb").is_file():
            print(f"extracting {archive} into {target}")
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / f".{database.name}.extracting"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _extract_lmdb(archive, tmp, database.name).rename(database)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        specs.append(f"lmdb:{database}")
    return specs


def _extract_lmdb(archive: Path, tmp: Path, name: str) -> Path:
    """Extracts ``archive`` into ``tmp``; returns the extracted directory holding its one ``data.mdb``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            found = [PurePosixPath(n) for n in names if PurePosixPath(n).name == "data.mdb"]
            if len(found) != 1:
                listing = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise DataError(
                    f"{archive} holds {len(found)} LMDB databases (data.mdb files), expected one, as in "
                    f"{name}/data.mdb; its entries: {listing or 'none'}. Download it again."
                )
            zf.extractall(tmp)
    except zipfile.BadZipFile as err:
        raise DataError(f"{archive} is not a readable zip archive ({err}). Download it again.") from err
    return tmp / found[0].parent
