"""The library imports no command code: commands are thin modules over library functions (docs/design.md)."""

import pkgutil
import subprocess
import sys

import wngan_jax

# The command layer: the command-line convention and the modules that ``python -m`` runs.
COMMANDS = {"wngan_jax.cli", "wngan_jax.eval", "wngan_jax.sample"}


def library_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(wngan_jax.__path__, "wngan_jax.")]
    return sorted(n for n in names if n not in COMMANDS and not n.endswith(".__main__"))


def test_the_library_lists_every_core_module():
    modules = library_modules()
    for name in ("wngan_jax.train", "wngan_jax.evaluation", "wngan_jax.reconstruction", "wngan_jax.fid"):
        assert name in modules
    assert "wngan_jax.inception" in modules and "wngan_jax.convert" in modules
    assert not COMMANDS & set(modules)


def test_importing_the_library_loads_no_command_module():
    modules = [m for m in library_modules() if m != "wngan_jax.authors_torch" or _has_torch()]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'wngan_jax.cli' or m.endswith('.__main__') and "
        "m.startswith('wngan_jax'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"library modules loaded command code: {out.stdout.strip()}"


def test_a_command_does_load_the_command_layer():
    """The check above can see a command module being loaded (it is not vacuous)."""
    script = "import sys, wngan_jax.sample; print('wngan_jax.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True", out.stderr


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None
