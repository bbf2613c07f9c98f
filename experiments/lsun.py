"""The paper's lsun run (see ``wngan_jax.config.lsun``).

``python -m experiments.lsun --norm=wn --workdir=runs/lsun_wn``
"""

import sys

from experiments.common import main_for

if __name__ == "__main__":
    sys.exit(main_for("lsun", __doc__))
