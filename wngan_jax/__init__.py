"""wngan_jax: weight-normalized GANs (Xiang & Li, 2017) in JAX/Flax.

``wngan_jax.__version__`` is the version pip recorded when it installed the package, from ``setup.cfg``
(the one place a release sets it; an editable install reads it again only when reinstalled). CHANGELOG.md
lists what each release changed.
"""

_NOT_INSTALLED = "unknown: wngan_jax is not installed (pip install -e . in its checkout)"


def _installed_version() -> str:
    """The installed distribution's version; a message that says so when pip never installed the package."""
    from importlib import metadata

    try:
        return metadata.version("wngan_jax")
    except metadata.PackageNotFoundError:
        return _NOT_INSTALLED


__version__ = _installed_version()
