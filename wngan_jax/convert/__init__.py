"""Import the authors' PyTorch networks (docs/authors.md §6) as wngan_jax variables and checkpoints.

The authors' PyTorch port saves ``net.state_dict()`` of its generator and discriminator
(``{best,last,<iter>}_{gen,dis}.pt``). Their ``--norm`` names ``none``, ``batch``, ``weight`` and
``weight-affine`` are the vanilla, BN, WN and affine-WN models of paper Table 1; the port has no
mean-only-BN or alpha-clipping model (paper appendix C.2). The mapping (docs/authors.md §1, §2, §6):

* ``Conv2d.weight (out, in, kh, kw)`` and ``ConvTranspose2d.weight (in, out, kh, kw)`` both become
  ``weight.permute(2, 3, 1, 0)``: the HWIO kernel of a convolution, the ``(kh, kw, out, in)`` kernel of a
  transposed convolution (``wngan_jax.ops``).
* ``Linear.weight (out, in)`` becomes ``kernel (in, out)``; the generator views the dense output as
  ``(C, h, w)``, the project as ``(h, w, C)``, so the output units (weight rows, bias, affine scale) are
  permuted. Weight normalization is per output unit, so the permutation commutes with it.
* WN ``scale``/``bias`` of shape ``(1, C, 1, 1)`` (dense ``(1, C)``) become ``(C,)``; the WN norm
  ``sqrt(sum(v**2) / (s_h * s_w) + 1e-6)`` is the same in both (``wngan_jax.layers``).
* TPReLU ``weight`` is the slope, ``bias`` the alpha. The port clamps TPReLU slopes to ``[0, 1]`` inside
  its forward pass, so they are clipped here; its plain ``nn.PReLU`` does not clamp, so PReLU slopes are
  copied unchanged (the outputs are equal either way; training here clips slopes after each update).
* BN ``weight``/``bias`` are the params ``scale``/``bias``, ``running_mean``/``running_var`` the
  batch_stats ``mean``/``var``; ``num_batches_tracked`` is ignored.

The ResNet follow-up (``arch="resnet"``, their ``stormraiser/gan-weightnorm-resnet``) names its tensors
``initial_fc.*``, ``initial_prelu.weight``, ``net.level_<i>_block_<j>.{residue.conv_1, residue.tprelu,
residue.conv_2, shortcut.conv, add, post}.*`` and ``final.*``; kernels, the dense units and the TPReLU
``weight``/``bias`` map as above, WN ``scale``/``bias`` are already ``(C,)``, ``add.weight`` ``(2, C)`` is
kept, and slopes are copied unchanged (their TPReLU clamps in the forward pass, as the project's model of
that family does, and neither clips after an update, so a continued run goes on from the same values).

Command line (``wngan_jax/convert/__main__.py``, docs/convert.md)::

    python -m wngan_jax.convert --gen best_gen.pt [--dis best_dis.pt] --norm weight --image_size 32 --out DIR
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from wngan_jax import checkpoint, generation, resnet, train_step
from wngan_jax.errors import CheckpointError, ConfigError, MissingDataError, MissingDependency
from wngan_jax.models import AUTHOR_NAMES, ModelConfig, architecture, get_variant

NETS = ("generator", "discriminator")
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _torch_kernel(a: np.ndarray) -> np.ndarray:
    """``Conv2d``/``ConvTranspose2d`` weight -> the project's kernel layout (``permute(2, 3, 1, 0)``)."""
    return a.transpose(2, 3, 1, 0)


def _per_channel(a: np.ndarray) -> np.ndarray:
    """``(1, C, 1, 1)`` or ``(1, C)`` WN scale/bias -> ``(C,)``."""
    return a.reshape(-1)


