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
    procs = [subprocess.Popen([sys.executable, SCRIPT, str(i), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    config = tiny(norm="bn")
    one, _ = _run_steps(config, _batches(config, 3), devices=4)
    two = np.load(out)
    for net in ("generator", "discriminator"):
        expected = one[net]
        paths = [jax.tree_util.keystr((jax.tree_util.DictKey(net),) + path)
                 for path, _ in jax.tree_util.tree_leaves_with_path(expected)]
        got = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(expected), [two[p] for p in paths])
        _compare_models(expected, got, noise_bound=3 * config.lr / np.sqrt(1 - config.rmsprop_decay))
