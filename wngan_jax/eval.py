"""``python -m wngan_jax.eval``: the final reconstruction test of a checkpoint's generator (paper §4, §5.1).

    python -m wngan_jax.eval --checkpoint RUN [--which best|last|N] [--ema] --data SPEC [--data_dir PATH] \\
        --samples 2000 --steps 2000 --out DIR [--pairs] [--benchmark]
    python -m wngan_jax.eval --checkpoint RUN --targets images.npy --out DIR

``--data`` reconstructs the dataset's final test set (the first ``--samples`` images of its split,
docs/authors.md §3), ``--targets`` any ``(N, H, W, C)`` images (uint8, or float in [0, 1]). Writes
``OUT/report.json`` (loss, per-sample losses, the loss against reconstruction steps, timing),
``OUT/codes.npy``, ``OUT/targets.npy`` (the first 8 targets, for the report's figures), ``OUT/pairs.png`` and,
with ``--pairs``, one pair image per sample under ``OUT/pairs/`` as the authors' final test does.
``--benchmark`` compiles first, so the timing excludes compilation. ``--metrics recon,fid,kid,pr`` adds FID,
KID and precision/recall of ``--fid_samples`` generated images against ``--data``'s training images (needs
pytorch-fid's Inception weights, docs/metrics.md). ``--ema`` measures the averaged generator of a run trained
with ``--ema_decay`` (``"generator": "ema"`` in the report, ``"raw"`` otherwise).
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from wngan_jax import checkpoint, cli, evaluation, fid, files, inception, reconstruction
from wngan_jax.errors import ConfigError


def define(fv: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(fv)
    cli.define_data_flags(fv)
    flags.DEFINE_string("targets", None, ".npy file of images (N, H, W, C), uint8 or float in [0, 1]", flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["data", "targets"], required=True, flag_values=fv)
    flags.DEFINE_list(
        "metrics",
        ["recon"],
        "recon (the reconstruction loss, paper §4) and/or fid, kid, pr (against --data's training images; "
        "docs/metrics.md)",
        flag_values=fv,
    )
    cli.define_inception_weights(fv)
    flags.DEFINE_integer("fid_samples", 10_000, "fid/kid/pr: images generated from random codes", flag_values=fv)
    flags.DEFINE_integer("fid_reference", 10_000, "fid/kid/pr: training images of --data compared with", flag_values=fv)
    cli.define_count(fv, "samples", 2000, "number of test images (paper: 2000)")
    cli.define_count(fv, "steps", 2000, "RMSProp steps per code (paper: 2000)", minimum=0)
    cli.define_count(
        fv,
        "batch_size",
        reconstruction.AUTHORS_BATCH,
        "the authors' test batch, which sets each sample's 1/B loss scale (12 for LSUN)",
    )
    cli.define_int_list(
        fv, "record_steps", None, "also record the mean loss after these steps (default: 50,100,200,... below --steps)"
    )
    cli.define_count(fv, "chunk_size", None, "samples per device per pass (default: fit memory)")
    flags.DEFINE_string("out", None, "output directory", flag_values=fv)
    flags.mark_flag_as_required("out", flag_values=fv)
    flags.DEFINE_bool("pairs", False, "one (target | reconstruction) PNG per sample", flag_values=fv)
    flags.DEFINE_bool("benchmark", False, "compile first, then time the reconstruction", flag_values=fv)


def check_inputs(fv: flags.FlagValues, quality: tuple[str, ...]):
    """Every input of every requested metric, before any work: counts, the output directory and the Inception
    weights (loaded here, so that missing weights are not found after hours of reconstruction)."""
    if quality and fv.data is None:
        raise ConfigError(f"--metrics {','.join(quality)} compares with the training images of --data; pass --data")
    if "recon" in fv.metrics:
        for name in ("samples", "steps", "batch_size"):
            if fv[name].value < 1:
                raise ConfigError(f"--{name} must be 1 or more, got {fv[name].value}")
    files.check_output(fv.out, "--out", directory=True)
    if not quality:
        return None
    fid.check_set_sizes(quality, {"--fid_samples": fv.fid_samples, "--fid_reference": fv.fid_reference})
    return fid.extractor(inception.load_weights(fv.inception_weights))


def body(fv: flags.FlagValues, args: list[str]) -> int:
    cli.no_arguments(args)
    quality = fid.check_metrics([m for m in fv.metrics if m != "recon"])
    extractor = check_inputs(fv, quality)
    model, variables, iteration = checkpoint.load_generator(fv.checkpoint, fv.which, ema=fv.ema)
    report = {
        "checkpoint": str(pathlib.Path(fv.checkpoint).absolute()),
        "which": fv.which,
        "iteration": iteration,
        "generator": "ema" if fv.ema else "raw",
    }
    dataset = None
    if fv.data is not None:
        dataset = evaluation.load_dataset(fv.data, model, fv.samples, data_dir=fv.data_dir, cache_dir=fv.cache_dir)
    if "recon" in fv.metrics:
        if fv.targets:
            targets, name = evaluation.load_targets(fv.targets, fv.samples), fv.targets
        else:
            targets, name = evaluation.first(dataset.final_test, fv.samples, fv.data), f"data:{fv.data}"
        recon, result = evaluation.evaluate(
            model,
            variables,
            targets,
            steps=fv.steps,
            batch_size=fv.batch_size,
            chunk_size=fv.chunk_size,
            record_steps=fv.record_steps,
            benchmark=fv.benchmark,
        )
        report = recon | report | {"targets": name}
        evaluation.write_outputs(fv.out, report, result, targets, pairs=fv.pairs)
        print(
            f"reconstruction loss {report['mean_loss']:.6f} ({report['samples']} samples, {report['steps']} "
            f"steps, {report['seconds']:.1f} s, {report['sample_steps_per_s']:.0f} sample-steps/s on "
            f"{report['device']})"
        )
    if quality:
        reference = fid.dataset_reference(dataset, extractor, num=fv.fid_reference)
        report["sample_quality"] = evaluation.sample_quality(
            model, variables, reference, extractor, quality, samples=fv.fid_samples
        )
        evaluation.write_report(fv.out, report)
        print(", ".join(f"{k} {v:.4g}" for k, v in report["sample_quality"].items() if isinstance(v, float)))
    print(f"wrote {fv.out}")
    return 0


def main(argv=None) -> int:
    return cli.run("wngan_jax.eval", __doc__, define, body, argv)


if __name__ == "__main__":
    sys.exit(main())
