"""One process of a two-process training run on localhost (used by tests/test_multiprocess.py).

``python two_process_run.py PROCESS_ID PORT WORKDIR CACHE_DIR``: the whole training loop (running test,
samples, checkpoints) of a tiny digits run over 2 processes x 2 CPU devices, stopped after 3 iterations and
resumed to 6.
"""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(process_id: int, port: int, workdir: str, cache_dir: str) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from test_train import tiny

    from wngan_jax import train

    train.train_and_evaluate(tiny(cache_dir=cache_dir, iterations=3), workdir)  # then resumed:
    summary = train.train_and_evaluate(tiny(cache_dir=cache_dir), workdir)
    assert summary["iteration"] == 6, summary
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
