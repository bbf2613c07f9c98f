"""The paper's DCGAN-style generator and discriminator (paper §5.1, Table 1; appendices C.2 and D).

One builder serves every image size, channel count and norm variant. The discriminator has ``L`` stride-2
convolutions (kernel 4) with ``nf, 2nf, 4nf, ...`` channels and a final convolution whose kernel covers the
remaining map; the generator is its mirror image: a dense layer from the code, then ``L`` stride-2
transposed convolutions. ``L`` counts halvings of ``max(H, W)`` while it is at least 8 (32 -> 3, 64 -> 4,
160 -> 5, 256 -> 6). A level whose input side is ``2 mod 4`` uses padding 2 instead of 1 (never the last
level), so every intermediate map stays even (108 -> 54 -> 28 -> 14 -> 7).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

from wngan_jax import resnet
from wngan_jax.errors import ConfigError
from wngan_jax.layers import BatchNorm, Conv, Dense, PReLU, WeightNorm

GENERATOR_FIRST_LAYER_INIT_SCALE = 0.01  # paper §5.1: t = 0.01 for the generator's first layer
# The largest count a config field may hold: JAX counts in 32-bit integers (its default without x64), so
# iterations, steps, sizes and shapes beyond this overflow.
INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Variant:
    """A norm variant: which linear layers, which activation, which batch statistics (paper Table 1, C.2)."""

    name: str
    weight_norm: WeightNorm  # every layer but the last of each network
    last_weight_norm: WeightNorm  # the last layer of each network
    translated_activation: bool  # TPReLU instead of PReLU
    batch_norm: Literal["none", "full", "mean_only"]
    clip_alpha: bool = False  # "WN + clipping": alpha of G's first two TPReLU layers in [0, 1]
    spectral_norm: bool = False  # every layer of D spectrally normalized (Miyato et al. 2018); G as vanilla


VARIANTS = {
    "vanilla": Variant("vanilla", "none", "none", False, "none"),
    "bn": Variant("bn", "none", "none", False, "full"),
    "wn": Variant("wn", "strict", "affine", True, "none"),
    "affine_wn": Variant("affine_wn", "affine", "affine", False, "none"),
    "wn_meanbn": Variant("wn_meanbn", "affine", "affine", False, "mean_only"),
    "wn_clip": Variant("wn_clip", "strict", "affine", True, "none", clip_alpha=True),
    "sn": Variant("sn", "none", "none", False, "none", spectral_norm=True),  # not in the paper: its successor
}
AUTHOR_NAMES = {"none": "vanilla", "batch": "bn", "weight": "wn", "weight-affine": "affine_wn"}


def get_variant(name: str) -> Variant:
    """The variant for a project name (``wn``) or one of the authors' ``--norm`` names (``weight``)."""
    key = AUTHOR_NAMES.get(name, name)
    if key not in VARIANTS:
        known = ", ".join(list(VARIANTS) + list(AUTHOR_NAMES))
        raise ConfigError(f"unknown norm variant {name!r}; choose one of: {known}")
    return VARIANTS[key]


@dataclasses.dataclass(frozen=True)
class Level:
    """One stride-2 level, counted from the image side: D maps ``in_hw`` to ``out_hw``, G the reverse."""

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    padding: tuple[int, int]
    image_side_channels: int
    code_side_channels: int


@dataclasses.dataclass(frozen=True)
class Architecture:
    image_hw: tuple[int, int]
    channels: int
    levels: tuple[Level, ...]

    @property
    def top_hw(self) -> tuple[int, int]:
        return self.levels[-1].out_hw

    @property
    def top_channels(self) -> int:
        return self.levels[-1].code_side_channels


