"""The digits experiment end to end: runs, the paper's Table 2 and Figure 1 from them, sample grids."""

import json

import numpy as np
import pytest
from absl import flags

from experiments import common, report
from wngan_jax import train
from wngan_jax.config import digits


def test_digits_runs_give_table_plot_grids_and_checkpoints(tmp_path):
    config = digits().replace(
        image_size=(16, 16),
        nfeature=8,
        code_size=16,
        batch_size=16,
        iterations=4,
        test_every=2,
        sample_every=2,
        log_every=2,
        test_steps=3,
        final_test_samples=20,
        final_test_steps=3,
        cache_dir=str(tmp_path / "cache"),
        progress_bar=False,
    )
    runs, summaries = [], {}
    for norm in ("vanilla", "wn"):
        summary = summaries[norm] = train.train_and_evaluate(config.replace(norm=norm), tmp_path / norm)
        assert summary["final_test"]["best"]["samples"] == 20 and summary["best_iteration"] in (2, 4)
        assert summary["final_test"]["last"]["iteration"] == 4
        final = json.loads((tmp_path / norm / "final_test" / "report.json").read_text())
        assert final["iteration"] == summary["best_iteration"] and final["last"]["iteration"] == 4
        assert final["loss_curve"] == {"3": pytest.approx(final["mean_loss"])}
        if summary["best_iteration"] == 4:
            assert final["last"]["same_as_best"] and final["last"]["mean_loss"] == final["mean_loss"]
        else:  # the last generator is evaluated on its own, on the same targets
            last = json.loads((tmp_path / norm / "final_test" / "last" / "report.json").read_text())
            assert last["mean_loss"] == final["last"]["mean_loss"] and len(last["per_sample_loss"]) == 20
        runs.append(tmp_path / norm)
    text = report.summary_table(runs).splitlines()
    assert text[0] == (
        "| Model | Instances | Best 3-step loss | Iteration | Final 3-step loss | Collapsed | Median collapse |"
    )
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in text[2:])}
    assert set(rows) == {"vanilla", "wn"}
    for name, run in zip(("vanilla", "wn"), runs):
        _, count, best, iteration, final, _, _ = rows[name]
        assert count == "1" and int(iteration) == summaries[name]["best_iteration"]
        assert best == f"{summaries[name]['best_loss']:.6f}"
        assert final == f"{summaries[name]['final_test']['best']['mean_loss']:.6f}"
        assert sorted(p.name for p in (run / "samples").iterdir()) == ["iter_0000002.png", "iter_0000004.png"]
        assert (run / "checkpoints" / "best").is_dir() and (run / "final_test" / "pairs.png").is_file()
        assert any((run / "tensorboard").iterdir())
    plot = report.plot(runs, tmp_path / "fig1.png")
    assert plot.stat().st_size > 1000


def test_command_line_flags_override_only_what_is_given():
    fv = flags.FlagValues()
    common.define_flags(fv)
    fv(["digits", "--lr=5e-5", "--image_size=24x32", "--norm=weight", "--max_rollbacks=1"])
    config = common.config_from_flags(fv, "digits")
    assert (config.lr, config.model.image_size, config.norm, config.max_rollbacks) == (5e-5, (24, 32), "wn", 1)
    assert config.iterations == digits().iterations and config.data == "digits"
    assert config.model.channels == digits().model.channels


def test_resnet_presets_bring_the_authors_defaults():
    """``--arch=resnet``: their lr, eps, code size and running-test schedule, their README's CelebA model; flags
    given still override; a preset without a ResNet model asks for the lists."""
    fv = flags.FlagValues()
    common.define_flags(fv)
    fv(["celeba", "--arch=resnet"])
    config = common.config_from_flags(fv, "celeba")
    model = config.model
    assert (model.arch, model.image_size, model.code_size) == ("resnet", (160, 160), 128)
    assert model.gen_features == model.dis_features == (64, 128, 256, 384, 512)
    assert model.gen_blocks == model.dis_blocks == (1, 1, 1, 1, 1)
    assert (config.lr, config.rmsprop_eps, config.batch_size, config.test_every, config.running_test) == (
        2e-5, 1e-8, 32, 1000, 200,
    )  # fmt: skip
    fv = flags.FlagValues()
    common.define_flags(fv)
    fv(["digits", "--arch=resnet", "--lr=1e-4", "--gen_features=8,16"])
    config = common.config_from_flags(fv, "digits")
    assert (config.lr, config.model.gen_features, config.model.dis_features) == (1e-4, (8, 16), (32, 64))
    assert (config.model.image_size, config.model.channels, config.data) == ((16, 16), 1, "digits")
    fv = flags.FlagValues()
    common.define_flags(fv)
    fv(["cifar10", "--arch=resnet"])
    with pytest.raises(ValueError, match="--arch=resnet needs --gen_features and --gen_blocks"):
        common.config_from_flags(fv, "cifar10")


def test_resnet_digits_run_end_to_end(tmp_path, capsys):
    """A tiny ResNet run through the preset's command: it trains, tests, checkpoints, and its generator samples."""
    from experiments import digits as digits_command
    from wngan_jax import sample

    workdir = tmp_path / "run"
    flags_ = [
        "--arch=resnet", "--gen_features=4,8", "--dis_features=4,8", "--code_size=8", "--batch_size=8",
        "--iterations=2", "--test_every=2", "--sample_every=2", "--log_every=1", "--test_steps=2",
        "--final_test_samples=10", "--final_test_steps=2", "--num_fixed_codes=4", "--record_codes=0",
        f"--cache_dir={tmp_path / 'cache'}", "--noprogress_bar", f"--workdir={workdir}",
    ]  # fmt: skip
    assert digits_command.main(flags_) == 0
    final = json.loads((workdir / "final_test" / "report.json").read_text())
    assert final["iteration"] == 2 and final["mean_loss"] > 0
    saved = json.loads((workdir / "config.json").read_text())["model"]
    assert saved["arch"] == "resnet" and saved["gen_features"] == [4, 8]
    out = tmp_path / "samples.npy"
    assert sample.main(["--checkpoint", str(workdir), "--num", "3", "--out", str(out)]) == 0
    images = np.load(out)
    assert images.shape == (3, 16, 16, 1) and 0 <= images.min() and images.max() <= 1
