"""An independent PyTorch re-implementation of the authors' networks (docs/authors.md §1, §2, §6).

Used by the tests of the checkpoint import, by the replay of a training iteration (tests/test_replay.py)
and by the side-by-side benchmark (``python -m wngan_jax.bench --what=authors``); it needs PyTorch
(``pip install 'wngan_jax[torch]'``). ``train_iteration`` is the authors' training iteration (docs/authors.md §3).

The modules produce the authors' state-dict keys (``initial.linear.weight``, ``level.2.tprelu.bias``,
``final.conv.scale``, ...) and compute what the authors' PyTorch port computes: weight-normalized layers
divide the OUTPUT of the layer on ``v`` by ``sqrt(sum(v**2) / (s_h * s_w) + 1e-6)`` (the stride factor for
transposed convolutions only), then apply the optional scale and bias; TPReLU clamps its slope to [0, 1]
inside the forward pass; ``nn.PReLU`` does not clamp; BN is ``BatchNorm2d`` (eps 1e-5); the dense output
is viewed as ``(B, C, h, w)``; both networks end with a sigmoid. Tensors are NCHW.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batch", "weight", "weight-affine")


def levels(image_size):
    """Per level from the image side: (input (h, w), padding (h, w)) and the top map size (docs/authors.md §2)."""
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    num, side = 0, max(hw)
    while side >= 8:
        side, num = (side + 1) // 2, num + 1
    out, cur = [], hw
    for i in range(num):
        pad = tuple(1 if (s % 4 == 2 and i < num - 1) else 0 for s in cur)
        out.append((cur, (1 + pad[0], 1 + pad[1])))
        cur = tuple((s + 2 * p) // 2 for s, p in zip(cur, pad))
    return out, cur


class _WeightNorm(nn.Module):
    """Shared WN parameters: ``weight``; ``scale`` and ``bias`` of shape ``(1, C, 1, ...)`` when affine."""

    def __init__(self, weight_shape, out_channels, affine, out_axis, stride_factor=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(weight_shape))
        self.out_axis, self.stride_factor = out_axis, stride_factor
        wn_shape = (1, out_channels) + (1,) * (len(weight_shape) - 2)
        self.scale = nn.Parameter(torch.ones(wn_shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(wn_shape)) if affine else None

    def normalize(self, y):
        axes = [a for a in range(self.weight.dim()) if a != self.out_axis]
        norm = (self.weight.pow(2).sum(axes) * self.stride_factor + 1e-6).sqrt()
        y = y / norm.view(1, -1, *(1,) * (y.dim() - 2))
        if self.scale is not None:
            y = y * self.scale + self.bias
        return y


class WNLinear(_WeightNorm):
    def __init__(self, c_in, c_out, affine):
        super().__init__((c_out, c_in), c_out, affine, out_axis=0)

    def forward(self, x):
        return self.normalize(F.linear(x, self.weight))


class WNConv2d(_WeightNorm):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine):
        super().__init__((c_out, c_in, *kernel), c_out, affine, out_axis=0)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return self.normalize(F.conv2d(x, self.weight, None, self.stride, self.padding))


class WNConvTranspose2d(_WeightNorm):
    def __init__(self, c_in, c_out, stride, padding, affine):
        super().__init__((c_in, c_out, 4, 4), c_out, affine, out_axis=1, stride_factor=1.0 / stride**2)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return self.normalize(F.conv_transpose2d(x, self.weight, None, self.stride, self.padding))


class TPReLU(nn.Module):
    """``PReLU_a(x - alpha) + alpha``; ``weight`` is the slope (clamped to [0, 1]), ``bias`` the alpha."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        alpha = self.bias.view(1, -1, 1, 1)
        return F.prelu(x - alpha, self.weight.clamp(0, 1)) + alpha


def _norm_act(norm, channels, batch_norm):
    layers = {}
    if norm == "batch" and batch_norm:
        layers["batchnorm"] = nn.BatchNorm2d(channels)
    if norm == "weight":
        layers["tprelu"] = TPReLU(channels)
    else:
        layers["prelu"] = nn.PReLU(channels)
    return layers


def _apply_norm_act(layers: nn.ModuleDict, x):
    for name in ("batchnorm", "tprelu", "prelu"):
        if name in layers:
            x = layers[name](x)
    return x


