"""The paper's celeba run (see ``wngan_jax.config.celeba``).

``python -m experiments.celeba --norm=wn --workdir=runs/celeba_wn``
"""

import sys

from experiments.common import main_for

if __name__ == "__main__":
    sys.exit(main_for("celeba", __doc__))
