"""The Flax Inception against pytorch-fid's, on random weights; weight files and their errors.

pytorch-fid's ``InceptionV3`` downloads its weights in its constructor; the tests patch
``pytorch_fid.inception.load_state_dict_from_url`` to return a random state dict instead, whose batch-norm
statistics are then set from a forward pass (so that activations keep their scale through the 94 layers).
"""

import sys

import jax
import numpy as np
import pytest

from wngan_jax import inception
from wngan_jax.errors import CheckpointError, MissingDataError
from wngan_jax.inception import __main__ as inception_cli

NEEDS = "needs {} (pip install 'wngan_jax[dev]')"


def random_state_dict(seed=0) -> dict:
    """A state dict with the names and shapes of pytorch-fid's weights file: He-scaled convolutions, batch norm
    near identity, and the unused classifier."""
    import torch

    rng = np.random.default_rng(seed)
    sd = {}
    for path, shape in inception._param_shapes().items():
        if path[-1] != "kernel":
            continue
        name, (kh, kw, cin, cout) = ".".join(path[:-1]), shape
        sd[f"{name}.conv.weight"] = rng.normal(0, np.sqrt(2 / (kh * kw * cin)), (cout, cin, kh, kw))
        sd[f"{name}.bn.weight"] = rng.uniform(0.8, 1.2, cout)
        sd[f"{name}.bn.bias"] = rng.normal(0, 0.1, cout)
        sd[f"{name}.bn.running_mean"] = np.zeros(cout)
        sd[f"{name}.bn.running_var"] = np.ones(cout)
    sd["fc.weight"] = rng.normal(0, 0.01, (1008, 2048))
    sd["fc.bias"] = np.zeros(1008)
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()}


@pytest.fixture(scope="module")
def pytorch_fid(torchvision):
    """pytorch-fid's ``InceptionV3([3])`` in float32 and float64, on random weights whose batch-norm statistics
    come from one forward pass; and those weights as a state dict (the weights file's names)."""
    fid_inception = pytest.importorskip(
        "pytorch_fid.inception", reason="needs pytorch-fid (pip install 'wngan_jax[dev]')"
    )
    import torch

    def build(state_dict, make):
        patch = pytest.MonkeyPatch()
        patch.setattr(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state_dict)
        try:
            return make()
        finally:
            patch.undo()

    net = build(random_state_dict(), fid_inception.fid_inception_v3)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the running statistics to its own
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    state_dict = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    model32 = build(state_dict, lambda: fid_inception.InceptionV3([3])).eval()
    model64 = build(state_dict, lambda: fid_inception.InceptionV3([3])).double().eval()
    return model32, model64, state_dict


def _torch_input(images: np.ndarray):
    """pytorch-fid's input: NCHW float in [0, 1], RGB (``ToTensor`` of ``Image.convert('RGB')``)."""
    import torch

    x = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)
    if x.ndim == 3:
        x = x[..., None]
    x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


CASES = {
    "rgb-float-32x32": lambda rng: rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32),
    "gray-uint8-320x304": lambda rng: rng.integers(0, 256, (2, 320, 304), dtype=np.uint8),
}


@pytest.mark.parametrize("case", CASES)
def test_features_equal_pytorch_fid(pytorch_fid, case):
    """Ours and pytorch-fid's float32 against pytorch-fid in float64: ours within a small multiple of pytorch-fid's
    own float32 error (4 fake devices, so the 2 images are padded and sharded)."""
    import torch

    model32, model64, state_dict = pytorch_fid
    images = CASES[case](np.random.default_rng(len(case)))
    with torch.no_grad():
        ref = model64(_torch_input(images))[0].squeeze(-1).squeeze(-1).numpy()
        theirs = model32(_torch_input(images).float())[0].squeeze(-1).squeeze(-1).double().numpy()
    weights = inception.InceptionWeights(inception.params_from_state_dict(state_dict), "random")
    ours = weights.extractor()(images)
    assert ours.shape == (2, 2048) and ours.dtype == np.float32
    scale = np.abs(ref).max()
    assert scale > 0.1 and np.abs(ref).mean() > 1e-3 * scale  # activations neither vanished nor exploded
    their_err, our_err = np.abs(theirs - ref).max(), np.abs(ours - ref).max()
    assert our_err <= 4 * their_err + 1e-6 * scale, (our_err, their_err, scale)


