"""The authors' follow-up model: a weight-normalized residual GAN without batch norm (docs/design.md, "The ResNet
follow-up"; their repository ``stormraiser/gan-weightnorm-resnet``, ``model.py`` and ``modules/``).

Both networks have levels of residual blocks; each level halves (discriminator) or doubles (generator) the
map once, in its first (discriminator) or last (generator) block, and features and blocks per level are lists.

* Discriminator block: ``conv_1`` (WN conv, kernel ``stride + 2``, padding ``1 + pad``), a TPReLU, ``conv_2``
  (WN 3x3 conv); shortcut: zero padding by ``pad``, a 2x2 average pool (stride-2 blocks), a WN 1x1 conv when
  the channels change. The generator block mirrors it with transposed convolutions only, its 1x1 shortcut
  conv before a nearest-neighbour 2x upscale, the upscaled map cropped by ``pad``.
* Branches are summed by ``WeightNormalizedAddition``, initialized to (residue 0, shortcut 1), so every block
  starts as its shortcut; then a TPReLU, or in the generator's last block a per-channel ``Affine``.
* Inner convolutions have neither scale nor bias (strict WN); the generator's dense layer and the
  discriminator's final conv over the whole remaining map are affine. Every norm is
  ``sqrt(sum(v**2) * stride_factor) + 1e-8`` (``eps_after_root``); TPReLUs clamp their slope in the forward
  pass; the generator's first PReLU is plain.
* The padding rule: a level whose input side is ``2 mod 4`` pads by 1 (never the last level), so every
  intermediate map stays even for any even image side, square or not.

The discriminator takes images in [0, 1], as every discriminator of the project does, and maps them to
[-1, 1] itself (their loop feeds ``2x - 1``); it returns logits. The generator ends with a sigmoid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from wngan_jax.errors import ConfigError
from wngan_jax.layers import (
    Affine,
    Conv,
    Dense,
    NearestNeighbourUpscale,
    PReLU,
    WeightNormalizedAddition,
    uniform_init,
)

GENERATOR_FIRST_LAYER_INIT_SCALE = 0.01  # their ``init_factor``: weights and bias in ±0.01 / sqrt(code_size)
ADDITION_INITIAL = (0.0, 1.0)  # (residue, shortcut)
LIST_FLAGS = ("gen_features", "gen_blocks", "dis_features", "dis_blocks")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The map sizes of ``levels`` levels: per level its input ``(h, w)`` and padding ``(0|1, 0|1)``; the top map."""

    inputs: tuple[tuple[int, int], ...]
    pads: tuple[tuple[int, int], ...]
    top_hw: tuple[int, int]