def image_hw(image_size) -> tuple[int, int]:
    """``32``, ``"32"``, ``"64x96"`` or ``(64, 96)`` -> ``(height, width)``: the one parser of image sizes."""
    if isinstance(image_size, str):
        try:
            parts = [int(p) for p in image_size.lower().replace(",", "x").split("x")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise ConfigError(f"image size must be N or HxW such as 64x96, got {image_size!r}")
        image_size = parts[0] if len(parts) == 1 else tuple(parts)
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or not all(isinstance(s, int) for s in hw):
        raise ConfigError(f"image size must be an int or (height, width), got {image_size!r}")
    if min(hw) < 1 or max(hw) > INT32_MAX:
        raise ConfigError(f"image size must be positive and at most {INT32_MAX}, got {hw[0]}x{hw[1]}")
    return hw


def check_int(name: str, value, minimum: int, maximum: int = INT32_MAX) -> None:
    """Refuse ``value`` unless it is an integer (not a bool) in ``[minimum, maximum]``; the error names ``--name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"--{name} must be an integer from {minimum} to {maximum}, got {value!r}")


def architecture(image_size, channels: int = 3, nfeature: int = 64) -> Architecture:
    """The level structure for an image size (docs/authors.md §2, paper Table 1)."""
    hw = image_hw(image_size)
    if any(s % 2 for s in hw):
        raise ConfigError(f"image height and width must be even, got {hw[0]}x{hw[1]}; crop or resize the data")
    if max(hw) < 8:
        raise ConfigError(f"image size {hw[0]}x{hw[1]} is too small: the larger side must be at least 8")
    if channels not in (1, 3):
        raise ConfigError(f"images must have 1 or 3 channels, got {channels}")
    num_levels, side = 0, max(hw)
    while side >= 8:
        side, num_levels = math.ceil(side / 2), num_levels + 1
    levels, cur = [], hw
    for i in range(num_levels):
        if min(cur) < 4:
            raise ConfigError(
                f"image size {hw[0]}x{hw[1]} is too far from square: level {i} would see a {cur[0]}x{cur[1]} "
                "map; use a less elongated size"
            )
        last = i == num_levels - 1
        pad = tuple(1 if (s % 4 == 2 and not last) else 0 for s in cur)
        out = tuple(s // 2 + p for s, p in zip(cur, pad))
        levels.append(
            Level(cur, out, (1 + pad[0], 1 + pad[1]), channels if i == 0 else nfeature * 2 ** (i - 1), nfeature * 2**i)
        )
        cur = out
    return Architecture(hw, channels, tuple(levels))


def _activation(variant: Variant, name: str):
    return PReLU(translated=variant.translated_activation, name=name)


def _norm_layer(variant: Variant, name: str):
    if variant.batch_norm == "none":
        return None
    return BatchNorm(mean_only=variant.batch_norm == "mean_only", name=name)


def _linear_kwargs(norm: WeightNorm):
    return dict(norm=norm, use_bias=norm != "strict")


class Generator(nn.Module):
    """Code ``(B, code_size)`` -> images ``(B, H, W, C)`` in [0, 1] (sigmoid output, paper Table 1)."""

    norm: str = "wn"
    image_size: Any = 64
    channels: int = 3
    nfeature: int = 64
    code_size: int = 256
    dtype: Any = None

    @nn.compact
    def __call__(self, z, train: bool = False):
        v = get_variant(self.norm)
        arch = architecture(self.image_size, self.channels, self.nfeature)
        if z.shape[-1] != self.code_size:
            raise ConfigError(f"codes must have length {self.code_size}, got shape {z.shape}")
        (h, w), c = arch.top_hw, arch.top_channels
        dtype = self.dtype or jnp.float32
        # Dense output ordered (h, w, c): the authors' (c, h, w) view, permuted once at import (convert.py).
        init_scale = 1.0 if v.weight_norm == "none" else GENERATOR_FIRST_LAYER_INIT_SCALE
        x = Dense(
            h * w * c, init_scale=init_scale, dtype=dtype, name="initial_linear", **_linear_kwargs(v.weight_norm)
        )(z.astype(dtype))
        x = x.reshape(z.shape[0], h, w, c)
        x = self._normalize_and_activate(v, x, "initial", train)
        for i in reversed(range(len(arch.levels))):
            level, last = arch.levels[i], i == 0
            x = Conv(
                level.image_side_channels,
                (4, 4),
                (2, 2),
                level.padding,
                transpose=True,
                dtype=dtype,
                name=f"level_{i}_conv",
                **_linear_kwargs(v.last_weight_norm if last else v.weight_norm),
            )(x)
            if not last:
                x = self._normalize_and_activate(v, x, f"level_{i}", train)
        return nn.sigmoid(x.astype(jnp.float32))

    def _normalize_and_activate(self, v, x, prefix, train):
        norm = _norm_layer(v, f"{prefix}_norm")
        if norm is not None:
            x = norm(x, use_running_average=not train)
        return _activation(v, f"{prefix}_act")(x)


class Discriminator(nn.Module):
    """Images ``(B, H, W, C)`` in [0, 1] -> logits ``(B,)``; ``sigmoid(logits)`` is the paper's output.

    ``critic=True`` is appendix D's WGAN critic: the WN discriminator with a strict last layer; its output is
    the critic value (no sigmoid is meant).

    The ``sn`` variant divides every layer's kernel by its largest singular value (spectral normalization,
    Miyato et al. 2018), estimated by flax's ``nn.SpectralNorm``: one power iteration from a vector ``u`` kept
    in the ``batch_stats`` collection, the kernel read as a ``(kh * kw * c_in, c_out)`` matrix. Every forward
    runs that iteration; only a forward with ``update_spectral=True`` stores its ``u`` (the train step sets it
    on one forward per D update, ``wngan_jax/train_step.py``). Other variants ignore ``update_spectral``.
    """

    norm: str = "wn"
    image_size: Any = 64
    channels: int = 3
    nfeature: int = 64
    critic: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, update_spectral: bool = False):
        v = get_variant(self.norm)
        arch = architecture(self.image_size, self.channels, self.nfeature)
        if x.shape[1:] != arch.image_hw + (arch.channels,):
            raise ConfigError(
                f"expected images of shape (B, {arch.image_hw[0]}, {arch.image_hw[1]}, {arch.channels}), got {x.shape}"
            )
        if self.critic and v.weight_norm != "strict":
            raise ConfigError(f"the appendix D critic needs a strict WN variant (wn, wn_clip), not {v.name!r}")
        dtype = self.dtype or jnp.float32
        x = x.astype(dtype)
        for i, level in enumerate(arch.levels):
            conv = Conv(
                level.code_side_channels,
                (4, 4),
                (2, 2),
                level.padding,
                dtype=dtype,
                name=f"level_{i}_conv",
                **_linear_kwargs(v.weight_norm),
            )
            x = _linear(v, conv, x, update_spectral)
            norm = _norm_layer(v, f"level_{i}_norm") if i > 0 else None
            if norm is not None:
                x = norm(x, use_running_average=not train)
            x = _activation(v, f"level_{i}_act")(x)
        last_norm = "strict" if self.critic else v.last_weight_norm
        conv = Conv(1, arch.top_hw, dtype=dtype, name="final_conv", **_linear_kwargs(last_norm))
        x = _linear(v, conv, x, update_spectral)
        return x.reshape(x.shape[0]).astype(jnp.float32)


def _linear(variant: Variant, layer: nn.Module, x, update_spectral: bool):
    """``layer(x)``, through ``nn.SpectralNorm`` (its vector stored in ``batch_stats`` under ``<layer>_sn``) for
    the spectrally normalized variant; the layer's own parameters keep their names either way."""
    if not variant.spectral_norm:
        return layer(x)
    return nn.SpectralNorm(layer, name=f"{layer.name}_sn")(x, update_stats=update_spectral)


