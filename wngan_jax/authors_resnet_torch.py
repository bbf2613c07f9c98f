"""An independent PyTorch re-implementation of the authors' ResNet follow-up (``wngan_jax.resnet``).

The reference of the tests (layers and networks in float64, the replay of their loop, the import of their
state dicts) and of the side-by-side benchmark. It needs PyTorch (``pip install 'wngan_jax[torch]'``).

The modules produce their state-dict keys (``initial_fc.weight``, ``net.level_0_block_0.residue.conv_1.weight``,
``net.level_1_block_0.shortcut.conv.weight``, ``....add.weight``, ``....post.bias``, ``final.scale``) and compute
what their code computes: weight-normalized layers divide their kernel by ``sqrt(sum(v**2) * f) + 1e-8`` per
output channel (``f = 1 / (s_h s_w)`` for transposed convolutions, over input channels and taps), then apply
the optional scale and bias; TPReLU clamps its slope to [0, 1] in the forward pass; the generator's
``initial_prelu`` is a plain ``nn.PReLU``; the addition normalizes its ``(2, C)`` weight over the branches.
Parameters start as their code initialised them under the PyTorch of its time (0.3): kernels of convolutions
and transposed convolutions uniform in ``±1 / sqrt(c_in k_h k_w)``, the dense layer's weight and bias in
``±0.01 / sqrt(code_size)``. Tensors are NCHW; constructors take ``image_size=(H, W)`` (theirs ``(W, H)``).
``train_iteration`` is one iteration of their ``main.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wngan_jax.authors_torch import TPReLU  # the same module in both of their codes

EPS = 1e-8  # added after the square root


def pads(image_size, levels: int):
    """Per level (0|1, 0|1) padding and the top map, by their rule (``model.py``)."""
    h, w = image_size
    out = []
    for i in range(levels):
        last = i == levels - 1
        ph, pw = (0, 0) if last else (int(h % 4 == 2), int(w % 4 == 2))
        out.append((ph, pw))
        h, w = (h + 2 * ph) // 2, (w + 2 * pw) // 2
    return out, (h, w)


class WNConv(nn.Module):
    """Weight-normalized ``Conv2d`` or ``ConvTranspose2d`` without bias unless ``affine`` (scale and bias)."""

    def __init__(self, c_in, c_out, kernel, stride, padding, transposed=False, affine=False):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        shape = (c_in, c_out, *kernel) if transposed else (c_out, c_in, *kernel)
        bound = 1.0 / math.sqrt(c_in * kernel[0] * kernel[1])
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.ones(c_out)) if affine else None
        self.bias = nn.Parameter(torch.zeros(c_out)) if affine else None
        self.stride, self.padding, self.transposed = stride, padding, transposed

    def kernel(self):
        out_axis = 1 if self.transposed else 0
        axes = [a for a in range(4) if a != out_axis]
        factor = 1.0 / (self.stride * self.stride) if self.transposed else 1.0
        norm = (self.weight.pow(2).sum(axes) * factor).sqrt() + EPS
        g = norm.reciprocal() if self.scale is None else self.scale / norm
        return self.weight * g.view([-1 if a == out_axis else 1 for a in range(4)])

    def forward(self, x):
        op = F.conv_transpose2d if self.transposed else F.conv2d
        return op(x, self.kernel(), self.bias, self.stride, self.padding)


class WNLinear(nn.Module):
    """The generator's first layer: weight-normalized ``Linear`` with scale and bias, both drawn small."""

    def __init__(self, c_in, c_out, init_factor=0.01):
        super().__init__()
        bound = init_factor / math.sqrt(c_in)
        self.weight = nn.Parameter(torch.empty(c_out, c_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.ones(c_out))

    def forward(self, x):
        norm = self.weight.pow(2).sum(1).sqrt() + EPS
        return F.linear(x, self.weight) / norm * self.scale + self.bias


class Affine(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class WNAddition(nn.Module):
    def __init__(self, channels, initial=(0.0, 1.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(initial).view(-1, 1).repeat(1, channels))

    def forward(self, *xs):
        w = self.weight / (self.weight.pow(2).sum(0).sqrt() + EPS)
        return sum(x * w[i].view(1, -1, 1, 1) for i, x in enumerate(xs))


def upscale2x(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class Block(nn.Module):
    """Their ``ResidueBlock`` (``transposed=False``) or ``ResidueBlockTranspose``."""

    def __init__(self, c_in, c_out, stride, pad, transposed=False, last=False):
        super().__init__()
        ph, pw = pad
        k = stride + 2
        self.stride, self.pad, self.transposed = stride, pad, transposed
        mid = c_in if transposed else c_out
        self.residue = nn.ModuleDict(
            {
                "conv_1": WNConv(c_in, mid, 3 if transposed else k, 1 if transposed else stride,
                                 (1, 1) if transposed else (1 + ph, 1 + pw), transposed),
                "tprelu": TPReLU(mid),
                "conv_2": WNConv(mid, c_out, k if transposed else 3, stride if transposed else 1,
                                 (1 + ph, 1 + pw) if transposed else (1, 1), transposed),
            }
        )  # fmt: skip
        self.shortcut = nn.ModuleDict({"conv": WNConv(c_in, c_out, 1, 1, 0, transposed)} if c_in != c_out else {})
        self.add = WNAddition(c_out)
        self.post = Affine(c_out) if last else TPReLU(c_out)

    def forward(self, x):
        r = x
        for m in self.residue.values():
            r = m(r)
        (ph, pw), s = self.pad, x
        if self.transposed:
            if "conv" in self.shortcut:
                s = self.shortcut["conv"](s)
            if self.stride == 2:
                s = upscale2x(s)
            s = s[:, :, ph : s.shape[2] - ph, pw : s.shape[3] - pw]
        else:
            s = F.pad(s, (pw, pw, ph, ph))
            if self.stride == 2:
                s = F.avg_pool2d(s, 2)
            if "conv" in self.shortcut:
                s = self.shortcut["conv"](s)
        return self.post(self.add(r, s))


class Discriminator(nn.Module):
    """Their discriminator: images ``(B, C, H, W)`` in [-1, 1] (their loop feeds ``2x - 1``) -> logits ``(B,)``."""

    def __init__(self, image_size, features, blocks, channels=3):
        super().__init__()
        level_pads, top = pads(image_size, len(features))
        self.net = nn.Sequential()
        c = channels
        for i, f in enumerate(features):
            for j in range(blocks[i]):
                block = Block(c, f, 2, level_pads[i]) if j == 0 else Block(f, f, 1, (0, 0))
                self.net.add_module(f"level_{i}_block_{j}", block)
            c = f
        self.final = WNConv(c, 1, top, 1, 0, affine=True)

    def forward(self, x):
        return self.final(self.net(x)).view(x.shape[0])


class Generator(nn.Module):
    """Their generator: codes ``(B, code_size)`` -> images ``(B, C, H, W)`` in [0, 1]."""

    def __init__(self, image_size, features, blocks, code_size, channels=3):
        super().__init__()
        level_pads, (h, w) = pads(image_size, len(features))
        self.top = (features[-1], h, w)
        self.initial_fc = WNLinear(code_size, features[-1] * h * w)
        self.initial_prelu = nn.PReLU(features[-1])
        self.net = nn.Sequential()
        for level in reversed(range(len(features))):
            f = features[level]
            f_next = channels if level == 0 else features[level - 1]
            for j in range(blocks[level]):
                if j == blocks[level] - 1:
                    block = Block(f, f_next, 2, level_pads[level], transposed=True, last=level == 0)
                else:
                    block = Block(f, f, 1, (0, 0), transposed=True)
                self.net.add_module(f"level_{level}_block_{j}", block)

    def forward(self, z):
        x = self.initial_prelu(self.initial_fc(z).view(z.shape[0], *self.top))
        return torch.sigmoid(self.net(x))


def randomize_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random values away from the init for every parameter; slopes in (0.1, 0.9), both branches of each addition."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            r = torch.rand(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            n = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("add.weight"):
                p.copy_(0.3 + r)  # both branches contribute
            elif leaf == "weight" and p.dim() == 1:  # PReLU / TPReLU slopes
                p.copy_(0.1 + 0.8 * r)
            elif leaf == "scale":
                p.copy_(0.5 + r)
            elif leaf == "bias":
                p.copy_(0.2 * n)
            else:
                p.copy_(n)
    return net


def rmsprop(net: nn.Module, lr: float = 2e-5) -> torch.optim.RMSprop:
    """Their optimizer: RMSProp, alpha 0.9, eps 1e-8 outside the square root."""
    return torch.optim.RMSprop(net.parameters(), lr=lr, alpha=0.9, eps=1e-8)


def train_iteration(g, d, g_opt, d_opt, real, codes):
    """One iteration of their ``main.py``; ``real`` NCHW in [0, 1]. Returns ``(d_loss, g_loss)``.

    One batch of codes; one D forward of the generated batch (mapped to [-1, 1]) gives G's loss, whose gradient
    reaches G through D before D's update, and D's fake loss; then D's real loss; each optimizer steps once.
    """
    bce = nn.BCEWithLogitsLoss()
    ones = torch.ones(real.shape[0], dtype=real.dtype)
    g.zero_grad()
    generated = g(codes)
    detached = generated.detach().requires_grad_(True)
    fake_logits = d(detached * 2 - 1)
    g_loss = bce(fake_logits, ones)
    generated.backward(torch.autograd.grad([g_loss], [detached], retain_graph=True)[0])
    g_opt.step()
    d.zero_grad()
    fake_loss = bce(fake_logits, torch.zeros_like(ones))
    fake_loss.backward()
    real_loss = bce(d(real * 2 - 1), ones)
    real_loss.backward()
    d_opt.step()
    return (real_loss + fake_loss).detach(), g_loss.detach()
