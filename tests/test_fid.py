"""FID, KID and precision/recall against pytorch-fid, torch-fidelity and prdc, and by hand; batching, the
reference cache and ``sample_metrics``."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from wngan_jax import data, fid, inception
from wngan_jax.errors import ConfigError, DataError

NEEDS = "needs {} (pip install 'wngan_jax[dev]')"


def _features(seed, n=60, d=16, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


def test_frechet_distance_equals_pytorch_fid(torchvision):
    fid_score = pytest.importorskip("pytorch_fid.fid_score", reason=NEEDS.format("pytorch-fid"))
    for n in (60, 10):  # full-rank and singular covariances
        a, b = _features(0, n), _features(1, n, shift=0.3)
        (mu_a, s_a), (mu_b, s_b) = fid.statistics(a), fid.statistics(b)
        theirs = fid_score.calculate_frechet_distance(mu_a, s_a, mu_b, s_b)
        assert fid.frechet_distance(a, b) == pytest.approx(theirs, rel=1e-6, abs=1e-9)
        assert fid.frechet_distance((mu_a, s_a), fid.Reference(b)) == pytest.approx(theirs, rel=1e-6, abs=1e-9)
    assert fid.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_by_hand():
    """N(0, diag(1, 4)) vs N((3, 0), diag(4, 1)): 9 + (1 + 4 - 4) + (4 + 1 - 4) = 11."""
    mu_a, mu_b = np.zeros(2), np.array([3.0, 0.0])
    assert fid.frechet_distance((mu_a, np.diag([1.0, 4.0])), (mu_b, np.diag([4.0, 1.0]))) == pytest.approx(11)
    # Two points +-(1, 2): mean 0, covariance (N - 1 denominator) 2 (1, 2)(1, 2)^T.
    a = np.array([[1.0, 2.0], [-1.0, -2.0]])
    mu, sigma = fid.statistics(a)
    np.testing.assert_allclose(mu, 0)
    np.testing.assert_allclose(sigma, [[2, 4], [4, 8]])


def test_kid_equals_torch_fidelity(torchvision):
    torch = pytest.importorskip("torch", reason=NEEDS.format("torch"))
    metric_kid = pytest.importorskip(
        "torch_fidelity.metric_kid", reason="needs torch-fidelity (pip install 'wngan_jax[dev]')"
    )
    a, b = _features(2, 50), _features(3, 40, shift=0.2)
    theirs = metric_kid.kid_features_to_metric(
        torch.from_numpy(a.astype(np.float64)),
        torch.from_numpy(b.astype(np.float64)),
        kid_subsets=7,
        kid_subset_size=30,
    )
    mean, std = fid.kernel_inception_distance(a, b, subsets=7, subset_size=30)
    assert mean == pytest.approx(theirs[metric_kid.KEY_METRIC_KID_MEAN], rel=1e-9)
    assert std == pytest.approx(theirs[metric_kid.KEY_METRIC_KID_STD], rel=1e-9)


def test_kid_by_hand():
    """Linear kernel, X = (0, 2), Y = (1, 1): off-diagonal means 0 and 1, cross mean 1: MMD^2 = 0 + 1 - 2."""
    x, y = np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]])
    mean, std = fid.kernel_inception_distance(x, y, subsets=3, subset_size=2, degree=1, gamma=1.0, coef0=0.0)
    assert (mean, std) == (pytest.approx(-1.0), pytest.approx(0.0))
    with pytest.warns(UserWarning, match="subsets of 2 instead of 1000"):
        fid.kernel_inception_distance(x, y, subsets=1)


def test_precision_recall_equals_prdc():
    prdc = pytest.importorskip("prdc", reason=NEEDS.format("prdc"))
    real, fake = _features(4, 80), _features(5, 50, shift=0.4)
    theirs = prdc.compute_prdc(real, fake, nearest_k=3)
    assert fid.precision_recall(real, fake, nearest_k=3) == (
        pytest.approx(theirs["precision"]),
        pytest.approx(theirs["recall"]),
    )


def test_precision_recall_by_hand():
    """Reference 0, 1, 2, 3 (k = 1: every radius 1); generated 0.5 (inside) and 10 (outside): precision 1/2.
    The generated radii are 9.5, so every reference point is covered: recall 1."""
    real, fake = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[0.5], [10.0]])
    assert fid.precision_recall(real, fake, nearest_k=1) == (0.5, 1.0)
    with pytest.raises(DataError, match="nearest_k=3"):
        fid.precision_recall(real, fake)


@pytest.fixture(scope="module")
def weights():
    """Random Inception weights: the numbers mean nothing, the shapes and code paths are the real ones."""
    return inception.random_weights()


def test_inception_features_batches(weights):
    """An array in batches of 4 (5 images: 2 batches, the last padded) equals the same images given as batches
    (one compiled shape, 4 devices); bfloat16 is close."""
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    a = fid.inception_features(images, weights, batch_size=4)
    b = fid.inception_features([images[:4], images[4:]], weights)
    assert a.shape == (5, 2048) and a.dtype == np.float32 and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    half = fid.inception_features(images[:4], weights, dtype=jnp.bfloat16)
    assert half.dtype == np.float32 and np.abs(half - a[:4]).max() < 0.03 * np.abs(a).max()
    with pytest.raises(DataError, match="1 or 3 channels"):
        fid.inception_features(np.zeros((2, 8, 8, 4), np.uint8), weights)


def test_reference_cache_and_sample_metrics(tmp_path, weights, monkeypatch):
    """Reference features are computed once per (fingerprint, count, weights) and read back. sample_metrics on
    features known by construction (the flattened pixels stand for Inception's): the reference images
    themselves give FID 0 and precision = recall = 1; the same images shifted by c in each of their 4 pixels
    have the same covariance, so FID = 4 c^2, and a KID far above that of the unshifted ones."""
    calls = []

    def pixels_as_features(images, w, batch_size=None, dtype=jnp.float32):
        calls.append(len(images))
        return np.asarray(images, np.float64).reshape(len(images), -1)

    monkeypatch.setattr(fid, "inception_features", pixels_as_features)
    real = np.random.default_rng(1).uniform(0, 1, (40, 2, 2, 1))
    with pytest.warns(UserWarning, match="40 images, fewer than 2048"):
        ref = fid.reference(real, weights, cache_dir=tmp_path, fingerprint="abc")
    with pytest.warns(UserWarning):
        again = fid.reference(real, weights, cache_dir=tmp_path, fingerprint="abc")
    (cached,) = tmp_path.glob("inception-*-40-random-0.npz")
    assert calls == [40]
    np.testing.assert_array_equal(again.features, ref.features)
    cached.write_bytes(b"truncated")
    with pytest.warns(UserWarning):
        again = fid.reference(real, weights, cache_dir=tmp_path, fingerprint="abc")
    assert calls == [40, 40] and np.load(cached)["features"].shape == ref.features.shape

    c = 0.25
    with pytest.warns(UserWarning):
        same = fid.sample_metrics(real, ref, weights, kid_subsets=5, kid_subset_size=20)
        shifted = fid.sample_metrics(real + c, ref, weights, kid_subsets=5, kid_subset_size=20)
    assert same["fid"] == pytest.approx(0, abs=1e-9) and shifted["fid"] == pytest.approx(4 * c**2, rel=1e-9)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)
    assert abs(same["kid"]) < 0.1 * shifted["kid"] and same["kid_std"] > 0
    assert same["num_generated"] == 40 and same["num_reference"] == 40
    assert set(fid.sample_metrics(real, ref, weights, metrics=("pr",))) == {
        "precision",
        "recall",
        "num_generated",
        "num_reference",
    }
    with pytest.raises(ConfigError, match="--metrics: unknown is"):
        fid.sample_metrics(real, ref, weights, metrics=("is",))


def test_dataset_reference(tmp_path, monkeypatch):
    """The first ``num`` training rows, cached in the data cache's directory; another split is another entry."""
    calls = []
    monkeypatch.setattr(fid, "inception_features", lambda images, *a, **k: calls.append(images) or _features(0, 30))
    rows = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    info = dict(source="folder:x", fingerprint={"count": 50}, size=(1, 1), channels=1, crop=0, split_seed=0)
    info |= dict(final_test=10, cache_dir=str(tmp_path))
    ds = data.Dataset(train=rows[10:], final_test=rows[:10], running_test=rows[:2], info=info)
    with pytest.warns(UserWarning, match="fewer than 2048"):
        fid.dataset_reference(ds, inception.random_weights(), num=30)
        fid.dataset_reference(ds, inception.random_weights(), num=30)
        fid.dataset_reference(
            dataclasses.replace(ds, info=info | {"final_test": 12}), inception.random_weights(), num=30
        )
    assert len(calls) == 2 and len(list(tmp_path.glob("inception-*.npz"))) == 2
    np.testing.assert_array_equal(calls[0], rows[10:40])


@pytest.fixture(scope="module")
def fid_run(tmp_path_factory, weights):
    """A tiny run with FID every 2 iterations and a generator EMA: (run directory, data cache, weights .npz).
    Random Inception weights exported to .npz (no download); the seed is eval's FID seed (0); the learning rate
    moves the generator far enough from its average in 4 iterations for their FIDs to differ."""
    from wngan_jax import train
    from wngan_jax.config import digits

    root = tmp_path_factory.mktemp("fid_run")
    path = inception.export_npz(weights, root / "inception.npz")
    config = digits().replace(
        nfeature=8,
        code_size=16,
        batch_size=8,
        iterations=4,
        test_every=2,
        test_steps=2,
        sample_every=4,
        log_every=2,
        final_test=20,
        running_test=10,
        final_test_samples=0,
        fid_every=2,
        fid_samples=4,  # as many as the reference and a multiple of the 4 devices: one compiled shape
        fid_reference=4,
        inception_weights=str(path),
        ema_decay=0.5,
        lr=2e-3,
        seed=0,
        cache_dir=str(root / "cache"),
        progress_bar=False,
    )
    train.train_and_evaluate(config, root / "run")
    return root / "run", root / "cache", path


def test_eval_command_and_training_report_fid(fid_run, tmp_path, capsys):
    """``eval --metrics recon,fid,kid,pr`` writes every metric into report.json; training with --fid_every logs
    FID to metrics.jsonl; both read the weights from an .npz export (random weights: no download)."""
    import json

    from wngan_jax import eval as eval_cli

    run, cache, path = fid_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "fid" in r] == [2, 4] and all(r["fid"] > 0 for r in rows if "fid" in r)

    common = ["--checkpoint", str(run), "--data=digits", f"--cache_dir={cache}"]
    argv = [*common, "--samples=20", "--steps=2", "--fid_samples=4", "--fid_reference=4", "--out", str(tmp_path / "e")]
    assert eval_cli.main([*argv, "--metrics=recon,fid,kid,pr", f"--inception_weights={path}"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    quality = report["sample_quality"]
    assert quality["fid"] > 0 and quality["num_generated"] == 4 and quality["num_reference"] == 4
    assert 0 <= quality["precision"] <= 1 and 0 <= quality["recall"] <= 1 and "kid" in quality
    assert report["mean_loss"] > 0 and report["samples"] == 20 and report["generator"] == "raw"
    capsys.readouterr()
    assert eval_cli.main([*argv, "--metrics=fid", f"--inception_weights={tmp_path / 'absent.pth'}"]) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err
    assert eval_cli.main(["--checkpoint", str(run), "--targets=x.npy", "--out=o", "--metrics=fid"]) == 1
    assert "pass --data" in capsys.readouterr().err
    assert eval_cli.main([*argv, "--metrics=fdi"]) == 1 and "unknown fdi" in capsys.readouterr().err


def test_ema_fid_is_the_fid_of_the_averaged_generator(fid_run, tmp_path):
    """With --ema_decay, metrics.jsonl has ``ema_fid`` beside ``fid`` at every FID iteration. The last one is
    the FID that eval computes on its own for the last checkpoint's averaged generator (``--ema``) from the same
    codes (seed 0) against the same reference (the first 4 training images of the same split), and not the raw
    generator's FID."""
    import json

    from wngan_jax import eval as eval_cli

    run, cache, path = fid_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = {r["iteration"]: r for r in rows if "fid" in r}
    assert list(measured) == [2, 4] and all(r["ema_fid"] > 0 for r in measured.values())
    argv = ["--checkpoint", str(run), "--which=last", "--ema", "--data=digits", f"--cache_dir={cache}"]
    argv += [f"--inception_weights={path}", "--metrics=fid", "--samples=20", "--fid_samples=4", "--fid_reference=4"]
    assert eval_cli.main([*argv, f"--out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["generator"] == "ema" and report["iteration"] == 4 and report["sample_quality"]["seed"] == 0
    assert report["sample_quality"]["fid"] == pytest.approx(measured[4]["ema_fid"], rel=1e-4)
    assert measured[4]["ema_fid"] != pytest.approx(measured[4]["fid"], rel=1e-3)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--metrics=fid", "--fid_samples=0"], "--fid_samples must be at least 2 .*got 0"),
        (["--metrics=fid", "--fid_samples=1"], "--fid_samples must be at least 2 .*got 1"),
        (["--metrics=kid", "--fid_samples=-3"], "--fid_samples must be at least 2 .*got -3"),
        (["--metrics=fid", "--fid_reference=0"], "--fid_reference must be at least 2 .*got 0"),
        (["--metrics=recon,pr", "--fid_reference=3"], "--fid_reference must be at least 4 for --metrics pr"),
        (["--metrics=recon,fid", "--inception_weights={tmp}/absent.pth"], "absent.pth do not exist"),
        (["--metrics=recon,fid", "--inception_weights={tmp}/empty.npz"], "empty.npz is not a readable .npz"),
        (["--metrics=recon", "--out={tmp}/a_file/out"], "--out=.* lies under the file"),
        (["--metrics=recon", "--steps=0"], "--steps must be 1 or more, got 0"),
    ],
)
def test_eval_checks_every_input_of_every_metric_before_any_work(tmp_path, capsys, monkeypatch, flags, expected):
    """Wrong counts, unusable Inception weights and an output under a file are one line naming the flag or file,
    before the checkpoint is read, the reconstruction runs or a reference feature is computed."""
    import re

    from wngan_jax import checkpoint, evaluation
    from wngan_jax import eval as eval_cli

    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "a_file").write_text("x")
    for module, name in ((checkpoint, "load_generator"), (evaluation, "evaluate"), (fid, "dataset_reference")):
        monkeypatch.setattr(module, name, lambda *a, _name=name, **k: pytest.fail(f"{_name} ran"))
    argv = ["--checkpoint=run", "--data=digits", f"--out={tmp_path / 'out'}", f"--cache_dir={tmp_path / 'cache'}"]
    assert eval_cli.main([*argv, *(f.format(tmp=tmp_path) for f in flags)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(expected, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty.npz"]
