"""Test setup: four fake CPU devices, so data-parallel code is exercised on one machine."""

import jax

jax.config.update("jax_num_cpu_devices", 4)
