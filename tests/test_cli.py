"""One command-line convention: every documented command parses as written, and runs on fixtures."""

import pathlib
import re
import shlex

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import flags
from test_data import make_folder, make_lmdb, records
from test_versions import setup_cfg_version, version_tuple

import experiments.digits
import experiments.report
import experiments.study
from experiments import common
from wngan_jax import cli, errors, files, sample
from wngan_jax import eval as eval_cli
from wngan_jax.bench import __main__ as bench_cli
from wngan_jax.convert import __main__ as convert_cli
from wngan_jax.data import __main__ as data_cli
from wngan_jax.inception import __main__ as inception_cli

ROOT = pathlib.Path(__file__).parents[1]
DOCS = [ROOT / "README.md", ROOT / "BUILD.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m ((?:wngan_jax|experiments)\.[\w.]+)([^`\n#|)]*)")


def _define_preset(fv):
    common.define_flags(fv)


def _define_digits(fv):
    common.define_flags(fv)
    experiments.digits.define(fv)


# Each command's flag definitions. Where each runs on fixtures: the presets below; digits in test_train.py
# (killed and resumed) and test_experiments.py; report in test_experiments.py and test_report.py; study in
# test_study.py; eval in test_reconstruction.py; sample and convert in test_convert.py; data here and in
# test_data.py; bench in test_bench.py; inception (export) in test_fid.py.
COMMANDS = {
    "experiments.celeba": _define_preset,
    "experiments.cifar10": _define_preset,
    "experiments.lsun": _define_preset,
    "experiments.digits": _define_digits,
    "experiments.report": experiments.report.define,
    "experiments.study": experiments.study.define,
    "wngan_jax.eval": eval_cli.define,
    "wngan_jax.sample": sample.define,
    "wngan_jax.convert": convert_cli.define,
    "wngan_jax.data": data_cli.define,
    "wngan_jax.bench": bench_cli.define,
    "wngan_jax.inception": inception_cli.define,
}


def documented_commands():
    """``(where, module, argv)`` of every ``python -m`` command in README.md, BUILD.md and docs/."""
    found = []
    for path in DOCS:
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
        for match in COMMAND.finditer(text):
            rest = re.sub(r"\[[^\]]*\]", " ", match.group(2))  # optional parts: [--chunk_size 40 | 25]
            argv = [a for a in shlex.split(rest) if a not in ("...", "&&")]
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.name}:{line}", match.group(1), argv))
    return found


def test_documentation_names_commands():
    assert len(documented_commands()) > 30


