"""Importing the authors' PyTorch networks (docs/authors.md §6) and sampling from checkpoints."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wngan_jax import authors_torch as ref  # noqa: E402
from wngan_jax import checkpoint, convert, generation, sample  # noqa: E402
from wngan_jax.checkpoint import CheckpointError  # noqa: E402
from wngan_jax.convert import __main__ as convert_cli  # noqa: E402

NF, CODE, BATCH = 8, 32, 4


def torch_nets(norm, size, seed=0):
    g = ref.randomize_(ref.Generator(norm, size, NF, CODE), seed)
    d = ref.randomize_(ref.Discriminator(norm, size, NF), seed + 1)
    return g, d


def torch_generate(g, codes):
    with torch.no_grad():
        return g(torch.from_numpy(codes)).permute(0, 2, 3, 1).numpy()


def torch_discriminate(d, images):
    with torch.no_grad():
        return d(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


# (36, 48): non-square, padding (2, 1) at level 1; 108 -> 54 -> 28 (padding 2) -> 14 -> 7 (docs/authors.md §2).
CASES = [(norm, size) for norm in ref.NORMS for size in (16, (36, 48))]
CASES += [("batch", 108), ("weight", 108)]


@pytest.mark.parametrize("norm,size", CASES)
def test_outputs_equal_the_authors_networks(norm, size):
    g, d = torch_nets(norm, size)
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((BATCH, CODE), dtype=np.float32)
    want_images = torch_generate(g, codes)
    gen = convert.authors_network(
        g.state_dict(), net="generator", norm=norm, image_size=size, nfeature=NF, code_size=CODE
    )
    images = gen(codes)
    assert images.shape == (BATCH, *convert.ModelConfig(image_size=size).image_size, 3)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, want_images, rtol=0, atol=1e-5)

    real = rng.uniform(size=images.shape).astype(np.float32)
    dis = convert.authors_network(
        d.state_dict(), net="discriminator", norm=norm, image_size=size, nfeature=NF, code_size=CODE
    )
    for x in (real, want_images):
        np.testing.assert_allclose(dis(x), torch_discriminate(d, x), rtol=0, atol=1e-5)
    assert dis.config == gen.config and dis.config.norm == convert.get_variant(norm).name


def test_slopes_outside_unit_interval_are_exercised():
    g, _ = torch_nets("weight", 16)
    slopes = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, ref.TPReLU)])
    assert (slopes < 0).any() and (slopes > 1).any()
    params = convert.authors_to_variables(
        g.state_dict(), convert.authors_config("weight", 16, nfeature=NF, code_size=CODE), "generator"
    )
    assert float(params["params"]["initial_act"]["slope"].min()) >= 0.0
    assert float(params["params"]["initial_act"]["slope"].max()) <= 1.0


PAPER_COUNTS = [  # docs/authors.md §9: (size, nf, code, norm, G params, D params)
    (32, 64, 256, "none", 1_711_747, 663_425),
    (32, 64, 256, "batch", 1_712_643, 664_193),
    (32, 64, 256, "weight", 1_707_910, 663_426),
    (32, 64, 256, "weight-affine", 1_716_038, 663_874),
    (64, 64, 256, "weight", 4_854_662, 2_765_698),
    (160, 64, 256, "none", 17_726_339, 11_173_761),
    (160, 64, 256, "batch", 17_730_307, 11_177_601),
    (160, 64, 256, "weight", 17_701_766, 11_173_762),
    (160, 64, 256, "weight-affine", 17_752_902, 11_175_746),
    (32, 96, 256, "weight", 3_053_382, 1_486_658),
]


@pytest.mark.parametrize("size,nf,code,norm,g_count,d_count", PAPER_COUNTS)
def test_reference_parameter_counts(size, nf, code, norm, g_count, d_count):
    with torch.device("meta"):
        g, d = ref.Generator(norm, size, nf, code), ref.Discriminator(norm, size, nf)
    assert (ref.parameter_count(g), ref.parameter_count(d)) == (g_count, d_count)


def test_key_errors_name_every_problem():
    g, _ = torch_nets("weight", 16)
    state = {k: v.numpy() for k, v in g.state_dict().items()}
    del state["level.1.tprelu.bias"]
    state["level.1.prelu.weight"] = np.zeros(NF, np.float32)
    state["level.0.conv.scale"] = np.zeros((1, 3), np.float32)
    config = convert.authors_config("weight", 16, nfeature=NF, code_size=CODE)
    with pytest.raises(CheckpointError) as err:
        convert.authors_to_variables(state, config, "generator")
    msg = str(err.value)
    assert "missing level.1.tprelu.bias (expected shape (8,))" in msg
    assert "unexpected level.1.prelu.weight" in msg
    assert "level.0.conv.scale: shape (1, 3), expected (1, 3, 1, 1)" in msg
    assert "--norm weight --image_size 16 --nfeature 8 --code_size 32" in msg


def test_wrong_variant_or_size_is_reported():
    g, _ = torch_nets("batch", 16)
    with pytest.raises(CheckpointError, match="missing initial.tprelu.weight"):
        convert.authors_network(
            g.state_dict(), net="generator", norm="weight", image_size=16, nfeature=NF, code_size=CODE
        )
    with pytest.raises(CheckpointError, match=r"linear.weight: shape \(256, 32\), expected \(512, 32\)"):
        convert.authors_network(
            g.state_dict(), net="generator", norm="batch", image_size=32, nfeature=NF, code_size=CODE
        )
    with pytest.raises(ValueError, match="four variants only"):
        convert.authors_config("wn_meanbn", 16)


def test_project_names_and_files(tmp_path):
    g, _ = torch_nets("weight-affine", 16)
    codes = np.random.default_rng(1).standard_normal((BATCH, CODE), dtype=np.float32)
    want = torch_generate(g, codes)
    npz, pt = tmp_path / "gen.npz", tmp_path / "gen.pt"
    np.savez(npz, **{k: v.numpy() for k, v in g.state_dict().items()})
    torch.save(g.state_dict(), pt)
    for source in (npz, str(pt)):
        gen = convert.authors_network(
            source, net="generator", norm="affine_wn", image_size=16, nfeature=NF, code_size=CODE
        )
        np.testing.assert_allclose(gen(codes), want, rtol=0, atol=1e-5)
    with pytest.raises(FileNotFoundError):
        convert.authors_network(tmp_path / "absent.pt", net="generator", norm="weight", image_size=16)


def test_pt_without_torch_says_what_to_install(tmp_path, monkeypatch):
    g, _ = torch_nets("none", 16)
    torch.save(g.state_dict(), tmp_path / "gen.pt")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'wngan_jax\[torch\]'"):
        convert.load_state(tmp_path / "gen.pt")


def test_convert_and_sample_commands(tmp_path, capsys):
    g, d = torch_nets("batch", 16)
    torch.save(g.state_dict(), tmp_path / "best_gen.pt")
    torch.save(d.state_dict(), tmp_path / "best_dis.pt")
    out = tmp_path / "converted"
    common = ["--norm", "batch", "--image_size", "16x16", "--nfeature", str(NF), "--code_size", str(CODE)]
    assert (
        convert_cli.main(
            ["--gen", str(tmp_path / "best_gen.pt"), "--dis", str(tmp_path / "best_dis.pt"), *common, "--out", str(out)]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert convert_cli.main(["--gen", str(tmp_path / "best_gen.pt"), *common, "--out", str(out)]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err

    ckpt = checkpoint.Checkpoints(out, read_only=True)
    restored = ckpt.restore("best")
    ckpt.close()
    config = checkpoint.read_model_config(out)
    checkpoint.check_variables(config, "discriminator", restored["models"]["discriminator"])

    codes = np.random.default_rng(2).standard_normal((5, CODE), dtype=np.float32)
    np.save(tmp_path / "codes.npy", codes)
    images_path, grid_path = tmp_path / "images.npy", tmp_path / "grid.png"
    assert (
        sample.main(
            [
                "--checkpoint",
                str(out),
                "--codes",
                str(tmp_path / "codes.npy"),
                "--out",
                str(images_path),
                "--grid",
                str(grid_path),
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    images = np.load(images_path)
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images, torch_generate(g, codes), rtol=0, atol=1e-5)
    assert grid_path.stat().st_size > 0

    np.save(tmp_path / "short.npy", codes[:, :-1])
    assert (
        sample.main(["--checkpoint", str(out), "--codes", str(tmp_path / "short.npy"), "--out", str(images_path)]) == 1
    )
    assert f"shape (N, {CODE})" in capsys.readouterr().err
    assert sample.main(["--checkpoint", str(tmp_path / "absent"), "--num", "2", "--out", str(images_path)]) == 1
    assert "no model.json" in capsys.readouterr().err


def test_generator_only_checkpoint(tmp_path):
    g, _ = torch_nets("weight", 16)
    out = tmp_path / "gen_only"
    assert (
        convert_cli.main(
            [
                "--gen",
                _save_npz(g, tmp_path / "g.npz"),
                "--norm",
                "weight",
                "--image_size",
                "16",
                "--nfeature",
                str(NF),
                "--code_size",
                str(CODE),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config, variables, step = checkpoint.load_generator(out, "last")
    assert step == 0 and config.norm == "wn"
    codes = generation.normal_codes(3, CODE, seed=7)
    np.testing.assert_array_equal(codes, generation.normal_codes(3, CODE, seed=7))
    np.testing.assert_allclose(
        generation.generate(config, variables, codes), torch_generate(g, codes), rtol=0, atol=1e-5
    )
    assert (
        sample.main(
            ["--checkpoint", str(out), "--which", "0", "--num", "3", "--seed", "7", "--out", str(tmp_path / "x.npy")]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), torch_generate(g, codes), rtol=0, atol=1e-5)


def _save_npz(net, path):
    np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})
    return str(path)
