"""``python -m wngan_jax.bench``: every kind of row at a tiny size, with the keys the docs promise."""

import importlib.util
import json
import math

import jax
import numpy as np
import pytest

from wngan_jax import models
from wngan_jax.bench.__main__ import main
from wngan_jax.config import TrainConfig

COMMON = {"what", "size", "norm", "batch", "median_ms", "gflops", "roofline_fraction", "device"}


def rows(capsys, *argv):
    main(["--json", "--repeats", "1", *argv])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert out
    for row in out:
        assert COMMON <= row.keys(), COMMON - row.keys()
    return out


def iteration_flops(size, batch, nf=64, code=256):
    """Multiply-adds x 2 of one training iteration, counted by hand from the layer shapes (docs/authors.md §2).

    Per sample, ``g``/``d`` are the forward MACs of G/D. The D step runs G forward, D forward on real and
    fake, D's kernel gradients for both and its input gradients above the image level for both; the G step
    runs G and D forward, D's input gradients at every level, and G's kernel and input gradients (no
    gradient wrt the codes): 4 g - dense + 8 d - 2 (D's image level).
    """
    arch = models.architecture(size, 3, nf)
    levels = [
        math.prod(level.out_hw) * level.image_side_channels * level.code_side_channels * 16 for level in arch.levels
    ]
    top = math.prod(arch.top_hw) * arch.top_channels
    dense = code * top
    g, d = dense + sum(levels), top + sum(levels)
    return 2 * batch * (4 * g - dense + 8 * d - 2 * levels[0])


def test_train_rows(capsys, tmp_path):
    (row,) = rows(
        capsys, "--what=train", "--image_size", "16", "--norm", "wn", "--batch_size", "4", "--profile", str(tmp_path)
    )
    assert list(tmp_path.glob("16x16_wn/**/*.trace.json.gz"))
    assert row["median_ms"] > 0 and 0 < row["roofline_fraction"]
    # XLA's count is of the whole iteration; it leaves out multiplications with padding (about 15% here).
    assert 0.75 < row["gflop_per_iteration"] * 1e9 / iteration_flops(16, 4) <= 1.0


def test_authors_rows_compare_with_the_pytorch_iteration(capsys):
    pytest.importorskip("torch")
    (row,) = rows(capsys, "--what=authors", "--image_size", "16", "--norm", "bn", "--batch_size", "4")
    assert row["authors_median_ms"] > 0 and row["speedup"] > 0


def test_authors_iteration_trains_both_networks():
    """One PyTorch iteration moves every parameter of D (D step) and of G (G step), and keeps them finite."""
    pytest.importorskip("torch")
    from wngan_jax.bench.authors import authors_iteration

    iteration, nets = authors_iteration("wn", 16, 4, nfeature=8, code_size=16)
    before = [[p.detach().clone() for p in net.parameters()] for net in nets]
    iteration()
    for net, old in zip(nets, before):
        for p, q in zip(net.parameters(), old):
            assert not np.array_equal(p.detach().numpy(), q.numpy())
            assert np.isfinite(p.detach().numpy()).all()


def test_ablation_variants_really_differ(capsys):
    """Undoing the phase split brings back the cropped border work, which XLA counts."""
    (row,) = rows(capsys, "--what=ablations", "--image_size", "16", "--norm", "wn", "--batch_size", "4")
    flops = row["gflop_per_iteration"]
    assert set(row["variants_ms"]) == {"as shipped", "packed sub-pixel", "XLA default options"}
    assert flops["packed sub-pixel"] > 1.02 * flops["as shipped"]


def test_authors_refuses_a_variant_the_authors_do_not_have(capsys):
    pytest.importorskip("torch")
    assert main(["--what=authors", "--image_size", "16", "--norm", "wn_clip", "--batch_size", "4"]) == 1
    assert "no 'wn_clip' variant" in capsys.readouterr().err


def test_reconstruct_rows(capsys):
    (row,) = rows(capsys, "--what=reconstruct", "--image_size", "16", "--samples", "8")
    assert row["sample_steps_per_s"] > 0 and row["baseline_sample_steps_per_s"] > 0
    assert 0 < row["roofline_fraction"] and 0 < row["baseline_roofline_fraction"]


def test_layer_rows(capsys):
    out = rows(capsys, "--what=layers", "--image_size", "16", "--batch_size", "2")
    assert {r["size"] for r in out} == {16}
    if importlib.util.find_spec("torch"):
        assert all(r["torch_ms"] > 0 for r in out)
    else:
        assert all(r["torch_ms"] is None for r in out)