@pytest.mark.parametrize("where,module,argv", documented_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_documented_command_parses_as_written(where, module, argv):
    """Each documented command line is accepted by its command's flags, in the current spelling."""
    assert module in COMMANDS, f"{where}: {module} has no entry in COMMANDS (and maybe no test that runs it)"
    assert cli.respell(argv) == argv, f"{where} uses a deprecated spelling"
    fv = flags.FlagValues()
    COMMANDS[module](fv)
    if "--help" in argv:
        return
    try:
        fv([module, *argv])
    except flags.IllegalFlagValueError as e:  # required flags a prose example leaves out are fine
        assert "must be specified" in str(e) or "must have a value" in str(e), f"{where}: {e}"
    except flags.Error as e:
        pytest.fail(f"{where}: python -m {module} {' '.join(argv)}: {e}")


def test_deprecated_spellings_still_work_with_a_note_naming_a_later_release(capsys):
    """Each old spelling becomes its flag, with a note naming the release that removes it; that release is
    still to come (setup.cfg's version is below it: a release that reaches it must drop the spellings)."""
    assert cli.respell(["--data-dir=x", "--batch", "4", "--image-size", "8"]) == [
        "--data_dir=x",
        "--batch_size",
        "4",
        "--image_size",
        "8",
    ]
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 3
    assert notes[0] == "note: --data-dir is deprecated and will be removed in 1.0.0; use --data_dir"
    assert all("will be removed in 1.0.0" in note for note in notes) and "use --batch_size" in notes[1]
    assert version_tuple(setup_cfg_version()) < version_tuple(cli.SPELLINGS_REMOVED_IN) == (1, 0, 0)


def test_errors_are_one_line_with_exit_codes(tmp_path, capsys):
    # A bad flag: exit 2, one line naming it.
    assert sample.main(["--checkpoint", str(tmp_path), "--num", "2", "--out", "x.npy", "--no_such_flag"]) == 2
    assert "no_such_flag" in capsys.readouterr().err
    # A user error: exit 1, one line, no traceback.
    assert sample.main(["--checkpoint", str(tmp_path), "--num", "2", "--out", str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "model.json" in err
    # Mutually exclusive and required flags.
    assert sample.main(["--checkpoint", str(tmp_path), "--out", "x.npy"]) == 2
    assert "codes" in capsys.readouterr().err
    # An image extension PIL cannot write is refused before the .npy is written; a missing input names its flag.
    out = tmp_path / "images.npy"
    assert sample.main(["--checkpoint", str(tmp_path), "--num", "2", "--out", str(out), "--grid", "g.xyz"]) == 1
    assert "--grid=g.xyz: unknown image extension" in capsys.readouterr().err and not out.exists()
    with pytest.raises(errors.MissingDataError, match="--codes=absent.npy: no such file"):
        files.load_npy("absent.npy", "--codes")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(errors.DataError, match="--targets=.*text.npy is not a readable .npy array"):
        files.load_npy(tmp_path / "text.npy", "--targets")
    # --help prints the flags and exits 0.
    assert eval_cli.main(["--help"]) == 0
    assert "--record_steps" in capsys.readouterr().out


def test_nonsense_flags_are_refused_before_anything_is_written(tmp_path, capsys):
    workdir = tmp_path / "run"
    for bad, message in [
        ("--lr=-1", "--lr must be a positive"),
        ("--rmsprop_decay=1.5", "--rmsprop_decay must lie in [0, 1)"),
        ("--ema_decay=1", "--ema_decay must lie in [0, 1)"),
        ("--test_every=0", "--test_every must be an integer from 1 to 2147483647"),
        ("--nfeature=0", "--nfeature must be an integer from 1"),  # was a ZeroDivisionError after writing
        ("--code_size=-1", "--code_size must be an integer from 1"),  # was a negative-dimensions ValueError
        ("--seed=99999999999999999999", "--seed must be an integer from 0 to 4294967295"),  # was an OverflowError
        ("--dtype=float16", "--dtype must be one of"),
        ("--image_size=15", "even"),
        ("--norm=spectral", "unknown norm variant"),
        ("--lr=nan", "--lr must be a positive finite"),
    ]:
        assert experiments.digits.main([bad, f"--workdir={workdir}"]) == 1, bad
        assert message in capsys.readouterr().err, bad
        assert not workdir.exists()
    for bad in ("--fid_samples=1", "--fid_reference=0"):  # FID needs two images; checked before any feature
        assert experiments.digits.main(["--fid_every=10", bad, f"--workdir={workdir}"]) == 1, bad
        assert "must be at least 2 when --fid_every is set" in capsys.readouterr().err
        assert not workdir.exists()
    # A study's seeds likewise: refused before its directory is made.
    assert experiments.study.main(["--seeds=0,99999999999999999999", f"--workdir={workdir}"]) == 1
    assert "--seeds must be an integer from 0 to 4294967295" in capsys.readouterr().err
    assert not workdir.exists()


def test_data_info_command(tmp_path, capsys):
    argv = ["info", "--data=digits", "--image_size=16", "--channels=1", f"--cache_dir={tmp_path}"]
    assert data_cli.main([*argv, "--final_test=40", "--running_test=20"]) == 0
    out = capsys.readouterr().out
    assert "digits: 1797 images" in out and "final test 40" in out
    assert data_cli.main(["inf"]) == 1 and "info" in capsys.readouterr().err


TINY = [
    "--image_size=16",
    "--nfeature=8",
    "--code_size=16",
    "--batch_size=4",
    "--iterations=2",
    "--test_every=2",
    "--test_steps=2",
    "--sample_every=2",
    "--log_every=1",
    "--final_test=8",
    "--running_test=4",
    "--final_test_samples=4",
    "--final_test_steps=2",
    "--noprogress_bar",
]


def test_preset_commands_run_on_fixtures(tmp_path, capsys):
    """The README's preset commands, with their data replaced by fixtures and tiny settings appended."""
    make_folder(tmp_path / "celeba", count=16)
    rng = np.random.default_rng(0)
    make_lmdb(tmp_path / "lsun_lmdb", list(rng.integers(0, 256, (16, 40, 48, 3), dtype=np.uint8)))
    runs = {
        "celeba": ["--norm=wn", f"--data=folder:{tmp_path / 'celeba'}"],
        "lsun": ["--norm=wn", f"--data=lmdb:{tmp_path / 'lsun_lmdb'}"],
        "cifar10": ["--norm=bn"],  # tfds:cifar10, served by TFDS's mock
    }
    as_data_source, _ = records(list(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)))
    for preset, argv in runs.items():
        workdir = tmp_path / f"run_{preset}"
        command = [*argv, f"--workdir={workdir}", f"--cache_dir={tmp_path / 'cache'}", *TINY]
        with tfds.testing.mock_data(num_examples=16, as_data_source_fn=as_data_source):
            assert common.main_for(preset, "", command) == 0, capsys.readouterr().err
        assert "final test of the best generator" in capsys.readouterr().out
        assert (workdir / "final_test" / "report.json").is_file()
