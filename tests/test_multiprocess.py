"""Two processes on localhost (jax.distributed, gloo CPU collectives) take the step one process takes."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
from test_train import _batches, _compare_models, _run_steps, tiny

SCRIPT = os.path.join(os.path.dirname(__file__), "multiprocess", "two_process_step.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    out, port = tmp_path / "params.npz", _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    procs = [
        subprocess.Popen(
            [sys.executable, SCRIPT, str(i), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    config = tiny(norm="bn")
    one, _ = _run_steps(config, _batches(config, 3), devices=4)
    two = np.load(out)
    for net in ("generator", "discriminator"):
        expected = one[net]
        paths = [
            jax.tree_util.keystr((jax.tree_util.DictKey(net),) + path)
            for path, _ in jax.tree_util.tree_leaves_with_path(expected)
        ]
        got = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(expected), [two[p] for p in paths])
        _compare_models(expected, got, noise_bound=3 * config.lr / np.sqrt(1 - config.rmsprop_decay))


def test_two_process_training_run_equals_one_process(tmp_path):
    """The whole loop (running test, samples, checkpoints, logs) over 2 processes x 2 devices, stopped and
    resumed, ends with the parameters and running-test losses of one uninterrupted process with 4 devices."""
    from test_train import _final_params, tiny

    from wngan_jax import train
    from wngan_jax.metrics import read_metrics

    script = os.path.join(os.path.dirname(__file__), "multiprocess", "two_process_run.py")
    port, cache = _free_port(), str(tmp_path / "cache")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(i), str(port), str(tmp_path / "two"), cache],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    config = tiny(cache_dir=cache)
    train.train_and_evaluate(config, tmp_path / "one")
    (two, _), (one, _) = _final_params(tmp_path / "two"), _final_params(tmp_path / "one")
    for net in ("generator", "discriminator"):
        _compare_models(one[net], two[net], noise_bound=3 * config.lr / np.sqrt(1 - config.rmsprop_decay))
    np.testing.assert_allclose(
        read_metrics(tmp_path / "two", "test_loss")[1], read_metrics(tmp_path / "one", "test_loss")[1], rtol=1e-5
    )
    assert sorted(p.name for p in (tmp_path / "two" / "samples").iterdir()) == ["iter_0000003.png", "iter_0000006.png"]
