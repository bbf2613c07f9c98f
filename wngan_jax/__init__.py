"""wngan_jax: weight-normalized GANs (Xiang & Li, 2017) in JAX/Flax."""
