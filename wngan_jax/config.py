"""Typed training configs and the paper's presets (paper §5.1, appendices C.3 and C.4; docs/authors.md §3).

``TrainConfig`` nests the ``ModelConfig`` that fixes the networks' shapes (``config.model``, stored with every
checkpoint as ``model.json``). Every leaf field, model fields included, is a flag of
``python -m experiments.<preset>`` under its own name (``--norm=wn --image_size=64 --lr=5e-5``), and
``config.replace(norm="bn", lr=5e-5)`` routes model fields into the nested model the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Literal

from wngan_jax.errors import ConfigError
from wngan_jax.models import INT32_MAX, ModelConfig, check_int

LOSSES = ("bce", "lsgan", "wasserstein")
DTYPES = ("float32", "bfloat16")
# Model fields a user sets; ``critic`` follows from the loss.
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "critic")
POSITIVE_FIELDS = (
    "batch_size",
    "iterations",
    "test_every",
    "test_steps",
    "sample_every",
    "num_fixed_codes",
    "record_every",
    "keep_every",
    "log_every",
    "final_test",
    "running_test",
)
NON_NEGATIVE_FIELDS = (
    "final_test_samples",
    "final_test_steps",
    "max_rollbacks",
    "split_seed",
    "seed",
    "fid_every",
    "fid_samples",
    "fid_reference",
    "record_codes",
)
# ``jax.random.key`` keeps a seed's low 32 bits (JAX's default without x64): a larger seed would repeat a
# smaller one's run.
SEED_MAX = 2**32 - 1
# Fields that may differ when a run is resumed: they change how far or how verbosely it runs, not its maths.
RESUMABLE_CHANGES = (
    "iterations",
    "log_every",
    "progress_bar",
    "final_test_samples",
    "final_test_steps",
    "fid_every",
    "fid_samples",
    "fid_reference",
)
# Where things are, not what they are: a moved dataset or cache resumes its runs (the data is compared by its
# content, ``wngan_jax.rundir.RunDirectory.check_data``).
LOCATION_FIELDS = ("data_dir", "cache_dir", "inception_weights")
# Field names of 0.1.0 and 0.2.0, read from the config.json files those releases wrote.
RENAMED_FIELDS = {"progress": "progress_bar", "max_nan_restarts": "max_rollbacks"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's CelebA settings (§5.1)."""

    # Networks (paper Table 1): norm variant, image size, channels, nfeature, code size.
    model: ModelConfig = ModelConfig(image_size=(160, 160))
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
    # Generator EMA (Yazici et al. 2019; not in the paper): 0 keeps the paper's protocol and adds nothing to the
    # state; otherwise the averaged generator is kept beside the raw one and measured with it (train_step.py).
    ema_decay: float = 0.0
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
    max_rollbacks: int = 3
    progress_bar: bool = True
    # FID of generated samples during training (off by default; docs/metrics.md).
    fid_every: int = 0
    fid_samples: int = 2000
    fid_reference: int = 10_000
    inception_weights: str = ""

    def __post_init__(self):
        model = self.model if isinstance(self.model, ModelConfig) else ModelConfig.from_dict(self.model)
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        critic = self.loss == "wasserstein"
        if critic and model.variant.weight_norm != "strict":
            raise ConfigError("--loss=wasserstein needs the appendix D critic: use --norm=wn or --norm=wn_clip")
        object.__setattr__(self, "model", dataclasses.replace(model, critic=critic))
        self._validate()

    def _validate(self) -> None:
        """Every field checked where the config is built, before anything is written; errors name the flag."""
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("lr", "rmsprop_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"--{name} must be a positive finite number, got {value!r}")
        for name in ("rmsprop_decay", "ema_decay"):
            decay = getattr(self, name)
            if isinstance(decay, bool) or not (isinstance(decay, (int, float)) and 0 <= decay < 1):
                raise ConfigError(f"--{name} must lie in [0, 1), got {decay!r}")
        for name in POSITIVE_FIELDS + NON_NEGATIVE_FIELDS:
            minimum = 1 if name in POSITIVE_FIELDS else 0
            check_int(name, getattr(self, name), minimum, SEED_MAX if name == "seed" else INT32_MAX)
        for name in ("data", "data_dir", "cache_dir", "inception_weights"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"--{name} must be a string, got {getattr(self, name)!r}")
        if not self.data.strip():
            raise ConfigError("--data must name a data source: digits, folder:PATH, lmdb:PATH or tfds:NAME[:SPLIT]")
        if not isinstance(self.progress_bar, bool):
            raise ConfigError(f"--progress_bar must be true or false, got {self.progress_bar!r}")
        for name in ("fid_samples", "fid_reference") if self.fid_every else ():
            if getattr(self, name) < 2:  # FID's covariance needs two images (fid.min_images)
                raise ConfigError(f"--{name} must be at least 2 when --fid_every is set, got {getattr(self, name)}")
        if self.running_test > self.final_test:
            raise ConfigError(
                f"--running_test ({self.running_test}) must not exceed --final_test ({self.final_test}): "
                "the running test set is the final test set's first part"
            )
        if self.final_test_samples > self.final_test:
            raise ConfigError(
                f"--final_test_samples ({self.final_test_samples}) must not exceed --final_test "
                f"({self.final_test}), the size of the final test set"
            )

    @property
    def norm(self) -> str:
        """The norm variant (``config.model.norm``)."""
        return self.model.norm

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes``; model fields (``norm``, ``image_size``, ...) go into the nested model."""
        model_changes = {k: changes.pop(k) for k in MODEL_FIELDS if k in changes}
        model = dataclasses.replace(self.model, **model_changes) if model_changes else self.model
        return dataclasses.replace(self, model=model, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From ``to_dict``'s form, or from the flat form that 0.1.0 and 0.2.0 wrote (model fields at the top,
        ``RENAMED_FIELDS``)."""
        d = {RENAMED_FIELDS.get(k, k): v for k, v in d.items()}
        model = dict(d.pop("model", {}))
        model |= {k: d.pop(k) for k in MODEL_FIELDS + ("variant",) if k in d}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}")
        return cls(model=ModelConfig.from_dict(model), **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def differences(self, other: TrainConfig, ignore=RESUMABLE_CHANGES + LOCATION_FIELDS) -> dict:
        """``{field: (self's value, other's value)}`` for the fields that differ, model fields as ``model.X``."""
        a, b = _flat(self.to_dict()), _flat(other.to_dict())
        keys = sorted(a.keys() | b.keys())
        return {k: (a.get(k), b.get(k)) for k in keys if k not in ignore and a.get(k) != b.get(k)}


def _flat(d: dict) -> dict:
    model = d.pop("model")
    return d | {f"model.{k}": v for k, v in model.items()}


def celeba() -> TrainConfig:
    """CelebA 160x160 centre crops (paper §5.1). ``python -m experiments.celeba --norm=wn --workdir=runs/celeba_wn``"""
    return TrainConfig()


def cifar10() -> TrainConfig:
    """CIFAR-10 train+test, 32x32, nf 96, test every 1000 on 400 (appendix C.3).
    ``python -m experiments.cifar10 --norm=wn --workdir=runs/cifar10_wn``"""
    return TrainConfig().replace(
        data="tfds:cifar10", image_size=(32, 32), nfeature=96, test_every=1000, sample_every=1000, running_test=400
    )


def lsun() -> TrainConfig:
    """LSUN bedroom 256x256 centre crops, code 512, batch 12, test every 1000 on 200 (appendix C.4).
    ``python -m experiments.lsun --norm=wn --workdir=runs/lsun_wn``"""
    return TrainConfig().replace(
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
    return TrainConfig().replace(
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

# The ResNet follow-up's defaults (their ``main.py``): RMSProp lr 2e-5, eps 1e-8, code 128, the running test
# every 1000 iterations. ``--arch=resnet`` brings them; flags given still override.
RESNET_DEFAULTS = dict(arch="resnet", code_size=128, lr=2e-5, rmsprop_eps=1e-8, test_every=1000, sample_every=1000)
RESNET_PRESETS = {
    # Their README's CelebA setting: 160x160 crops, features 64..512, one block per level on both sides,
    # batch 32, the running test on 200 held-out images (the preset's running_test).
    "celeba": dict(
        gen_features=(64, 128, 256, 384, 512),
        gen_blocks=(1, 1, 1, 1, 1),
        dis_features=(64, 128, 256, 384, 512),
        dis_blocks=(1, 1, 1, 1, 1),
    ),
    # A CPU-sized model for the built-in digits at 16x16, at the digits preset's code size and schedule.
    "digits": dict(
        gen_features=(32, 64),
        gen_blocks=(1, 1),
        dis_features=(32, 64),
        dis_blocks=(1, 1),
        code_size=32,
        test_every=200,
        sample_every=500,
    ),
}


def preset(name: str, arch: str = "dcgan", **changes) -> TrainConfig:
    """The preset ``name`` for the model family ``arch``, with ``changes`` (model fields included) applied.

    ``arch="resnet"`` brings ``RESNET_DEFAULTS`` and the preset's features and blocks (``RESNET_PRESETS``; a
    preset without them needs ``gen_features``, ``gen_blocks``, ``dis_features`` and ``dis_blocks`` in
    ``changes``). Everything is applied at once, so the config is validated once, complete.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    family = RESNET_DEFAULTS | RESNET_PRESETS.get(name, {}) if arch == "resnet" else {"arch": arch}
    return PRESETS[name]().replace(**(family | changes))
