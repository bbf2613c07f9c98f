"""One process of a two-process data-parallel run on localhost (used by tests/test_multiprocess.py).

``python two_process_step.py PROCESS_ID PORT OUT.npz``: joins ``jax.distributed`` with 2 CPU devices per
process, feeds this process's half of each global batch and takes three training steps; process 0 saves
the resulting parameters.
"""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(process_id: int, port: int, out: str) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    import numpy as np

    from wngan_jax.sharding import make_mesh, process_slice, replicate, shard_batch
    from wngan_jax.train_step import init_state, make_train_step, run_key

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from test_train import _batches, tiny

    config = tiny(norm="bn")
    mesh = make_mesh()
    assert mesh.size == 4 and jax.process_count() == 2
    step = make_train_step(config, mesh)
    state = replicate(init_state(config, jax.random.key(0)), mesh)
    rows = process_slice(config.batch_size)
    for batch in _batches(config, 3):
        state, _ = step(state, shard_batch(batch[rows], mesh), run_key(1, 0, mesh))
    models = {net: state[net] for net in ("generator", "discriminator")}
    leaves = jax.tree_util.tree_leaves_with_path(models)
    arrays = {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0)) for path, leaf in leaves}
    if process_id == 0:
        np.savez(out, **arrays)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