def _clip_slope(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One tensor of the authors' state dict and where it goes in the flax variables."""

    key: str
    shape: tuple[int, ...]
    collection: str
    module: str  # nested modules joined by "/"
    name: str
    convert: Callable[[np.ndarray], np.ndarray] = _identity


def _dense_units(c: int, h: int, w: int) -> Callable[[np.ndarray], np.ndarray]:
    """Reorder the leading (output-unit) axis of a dense tensor from ``(C, h, w)`` to ``(h, w, C)``."""

    def reorder(a: np.ndarray) -> np.ndarray:
        return a.reshape(c, h, w, *a.shape[1:]).transpose(1, 2, 0, *range(3, a.ndim + 2)).reshape(a.shape)

    return reorder


def _linear_entries(
    prefix: str, module: str, weight_shape, norm: str, channels: int, weight_fn, unit_fn=_identity
) -> list[_Entry]:
    """Weight, then bias (plain) or scale and bias (affine WN); strict WN layers have the weight only."""
    entries = [_Entry(f"{prefix}.weight", tuple(weight_shape), "params", module, "kernel", weight_fn)]
    if norm == "none":
        entries.append(_Entry(f"{prefix}.bias", (channels,), "params", module, "bias", unit_fn))
    elif norm == "affine":
        wn_shape = (1, channels, 1, 1) if len(weight_shape) == 4 else (1, channels)

        def per_unit(a):
            return unit_fn(_per_channel(a))

        entries += [
            _Entry(f"{prefix}.scale", wn_shape, "params", module, "scale", per_unit),
            _Entry(f"{prefix}.bias", wn_shape, "params", module, "bias", per_unit),
        ]
    return entries


def _norm_act_entries(variant, prefix: str, project_prefix: str, channels: int, batch_norm: bool):
    entries = []
    if batch_norm and variant.batch_norm == "full":
        bn, m = f"{prefix}.batchnorm", f"{project_prefix}_norm"
        entries += [
            _Entry(f"{bn}.weight", (channels,), "params", m, "scale"),
            _Entry(f"{bn}.bias", (channels,), "params", m, "bias"),
            _Entry(f"{bn}.running_mean", (channels,), "batch_stats", m, "mean"),
            _Entry(f"{bn}.running_var", (channels,), "batch_stats", m, "var"),
        ]
    act = f"{project_prefix}_act"
    if variant.translated_activation:
        entries += [
            _Entry(f"{prefix}.tprelu.weight", (channels,), "params", act, "slope", _clip_slope),
            _Entry(f"{prefix}.tprelu.bias", (channels,), "params", act, "alpha"),
        ]
    else:
        entries.append(_Entry(f"{prefix}.prelu.weight", (channels,), "params", act, "slope"))
    return entries


def _resnet_block_entries(prefix: str, module: str, c_in: int, c_out: int, stride: int, transposed: bool, last: bool):
    """One residual block of the follow-up (``wngan_jax.resnet``): residue, shortcut, addition, post."""
    k = stride + 2
    mid = c_in if transposed else c_out
    if transposed:  # ConvTranspose2d weights are (in, out, kh, kw)
        conv_1, conv_2, shortcut = (c_in, mid, 3, 3), (mid, c_out, k, k), (c_in, c_out, 1, 1)
    else:
        conv_1, conv_2, shortcut = (mid, c_in, k, k), (c_out, mid, 3, 3), (c_out, c_in, 1, 1)
    entries = [
        _Entry(f"{prefix}.residue.conv_1.weight", conv_1, "params", f"{module}/conv_1", "kernel", _torch_kernel),
        _Entry(f"{prefix}.residue.tprelu.weight", (mid,), "params", f"{module}/tprelu", "slope"),
        _Entry(f"{prefix}.residue.tprelu.bias", (mid,), "params", f"{module}/tprelu", "alpha"),
        _Entry(f"{prefix}.residue.conv_2.weight", conv_2, "params", f"{module}/conv_2", "kernel", _torch_kernel),
    ]
    if c_in != c_out:
        entries.append(
            _Entry(
                f"{prefix}.shortcut.conv.weight", shortcut, "params", f"{module}/shortcut_conv", "kernel", _torch_kernel
            )
        )
    entries.append(_Entry(f"{prefix}.add.weight", (2, c_out), "params", f"{module}/add", "weight"))
    post = ("scale", "bias") if last else ("slope", "alpha")
    entries += [
        _Entry(f"{prefix}.post.{key}", (c_out,), "params", f"{module}/post", name)
        for key, name in zip(("scale" if last else "weight", "bias"), post)
    ]
    return entries


def _resnet_entries(config: ModelConfig, net: str) -> list[_Entry]:
    """The follow-up's state-dict layout (their ``model.py``), in their module order."""
    entries = []
    if net == "generator":
        features, blocks = config.gen_features, config.gen_blocks
        (h, w), c = resnet.geometry(config.image_size, len(features)).top_hw, features[-1]
        units = _dense_units(c, h, w)
        entries += [
            _Entry(
                "initial_fc.weight",
                (c * h * w, config.code_size),
                "params",
                "initial_fc",
                "kernel",
                lambda a: units(a).T,
            ),
            _Entry("initial_fc.bias", (c * h * w,), "params", "initial_fc", "bias", units),
            _Entry("initial_fc.scale", (c * h * w,), "params", "initial_fc", "scale", units),
            _Entry("initial_prelu.weight", (c,), "params", "initial_prelu", "slope"),
        ]
        for level in reversed(range(len(features))):
            f_next = config.channels if level == 0 else features[level - 1]
            for j in range(blocks[level]):
                stride_2 = j == blocks[level] - 1
                name = f"level_{level}_block_{j}"
                entries += _resnet_block_entries(
                    f"net.{name}", name, features[level], f_next if stride_2 else features[level],
                    2 if stride_2 else 1, True, stride_2 and level == 0,
                )  # fmt: skip
    elif net == "discriminator":
        features, blocks = config.dis_features, config.dis_blocks
        c = config.channels
        for level, f in enumerate(features):
            for j in range(blocks[level]):
                name = f"level_{level}_block_{j}"
                entries += _resnet_block_entries(
                    f"net.{name}", name, c if j == 0 else f, f, 2 if j == 0 else 1, False, False
                )
            c = f
        top = resnet.geometry(config.image_size, len(features)).top_hw
        entries += [
            _Entry("final.weight", (1, c, *top), "params", "final", "kernel", _torch_kernel),
            _Entry("final.scale", (1,), "params", "final", "scale"),
            _Entry("final.bias", (1,), "params", "final", "bias"),
        ]
    else:
        raise ConfigError(f"net must be one of {NETS}, got {net!r}")
    return entries


def _entries(config: ModelConfig, net: str) -> list[_Entry]:
    """The authors' state-dict layout for ``config`` (docs/authors.md §2, §6), in their module order."""
    if config.arch == "resnet":
        return _resnet_entries(config, net)
    v = config.variant
    arch = architecture(config.image_size, config.channels, config.nfeature)
    entries = []
    if net == "generator":
        (h, w), c = arch.top_hw, arch.top_channels
        units = _dense_units(c, h, w)
        entries += _linear_entries(
            "initial.linear",
            "initial_linear",
            (c * h * w, config.code_size),
            v.weight_norm,
            c * h * w,
            lambda a: units(a).T,
            units,
        )
        entries += _norm_act_entries(v, "initial", "initial", c, batch_norm=True)
        for i in reversed(range(len(arch.levels))):
            level = arch.levels[i]
            shape = (level.code_side_channels, level.image_side_channels, 4, 4)
            norm = v.last_weight_norm if i == 0 else v.weight_norm
            entries += _linear_entries(
                f"level.{i}.conv", f"level_{i}_conv", shape, norm, level.image_side_channels, _torch_kernel
            )
            if i > 0:
                entries += _norm_act_entries(v, f"level.{i}", f"level_{i}", level.image_side_channels, batch_norm=True)
    elif net == "discriminator":
        for i, level in enumerate(arch.levels):
            shape = (level.code_side_channels, level.image_side_channels, 4, 4)
            entries += _linear_entries(
                f"level.{i}.conv", f"level_{i}_conv", shape, v.weight_norm, level.code_side_channels, _torch_kernel
            )
            entries += _norm_act_entries(v, f"level.{i}", f"level_{i}", level.code_side_channels, batch_norm=i > 0)
        entries += _linear_entries(
            "final.conv", "final_conv", (1, arch.top_channels, *arch.top_hw), v.last_weight_norm, 1, _torch_kernel
        )
    else:
        raise ConfigError(f"net must be one of {NETS}, got {net!r}")
    return entries


def authors_config(norm: str, image_size, *, nfeature: int = 64, code_size: int = 256) -> ModelConfig:
    """The ModelConfig of an authors' model; ``norm`` is one of their four names or its project name."""
    name = get_variant(norm).name
    if name not in AUTHOR_NAMES.values():
        authors = ", ".join(f"{a} ({p})" for a, p in AUTHOR_NAMES.items())
        raise ConfigError(
            f"the authors' PyTorch models come in four variants only: {authors}; {norm!r} has no counterpart there"
        )
    return ModelConfig(norm=name, image_size=image_size, channels=3, nfeature=nfeature, code_size=code_size)


def resnet_config(
    image_size, *, gen_features, gen_blocks, dis_features=None, dis_blocks=None, code_size: int = 128, channels=3
) -> ModelConfig:
    """The ModelConfig of a follow-up ResNet (their ``--gen_feature``, ``--gen_block``, ``--dis_feature``,
    ``--dis_block``, ``--code_size``); the discriminator's lists default to the generator's."""
    return ModelConfig(
        arch="resnet",
        image_size=image_size,
        channels=channels,
        code_size=code_size,
        gen_features=gen_features,
        gen_blocks=gen_blocks,
        dis_features=gen_features if dis_features is None else dis_features,
        dis_blocks=gen_blocks if dis_blocks is None else dis_blocks,
    )


def _describe(config: ModelConfig) -> str:
    h, w = config.image_size
    size = h if h == w else f"{h}x{w}"
    if config.arch == "resnet":
        lists = " ".join(f"--{n} {','.join(map(str, getattr(config, n)))}" for n in resnet.LIST_FLAGS)
        return f"--arch resnet --image_size {size} {lists} --code_size {config.code_size}"
    authors_norm = {p: a for a, p in AUTHOR_NAMES.items()}[config.norm]
    h, w = config.image_size
    return (
        f"--norm {authors_norm} --image_size {h if h == w else f'{h}x{w}'} "
        f"--nfeature {config.nfeature} --code_size {config.code_size}"
    )


def authors_to_variables(
    state_dict: Mapping[str, np.ndarray], config: ModelConfig, net: str, *, dtype=np.float32
) -> dict:
    """Flax variables of the project's ``net`` from an authors' state dict (docs/authors.md §6).

    The variables are ``dtype``: float32, the project's; float64 (under ``jax.enable_x64``) keeps a float64
    state exact, for comparing against a float64 reference (tests/test_replay.py). Raises CheckpointError
    naming every missing, unexpected and mis-shaped key with its expected shape.
    """
    entries = _entries(config, net)
    state = {k: _to_numpy(a) for k, a in state_dict.items() if not k.endswith(IGNORED_SUFFIXES)}
    expected = {e.key: e.shape for e in entries}
    problems = [f"missing {k} (expected shape {s})" for k, s in expected.items() if k not in state]
    problems += [f"unexpected {k} (shape {state[k].shape})" for k in state if k not in expected]
    problems += [
        f"{k}: shape {state[k].shape}, expected {s}" for k, s in expected.items() if k in state and state[k].shape != s
    ]
    if problems:
        raise CheckpointError(
            f"the authors' {net} state does not fit {_describe(config)}: "
            + "; ".join(problems)
            + (
                ". Pass the --image_size, features, blocks and --code_size the model was trained with."
                if config.arch == "resnet"
                else ". Pass the --norm, --image_size, --nfeature and --code_size the model was trained with."
            )
        )
    variables: dict = {}
    for e in entries:
        value = e.convert(state[e.key].astype(dtype))
        node = variables.setdefault(e.collection, {})
        for part in e.module.split("/"):
            node = node.setdefault(part, {})
        node[e.name] = jnp.asarray(value)
    checkpoint.check_variables(config, net, variables)
    return variables


def load_state(state) -> dict[str, np.ndarray]:
    """An authors' state dict as numpy arrays from a ``.pt`` file, a ``.npz`` file or a mapping."""
    if isinstance(state, Mapping):
        return {k: _to_numpy(a) for k, a in state.items()}
    path = pathlib.Path(os.fspath(state))
    if not path.is_file():
        raise MissingDataError(f"no such file: {path}")
    if path.suffix == ".npz":
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    return {k: _to_numpy(a) for k, a in _torch_load(path).items()}


def _torch_load(path: pathlib.Path) -> Mapping:
    """The mapping a ``.pt`` file holds (tensors, numbers, lists and dicts only: ``weights_only``)."""
    if not path.is_file():
        raise MissingDataError(f"no such file: {path}")
    try:
        import torch
    except ImportError as e:
        raise MissingDependency(
            f"reading {path} needs PyTorch: pip install 'wngan_jax[torch]' (or save the "
            "state dict as .npz with numpy where PyTorch is installed)"
        ) from e
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for files that are not plain state dicts
        raise CheckpointError(f"could not read {path} as a PyTorch state dict: {e}") from e
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}, not a state dict; save net.state_dict() as the authors' code does"
        )
    return loaded