def geometry(image_hw: tuple[int, int], levels: int, net: str = "network") -> Geometry:
    """The padding rule over ``levels`` levels of an even ``image_hw``; refuses a level that cannot halve its map."""
    if any(s % 2 for s in image_hw):
        raise ConfigError(f"image height and width must be even, got {image_hw[0]}x{image_hw[1]}")
    inputs, pads, cur = [], [], tuple(image_hw)
    for i in range(levels):
        last = i == levels - 1
        if min(cur) < (2 if last else 4):
            raise ConfigError(
                f"the {net} has {levels} levels, more than a {image_hw[0]}x{image_hw[1]} image allows: level {i} "
                f"would see a {cur[0]}x{cur[1]} map; use fewer features/blocks entries or larger images"
            )
        pad = tuple(1 if (s % 4 == 2 and not last) else 0 for s in cur)
        inputs.append(cur)
        pads.append(pad)
        cur = tuple((s + 2 * p) // 2 for s, p in zip(cur, pad))
    return Geometry(tuple(inputs), tuple(pads), cur)


def validate(image_hw, channels: int, features: Sequence[int], blocks: Sequence[int], net: str) -> Geometry:
    """Check one network's lists (``net``: ``gen`` or ``dis``, as the flags spell it) and return its geometry."""
    if not features or not blocks:
        raise ConfigError(f"--arch=resnet needs --{net}_features and --{net}_blocks (comma lists, one per level)")
    if len(features) != len(blocks):
        raise ConfigError(
            f"--{net}_features has {len(features)} levels and --{net}_blocks {len(blocks)}; give one entry per level"
        )
    if min(features) < 1 or min(blocks) < 1:
        raise ConfigError(f"--{net}_features and --{net}_blocks must be positive, got {list(features)}, {list(blocks)}")
    if channels not in (1, 3):
        raise ConfigError(f"images must have 1 or 3 channels, got {channels}")
    name = {"gen": "generator", "dis": "discriminator"}[net]
    return geometry(tuple(image_hw), len(features), name)


def _wn(dtype, **kw):
    """The follow-up's inner WN convolution: no scale, no bias, epsilon after the root."""
    return dict(norm="strict", use_bias=False, eps_after_root=True, dtype=dtype, **kw)


def _tprelu(name: str) -> PReLU:
    return PReLU(translated=True, clamp=True, name=name)


class ResidualBlock(nn.Module):
    """Discriminator block (their ``ResidueBlock``): ``stride`` 1 or 2, ``pad`` the level's (0|1, 0|1)."""

    features: int
    stride: int = 1
    pad: tuple[int, int] = (0, 0)
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        s, (ph, pw) = self.stride, self.pad
        k = s + 2
        r = Conv(self.features, (k, k), (s, s), (1 + ph, 1 + pw), name="conv_1", **_wn(self.dtype))(x)
        r = _tprelu("tprelu")(r)
        r = Conv(self.features, (3, 3), (1, 1), (1, 1), name="conv_2", **_wn(self.dtype))(r)
        shortcut = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else x
        if s == 2:
            b, h, w, c = shortcut.shape
            shortcut = shortcut.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        if x.shape[-1] != self.features:
            shortcut = Conv(self.features, (1, 1), name="shortcut_conv", **_wn(self.dtype))(shortcut)
        y = WeightNormalizedAddition(ADDITION_INITIAL, name="add")(r, shortcut)
        return _tprelu("post")(y)


class ResidualBlockTranspose(nn.Module):
    """Generator block (their ``ResidueBlockTranspose``); ``last``: the generator's last block (``Affine`` after)."""

    features: int
    stride: int = 1
    pad: tuple[int, int] = (0, 0)
    last: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        s, (ph, pw) = self.stride, self.pad
        k, c_in = s + 2, x.shape[-1]
        r = Conv(c_in, (3, 3), (1, 1), (1, 1), name="conv_1", **_wn(self.dtype, transpose=True))(x)
        r = _tprelu("tprelu")(r)
        r = Conv(self.features, (k, k), (s, s), (1 + ph, 1 + pw), name="conv_2", **_wn(self.dtype, transpose=True))(r)
        shortcut = x
        if c_in != self.features:
            shortcut = Conv(self.features, (1, 1), name="shortcut_conv", **_wn(self.dtype, transpose=True))(shortcut)
        if s == 2:
            shortcut = NearestNeighbourUpscale()(shortcut)
        h, w = shortcut.shape[1:3]
        shortcut = shortcut[:, ph : h - ph, pw : w - pw]
        y = WeightNormalizedAddition(ADDITION_INITIAL, name="add")(r, shortcut)
        return Affine(name="post")(y) if self.last else _tprelu("post")(y)


class Generator(nn.Module):
    """Code ``(B, code_size)`` -> images ``(B, H, W, C)`` in [0, 1]. ``features``/``blocks``: per level from
    the image side (their ``--gen_feature``/``--gen_block``)."""

    image_size: tuple[int, int] = (64, 64)
    channels: int = 3
    code_size: int = 128
    features: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    dtype: Any = None

    @nn.compact
    def __call__(self, z, train: bool = False):
        del train  # no batch statistics
        geo = validate(self.image_size, self.channels, self.features, self.blocks, "gen")
        if z.shape[-1] != self.code_size:
            raise ConfigError(f"codes must have length {self.code_size}, got shape {z.shape}")
        dtype = self.dtype or jnp.float32
        (h, w), c = geo.top_hw, self.features[-1]
        bound = GENERATOR_FIRST_LAYER_INIT_SCALE / self.code_size**0.5
        # Dense output ordered (h, w, c): their (c, h, w) view, permuted once at import (wngan_jax.convert).
        x = Dense(
            h * w * c,
            norm="affine",
            init_scale=GENERATOR_FIRST_LAYER_INIT_SCALE,
            eps_after_root=True,
            bias_init=uniform_init(bound),
            dtype=dtype,
            name="initial_fc",
        )(z.astype(dtype))
        x = PReLU(name="initial_prelu")(x.reshape(z.shape[0], h, w, c))
        for level in reversed(range(len(self.features))):
            f = self.features[level]
            f_next = self.channels if level == 0 else self.features[level - 1]
            for j in range(self.blocks[level]):
                name = f"level_{level}_block_{j}"
                if j == self.blocks[level] - 1:
                    block = ResidualBlockTranspose(f_next, 2, geo.pads[level], level == 0, dtype, name=name)
                else:
                    block = ResidualBlockTranspose(f, dtype=dtype, name=name)
                x = block(x)
        return nn.sigmoid(x.astype(jnp.float32))


class Discriminator(nn.Module):
    """Images ``(B, H, W, C)`` in [0, 1] -> logits ``(B,)`` (of ``2x - 1``, as their loop feeds it)."""

    image_size: tuple[int, int] = (64, 64)
    channels: int = 3
    features: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no batch statistics
        geo = validate(self.image_size, self.channels, self.features, self.blocks, "dis")
        expected = (*self.image_size, self.channels)
        if x.shape[1:] != expected:
            raise ConfigError(f"expected images of shape (B, {', '.join(map(str, expected))}), got {x.shape}")
        dtype = self.dtype or jnp.float32
        x = x.astype(dtype) * 2 - 1
        for level, f in enumerate(self.features):
            for j in range(self.blocks[level]):
                name = f"level_{level}_block_{j}"
                if j == 0:
                    x = ResidualBlock(f, 2, geo.pads[level], dtype, name=name)(x)
                else:
                    x = ResidualBlock(f, dtype=dtype, name=name)(x)
        x = Conv(1, geo.top_hw, norm="affine", eps_after_root=True, dtype=dtype, name="final")(x)
        return x.reshape(x.shape[0]).astype(jnp.float32)
