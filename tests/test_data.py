"""Data pipeline: sources, crops, cache and split (paper §5.1), batch iterator, sharding."""

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from wngan_jax import data, sharding
from wngan_jax.data import prepare, transforms
from wngan_jax.data.__main__ import main as cli


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


# --- errors -------------------------------------------------------------------------------------


def test_clear_errors(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(data.CacheDirError, match="cache_dir=.*WNGAN_CACHE"):
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
