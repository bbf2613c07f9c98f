"""``python -m wngan_jax.convert``: the authors' PyTorch state dicts -> a wngan_jax checkpoint directory.

    python -m wngan_jax.convert --gen best_gen.pt [--dis best_dis.pt] --norm weight --image_size 32 --out DIR
    python -m wngan_jax.convert --arch resnet --gen best_gen.pt [--dis best_dis.pt] --image_size 160 \
        --gen_features 64,128,256,384,512 --gen_blocks 1,1,1,1,1 --out DIR
    python -m wngan_jax.convert --arch resnet --gen last_gen.pt --dis last_dis.pt --gen_opt last_gen_opt.pt \
        --dis_opt last_dis_opt.pt --state last_state.pt --image_size 160 ... --out RUN   (a run to continue)

The mapping is ``wngan_jax.convert`` (docs/convert.md, docs/authors.md §6).
"""

from __future__ import annotations

import pathlib
import sys

import jax
from absl import flags

from wngan_jax import checkpoint, cli, convert
from wngan_jax.errors import CheckpointError, ConfigError
from wngan_jax.models import RESNET_LIST_FIELDS

RUN_FILES = {
    "gen_opt": "their generator's RMSprop state, *_gen_opt.pt",
    "dis_opt": "their discriminator's RMSprop state, *_dis_opt.pt",
    "state": "their loop's state (current_iter, ...), *_state.pt",
}


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("gen", None, "generator state dict: *_gen.pt or .npz", flag_values=fv)
    flags.DEFINE_string("dis", None, "discriminator state dict: *_dis.pt or .npz (optional)", flag_values=fv)
    flags.DEFINE_enum(
        "arch", "dcgan", ["dcgan", "resnet"], "the paper's models, or the ResNet follow-up", flag_values=fv
    )
    flags.DEFINE_string(
        "norm",
        None,
        "--arch=dcgan: the authors' --norm: none | batch | weight | weight-affine (or vanilla, bn, wn, affine_wn)",
        flag_values=fv,
    )
    cli.define_image_size(fv)
    flags.DEFINE_integer("nfeature", 64, "--arch=dcgan: the authors' --nfeature", flag_values=fv)
    for side in ("gen", "dis"):
        default = " (default: the generator's)" if side == "dis" else ""
        cli.define_int_list(fv, f"{side}_features", None, f"--arch=resnet: their --{side}_feature{default}")
        cli.define_int_list(fv, f"{side}_blocks", None, f"--arch=resnet: their --{side}_block{default}")
    flags.DEFINE_integer("code_size", None, "their --code_size (default 256, --arch=resnet 128)", flag_values=fv)
    for name, what in RUN_FILES.items():
        flags.DEFINE_string(
            name, None, f"--arch=resnet: {what}, to write a run that training continues", flag_values=fv
        )
    flags.DEFINE_string("out", None, "new checkpoint (or run) directory to write", flag_values=fv)
    for name in ("gen", "image_size", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)


def body(fv: flags.FlagValues, args: list[str]) -> int:
    cli.no_arguments(args)
    out = pathlib.Path(fv.out)
    if (out / checkpoint.MODEL_FILE).exists():
        raise CheckpointError(f"{out} already holds a checkpoint; choose a new --out directory")
    if fv.arch == "resnet":
        if not fv.gen_features or not fv.gen_blocks:
            raise ConfigError("--arch=resnet needs --gen_features and --gen_blocks (their --gen_feature, --gen_block)")
        config = convert.resnet_config(
            fv.image_size,
            gen_features=fv.gen_features,
            gen_blocks=fv.gen_blocks,
            dis_features=fv.dis_features,
            dis_blocks=fv.dis_blocks,
            code_size=fv.code_size or 128,
        )
    else:
        if not fv.norm:
            raise ConfigError("--norm is required for the paper's models (--arch=dcgan)")
        config = convert.authors_config(fv.norm, fv.image_size, nfeature=fv.nfeature, code_size=fv.code_size or 256)
    run_files = [name for name in RUN_FILES if fv[name].value]
    if run_files:
        return _import_run(fv, config, out)
    sources = {"generator": fv.gen} | ({"discriminator": fv.dis} if fv.dis else {})
    models = {net: convert.authors_to_variables(convert.load_state(path), config, net) for net, path in sources.items()}
    checkpoint.save_models(
        out,
        config,
        models,
        step=0,
        meta={
            "converted_from": {net: str(pathlib.Path(p).absolute()) for net, p in sources.items()},
            "authors_norm": fv.norm if fv.arch == "dcgan" else None,
        },
    )
    for net, variables in models.items():
        count = sum(a.size for a in jax.tree_util.tree_leaves(variables.get("params", {})))
        print(f"{net}: {sources[net]} -> {count:,} parameters")
    print(f"wrote {out}: {config}")
    print(f"sample with: python -m wngan_jax.sample --checkpoint {out} --num 64 --out samples.npy --grid samples.png")
    return 0


def _import_run(fv: flags.FlagValues, config, out: pathlib.Path) -> int:
    """Their networks, optimizer states and iteration as a run directory; prints the command that continues it."""
    missing = [f"--{name}" for name in ("dis", *RUN_FILES) if not fv[name].value]
    if fv.arch != "resnet" or missing:
        raise ConfigError(
            "a run to continue needs --arch=resnet and all of --gen, --dis, --gen_opt, --dis_opt and --state "
            f"(their net_archive/<prefix>_*.pt){'; missing ' + ', '.join(missing) if missing else ''}"
        )
    meta = convert.import_run(
        out, config, gen=fv.gen, dis=fv.dis, gen_opt=fv.gen_opt, dis_opt=fv.dis_opt, state=fv.state
    )
    opt = meta["optimizer"]
    h, w = config.image_size
    lists = " ".join(f"--{n}={','.join(map(str, getattr(config, n)))}" for n in RESNET_LIST_FIELDS)
    print(f"wrote {out}: their run at iteration {meta['iteration']}, both networks and RMSprop states")
    print(
        f"continue with: python -m experiments.celeba --arch=resnet --workdir={out} --data=folder:PATH "
        f"--image_size={h}x{w} {lists} --code_size={config.code_size} --lr={opt['lr']:g} "
        f"--rmsprop_decay={opt['alpha']:g} --rmsprop_eps={opt['eps']:g}"
    )
    return 0


def main(argv=None) -> int:
    return cli.run(
        "wngan_jax.convert",
        "Convert the authors' PyTorch generator (and discriminator) state dicts into a wngan_jax checkpoint "
        "directory (docs/convert.md).",
        define,
        body,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