@pytest.mark.parametrize("size", [7, 20, 32, 299, 320, 600])
def test_resize_matrix_equals_interpolate(size):
    torch = pytest.importorskip("torch", reason=NEEDS.format("torch"))
    x = np.random.default_rng(size).uniform(0, 1, (1, 1, size, size + 3))
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=(299, 299), mode="bilinear", align_corners=False
    ).numpy()[0, 0]
    ours = inception.resize_matrix(size).astype(np.float64) @ x[0, 0] @ inception.resize_matrix(size + 3).T
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_resize_matrix_by_hand():
    """2 -> 4 pixels: source positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (the last pixel repeats)."""
    expected = [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    np.testing.assert_allclose(inception.resize_matrix(2, 4), expected)
    np.testing.assert_array_equal(inception.resize_matrix(5, 5), np.eye(5))


def test_missing_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    for path in (None, tmp_path / "nowhere.pth"):
        with pytest.raises(MissingDataError) as e:
            inception.load_weights(path)
        for part in (inception.WEIGHTS_FILE, inception.WEIGHTS_URL, "6726825d", "--inception_weights"):
            assert part in str(e.value)
    assert "nowhere.pth" in str(e.value)


def test_wrong_weights(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not written by .*" + inception.WEIGHTS_FILE):
        inception.load_weights(tmp_path / "other.npz")
    np.savez(tmp_path / "partial.npz", sha256=np.asarray("abc"), x=np.zeros(3))
    with pytest.raises(CheckpointError, match="188 parameters missing"):
        inception.load_weights(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        inception.load_weights(tmp_path / "junk.npz")
    torch = pytest.importorskip("torch", reason=NEEDS.format("torch"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pth is not a PyTorch state dict"):
        inception.load_weights(tmp_path / "junk.pth")
    sd = random_state_dict()
    sd["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(sd, tmp_path / "shapes.pth")
    with pytest.warns(UserWarning, match="SHA-256"), pytest.raises(CheckpointError, match="1 of the wrong shape"):
        inception.load_weights(tmp_path / "shapes.pth")


def test_pth_without_torch(tmp_path, monkeypatch):
    (tmp_path / "w.pth").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(CheckpointError, match=r"needs PyTorch: pip install 'wngan_jax\[torch\]'"):
        inception.load_weights(tmp_path / "w.pth")


def test_export_round_trip(tmp_path, monkeypatch, capsys):
    """.pth -> ``python -m wngan_jax.inception export`` -> .npz that loads (also from the environment) without torch."""
    torch = pytest.importorskip("torch", reason=NEEDS.format("torch"))
    sd = random_state_dict(1)
    torch.save(sd, tmp_path / "w.pth")
    out = tmp_path / "w.npz"
    with pytest.warns(UserWarning, match="not comparable with published FIDs"):
        assert inception_cli.main(["export", "--inception_weights", str(tmp_path / "w.pth"), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(out))
    monkeypatch.setitem(sys.modules, "torch", None)
    loaded = inception.load_weights()
    assert loaded.sha256 == inception._sha256(tmp_path / "w.pth")
    expected = inception.params_from_state_dict({k: v.numpy() for k, v in sd.items()})
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert inception_cli.main(["export", "--out", str(out)]) == 0  # weights from the environment
    assert inception_cli.main(["convert", "--out", str(out)]) == 1
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    assert inception_cli.main(["export", "--out", str(out)]) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err


def test_params_from_state_dict_folds_batch_norm():
    """One convolution by hand: kernel x gamma / sqrt(var + 1e-3), bias beta - mean x that scale."""
    pytest.importorskip("torch", reason=NEEDS.format("torch"))
    sd = {k: v.numpy() for k, v in random_state_dict(2).items()}
    name = "Conv2d_1a_3x3"
    sd[f"{name}.bn.weight"][:] = 2.0
    sd[f"{name}.bn.running_var"][:] = 4.0 - 1e-3
    sd[f"{name}.bn.running_mean"][:] = 3.0
    sd[f"{name}.bn.bias"][:] = 1.0
    params = inception.params_from_state_dict(sd)[name]
    np.testing.assert_allclose(params["kernel"], sd[f"{name}.conv.weight"].transpose(2, 3, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(params["bias"], np.full(32, 1.0 - 3.0), rtol=1e-6)


def test_empty_renamed_and_nan_weight_files_are_one_line(tmp_path):
    """An empty file, a single ``.npy`` array named ``.npz`` and weights holding NaN are each a one-line
    ``CheckpointError`` naming the file and where the weights are published."""
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    weights = inception.random_weights()
    weights.params["Conv2d_1a_3x3"]["kernel"][0, 0, 0, 0] = np.nan
    nan = inception.export_npz(weights, tmp_path / "nan.npz")
    for name, expected in (
        ("empty.npz", "empty.npz is not a readable .npz"),
        ("array.npz", "array.npz holds one .npy array, not an .npz archive"),
        (nan.name, "nan.npz holds NaN or infinite weights .*Conv2d_1a_3x3/kernel"),
    ):
        with pytest.raises(CheckpointError, match=expected) as e:
            inception.load_weights(tmp_path / name)
        assert "\n" not in str(e.value) and inception.WEIGHTS_URL in str(e.value)


def test_export_to_a_path_under_a_file_is_refused_before_reading_the_weights(tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(inception, "load_weights", lambda *a: pytest.fail("the weights were read"))
    assert inception_cli.main(["export", "--out", str(tmp_path / "a_file" / "w.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out={tmp_path / 'a_file' / 'w.npz'} lies under the file {tmp_path / 'a_file'}")
    assert len(err.strip().splitlines()) == 1
