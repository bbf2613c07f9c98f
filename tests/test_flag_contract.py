"""Every command under drawn flag values (hypothesis): it exits 0, or 1 or 2 with one ``error:`` line on stderr
and no traceback, and a run directory it refuses to use is not created.

The values are those a careless or hostile user types: integers at and around each limit (0, -1, 2**31 - 1,
2**32, 10**20), NaN, infinities, subnormal and huge floats, empty strings, and paths that are files,
directories, missing, below a file or unwritable. The commands' work is replaced by what it does first on
shapes alone (``dry_run``: the networks' variables by ``jax.eval_shape`` and the random key of the seed), so
a value that passes validation but would fail once training started fails here too, without training.
"""

import contextlib
import functools
import io
import itertools
import pathlib
import types

import jax
import numpy as np
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import experiments.digits
import experiments.report.command
import experiments.study
from experiments import common, parallel
from wngan_jax import checkpoint, evaluation, generation, sample
from wngan_jax import eval as eval_cli
from wngan_jax.bench import __main__ as bench_cli
from wngan_jax.convert import __main__ as convert_cli
from wngan_jax.data import __main__ as data_cli
from wngan_jax.inception import __main__ as inception_cli
from wngan_jax.models import INT32_MAX, ModelConfig
from wngan_jax.train_step import init_state

INTEGERS = [-(10**20), -1, 0, 1, 2, 3, 7, 8, 15, 16, INT32_MAX, INT32_MAX + 1, 2**32 - 1, 2**32, 10**20]
FLOATS = ["nan", "inf", "-inf", "-0.0", "1e-320", "1e308", "0.5", "0.999", "1", "1.5", "-1"]
WORDS = ["", " ", "x", "wn", "bn", "digits", "best", "last", "16x8", "0x0", "1,2", ",", "-5"]
PATHS = ["file", "dir", "missing", "below_file", "unwritable"]
# Multi-host flags start jax.distributed, which waits for other processes.
SKIPPED = {"coordinator_address", "num_processes", "process_id"}
TINY = [
    "--image_size=16",
    "--nfeature=8",
    "--code_size=8",
    "--batch_size=4",
    "--iterations=2",
    "--final_test=8",
    "--running_test=4",
    "--final_test_samples=4",
    "--noprogress_bar",
]


def dry_run(config, workdir, *, overwrite=False) -> dict:
    """What training does first with ``config``, on shapes only: the random key of the seed, the variables and
    optimizer states of both networks (``init_state``), the codes of the sample grids and the record."""
    jax.random.key(config.seed)
    np.random.default_rng([config.seed, 1]).standard_normal((0, config.model.code_size))
    _shapes(config.replace(seed=0))
    return {"workdir": str(workdir), "best_loss": 0.0, "best_iteration": 0, "final_test": {}}


def in_this_process(fn, calls, jobs, *, started, ended) -> None:
    """``parallel.run_in_processes`` without processes: a spawned process would not see ``dry_run``."""
    for call in calls:
        started(call, None)
        ended(call, parallel.Outcome(fn(*call.args), None, 0.0))


@functools.lru_cache
def _shapes(config):
    return jax.eval_shape(functools.partial(init_state, config), jax.random.key(0))


def _define_digits(fv):
    common.define_flags(fv)
    experiments.digits.define(fv)


def flag_names(define) -> list[str]:
    fv = flags.FlagValues()
    define(fv)
    return sorted(name for name, flag in fv._flags().items() if name == flag.name and name not in SKIPPED)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The paths drawn for flags that name a file or directory."""
    root = tmp_path_factory.mktemp("places")
    (root / "file").write_text("not what any flag wants")
    (root / "dir").mkdir()
    return {
        "file": str(root / "file"),
        "dir": str(root / "dir"),
        "missing": str(root / "missing"),
        "below_file": str(root / "file" / "x.npy"),
        "unwritable": "/proc/1/wngan_jax_test/x.npy",  # not writable even by root
    }


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory):
    """A checkpoint directory of a tiny untrained generator, for the commands that read one."""
    run = tmp_path_factory.mktemp("ckpt")
    model = ModelConfig(norm="wn", image_size=(16, 16), channels=1, nfeature=8, code_size=8)
    variables = model.generator().init(jax.random.key(0), np.zeros((1, 8), np.float32))
    checkpoint.save_models(run, model, {"generator": variables}, step=0, meta={})
    return run


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """Each command's work replaced by its first steps on shapes, or by nothing once its inputs are read."""
    monkeypatch.setattr(common, "train_and_evaluate", dry_run)
    monkeypatch.setattr(experiments.study.train, "train_and_evaluate", dry_run)
    monkeypatch.setattr(experiments.study.parallel, "run_in_processes", in_this_process)
    monkeypatch.setattr(experiments.digits.report, "write", lambda runs, out: out)
    monkeypatch.setattr(experiments.digits.report, "load", lambda paths: types.SimpleNamespace(instances=[]))
    monkeypatch.setattr(experiments.digits.report, "summary", lambda runs: [])
    monkeypatch.setattr(generation, "normal_codes", lambda num, size, seed=0: np.zeros((min(num, 2), size), "f4"))
    fake_set = types.SimpleNamespace(final_test=np.zeros((4, 16, 16, 1), np.uint8))
    monkeypatch.setattr(evaluation, "load_dataset", lambda *args, **kwargs: fake_set)
    result = {"mean_loss": 0.1, "samples": 1, "steps": 1, "seconds": 1.0, "sample_steps_per_s": 1.0, "device": "x"}
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: (result, None))
    monkeypatch.setattr(evaluation, "write_outputs", lambda *args, **kwargs: None)
    cached = types.SimpleNamespace(
        info={"cache_dir": "c", "count": 0, "skipped": []}, train=[], final_test=[], running_test=[]
    )
    monkeypatch.setattr(data_cli.cache, "load", lambda *args, **kwargs: cached)
    monkeypatch.setattr(convert_cli.convert, "load_state", lambda path: {})
    monkeypatch.setattr(convert_cli.convert, "authors_to_variables", lambda state, config, net: {})
    monkeypatch.setattr(convert_cli.checkpoint, "save_models", lambda out, *args, **kwargs: None)
    monkeypatch.setattr(bench_cli, "_run", lambda what, args: [])
    monkeypatch.setattr(bench_cli, "matmul_gflops", lambda: 1.0)
    report = experiments.report.command
    monkeypatch.setattr(
        report.loading, "load", lambda paths, **kwargs: types.SimpleNamespace(instances=[], left_out=[])
    )
    monkeypatch.setattr(report.render, "write", lambda study, out, **kwargs: pathlib.Path(out) / "index.html")
    monkeypatch.setattr(report.tables, "summary", lambda study: [])
    monkeypatch.setattr(report.render, "markdown_table", lambda table: "")
    monkeypatch.setattr(report.figures, "plot_curves", lambda instances, path: path)
    monkeypatch.chdir(tmp_path)  # a default run directory (runs/...) lands here