def authors_optimizer_state(opt_state, state_dict, config: ModelConfig, net: str, *, dtype=np.float32) -> dict:
    """The ``square_avg`` of an authors' ``torch.optim.RMSprop`` state dict (their ``*_gen_opt.pt`` /
    ``*_dis_opt.pt``, or the mapping) laid out as ``net``'s flax params, for ``train_step.rmsprop_state``.

    Their optimizer numbers the parameters in ``net.parameters()`` order, which is the order of the network's
    state dict ``state_dict`` (the follow-up has no buffers). A parameter without an entry has not been
    stepped yet: PyTorch starts its ``square_avg`` at zero, and so does this. Only the follow-up's plain
    RMSProp (no momentum, not centered, no weight decay) continues here; the ResNet follow-up only, whose
    conversions are permutations, so a running mean maps as its parameter does.
    """
    if config.arch != "resnet":
        raise ConfigError("importing an optimizer state needs --arch=resnet (the follow-up's main.py saves it)")
    opt_state = opt_state if isinstance(opt_state, Mapping) else _torch_load(pathlib.Path(os.fspath(opt_state)))
    groups, steps = opt_state.get("param_groups"), opt_state.get("state")
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(steps, Mapping)):
        raise CheckpointError(
            "the optimizer state is not one torch.optim.RMSprop state dict with one parameter group (their "
            "*_gen_opt.pt / *_dis_opt.pt)"
        )
    group = groups[0]
    unsupported = [k for k in ("momentum", "weight_decay", "centered") if group.get(k)]
    if unsupported or "alpha" not in group:
        raise CheckpointError(
            f"the {net} optimizer is not their plain RMSprop (it has {', '.join(unsupported) or 'no alpha'}); "
            "only RMSprop without momentum, weight decay or centering continues here"
        )
    names = [k for k in state_dict if not k.endswith(IGNORED_SUFFIXES)]
    if len(group["params"]) != len(names):
        raise CheckpointError(
            f"the {net} optimizer state holds {len(group['params'])} parameters, its network {len(names)}: "
            "pass the optimizer state saved with that network"
        )
    square_avg = {}
    for name, index in zip(names, group["params"]):
        stepped = steps.get(index, {})
        square_avg[name] = (
            _to_numpy(stepped["square_avg"]) if "square_avg" in stepped else np.zeros_like(state_dict[name])
        )
    return authors_to_variables(square_avg, config, net, dtype=dtype)["params"]


