"""Benchmarks: ``python -m wngan_jax.bench --what=train|reconstruct|data|layers|all``."""
