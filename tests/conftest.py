"""Test setup: four fake CPU devices, so data-parallel code is exercised on one machine."""

import sys

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 4)
_TORCHVISION_OPS = []  # keeps the op library of the torchvision fixture alive


@pytest.fixture(scope="session")
def torchvision():
    """torchvision (needed by pytorch-fid and torch-fidelity), or a skip naming it.

    A torchvision wheel built for CUDA beside a CPU-only torch cannot load its compiled ops, and its import
    then fails registering two of them; pytorch-fid and torch-fidelity need only its Python code, so the two
    op names are declared and the import retried.
    """
    torch = pytest.importorskip("torch", reason="needs torch (pip install 'wngan_jax[dev]')")
    try:
        import torchvision
    except ImportError:
        pytest.skip("needs torchvision (pip install 'wngan_jax[dev]')")
    except RuntimeError:
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_OPS.append(lib)
        import torchvision
    return torchvision
