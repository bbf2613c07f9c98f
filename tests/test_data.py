"""Data pipeline: sources, crops, cache and split (paper §5.1), batch iterator, sharding."""

import colorsys
import errno
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from wngan_jax import data, files, sharding
from wngan_jax.data import cache, prepare, transforms
from wngan_jax.data.__main__ import main as cli
from wngan_jax.errors import CacheDirError, ConfigError, DataError


def source_index(ds):
    """Source index of each cached row (final test rows first, then train)."""
    return np.load(Path(ds.info["cache_dir"]) / "split.npy")


def all_rows(ds):
    return np.concatenate([ds.final_test, ds.train])


def pil_reference(image, crop, size):
    """Centre crop then bicubic resize, written out independently of the pipeline."""
    h, w = image.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    patch = Image.fromarray(image[top : top + crop, left : left + crop])
    return np.asarray(patch.resize((size, size), Image.Resampling.BICUBIC))


def records(images):
    """An `as_data_source_fn` for `tfds.testing.mock_data` serving `images`; records the splits."""
    calls = []

    def as_data_source(builder, split, **kwargs):
        calls.append((builder.name, split))
        return [{"image": image} for image in images]

    return as_data_source, calls


# --- TFDS sources -------------------------------------------------------------------------------


def test_celeb_a_mock_is_center_cropped_160(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        originals = [
            tfds.data_source("celeb_a", split="train+validation+test", download=False)[i]["image"] for i in range(12)
        ]
        ds = data.load("tfds:celeb_a", 160, cache_dir=tmp_path, final_test=4, running_test=2, progress=False)
        small = data.load("tfds:celeb_a", 64, cache_dir=tmp_path, final_test=4, running_test=2, progress=False)
    assert originals[0].shape == (218, 178, 3)
    assert ds.info["crop"] == 160 and ds.train.shape == (8, 160, 160, 3)
    for row, index in zip(all_rows(ds), source_index(ds)):
        np.testing.assert_array_equal(row, originals[index][29:189, 9:169])
    for row, index in zip(all_rows(small), source_index(small)):
        np.testing.assert_array_equal(row, pil_reference(originals[index], 160, 64))


def test_cifar10_uses_train_and_test_as_is(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    as_data_source, calls = records(images)
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        ds = data.load("tfds:cifar10", 32, cache_dir=tmp_path, final_test=4, running_test=2, progress=False)
    assert calls == [("cifar10", "train+test")] and ds.info["crop"] == 0
    np.testing.assert_array_equal(all_rows(ds), images[source_index(ds)])
    with tfds.testing.mock_data(num_examples=10):
        ds = data.load("tfds:cifar10:test", 16, cache_dir=tmp_path, final_test=4, running_test=2, progress=False)
    assert ds.train.shape == (6, 16, 16, 3) and ds.info["source"] == "tfds:cifar10:test"


def test_lsun_center_256_without_downsampling(tmp_path):
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 256, (4, 256, 341, 3), dtype=np.uint8)
    small = np.full((60, 40, 3), 77, np.uint8)  # smaller than the crop: resized up, then cropped
    as_data_source, _ = records(list(wide) + [small])
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        ds = data.load("tfds:lsun/bedroom", 256, cache_dir=tmp_path, final_test=2, running_test=1, progress=False)
    for row, i in zip(all_rows(ds), source_index(ds)):
        expected = np.full((256, 256, 3), 77, np.uint8) if i == 4 else wide[i][:, 42:298]
        np.testing.assert_array_equal(row, expected)
    with tfds.testing.mock_data(num_examples=6):  # random small sizes from the mock
        ds = data.load("tfds:lsun/bedroom", 32, cache_dir=tmp_path, final_test=2, running_test=1, progress=False)
    assert ds.train.shape == (4, 32, 32, 3) and ds.info["crop"] == 256


# --- folders, LMDB, wheels ----------------------------------------------------------------------


def make_folder(root, count=6, size=(40, 30)):
    rng = np.random.default_rng(2)
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8))
        image.save(root / ("sub" if i % 2 else ".") / f"img{i}.{'png' if i % 3 else 'jpg'}")
    return root


