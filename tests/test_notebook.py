"""The Colab notebook's cells run end to end (install cell skipped, settings shrunk, display captured)."""

import json
import pathlib

from wngan_jax import config as config_lib

NOTEBOOK = pathlib.Path(__file__).parents[1] / "notebooks" / "colab.ipynb"


def test_colab_notebook_runs(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(IPython.display, "Image", pathlib.Path)
    small = config_lib.digits().replace(
        nfeature=8,
        code_size=16,
        test_every=5,
        sample_every=5,
        log_every=5,
        test_steps=3,
        final_test_samples=20,
        final_test_steps=3,
        cache_dir=str(tmp_path / "cache"),
        progress_bar=False,
    )
    monkeypatch.setattr(config_lib, "digits", lambda: small)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        source = "".join(cell["source"])
        if "%pip" in source:
            continue
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
        if "ITERATIONS =" in source:
            namespace.update(ITERATIONS=10, IMAGE_SIZE=16)
    assert namespace["summary"]["iteration"] == 10
    names = [p.name for p in shown]
    assert names == ["loss.png", "iter_0000010.png", "pairs.png"] and all(p.is_file() for p in shown)