def alpha_clipped_modules(norm: str, image_size, nfeature: int = 64) -> tuple[str, ...]:
    """Names of the generator's first two TPReLU layers when the variant clips their alpha (appendix C.2)."""
    if not get_variant(norm).clip_alpha:
        return ()
    top = len(architecture(image_size, nfeature=nfeature).levels) - 1
    return ("initial_act", f"level_{top}_act")


def layer_table(norm: str, image_size, channels: int = 3, nfeature: int = 64):
    """Paper Table 1 rows for this variant: (discriminator layers, generator layers), as the paper writes them.

    Linear layers read ``"<type> k, s, p, c_out"``; the generator's dense layer is written as the equivalent
    transposed convolution from a 1x1 code, as in the paper.
    """
    v = get_variant(norm)
    arch = architecture(image_size, channels, nfeature)
    kind = {"none": "Conv", "strict": "SWNConv", "affine": "AWNConv"}
    d_kind = {k: "SN" + name for k, name in kind.items()} if v.spectral_norm else kind
    bn = {"none": None, "full": "BN", "mean_only": "MeanOnlyBN"}[v.batch_norm]
    act = "TPReLU" if v.translated_activation else "PReLU"

    def k(hw):
        return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"

    d = []
    for i, level in enumerate(arch.levels):
        pad = k(level.padding)
        d.append(f"{d_kind[v.weight_norm]} 4, 2, {pad}, {level.code_side_channels}")
        if bn and i > 0:
            d.append(bn)
        d.append(act)
    d += [f"{d_kind[v.last_weight_norm]} {k(arch.top_hw)}, 1, 0, 1", "Sigmoid"]
    g = [f"{kind[v.weight_norm].replace('Conv', 'Deconv')} {k(arch.top_hw)}, 1, 0, {arch.top_channels}"]
    g += [bn] if bn else []
    g.append(act)
    for i in reversed(range(len(arch.levels))):
        level = arch.levels[i]
        norm = v.last_weight_norm if i == 0 else v.weight_norm
        g.append(f"{kind[norm].replace('Conv', 'Deconv')} 4, 2, {k(level.padding)}, {level.image_side_channels}")
        if i > 0:
            g += ([bn] if bn else []) + [act]
    g.append("Sigmoid")
    return d, g


