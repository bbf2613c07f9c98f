"""The reconstruction metric (paper §4) and the eval command, on tiny generators."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from wngan_jax import checkpoint, reconstruction
from wngan_jax import eval as eval_cli
from wngan_jax.models import ModelConfig

CONFIG = ModelConfig("wn", 16, nfeature=8, code_size=16)


def _init(config, seed=0):
    return config.generator().init(jax.random.key(seed), jnp.zeros((1, config.code_size)))


def _generated(config, variables, num, seed=1, scale=1.0):
    """Targets the generator can produce exactly: G(z*) for random z*."""
    z = scale * jax.random.normal(jax.random.key(seed), (num, config.code_size))
    return np.asarray(config.generator().apply(variables, z, train=False))


def _mesh(num_devices):
    return Mesh(np.asarray(jax.devices()[:num_devices]), ("data",))


@pytest.fixture(scope="module")
def wn():
    variables = _init(CONFIG)
    return reconstruction.generator_fn(CONFIG.generator(), variables), variables


def test_loss_falls_by_orders_of_magnitude(wn):
    gen, variables = wn
    targets = _generated(CONFIG, variables, 32)
    start = reconstruction.reconstruct(gen, targets, steps=0)
    end = reconstruction.reconstruct(gen, targets, steps=300)
    assert start.mean_loss > 1e-3
    assert end.mean_loss < 1e-3 * start.mean_loss
    np.testing.assert_array_equal(start.codes, 0.0)


def test_equals_the_authors_batch_loop(wn):
    gen, variables = wn
    targets = _generated(CONFIG, variables, 70, scale=0.5)  # batches of 32, 32 and 6
    codes, losses = reconstruction.AuthorsLoop(CONFIG.generator(), variables)(targets, steps=20)
    result = reconstruction.reconstruct(gen, targets, steps=20, chunk_size=9)
    np.testing.assert_allclose(result.codes, codes, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.per_sample_loss, losses, rtol=1e-5)
    assert result.mean_loss == pytest.approx(float(np.mean(losses)), rel=1e-5)


def test_loss_scale_is_one_over_the_authors_batch():
    scale = reconstruction.authors_loss_scale(70)
    np.testing.assert_array_equal(scale[:64], np.float32(1 / 32))
    np.testing.assert_array_equal(scale[64:], np.float32(1 / 6))
    np.testing.assert_array_equal(
        reconstruction.authors_loss_scale(5, authors_batch=2), np.float32([0.5, 0.5, 0.5, 0.5, 1.0])
    )


def test_independent_of_chunks_devices_and_segments(wn):
    gen, variables = wn
    targets = _generated(CONFIG, variables, 37)
    ref = reconstruction.reconstruct(gen, targets, steps=15, mesh=_mesh(1), chunk_size=37)
    runs = [
        dict(mesh=_mesh(1), chunk_size=5),
        dict(mesh=_mesh(1), chunk_size=1, segment_steps=4),
        dict(mesh=_mesh(4), chunk_size=3),
        dict(mesh=_mesh(4), progress=True, segment_steps=7),
        dict(mesh=_mesh(2)),
    ]
    for kwargs in runs:
        result = reconstruction.reconstruct(gen, targets, steps=15, **kwargs)
        np.testing.assert_allclose(result.codes, ref.codes, rtol=1e-6, atol=1e-7, err_msg=str(kwargs))
        np.testing.assert_allclose(result.per_sample_loss, ref.per_sample_loss, rtol=1e-6, err_msg=str(kwargs))


def test_plain_function_and_reconstructions(wn):
    gen, variables = wn
    targets = (_generated(CONFIG, variables, 10) * 255).round().astype(np.uint8)
    model = CONFIG.generator()
    by_module = reconstruction.reconstruct(gen, targets, steps=10, return_reconstructions=True)
    by_lambda = reconstruction.reconstruct(
        lambda z: model.apply(variables, z, train=False), targets, steps=10, code_size=CONFIG.code_size
    )
    np.testing.assert_allclose(by_lambda.codes, by_module.codes, rtol=1e-6, atol=1e-9)
    images = np.asarray(model.apply(variables, jnp.asarray(by_module.codes)))
    np.testing.assert_allclose(by_module.reconstructions, images, atol=1e-6)
    losses = np.mean((images - targets / 255.0) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(by_module.per_sample_loss, losses, rtol=1e-4)
    with pytest.raises(ValueError, match="code_size"):
        reconstruction.reconstruct(lambda z: model.apply(variables, z), targets, steps=1)


def test_repeated_calls_reuse_the_compiled_loop(wn):
    _, variables = wn
    targets = _generated(CONFIG, variables, 8)
    reconstruction.reconstruct(reconstruction.generator_fn(CONFIG.generator(), variables), targets, steps=3)
    run_steps, _ = reconstruction._compiled_for("cpu")
    before = run_steps._cache_size()
    other = jax.tree.map(lambda a: a * 0.5, variables)
    reconstruction.reconstruct(reconstruction.generator_fn(CONFIG.generator(), other), targets, steps=3)
    assert run_steps._cache_size() == before


def test_batch_norm_generator_uses_running_statistics():
    config = ModelConfig("bn", 16, nfeature=8, code_size=16)
    variables = _init(config)
    keys = iter(jax.random.split(jax.random.key(3), 100))
    variables = {
        "params": variables["params"],
        "batch_stats": jax.tree.map(
            lambda a: jax.random.uniform(next(keys), a.shape, minval=0.5, maxval=1.5), variables["batch_stats"]
        ),
    }
    gen = reconstruction.generator_fn(config.generator(), variables)
    targets = _generated(config, variables, 12)
    together = reconstruction.reconstruct(gen, targets, steps=10, chunk_size=12, mesh=_mesh(1))
    alone = reconstruction.reconstruct(gen, targets, steps=10, chunk_size=1, mesh=_mesh(1))
    np.testing.assert_allclose(alone.codes, together.codes, rtol=1e-6, atol=1e-7)
    # The first six samples do not see which samples share their batch (the 1/B scale is the same: 1/12).
    mixed = np.concatenate([targets[:6], targets[6:][::-1]])
    swapped = reconstruction.reconstruct(gen, mixed, steps=10, chunk_size=12, mesh=_mesh(1))
    np.testing.assert_allclose(swapped.codes[:6], together.codes[:6], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(swapped.codes[6:], together.codes[6:][::-1], rtol=1e-6, atol=1e-9)
    shifted = jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])
    other = reconstruction.generator_fn(config.generator(), {**variables, "batch_stats": shifted})
    assert not np.allclose(reconstruction.reconstruct(other, targets, steps=10).codes, together.codes)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 16, 16)), "shape"),
        (np.full((4, 16, 16, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((4, 16, 16, 3), np.int32), "dtype"),
    ],
)
def test_rejects_bad_targets(wn, bad, match):
    with pytest.raises(ValueError, match=match):
        reconstruction.reconstruct(wn[0], bad, steps=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    disc = CONFIG.discriminator().init(jax.random.key(1), jnp.zeros((1, 16, 16, 3)))
    checkpoint.save_models(path, CONFIG, {"generator": _init(CONFIG), "discriminator": disc}, step=1234)
    return path


def test_eval_command(run_dir, tmp_path):
    variables = checkpoint.load_generator(run_dir)[1]
    floats = _generated(CONFIG, variables, 10)
    np.save(tmp_path / "float.npy", floats)
    np.save(tmp_path / "uint8.npy", (floats * 255).round().astype(np.uint8))
    reports = {}
    for kind in ("float", "uint8"):
        out = tmp_path / f"out_{kind}"
        args = [
            "--checkpoint",
            str(run_dir),
            "--targets",
            str(tmp_path / f"{kind}.npy"),
            "--samples",
            "10",
            "--steps",
            "30",
            "--batch_size",
            "4",
            "--out",
            str(out),
        ]
        assert eval_cli.main(args + (["--pairs", "--benchmark"] if kind == "uint8" else [])) == 0
        reports[kind] = report = json.loads((out / "report.json").read_text())
        assert report["samples"] == 10 and report["steps"] == 30 and report["iteration"] == 1234
        assert report["which"] == "best" and report["checkpoint"] == str(run_dir)
        assert len(report["per_sample_loss"]) == 10
        assert report["mean_loss"] == pytest.approx(np.mean(report["per_sample_loss"]), rel=1e-6)
        assert report["sample_steps_per_s"] == pytest.approx(300 / report["seconds"])
        assert report["device"].endswith("x4")
        assert np.load(out / "codes.npy").shape == (10, 16)
        assert (out / "pairs.png").is_file()
    assert len(list((tmp_path / "out_uint8" / "pairs").glob("*.png"))) == 10
    assert "warmup_seconds" in reports["uint8"] and reports["uint8"]["compile_included"] is False
    assert reports["uint8"]["mean_loss"] == pytest.approx(reports["float"]["mean_loss"], rel=0.05)


def test_eval_command_errors(run_dir, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((4, 32, 32, 3), np.uint8))
    np.save(tmp_path / "few.npy", np.zeros((4, 16, 16, 3), np.uint8))
    np.save(tmp_path / "range.npy", np.full((4, 16, 16, 3), 255.0, np.float32))
    base = ["--checkpoint", str(run_dir), "--steps", "1", "--out", str(tmp_path / "out")]
    for name, samples, message in [("big", 4, "32x32"), ("few", 10, "has only 4 images"), ("range", 4, r"[0, 1]")]:
        assert eval_cli.main(base + ["--targets", str(tmp_path / f"{name}.npy"), "--samples", str(samples)]) == 1
        assert message in capsys.readouterr().err
    assert (
        eval_cli.main(
            [
                "--checkpoint",
                str(tmp_path),
                "--targets",
                str(tmp_path / "few.npy"),
                "--samples",
                "4",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert "model.json" in capsys.readouterr().err


def test_eval_command_on_the_final_test_set(tmp_path):
    pytest.importorskip("sklearn")
    from wngan_jax import data

    config = ModelConfig("wn", 16, channels=1, nfeature=8, code_size=16)
    disc = config.discriminator().init(jax.random.key(1), jnp.zeros((1, 16, 16, 1)))
    checkpoint.save_models(tmp_path / "run", config, {"generator": _init(config), "discriminator": disc})
    common = [
        "--checkpoint",
        str(tmp_path / "run"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--samples",
        "40",
        "--steps",
        "5",
    ]
    assert eval_cli.main(common + ["--data", "digits", "--out", str(tmp_path / "a")]) == 0
    final_test = data.load(
        "digits", 16, channels=1, cache_dir=tmp_path / "cache", progress=False, final_test=40, running_test=40
    ).final_test
    np.save(tmp_path / "t.npy", final_test)
    assert eval_cli.main(common + ["--targets", str(tmp_path / "t.npy"), "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ab")
    assert a["targets"] == "data:digits" and a["per_sample_loss"] == b["per_sample_loss"]


def test_loss_curve_in_one_pass_equals_separate_runs(wn):
    """Appendix C.3's loss against reconstruction steps: recorded in one pass, equal to runs of those lengths."""
    gen, variables = wn
    targets = _generated(CONFIG, variables, 12, scale=0.5)
    result = reconstruction.reconstruct(gen, targets, steps=12, record_steps=(3, 7), chunk_size=2)
    assert list(result.loss_curve()) == [3, 7, 12]
    for steps in (3, 7, 12):
        alone = reconstruction.reconstruct(gen, targets, steps=steps)
        np.testing.assert_allclose(result.losses_at_steps[steps], alone.per_sample_loss, rtol=1e-6)
    assert result.loss_curve()[3] > result.loss_curve()[7] > result.loss_curve()[12]
    with pytest.raises(ValueError, match="record_steps"):
        reconstruction.reconstruct(gen, targets, steps=5, record_steps=(9,))