def test_folder_gray_rgba_and_corrupt_files(tmp_path):
    root = make_folder(tmp_path / "images")
    Image.fromarray(np.full((30, 30), 100, np.uint8)).save(root / "gray.png")
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: flattened on white
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "alpha.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unreadable image.*broken\.jpg"):
        ds = data.load(f"folder:{root}", 16, cache_dir=tmp_path / "cache", final_test=3, running_test=1, progress=False)
    assert ds.info["count"] == 8 and ds.info["skipped"] == [str(root / "broken.jpg")]
    assert len(ds.train) == 5 and ds.train.dtype == np.uint8
    names = [p.relative_to(root).as_posix() for p in data.open_source(f"folder:{root}").files]
    assert names == sorted(names) and "sub/alpha.png" in names and "notes.txt" not in names
    rows = dict(zip(source_index(ds), all_rows(ds)))
    np.testing.assert_array_equal(rows[names.index("gray.png")], np.full((16, 16, 3), 100))
    np.testing.assert_array_equal(rows[names.index("sub/alpha.png")], np.full((16, 16, 3), 255))
    with pytest.warns(UserWarning, match="skipped 1"):
        gray = data.load(
            f"folder:{root}", 16, channels=1, cache_dir=tmp_path / "cache", final_test=3, running_test=1, progress=False
        )
    assert gray.train.shape == (5, 16, 16, 1)


def test_folder_default_crop_resizes_shorter_side_then_center_crops():
    image = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3)))
    out = transforms.preprocess(image, (50, 50), crop=0, channels=3)
    assert out.shape == (50, 50, 3)
    expected = np.asarray(image.resize((100, 50), Image.Resampling.BICUBIC))[:, 25:75]
    np.testing.assert_array_equal(out, expected)
    assert transforms.preprocess(image, (20, 30), crop=0, channels=3).shape == (20, 30, 3)
    up = transforms.preprocess(Image.new("RGB", (30, 20), (5, 6, 7)), (64, 64), crop=160, channels=3)
    np.testing.assert_array_equal(up, np.broadcast_to(np.array([5, 6, 7], np.uint8), (64, 64, 3)))


# --- colour modes: every mode PIL opens, against numpy on the raw samples -----------------------

RAW = np.array([[[0, 64, 255], [200, 10, 128], [255, 255, 0]], [[30, 90, 150], [255, 0, 0], [128, 128, 128]]], np.uint8)
ALPHA = np.array([[255, 0, 128], [64, 255, 200]], np.uint8)
WIDE = np.array([[0, 1000, 65535], [257, 40000, 12345]], np.uint16)
FLOATS = np.array([[0.0, 0.25, 1.0], [-0.5, 0.7, 3.0]], np.float32)


def on_white(color, alpha):
    """Straight alpha composited on white, in float64."""
    a = alpha[..., None] / 255.0
    return color * a + 255.0 * (1 - a)


def reopened(img, fmt, **options):
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    buffer.seek(0)
    return Image.open(buffer)


def gray3(gray):
    return np.repeat(np.asarray(gray, np.float64)[..., None], 3, axis=-1)


