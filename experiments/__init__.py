"""The paper's experiments: ``python -m experiments.<celeba|cifar10|lsun|digits> --norm=wn --workdir=DIR``."""
