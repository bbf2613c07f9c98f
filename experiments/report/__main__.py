"""``python -m experiments.report``: see ``experiments.report.command``."""

import sys

from experiments.report.command import main

if __name__ == "__main__":
    sys.exit(main())