def import_run(out, config: ModelConfig, *, gen, dis, gen_opt, dis_opt, state) -> dict:
    """Write the authors' run (their ``net_archive/<prefix>_{gen,dis,gen_opt,dis_opt,state}.pt``, files or
    mappings) as a run directory ``out`` that training continues from their iteration, with their optimizer
    states; returns the checkpoint's meta.

    What carries over: both networks, both RMSProp running means, and the iteration (``current_iter``; the
    codes of each iteration follow from it, ``train_step.iteration_codes``). What does not: the position in
    their shuffled data (``index_shuffle``, ``current_sample``: indices into their own split) and their best
    running-test loss (``min_loss`` on their held-out images), recorded under ``converted_from`` only; the
    continued run keeps its best from its own running tests. Their optimizer's lr, alpha and eps are
    returned under ``optimizer``: the continued run takes them from its flags (``--lr``, ``--rmsprop_decay``,
    ``--rmsprop_eps``).
    """
    out = pathlib.Path(out)
    if (out / checkpoint.MODEL_FILE).exists():
        raise CheckpointError(f"{out} already holds a checkpoint; choose a new --out directory")
    run_state = state if isinstance(state, Mapping) else _torch_load(pathlib.Path(os.fspath(state)))
    iteration = run_state.get("current_iter")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise CheckpointError(f"the run state holds no iteration (current_iter: {iteration!r}); pass their *_state.pt")
    models, optimizers = {}, {}
    for net, net_state, opt_state in (("generator", gen, gen_opt), ("discriminator", dis, dis_opt)):
        net_state = load_state(net_state)
        models[net] = authors_to_variables(net_state, config, net)
        optimizers[net] = train_step.rmsprop_state(authors_optimizer_state(opt_state, net_state, config, net))
    opt_state = gen_opt if isinstance(gen_opt, Mapping) else _torch_load(pathlib.Path(os.fspath(gen_opt)))
    group = opt_state["param_groups"][0]
    sources = {"gen": gen, "dis": dis, "gen_opt": gen_opt, "dis_opt": dis_opt, "state": state}
    meta = {
        "iteration": iteration,
        "converted_from": {k: str(pathlib.Path(v).absolute()) for k, v in sources.items() if not isinstance(v, Mapping)}
        | {k: _plain(run_state.get(k)) for k in ("best_iter", "min_loss")},
        "optimizer": {k: float(group[k]) for k in ("lr", "alpha", "eps")},
    }
    checkpoint.write_model_config(out, config)
    ckpt = checkpoint.Checkpoints(out, keep_period=None)
    try:
        ckpt.save(
            iteration, models, meta, train={"g_opt": optimizers["generator"], "d_opt": optimizers["discriminator"]}
        )
    finally:
        ckpt.close()
    return meta