def test_fid_rows(capsys):
    (row,) = rows(capsys, "--what=fid", "--size", "16", "--batch", "1")
    assert row["batch"] == 1 and row["features_per_s"] > 0 and row["end_to_end_features_per_s"] > 0
    assert 10.5 < row["gflops_per_image"] < 12  # Inception v3 at 299x299: about 5.7 G multiply-adds per image


def test_resnet_defaults_are_the_documented_models():
    """``--arch=resnet`` without lists: their README's model at 160x160, 64..512 doubling to a 4x4 map
    elsewhere (64x64: four levels), one block per level, code 128; the DCGAN family is left as it was."""
    from wngan_jax.bench.train import bench_config

    at = {size: bench_config(size, "wn", 32, family={"arch": "resnet"}).model for size in (16, 64, 160)}
    assert at[64].gen_features == at[64].dis_features == (64, 128, 256, 512) and at[64].gen_blocks == (1,) * 4
    assert at[160].gen_features == (64, 128, 256, 384, 512) and at[160].dis_blocks == (1,) * 5
    assert at[16].gen_features == (64, 128) and at[16].code_size == 128 and at[16].name == "resnet_wn"
    mixed = bench_config(16, "wn", 4, family={"arch": "resnet", "gen_features": (8, 16), "dis_features": (4,)}).model
    assert mixed.gen_features == (8, 16) and mixed.dis_features == (4,) and mixed.dis_blocks == (1,)
    assert bench_config(16, "bn", 4, family={"arch": "dcgan"}).model.code_size == 256


def test_resnet_rows_take_the_model_flags(capsys):
    """``--what=authors`` with ``--arch=resnet`` times the model the flags describe beside their loop; the
    benchmarks without a model family refuse those flags, and the follow-up refuses another norm."""
    pytest.importorskip("torch")
    model = ["--arch=resnet", "--image_size=16", "--gen_features=4,8", "--code_size=8", "--batch_size=2"]
    (row,) = rows(capsys, "--what=authors", *model)  # --what=train times the same step (bench.train.iteration_fn)
    assert (row["model"], row["norm"], row["size"], row["batch"]) == ("resnet_wn", "wn", 16, 2)
    assert row["authors_median_ms"] > 0 and row["speedup"] > 0
    assert main(["--what=data", "--code_size=8"]) == 1
    assert "only --what=train and --what=authors take --code_size" in capsys.readouterr().err
    assert main(["--what=train", "--arch=resnet", "--norm=bn", "--image_size=16"]) == 1
    assert "--norm must be wn" in capsys.readouterr().err


def test_their_resnet_iteration_trains_both_networks():
    """One iteration of their follow-up's loop moves every parameter of both networks but the residue
    branches', which the addition's initial weights (0, 1) cut off, and keeps them finite."""
    pytest.importorskip("torch")
    from wngan_jax.bench.authors import authors_resnet_iteration
    from wngan_jax.bench.train import bench_config

    config = bench_config(16, "wn", 2, family={"arch": "resnet", "gen_features": (4, 8), "code_size": 8})
    iteration, nets = authors_resnet_iteration(config)
    before = [[p.detach().clone() for p in net.parameters()] for net in nets]
    iteration()
    for net, old in zip(nets, before):
        for (name, p), q in zip(net.named_parameters(), old):
            assert np.array_equal(p.detach().numpy(), q.numpy()) == (".residue." in name), name
            assert np.isfinite(p.detach().numpy()).all()


def test_stabilizers_rows_time_ema_and_sn_against_wn(capsys):
    """Every variant timed against plain WN; XLA's count of the iteration with a generator EMA exceeds plain
    WN's by about one multiply-add and one subtraction per generator parameter (``avg + s * (theta - avg)``),
    and the sn step's exceeds vanilla's (the power iterations and the division)."""
    (row,) = rows(capsys, "--what=stabilizers", "--image_size", "16", "--batch_size", "4")
    assert set(row["variants_ms"]) == {"wn", "wn + EMA", "sn", "vanilla"} and row["median_ms"] > 0
    assert all(ratio > 0 for ratio in row["ratio_to_wn"].values())
    model = TrainConfig().replace(image_size=(16, 16)).model
    codes = jax.numpy.zeros((1, model.code_size))
    variables = jax.eval_shape(lambda: model.generator().init(jax.random.key(0), codes))
    params = sum(x.size for x in jax.tree.leaves(variables["params"]))
    gflop = row["gflop_per_iteration"]
    assert 2 * params <= (gflop["wn + EMA"] - gflop["wn"]) * 1e9 <= 4 * params
    assert gflop["sn"] > gflop["vanilla"]
