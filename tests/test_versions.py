"""Versions: ``wngan_jax.__version__`` is setup.cfg's, CHANGELOG.md ends at it, and what 0.1.0 and 0.2.0 wrote
still reads."""

import configparser
import datetime
import importlib.metadata
import json
import pathlib
import re
import urllib.parse

import pytest

import wngan_jax
from wngan_jax.config import TrainConfig
from wngan_jax.models import ModelConfig
from wngan_jax.train import CheckpointMeta

ROOT = pathlib.Path(__file__).parents[1]


def setup_cfg_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["metadata"]["version"]


def version_tuple(version: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    return tuple(int(part) for part in version.split("."))


def installed_from(dist) -> pathlib.Path:
    """The directory pip installed ``dist`` from (``direct_url.json``), or where its metadata lies (an
    ``.egg-info`` beside the package, written by an editable install into the checkout itself)."""
    direct = dist.read_text("direct_url.json")
    if direct:
        return pathlib.Path(urllib.parse.urlparse(json.loads(direct)["url"]).path)
    return pathlib.Path(dist.locate_file(""))


def test_version_is_the_one_in_setup_cfg():
    try:
        dist = importlib.metadata.distribution("wngan_jax")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("wngan_jax is not installed (pip install -e .)")
    if installed_from(dist).resolve() != ROOT.resolve():
        pytest.skip(f"the installed wngan_jax is the checkout at {installed_from(dist)}, not this one")
    assert wngan_jax.__version__ == setup_cfg_version(), "installed before setup.cfg changed: pip install -e ."


def test_version_of_a_checkout_pip_never_installed_says_so(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert "not installed" in wngan_jax._installed_version()


def test_changelog_lists_releases_newest_first_ending_at_setup_cfg_version():
    """Keep a Changelog: ``## [Unreleased]`` first, then ``## [X.Y.Z] - YYYY-MM-DD``, versions falling, dates
    not rising; the newest release is the version setup.cfg gives the package."""
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\S+))?$", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases and releases[0][0] == setup_cfg_version()
    versions = [version_tuple(v) for v, _ in releases]
    dates = [datetime.date.fromisoformat(d) for _, d in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert dates == sorted(dates, reverse=True)
    assert releases[-1][0] == "0.1.0"


# What 0.2.0 (and 0.1.0, whose files have the same form) wrote: `digits().replace(norm="bn",
# image_size=(16, 16)).to_json()` as config.json, `ModelConfig.to_dict()` as model.json, and the checkpoint
# meta of a run that had rolled back twice.
CONFIG_0_2_0 = {
    "batch_size": 32,
    "cache_dir": "",
    "channels": 1,
    "code_size": 32,
    "data": "digits",
    "data_dir": "",
    "dtype": "float32",
    "final_test": 200,
    "final_test_samples": 200,
    "final_test_steps": 500,
    "image_size": [16, 16],
    "iterations": 4000,
    "keep_every": 2000,
    "log_every": 50,
    "loss": "bce",
    "lr": 0.0002,
    "max_nan_restarts": 3,
    "nfeature": 32,
    "norm": "bn",
    "num_fixed_codes": 64,
    "progress": True,
    "rmsprop_decay": 0.9,
    "rmsprop_eps": 1e-06,
    "running_test": 100,
    "sample_every": 500,
    "seed": 0,
    "split_seed": 0,
    "test_every": 200,
    "test_steps": 50,
}
MODEL_0_2_0 = {"variant": "wn", "image_size": [16, 16], "channels": 1, "nfeature": 32, "code_size": 32, "critic": False}
META_0_2_0 = {
    "iteration": 400,
    "best_loss": 0.02,
    "best_iteration": 200,
    "last_test_loss": 0.03,
    "nan_events": 2,
    "data": {"seed": 0, "epoch": 8, "position": 96},
}
# The names 0.3.0 gave those fields (CHANGELOG.md, 0.3.0: Changed).
RENAMED_IN_0_3_0 = {"max_nan_restarts": "max_rollbacks", "progress": "progress_bar", "nan_events": "rollbacks"}


def test_config_json_of_0_2_0_reads_with_every_value_kept():
    config = TrainConfig.from_dict(json.loads(json.dumps(CONFIG_0_2_0)))
    values = config.to_dict()
    values |= values.pop("model")
    for name, value in CONFIG_0_2_0.items():
        assert values[RENAMED_IN_0_3_0.get(name, name)] == value, name
    assert config.model == ModelConfig("bn", 16, channels=1, nfeature=32, code_size=32)
    assert TrainConfig.from_dict(config.to_dict()) == config  # and it is written back in today's form


def test_model_json_and_checkpoint_meta_of_0_2_0_read():
    assert ModelConfig.from_dict(MODEL_0_2_0) == ModelConfig("wn", 16, channels=1, nfeature=32, code_size=32)
    meta = CheckpointMeta.from_dict(META_0_2_0)
    for name, value in META_0_2_0.items():
        assert getattr(meta, RENAMED_IN_0_3_0.get(name, name)) == value, name