def mode_cases():
    """(name, image, expected RGB as float64 from the raw samples) for every mode PIL opens."""
    palette = np.array([[0, 0, 0], [255, 0, 0], [10, 200, 30], [90, 90, 250]], np.uint8)
    index = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    p_image = Image.fromarray(index, "P")
    p_image.putpalette(palette.ravel().tolist())
    p_transparent = p_image.copy()
    p_transparent.info["transparency"] = 2
    premultiplied = np.rint(RAW * (ALPHA[..., None] / 255.0)).astype(np.uint8)
    cmyk = np.concatenate([RAW, ALPHA[..., None]], axis=-1)
    in_gamut = RAW // 4 + 96  # YCbCr whose RGB needs no clipping: its luma is then Y itself
    y, cb, cr = (in_gamut[..., i].astype(np.float64) for i in range(3))
    ycbcr = np.stack(
        [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)]
    )
    hsv = np.array([[colorsys.hsv_to_rgb(*(RAW[i, j] / 255.0)) for j in range(3)] for i in range(2)]) * 255
    rgb_trns = RAW.copy()
    rgb_trns[0, 1] = rgb_trns[1, 2] = (7, 8, 9)
    wide_trns = reopened(Image.fromarray(WIDE), "PNG", transparency=1000)
    yield "1", reopened(Image.fromarray(RAW[..., 0] > 100), "PNG"), gray3(np.where(RAW[..., 0] > 100, 255, 0))
    yield "L", reopened(Image.fromarray(RAW[..., 1]), "PNG"), gray3(RAW[..., 1])
    yield (
        "L+tRNS",
        reopened(Image.fromarray(RAW[..., 1]), "PNG", transparency=128),
        gray3(np.where(RAW[..., 1] == 128, 255, RAW[..., 1])),
    )
    yield (
        "LA",
        reopened(Image.fromarray(np.stack([RAW[..., 0], ALPHA], -1), "LA"), "PNG"),
        gray3(on_white(RAW[..., :1], ALPHA)[..., 0]),
    )
    la = np.stack([premultiplied[..., 0], ALPHA], -1)
    yield "La", Image.frombytes("La", (3, 2), la.tobytes()), gray3(premultiplied[..., 0] + 255.0 - ALPHA)
    yield "P", reopened(p_image, "PNG"), palette[index].astype(np.float64)
    yield "P+transparency", reopened(p_transparent, "PNG"), np.where((index == 2)[..., None], 255.0, palette[index])
    pa = Image.merge("PA", (p_image, Image.fromarray(ALPHA)))
    yield "PA", pa, on_white(palette[index], ALPHA)
    for mode in ("I;16", "I;16B"):
        raw = WIDE.astype(">u2" if mode.endswith("B") else "<u2")
        yield mode, Image.frombytes(mode, (3, 2), raw.tobytes()), gray3(np.floor(WIDE / 257 + 0.5))
    yield "I;16 PNG+tRNS", wide_trns, gray3(np.where(WIDE == 1000, 255, np.floor(WIDE / 257 + 0.5)))
    pgm = b"P5 3 2 65535\n" + WIDE.astype(">u2").tobytes()
    yield "I (16-bit PGM)", Image.open(io.BytesIO(pgm)), gray3(np.floor(WIDE / 257 + 0.5))
    signed = np.array([[-5, 0, 70000], [65535, 2570, 100000]], np.int32)
    yield (
        "I (32-bit TIFF)",
        reopened(Image.fromarray(signed), "TIFF"),
        gray3(np.clip(np.floor(signed / 257 + 0.5), 0, 255)),
    )
    yield (
        "F (float TIFF)",
        reopened(Image.fromarray(FLOATS), "TIFF"),
        gray3(np.clip(np.floor(FLOATS.astype(np.float64) * 255 + 0.5), 0, 255)),
    )
    yield "RGB", reopened(Image.fromarray(RAW), "PNG"), RAW.astype(np.float64)
    yield (
        "RGB+tRNS",
        reopened(Image.fromarray(rgb_trns), "PNG", transparency=(7, 8, 9)),
        np.where((rgb_trns == (7, 8, 9)).all(-1, keepdims=True), 255.0, rgb_trns),
    )
    yield "RGBA", reopened(Image.fromarray(np.concatenate([RAW, ALPHA[..., None]], -1)), "PNG"), on_white(RAW, ALPHA)
    yield (
        "RGBa",
        Image.frombytes("RGBa", (3, 2), np.concatenate([premultiplied, ALPHA[..., None]], -1).tobytes()),
        (premultiplied + 255.0 - ALPHA[..., None]),
    )
    yield "RGBX", Image.frombytes("RGBX", (3, 2), cmyk.tobytes()), RAW.astype(np.float64)
    yield (
        "CMYK",
        reopened(Image.frombytes("CMYK", (3, 2), cmyk.tobytes()), "TIFF"),
        (255.0 * (1 - RAW / 255.0) * (1 - ALPHA[..., None] / 255.0)),
    )
    yield "YCbCr", Image.frombytes("YCbCr", (3, 2), in_gamut.tobytes()), np.moveaxis(ycbcr, 0, -1)
    yield "HSV", Image.frombytes("HSV", (3, 2), RAW.tobytes()), hsv


@pytest.mark.parametrize("name, image, expected", list(mode_cases()), ids=[c[0] for c in mode_cases()])
def test_every_mode_is_decoded_to_0_255(name, image, expected):
    assert image.mode == name.split()[0].split("+")[0]
    rgb = transforms.preprocess(image, (2, 3), crop=0, channels=3)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    tolerance = (
        0.5
        if name.startswith(("1", "L+", "L ", "I", "F", "P ", "P+", "RGB+", "RGBX")) or name in ("L", "P", "RGB")
        else 1.5
    )
    np.testing.assert_allclose(rgb, expected, atol=tolerance)
    luma = expected @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's documentation gives it
    gray = transforms.preprocess(image, (2, 3), crop=0, channels=1)
    assert gray.shape == (2, 3, 1)
    np.testing.assert_allclose(gray[..., 0], luma, atol=tolerance + 1)


