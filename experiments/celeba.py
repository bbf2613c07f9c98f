"""`python -m experiments.celeba --norm=wn --workdir=runs/celeba_wn`: the paper's celeba run (see wngan_jax.config.celeba)."""
from experiments.common import main_for

if __name__ == "__main__":
    main_for("celeba")