class Generator(nn.Module):
    """Code ``(B, code_size)`` -> images ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, norm, image_size, nfeature=64, code_size=256):
        super().__init__()
        lv, (h, w) = levels(image_size)
        wn = norm in ("weight", "weight-affine")
        c = nfeature * 2 ** (len(lv) - 1)
        self.top = (c, h, w)
        linear = WNLinear(code_size, c * h * w, norm == "weight-affine") if wn else nn.Linear(code_size, c * h * w)
        self.initial = nn.ModuleDict({"linear": linear, **_norm_act(norm, c, True)})
        self.level = nn.ModuleDict()
        for i in reversed(range(len(lv))):
            c_out = 3 if i == 0 else nfeature * 2 ** (i - 1)
            pad = lv[i][1]
            conv = (
                WNConvTranspose2d(c, c_out, 2, pad, affine=norm == "weight-affine" or i == 0)
                if wn
                else nn.ConvTranspose2d(c, c_out, 4, 2, pad)
            )
            self.level[str(i)] = nn.ModuleDict({"conv": conv, **(_norm_act(norm, c_out, True) if i else {})})
            c = c_out

    def forward(self, z):
        x = self.initial["linear"](z).view(z.shape[0], *self.top)
        x = _apply_norm_act(self.initial, x)
        for layers in self.level.values():
            x = _apply_norm_act(layers, layers["conv"](x))
        return torch.sigmoid(x)


class Discriminator(nn.Module):
    """Images ``(B, 3, H, W)`` in [0, 1] -> probabilities ``(B,)``."""

    def __init__(self, norm, image_size, nfeature=64):
        super().__init__()
        lv, top = levels(image_size)
        wn = norm in ("weight", "weight-affine")
        self.level = nn.ModuleDict()
        c = 3
        for i, (_, pad) in enumerate(lv):
            c_out = nfeature * 2**i
            conv = (
                WNConv2d(c, c_out, (4, 4), 2, pad, affine=norm == "weight-affine")
                if wn
                else nn.Conv2d(c, c_out, 4, 2, pad)
            )
            self.level[str(i)] = nn.ModuleDict({"conv": conv, **_norm_act(norm, c_out, i > 0)})
            c = c_out
        final = WNConv2d(c, 1, top, 1, 0, affine=True) if wn else nn.Conv2d(c, 1, top)
        self.final = nn.ModuleDict({"conv": final})

    def forward(self, x):
        for layers in self.level.values():
            x = _apply_norm_act(layers, layers["conv"](x))
        return torch.sigmoid(self.final["conv"](x)).view(x.shape[0])


def _fan_in(m: nn.Module) -> float:
    """Inputs per output value: a stride-s transposed conv sees ``1/s**2`` of its taps per output pixel."""
    if isinstance(m, nn.Linear):
        return m.weight.shape[1]
    taps = m.weight.shape[2] * m.weight.shape[3]
    if isinstance(m, nn.ConvTranspose2d):
        return m.weight.shape[0] * taps / (m.stride[0] * m.stride[1])
    return m.weight.shape[1] * taps


def randomize_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random values for every parameter and BN statistic, away from the init values, slopes outside [0, 1].

    Plain kernels get std ``1/sqrt(fan_in)`` (per output pixel) so activations stay O(1) and the sigmoid
    outputs away from 0 and 1.
    """
    g = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _WeightNorm):
                normal(m.weight, 1.0)
                if m.scale is not None:
                    uniform(m.scale, 0.5, 1.5)
                    normal(m.bias, 0.2)
            elif isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                normal(m.weight, 1.0 / math.sqrt(_fan_in(m)))
                normal(m.bias, 0.2)
            elif isinstance(m, (TPReLU, nn.PReLU)):
                uniform(m.weight, -0.5, 1.5)
                if isinstance(m, TPReLU):
                    normal(m.bias, 0.3)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.2)
                normal(m.running_mean, 0.2)
                uniform(m.running_var, 0.5, 2.0)
    return net.eval()


def rmsprop(net: nn.Module, lr: float) -> torch.optim.RMSprop:
    """The authors' optimizer: RMSProp, decay 0.9, eps 1e-6 outside the square root (docs/authors.md §3)."""
    return torch.optim.RMSprop(net.parameters(), lr=lr, alpha=0.9, eps=1e-6)


def train_iteration(g, d, g_opt, d_opt, real, d_codes, g_codes):
    """One iteration of the authors' loop (their ``main.py``; paper §5.1); returns ``(d_loss, g_loss)`` tensors.

    D step: ``BCELoss`` of D on the real batch against ones, then of D on ``G(d_codes).detach()`` against
    zeros, the two gradients accumulated, one ``d_opt`` step. G step: ``BCELoss`` of the updated D on
    ``G(g_codes)`` against ones, one ``g_opt`` step. Both networks stay in training mode, so every forward
    moves the BN running statistics (D's three times, G's twice). ``real`` is NCHW in [0, 1].
    """
    bce = nn.BCELoss()
    ones = torch.ones(real.shape[0], dtype=real.dtype, device=real.device)
    d.zero_grad()
    real_loss = bce(d(real), ones)
    real_loss.backward()
    fake_loss = bce(d(g(d_codes).detach()), torch.zeros_like(ones))
    fake_loss.backward()
    d_opt.step()
    g.zero_grad()
    g_loss = bce(d(g(g_codes)), ones)
    g_loss.backward()
    g_opt.step()
    return (real_loss + fake_loss).detach(), g_loss.detach()


def parameter_count(net: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers and not counted), as docs/authors.md §9."""
    return sum(p.numel() for p in net.parameters())