ARCHS = ("dcgan", "resnet")
RESNET_LIST_FIELDS = ("gen_features", "gen_blocks", "dis_features", "dis_blocks")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the shapes of a generator/discriminator pair; stored with every checkpoint.

    ``arch`` selects the model family: ``dcgan``, the paper's models (``norm``, ``nfeature``), or ``resnet``,
    the authors' weight-normalized residual follow-up (``wngan_jax.resnet``; ``norm`` is ``wn``, the
    features and blocks per level are ``gen_features``, ``gen_blocks``, ``dis_features``, ``dis_blocks``).
    """

    norm: str = "wn"
    image_size: tuple[int, int] = (64, 64)
    channels: int = 3
    nfeature: int = 64
    code_size: int = 256
    critic: bool = False
    arch: str = "dcgan"
    gen_features: tuple[int, ...] = ()
    gen_blocks: tuple[int, ...] = ()
    dis_features: tuple[int, ...] = ()
    dis_blocks: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "image_size", image_hw(self.image_size))
        if not isinstance(self.norm, str):
            raise ConfigError(f"--norm must be a name, got {self.norm!r}")
        object.__setattr__(self, "norm", get_variant(self.norm).name)
        check_int("channels", self.channels, 1)
        check_int("nfeature", self.nfeature, 1)
        check_int("code_size", self.code_size, 1)
        for name in RESNET_LIST_FIELDS:
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        if self.arch not in ARCHS:
            raise ConfigError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch == "dcgan":
            given = [f"--{n}" for n in RESNET_LIST_FIELDS if getattr(self, n)]
            if given:
                raise ConfigError(f"{', '.join(given)} apply to --arch=resnet only (--arch is dcgan)")
            architecture(self.image_size, self.channels, self.nfeature)  # validates size and channels
            return
        if self.norm != "wn":
            raise ConfigError(f"--arch=resnet is weight-normalized throughout: --norm must be wn, got {self.norm!r}")
        if self.critic:
            raise ConfigError("--arch=resnet has no WGAN critic (its last layer is affine): use --loss=bce or lsgan")
        resnet.validate(self.image_size, self.channels, self.gen_features, self.gen_blocks, "gen")
        resnet.validate(self.image_size, self.channels, self.dis_features, self.dis_blocks, "dis")

    @property
    def variant(self) -> Variant:
        """What ``norm`` means: which layers, activation and batch statistics (paper Table 1, C.2)."""
        return get_variant(self.norm)

    @property
    def name(self) -> str:
        """The model's name in tables and figures: the norm variant, ``resnet_wn`` for the ResNet follow-up."""
        return f"resnet_{self.norm}" if self.arch == "resnet" else self.norm

    def generator(self, dtype=None) -> nn.Module:
        if self.arch == "resnet":
            return resnet.Generator(
                self.image_size, self.channels, self.code_size, self.gen_features, self.gen_blocks, dtype
            )
        return Generator(self.norm, self.image_size, self.channels, self.nfeature, self.code_size, dtype)

    def discriminator(self, dtype=None) -> nn.Module:
        if self.arch == "resnet":
            return resnet.Discriminator(self.image_size, self.channels, self.dis_features, self.dis_blocks, dtype)
        return Discriminator(self.norm, self.image_size, self.channels, self.nfeature, self.critic, dtype)

    def to_dict(self) -> dict:
        lists = {name: list(getattr(self, name)) for name in RESNET_LIST_FIELDS}
        return dataclasses.asdict(self) | {"image_size": list(self.image_size)} | lists

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """From ``to_dict``'s form; ``variant``, the name 0.1.0 and 0.2.0 wrote for ``norm``, is read too, and
        configs written before ``arch`` existed (0.3.0 and earlier) are DCGAN models."""
        d = {("norm" if k == "variant" else k): v for k, v in d.items()}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown model config fields {sorted(unknown)}")
        return cls(**{**d, "image_size": tuple(d.get("image_size", cls.image_size))})


RESNET_MODELS = ("resnet_wn",)


def model_fields(name: str) -> dict:
    """``arch`` and ``norm`` of the model that tables and figures call ``name`` (``ModelConfig.name``): ``wn``
    is the paper's WN model (the authors' ``weight`` too), ``resnet_wn`` the ResNet follow-up."""
    if name in RESNET_MODELS:
        return {"arch": "resnet", "norm": name.removeprefix("resnet_")}
    try:
        return {"arch": "dcgan", "norm": get_variant(name).name}
    except ConfigError:
        known = ", ".join([*VARIANTS, *AUTHOR_NAMES, *RESNET_MODELS])
        raise ConfigError(f"unknown model {name!r}; choose one of: {known}") from None


def _int_tuple(value, name: str) -> tuple[int, ...]:
    """A list field as a tuple of ints: from a tuple, a list or a comma string such as ``64,128,256``."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} must be a comma list of integers such as 64,128,256, got {value!r}") from None
    if any(not 1 <= v <= INT32_MAX for v in out):
        raise ConfigError(f"--{name} entries must be integers from 1 to {INT32_MAX}, got {list(out)}")
    return out