def _plain(value):
    """A number of their state file (a Python number or a one-element tensor) as JSON, or None."""
    return None if value is None else _to_numpy(value).item()


def _to_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


class AuthorsNetwork:
    """A converted network in inference mode (BN running statistics), called on numpy arrays.

    The generator maps codes ``(B, code_size)`` to images ``(B, H, W, 3)`` in [0, 1]; the discriminator maps
    images ``(B, H, W, 3)`` in [0, 1] to what the authors' discriminator returns (their images are NCHW):
    probabilities ``(B,)`` (the sigmoid of its logits) for the paper's models, the logits of ``dis(2x - 1)``
    for the ResNet follow-up (its discriminator returns logits and their loop feeds it ``2x - 1``).
    ``config``, ``variables`` and ``net`` describe the flax model.
    """

    def __init__(self, config: ModelConfig, variables: dict, net: str):
        self.config, self.variables, self.net = config, variables, net
        if net == "generator":
            self._apply = generation.inference(config)
        else:
            discriminator = config.discriminator()
            output = (lambda logits: logits) if config.arch == "resnet" else jax.nn.sigmoid
            self._apply = jax.jit(lambda v, x: output(discriminator.apply(v, x, train=False)))

    def __call__(self, x) -> np.ndarray:
        return np.asarray(self._apply(self.variables, jnp.asarray(x, jnp.float32)))


def authors_network(
    state,
    *,
    net: str,
    image_size,
    norm: str = "weight",
    nfeature: int = 64,
    code_size: int | None = None,
    arch: str = "dcgan",
    features=None,
    blocks=None,
) -> AuthorsNetwork:
    """Load an authors' generator or discriminator (``.pt``, ``.npz`` or state dict) for inference.

    ``arch="dcgan"`` (the paper's models: ``norm``, ``nfeature``; code size default 256) or ``"resnet"`` (the
    follow-up: ``features`` and ``blocks`` per level of this network; code size default 128).
    """
    if arch == "resnet":
        if features is None or blocks is None:
            raise ConfigError("arch='resnet' needs the network's features and blocks per level")
        config = resnet_config(image_size, gen_features=features, gen_blocks=blocks, code_size=code_size or 128)
    else:
        config = authors_config(norm, image_size, nfeature=nfeature, code_size=code_size or 256)
    return AuthorsNetwork(config, authors_to_variables(load_state(state), config, net), net)