def test_cielab_goes_to_srgb():
    color = pytest.importorskip("skimage.color")
    lab = np.array([[[100.0, 0, 0], [50.0, 0, 0], [0.0, 0, 0], [53.0, 40, -30]]])
    encoded = np.stack([np.rint(lab[..., 0] * 255 / 100), lab[..., 1] % 256, lab[..., 2] % 256], -1)
    image = Image.frombytes("LAB", (4, 1), encoded.astype(np.uint8).tobytes())
    rgb = transforms.preprocess(image, (1, 4), crop=0, channels=3).astype(np.float64)
    # Grays are the same under either white point; a colour within the D50/D65 adaptation difference.
    np.testing.assert_allclose(rgb[0, :3], np.rint(color.lab2rgb(lab)[0, :3] * 255), atol=1)
    np.testing.assert_allclose(rgb[0, 3], color.lab2rgb(lab)[0, 3] * 255, atol=6)
    gray = transforms.preprocess(image, (1, 4), crop=0, channels=1)[0, :, 0]
    np.testing.assert_allclose(gray, rgb[0] @ np.array([0.299, 0.587, 0.114]), atol=1)


def encoded(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def make_lmdb(path, images):
    lmdb = pytest.importorskip("lmdb")
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, image in enumerate(images):
            value = image if isinstance(image, bytes) else encoded(image, "PNG")
            txn.put(f"{i:040x}".encode(), value)
    env.close()


def test_lmdb_and_lsun_prepare(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (5, 256, 320, 3), dtype=np.uint8)
    database = tmp_path / "raw" / "bedroom_train_lmdb"
    make_lmdb(database, list(images) + [b"\xff\xd8 corrupt"])
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = data.load(
            f"lmdb:{database}", 256, cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False
        )
    assert ds.info["crop"] == 256 and ds.info["count"] == 5
    np.testing.assert_array_equal(all_rows(ds), images[source_index(ds)][:, :, 32:288])

    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "bedroom_train_lmdb.zip", "w") as zf:
        for file in database.iterdir():
            zf.write(file, f"bedroom_train_lmdb/{file.name}")
    out = tmp_path / "prepared"
    assert cli(["prepare", "lsun/bedroom", "--manual_dir", str(manual), "--data_dir", str(out)]) == 0
    spec = f"lmdb:{out / 'lsun' / 'bedroom_train_lmdb'}"
    with pytest.warns(UserWarning, match="skipped 1"):
        prepared = data.load(spec, 32, cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    assert prepared.train.shape == (3, 32, 32, 3)


@pytest.mark.parametrize("size", [16, 32])
def test_digits(tmp_path, size):
    ds = data.load("digits", size, cache_dir=tmp_path, final_test=200, running_test=100, progress=False)
    assert ds.info["count"] == 1797
    assert ds.train.shape == (1597, size, size, 3) and ds.final_test.shape == (200, size, size, 3)
    assert ds.train.max() == 255 and ds.train.min() == 0
    np.testing.assert_array_equal(ds.train[..., 0], ds.train[..., 2])  # gray replicated


def test_lfw_subset(tmp_path):
    pytest.importorskip("skimage")
    ds = data.load("lfw_subset", 32, channels=1, cache_dir=tmp_path, final_test=50, running_test=10, progress=False)
    assert ds.train.shape == (150, 32, 32, 1)


# --- split and cache ----------------------------------------------------------------------------


def test_split_is_deterministic_and_shared(tmp_path):
    kwargs = dict(cache_dir=tmp_path, final_test=200, running_test=100, progress=False)
    first = data.load("digits", 8, **kwargs)
    again = data.load("digits", 8, **kwargs)
    other = data.load("digits", 8, split_seed=1, **kwargs)
    np.testing.assert_array_equal(source_index(first), source_index(again))
    np.testing.assert_array_equal(first.final_test, again.final_test)
    assert np.array_equal(np.sort(source_index(first)), np.arange(1797))
    assert not np.array_equal(source_index(first)[:200], source_index(other)[:200])
    np.testing.assert_array_equal(first.running_test, first.final_test[:100])
    assert isinstance(first.train, np.memmap)
    smaller = data.load("digits", 8, cache_dir=tmp_path, final_test=100, running_test=10, progress=False)
    np.testing.assert_array_equal(smaller.final_test, first.final_test[:100])


def test_stale_cache_is_rebuilt(tmp_path):
    root = make_folder(tmp_path / "images")
    kwargs = dict(cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    assert data.load(f"folder:{root}", 8, **kwargs).info["count"] == 6
    Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "new.png")
    ds = data.load(f"folder:{root}", 8, **kwargs)
    assert ds.info["count"] == 7 and len(ds.train) == 5
    meta_path = Path(ds.info["cache_dir"]) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["crop"] = 3
    meta_path.write_text(json.dumps(meta))
    np.save(Path(ds.info["cache_dir"]) / "split.npy", np.zeros(7, np.int64))
    rebuilt = data.load(f"folder:{root}", 8, **kwargs)
    assert sorted(source_index(rebuilt)) == list(range(7))


# --- failed, killed and damaged cache builds ---------------------------------------------------

DYING_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from wngan_jax.data import cache, transforms
    preprocess, seen = transforms.preprocess, []
    def dying(*args):
        seen.append(1)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return preprocess(*args)
    transforms.preprocess = dying
    cache.load(sys.argv[1], 8, cache_dir=sys.argv[2], final_test=2, running_test=1, progress=False)
    """
)
CACHE_FILES = ["images.npy", "meta.json", "split.npy"]


def cache_files(ds):
    return sorted(p.name for p in Path(ds.info["cache_dir"]).iterdir())


def test_killed_build_leaves_temp_files_the_next_build_removes(tmp_path, caplog):
    root = make_folder(tmp_path / "images")
    spec, cache_root = f"folder:{root}", tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", DYING_BUILD, spec, str(cache_root)], cwd=os.getcwd())
    assert killed.returncode == -9
    (directory,) = cache_root.iterdir()
    assert any(files.is_temp(p) for p in directory.iterdir()) and (directory / cache.BUILD_LOCK).exists()
    ds = data.load(spec, 8, cache_dir=cache_root, final_test=2, running_test=1, progress=False)
    assert cache_files(ds) == CACHE_FILES and "left by a cache build that was stopped" in caplog.text


def test_second_build_waits_for_the_first(tmp_path, caplog):
    root = make_folder(tmp_path / "images")
    kwargs = dict(cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    directory = Path(data.load(f"folder:{root}", 8, **kwargs).info["cache_dir"])
    (directory / "meta.json").unlink()
    script = "import sys, time; from wngan_jax import locks; lock = locks.FileLock(sys.argv[1]); lock.acquire()\n"
    script += "print('held', flush=True); time.sleep(1); lock.release()"
    holder = subprocess.Popen([sys.executable, "-c", script, str(directory / cache.BUILD_LOCK)], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    ds = data.load(f"folder:{root}", 8, **kwargs)
    assert holder.wait() == 0 and f"waiting for process {holder.pid}" in caplog.text
    assert cache_files(ds) == CACHE_FILES


def test_failed_build_removes_its_temp_file(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    preprocess, seen = transforms.preprocess, []

    def failing(*args):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("a bug")
        return preprocess(*args)

    monkeypatch.setattr(transforms, "preprocess", failing)
    with pytest.raises(RuntimeError, match="a bug"):
        data.load(f"folder:{root}", 8, cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    (directory,) = (tmp_path / "cache").iterdir()
    assert list(directory.iterdir()) == []


def test_full_disk_is_reported_before_decoding(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(CacheDirError, match=r"cannot reserve 0\.00 GB for .*images\.\w+\.tmp\.npy \(No space") as err:
        data.load(f"folder:{root}", 8, cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    assert "\n" not in str(err.value)
    (directory,) = (tmp_path / "cache").iterdir()
    assert list(directory.iterdir()) == []


def test_full_disk_at_the_last_write_leaves_an_unused_cache_the_next_load_rebuilds(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    kwargs = dict(cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    real_write = os.write

    def full_at_meta(fd, data):
        if "meta." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full_at_meta)
        with pytest.raises(CacheDirError, match="cannot write the data cache in .*No space left"):
            data.load(f"folder:{root}", 8, **kwargs)
    (directory,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in directory.iterdir()) == ["images.npy", "split.npy"]  # no meta.json: not used
    assert cache_files(data.load(f"folder:{root}", 8, **kwargs)) == CACHE_FILES


def test_images_over_the_decompression_bomb_limit_are_skipped(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")  # 40x30 images: 1200 pixels
    Image.new("RGB", (50, 40)).save(root / "large.png")  # over the limit: PIL warns
    Image.new("RGB", (60, 60)).save(root / "huge.png")  # over twice the limit: PIL refuses
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 unreadable.*huge\.png \(DecompressionBombError.*large\.png"):
        ds = data.load(f"folder:{root}", 8, cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    assert ds.info["count"] == 6


@pytest.mark.parametrize("damage", ["truncated images.npy", "truncated split.npy", "broken meta.json"])
def test_damaged_cache_is_rebuilt_with_a_warning_naming_the_file(tmp_path, caplog, damage):
    root = make_folder(tmp_path / "images")
    kwargs = dict(cache_dir=tmp_path / "cache", final_test=2, running_test=1, progress=False)
    ds = data.load(f"folder:{root}", 8, **kwargs)
    rows = all_rows(ds).copy()
    name = damage.split()[1]
    path = Path(ds.info["cache_dir"]) / name
    if name == "meta.json":
        path.write_text('{"params": ')
    else:
        os.truncate(path, path.stat().st_size - 10)
    with caplog.at_level(logging.WARNING):
        again = data.load(f"folder:{root}", 8, **kwargs)
    assert f"rebuilding the data cache in {path.parent}: {path}" in caplog.text
    np.testing.assert_array_equal(all_rows(again), rows)
    assert cache_files(again) == CACHE_FILES


# --- errors -------------------------------------------------------------------------------------


def test_damaged_lmdb_and_lsun_zip_are_one_line_errors_naming_the_file(tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    with pytest.raises(DataError, match=rf"{garbage / 'data.mdb'} is not a readable LMDB database"):
        data.open_source(f"lmdb:{garbage}")
    assert cli(["info", f"lmdb:{garbage}"]) == 1
    assert capsys.readouterr().err.count("\n") == 1

    database = tmp_path / "cut" / "bedroom_train_lmdb"
    make_lmdb(database, [np.zeros((64, 64, 3), np.uint8)] * 20)
    (database / "data.mdb").write_bytes((database / "data.mdb").read_bytes()[:8192])
    with pytest.raises(DataError, match=r"data\.mdb is cut off"):
        data.open_source(f"lmdb:{database}")

    manual, out = tmp_path / "manual", tmp_path / "prepared"
    manual.mkdir()
    with zipfile.ZipFile(manual / "bedroom_train_lmdb.zip", "w") as zf:
        zf.writestr("README.txt", "no database here")
    with pytest.raises(DataError, match=r"bedroom_train_lmdb\.zip holds 0 LMDB databases .* README\.txt"):
        prepare.prepare("lsun/bedroom", str(manual), str(out))
    assert list((out / "lsun").iterdir()) == []  # no .extracting left behind
    (manual / "bedroom_train_lmdb.zip").write_bytes(b"PK garbage")
    with pytest.raises(DataError, match="not a readable zip archive"):
        prepare.prepare("lsun/bedroom", str(manual), str(out))
    with zipfile.ZipFile(manual / "bedroom_train_lmdb.zip", "w") as zf:  # another folder name is fine
        zf.write(garbage / "data.mdb", "some_other_name/data.mdb")
    assert prepare.prepare("lsun/bedroom", str(manual), str(out)) == [f"lmdb:{out / 'lsun' / 'bedroom_train_lmdb'}"]
    assert sorted(p.name for p in (out / "lsun").iterdir()) == ["bedroom_train_lmdb"]


def test_unwritable_cache_dir_is_a_one_line_error(tmp_path, monkeypatch):
    def unwritable(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cache"))

    monkeypatch.setattr(cache.tempfile, "NamedTemporaryFile", unwritable)
    with pytest.raises(CacheDirError, match=r"cannot write the data cache in .*Permission denied.*WNGAN_CACHE") as err:
        data.load("digits", 8, cache_dir=tmp_path / "cache", final_test=200, running_test=100)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="--data"):
        data.open_source("mnist")


def test_clear_errors(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(CacheDirError, match="cache_dir=.*WNGAN_CACHE"):
        data.load("digits", 8, cache_dir=blocker / "cache", final_test=200, running_test=100)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}", 8, cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image"):
        data.load(f"folder:{tmp_path / 'empty'}", 8, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m wngan_jax.data prepare cifar10"):
        data.load("tfds:cifar10", 32, data_dir=str(tmp_path / "tfds"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no LMDB database"):
        data.load(f"lmdb:{tmp_path}", 8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="final_test=2000 .* 1797 readable images. Lower"):
        data.load("digits", 8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown data spec"):
        data.load("mnist", 8, cache_dir=tmp_path)
    assert cli(["prepare", "celeb_a", "--manual_dir", str(tmp_path), "--data_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in (
        "img_align_celeba.zip",
        "list_eval_partition.txt",
        "list_attr_celeba.txt",
        "list_landmarks_align_celeba.txt",
        "identity_CelebA.txt",
    ):
        assert name in err


def test_prepare_without_tensorflow_says_how_to_install(tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed")
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"")
    with pytest.raises(ImportError, match=r"pip install 'wngan_jax\[prepare\]'"):
        prepare.prepare("cifar10", str(tmp_path), str(tmp_path / "out"))


# --- iterator and sharding ----------------------------------------------------------------------


def indexed_images(count=100):
    """Image i is filled with value i, so a batch reveals which images it holds."""
    return np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 2, 2, 1))


def ids(batch):
    return np.rint(batch[:, 0, 0, 0] * 255).astype(int)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_iterator_resumes_exactly_across_epochs(prefetch):
    images = indexed_images()
    full = data.BatchIterator(images, 32, seed=5, prefetch=prefetch)
    expected = [next(full) for _ in range(8)]  # 3 batches per epoch: crosses two epoch ends
    assert expected[0].dtype == np.float32 and expected[0].shape == (32, 2, 2, 1)
    scaled = ids(expected[0]).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(expected[0], np.broadcast_to(scaled[:, None, None, None], expected[0].shape))
    epoch0 = np.concatenate([ids(b) for b in expected[:3]])
    assert len(set(epoch0)) == 96  # the incomplete last batch is dropped
    for stop in (1, 3, 5):
        it = data.BatchIterator(images, 32, seed=5, prefetch=prefetch)
        for _ in range(stop):
            next(it)
        state = json.loads(json.dumps(it.state()))
        it.close()
        resumed = data.BatchIterator(images, 32, seed=0, state=state, prefetch=prefetch)
        for want in expected[stop:]:
            np.testing.assert_array_equal(next(resumed), want)
        resumed.close()
    full.close()
    assert data.BatchIterator(images, 32, seed=6, prefetch=0).state() == {"seed": 6, "epoch": 0, "position": 0}


def test_iterator_process_parts_make_the_global_batch():
    images = indexed_images()
    whole = data.BatchIterator(images, 32, seed=1, prefetch=0)
    parts = [data.BatchIterator(images, 32, seed=1, prefetch=0, process_index=p, process_count=2) for p in range(2)]
    for _ in range(4):
        np.testing.assert_array_equal(next(whole), np.concatenate([next(p) for p in parts]))
    assert sharding.process_slice(32, 1, 4) == slice(8, 16)
    assert sharding.process_slice(32) == slice(0, 32)
    with pytest.raises(ValueError, match="not divisible"):
        sharding.process_slice(30, 0, 4)


def test_shard_batch_over_four_devices():
    assert jax.device_count() == 4
    mesh = jax.make_mesh((4,), ("data",))
    batch = next(data.BatchIterator(indexed_images(), 32, prefetch=0))
    sharded = sharding.shard_batch(batch, mesh)
    np.testing.assert_array_equal(np.asarray(sharded), batch)
    assert [s.data.shape[0] for s in sharded.addressable_shards] == [8, 8, 8, 8]
    for shard in sharded.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), batch[shard.index])


def test_benchmark_runs_on_the_cache_path():
    from wngan_jax.bench import data as bench

    (row,) = bench.run(sizes=(16,), as_json=True, count=300, batches=20, repeats=1)
    assert row["what"] == "data" and row["size"] == 16 and row["images_per_s"] > 0
