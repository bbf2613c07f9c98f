"""The paper's cifar10 run (see ``wngan_jax.config.cifar10``).

``python -m experiments.cifar10 --norm=wn --workdir=runs/cifar10_wn``
"""

import sys

from experiments.common import main_for

if __name__ == "__main__":
    sys.exit(main_for("cifar10", __doc__))