def values(places):
    as_text = st.sampled_from([str(i) for i in INTEGERS] + FLOATS + WORDS) | st.integers(-3, 20).map(str)
    return as_text | st.sampled_from(PATHS).map(places.get)


# command: (main, flag definitions, fixed arguments given a tmp run directory and the checkpoint)
COMMANDS = {
    "experiments.digits": (experiments.digits.main, _define_digits, lambda w, c: [*TINY, f"--workdir={w}"]),
    "experiments.study": (
        experiments.study.main,
        experiments.study.define,
        lambda w, c: [*TINY, "--norms=wn", f"--workdir={w}"],
    ),
    "wngan_jax.sample": (sample.main, sample.define, lambda w, c: [f"--checkpoint={c}", "--num=2", f"--out={w}.npy"]),
    "wngan_jax.eval": (
        eval_cli.main,
        eval_cli.define,
        lambda w, c: [f"--checkpoint={c}", "--data=digits", f"--out={w}"],
    ),
    "wngan_jax.data": (data_cli.main, data_cli.define, lambda w, c: ["info", "--data=digits", "--image_size=16"]),
    "wngan_jax.convert": (
        convert_cli.main,
        convert_cli.define,
        lambda w, c: [f"--gen={c}/model.json", "--norm=weight", "--image_size=16", f"--out={w}"],
    ),
    "wngan_jax.bench": (bench_cli.main, bench_cli.define, lambda w, c: ["--what=layers"]),
    "experiments.report": (
        experiments.report.command.main,
        experiments.report.command.define,
        lambda w, c: [str(c), f"--out={w}"],
    ),
    "wngan_jax.inception": (inception_cli.main, inception_cli.define, lambda w, c: ["export", f"--out={w}.npz"]),
}
_counter = itertools.count()
# Each flag alone at and beyond its limits (the sweep below); the drawn test combines flags.
LIMITS = ["0", "-1", str(INT32_MAX), str(INT32_MAX + 1), str(2**32), str(10**20), "nan", "inf", "", "x"]


def check_contract(main, argv, workdir) -> None:
    """Exit 0, or 1 or 2 with one ``error:`` line and no traceback; when refused, no run directory or output
    (``workdir``, a drawn ``--workdir``/``--out``) that was not there before."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith(("--workdir=", "--out="))]
    existed = {str(t): _exists(t) for t in [workdir, *given]}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    assert "Traceback" not in err.getvalue(), argv
    if code == 0:
        return
    assert code in (1, 2), (argv, code)
    assert sum(line.startswith("error: ") for line in err.getvalue().splitlines()) == 1, (argv, err.getvalue())
    for target, was in existed.items():
        assert _exists(target) == was, f"{argv}: refused, yet {target} was created"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_alone_at_its_limits(command, places, run_with_checkpoint, stubbed, tmp_path):
    main, define, fixed = COMMANDS[command]
    for name in flag_names(define):
        for value in [*LIMITS, *places.values()]:
            workdir = tmp_path / f"run{next(_counter)}"
            check_contract(main, [*fixed(workdir, run_with_checkpoint), f"--{name}={value}"], workdir)


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_drawn_flags_exit_0_or_one_error_line_and_write_nothing_when_refused(
    command, data, places, run_with_checkpoint, stubbed, tmp_path
):
    main, define, fixed = COMMANDS[command]
    workdir = tmp_path / f"run{next(_counter)}"
    names = data.draw(st.lists(st.sampled_from(flag_names(define)), min_size=1, max_size=3, unique=True))
    drawn = [f"--{name}={data.draw(values(places), label=name)}" for name in names]
    check_contract(main, [*fixed(workdir, run_with_checkpoint), *drawn], workdir)


def _exists(path) -> bool:
    try:
        return bool(str(path).strip()) and pathlib.Path(path).exists()
    except OSError:
        return False
