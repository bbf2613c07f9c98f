"""Typed training configs and the paper's presets (paper §5.1, appendices C.3 and C.4; docs/authors.md §3).

Every field can be overridden from the command line of ``python -m experiments.<preset>`` (``--field=value``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from wngan_jax.models import ModelConfig, get_variant, image_hw

# Fields that may differ when a run is resumed: they change how far or how verbosely it runs, not its maths.
RESUMABLE_CHANGES = ("iterations", "log_every", "progress", "final_test_samples", "final_test_steps")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's CelebA settings (§5.1)."""

    # Model (paper Table 1).
    norm: str = "wn"  # vanilla | bn | wn | affine_wn | wn_meanbn | wn_clip (or authors' names)
    image_size: tuple[int, int] = (160, 160)
    channels: int = 3
    nfeature: int = 64
    code_size: int = 256
    # Data (paper §5.1: 2000 final-test images, the first 200 of them the running test set).
    data: str = "tfds:celeb_a"
    data_dir: str = ""
    cache_dir: str = ""
    final_test: int = 2000
    running_test: int = 200
    split_seed: int = 0
    # Optimization (docs/authors.md §3): RMSProp, decay 0.9, eps 1e-6 outside the sqrt.
    batch_size: int = 32
    lr: float = 1e-4
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1e-6
    loss: Literal["bce", "lsgan", "wasserstein"] = "bce"
    iterations: int = 500_000
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Running test, samples, checkpoints, logs.
    test_every: int = 500
    test_steps: int = 50
    sample_every: int = 500
    num_fixed_codes: int = 64
    record_every: int = 100  # dense fixed-code record (wngan_jax/record.py); record_codes=0 turns it off
    record_codes: int = 16
    keep_every: int = 20_000
    log_every: int = 50
    final_test_samples: int = 2000
    final_test_steps: int = 2000
    max_nan_restarts: int = 3
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "image_size", image_hw(self.image_size))
        object.__setattr__(self, "norm", get_variant(self.norm).name)
        if self.loss not in ("bce", "lsgan", "wasserstein"):
            raise ValueError(f"loss must be bce, lsgan or wasserstein, got {self.loss!r}")
        if self.loss == "wasserstein" and get_variant(self.norm).weight_norm != "strict":
            raise ValueError("the Wasserstein loss needs the appendix D critic: use --norm=wn or wn_clip")
        positive = ("batch_size", "iterations", "test_every", "sample_every", "log_every", "test_steps", "record_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.running_test > self.final_test:
            raise ValueError("running_test must not exceed final_test (it is the final test set's first part)")
        _ = self.model  # validates the architecture early

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(
            self.norm, self.image_size, self.channels, self.nfeature, self.code_size, critic=self.loss == "wasserstein"
        )

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def differences(self, other: TrainConfig, ignore=RESUMABLE_CHANGES) -> dict:
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def celeba() -> TrainConfig:
    """CelebA 160x160 centre crops (paper §5.1). ``python -m experiments.celeba --norm=wn --workdir=runs/celeba_wn``"""
    return TrainConfig()


def cifar10() -> TrainConfig:
    """CIFAR-10 train+test, 32x32, nf 96, test every 1000 on 400 (appendix C.3).
    ``python -m experiments.cifar10 --norm=wn --workdir=runs/cifar10_wn``"""
    return TrainConfig(
        data="tfds:cifar10", image_size=(32, 32), nfeature=96, test_every=1000, sample_every=1000, running_test=400
    )


def lsun() -> TrainConfig:
    """LSUN bedroom 256x256 centre crops, code 512, batch 12, test every 1000 on 200 (appendix C.4).
    ``python -m experiments.lsun --norm=wn --workdir=runs/lsun_wn``"""
    return TrainConfig(
        data="tfds:lsun/bedroom",
        image_size=(256, 256),
        code_size=512,
        batch_size=12,
        test_every=1000,
        sample_every=1000,
        iterations=300_000,
    )


def digits() -> TrainConfig:
    """scikit-learn's 1797 handwritten digits at 16x16, small enough to train in minutes on a laptop CPU.
    ``python -m experiments.digits --norm=wn --workdir=runs/digits_wn``"""
    return TrainConfig(
        data="digits",
        image_size=(16, 16),
        channels=1,
        nfeature=32,
        code_size=32,
        final_test=200,
        running_test=100,
        lr=2e-4,
        iterations=4000,
        test_every=200,
        sample_every=500,
        keep_every=2000,
        log_every=50,
        final_test_samples=200,
        final_test_steps=500,
    )


PRESETS = {"celeba": celeba, "cifar10": cifar10, "lsun": lsun, "digits": digits}
