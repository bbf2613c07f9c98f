"""The Inception network of FID (Heusel et al. 2017), equal to pytorch-fid's, in Flax.

FID, KID and precision/recall (``wngan_jax/fid.py``, docs/metrics.md) compare images through the 2048-d
``pool3`` features of the TensorFlow Inception graph of 2015-12-05. pytorch-fid ports that graph to PyTorch as
``InceptionV3(output_blocks=[3], use_fid_inception=True)``: torchvision's Inception v3 with the FID blocks A, C
and E (average pools that do not count the padding; a max pool in the last block), and its weights file
``pt_inception-2015-12-05-6726825d.pth``. :class:`InceptionV3` is the same network, layer for layer, with each
convolution's batch normalization folded into its kernel and bias when the weights are loaded.

Input handling is pytorch-fid's: NHWC images in [0, 1] (float) or [0, 255] (uint8) of any size, grayscale
repeated to RGB (what ``PIL.Image.convert('RGB')`` does), bilinear resize to 299x299 as
``F.interpolate(mode='bilinear', align_corners=False)`` computes it (no antialiasing), then ``2x - 1``.

The weights are not downloaded: :func:`load_weights` reads the ``.pth`` from a path the user gives
(``--inception_weights`` or ``$WNGAN_INCEPTION_WEIGHTS``), which needs PyTorch, or the ``.npz`` that
``python -m wngan_jax.inception export`` writes from it once, which does not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from wngan_jax import sharding
from wngan_jax.errors import CheckpointError, DataError, MissingDataError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
# PyTorch hub's convention: the hex in the file name is the start of the file's SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "WNGAN_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
FEATURES = 2048
BN_EPS = 1e-3  # torchvision's BasicConv2d


def _conv(x, features: int, kernel, name: str, dtype, stride: int = 1, padding=0):
    """torchvision's ``BasicConv2d`` (convolution, batch norm, ReLU) with the batch norm folded into the
    convolution's kernel and bias; ``padding`` is an int or (rows, columns)."""
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None
    conv = nn.Conv(features, kernel, stride, ((ph, ph), (pw, pw)), dtype=dtype, precision=precision, name=name)
    return nn.relu(conv(x))


def _avg_pool(x):
    # FID patch: TensorFlow's average pool does not count the zero padding.
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


class InceptionA(nn.Module):
    """pytorch-fid's ``FIDInceptionA`` (Mixed_5b-d)."""

    pool_features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        b1 = c(x, 64, 1, "branch1x1")
        b5 = c(c(x, 48, 1, "branch5x5_1"), 64, 5, "branch5x5_2", padding=2)
        b3 = c(c(c(x, 64, 1, "branch3x3dbl_1"), 96, 3, "branch3x3dbl_2", padding=1), 96, 3, "branch3x3dbl_3", padding=1)
        bp = c(_avg_pool(x), self.pool_features, 1, "branch_pool")
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """torchvision's ``InceptionB`` (Mixed_6a): the 35x35 -> 17x17 reduction."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        b3 = c(x, 384, 3, "branch3x3", stride=2)
        bd = c(c(c(x, 64, 1, "branch3x3dbl_1"), 96, 3, "branch3x3dbl_2", padding=1), 96, 3, "branch3x3dbl_3", stride=2)
        bp = nn.max_pool(x, (3, 3), (2, 2))
        return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
    """pytorch-fid's ``FIDInceptionC`` (Mixed_6b-e), factorized 7x7 convolutions."""

    channels_7x7: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        c7 = self.channels_7x7
        b1 = c(x, 192, 1, "branch1x1")
        b7 = c(x, c7, 1, "branch7x7_1")
        b7 = c(b7, c7, (1, 7), "branch7x7_2", padding=(0, 3))
        b7 = c(b7, 192, (7, 1), "branch7x7_3", padding=(3, 0))
        bd = c(x, c7, 1, "branch7x7dbl_1")
        bd = c(bd, c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))
        bd = c(bd, c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))
        bd = c(bd, c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))
        bd = c(bd, 192, (1, 7), "branch7x7dbl_5", padding=(0, 3))
        bp = c(_avg_pool(x), 192, 1, "branch_pool")
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """torchvision's ``InceptionD`` (Mixed_7a): the 17x17 -> 8x8 reduction."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        b3 = c(c(x, 192, 1, "branch3x3_1"), 320, 3, "branch3x3_2", stride=2)
        b7 = c(x, 192, 1, "branch7x7x3_1")
        b7 = c(b7, 192, (1, 7), "branch7x7x3_2", padding=(0, 3))
        b7 = c(b7, 192, (7, 1), "branch7x7x3_3", padding=(3, 0))
        b7 = c(b7, 192, 3, "branch7x7x3_4", stride=2)
        bp = nn.max_pool(x, (3, 3), (2, 2))
        return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
    """pytorch-fid's ``FIDInceptionE_1`` (``pool='avg'``, Mixed_7b) and ``FIDInceptionE_2`` (``pool='max'``,
    Mixed_7c: the FID graph max-pools here where the Inception paper average-pools)."""

    pool: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        b1 = c(x, 320, 1, "branch1x1")
        b3 = c(x, 384, 1, "branch3x3_1")
        b3 = [
            c(b3, 384, (1, 3), "branch3x3_2a", padding=(0, 1)),
            c(b3, 384, (3, 1), "branch3x3_2b", padding=(1, 0)),
        ]
        bd = c(c(x, 448, 1, "branch3x3dbl_1"), 384, 3, "branch3x3dbl_2", padding=1)
        bd = [
            c(bd, 384, (1, 3), "branch3x3dbl_3a", padding=(0, 1)),
            c(bd, 384, (3, 1), "branch3x3dbl_3b", padding=(1, 0)),
        ]
        if self.pool == "avg":
            pooled = _avg_pool(x)
        else:
            pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
        bp = c(pooled, 192, 1, "branch_pool")
        return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """Images in [-1, 1], NHWC 299x299x3 -> the 2048-d pool3 features (float32).

    Parameter names are the PyTorch module names of pytorch-fid's network (``Mixed_5b/branch1x1/kernel``),
    so that :func:`params_from_state_dict` is a rename. ``dtype=jnp.bfloat16`` computes in bfloat16 (the
    parameters stay float32); float32 asks every backend for full-precision convolutions.
    """

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = functools.partial(_conv, dtype=self.dtype)
        x = c(x, 32, 3, "Conv2d_1a_3x3", stride=2)
        x = c(x, 32, 3, "Conv2d_2a_3x3")
        x = c(x, 64, 3, "Conv2d_2b_3x3", padding=1)
        x = nn.max_pool(x, (3, 3), (2, 2))
        x = c(x, 80, 1, "Conv2d_3b_1x1")
        x = c(x, 192, 3, "Conv2d_4a_3x3")
        x = nn.max_pool(x, (3, 3), (2, 2))
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, self.dtype, name=name)(x)
        x = InceptionB(self.dtype, name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(channels, self.dtype, name=name)(x)
        x = InceptionD(self.dtype, name="Mixed_7a")(x)
        x = InceptionE("avg", self.dtype, name="Mixed_7b")(x)
        x = InceptionE("max", self.dtype, name="Mixed_7c")(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def resize_matrix(size_in: int, size_out: int = INPUT_SIZE) -> np.ndarray:
    """The (size_out, size_in) matrix of PyTorch's 1-D bilinear interpolation with ``align_corners=False``.

    As ``upsample_bilinear2d`` computes it: source position ``(i + 0.5) * size_in / size_out - 0.5``, clamped at
    0, interpolated between its floor and the next pixel (the last pixel repeats); no antialiasing when
    shrinking. Applying it to rows and then columns is ``F.interpolate(size=(299, 299), mode='bilinear')``.
    """
    scale = size_in / size_out
    src = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.where(lo < size_in - 1, lo + 1, lo)
    frac = src - lo
    m = np.zeros((size_out, size_in))
    np.add.at(m, (np.arange(size_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(size_out), hi), frac)
    return m.astype(np.float32)


def prepare(images):
    """pytorch-fid's input handling, traceable: uint8 or [0, 1] NHWC (1 or 3 channels) -> 299x299x3 in [-1, 1]."""
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
        x = x / 255.0
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", resize_matrix(x.shape[1]), x, precision=hp)
    x = jnp.einsum("pw,nowc->nopc", resize_matrix(x.shape[2]), x, precision=hp)
    if x.shape[-1] == 1:  # after the resize, which treats channels alike
        x = jnp.repeat(x, 3, axis=-1)
    return 2.0 * x - 1.0


def check_images(images, what: str = "images"):
    """``images`` as an NHWC array that :func:`prepare` accepts (a device array stays on its device):
    (N, H, W) grayscale gets a channel axis; any other shape, or a channel count other than 1 or 3, is a
    :class:`DataError`."""
    if not isinstance(images, jax.Array):
        images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{what}: expected NHWC images with 1 or 3 channels, got shape {images.shape}")
    if images.dtype != np.uint8 and not jnp.issubdtype(images.dtype, jnp.floating):
        raise DataError(f"{what}: expected uint8 or float images in [0, 1], got dtype {images.dtype}")
    return images


@functools.partial(jax.jit, static_argnames=("dtype",))
def _forward(params, images, dtype):
    return InceptionV3(dtype=dtype).apply({"params": params}, prepare(images).astype(dtype))


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
    """The folded parameters of :class:`InceptionV3` and the SHA-256 of the pytorch-fid file they came from
    (the key of cached reference statistics)."""

    params: dict
    sha256: str
    path: str = ""

    def extractor(self, dtype=jnp.float32, devices=None) -> Extractor:
        return Extractor(self, dtype, devices)


class Extractor:
    """``extractor(batch) -> (n, 2048) float32 numpy``: one jitted call per batch, the batch split over a 1-D
    ``('data',)`` mesh of ``devices`` (default: the local devices) and padded to a multiple of their number;
    the parameters are replicated once. Each batch shape compiles once."""

    def __init__(self, weights: InceptionWeights, dtype=jnp.float32, devices=None):
        self.weights = weights
        self.mesh = sharding.make_mesh(devices or jax.local_devices())
        self.params = jax.device_put(weights.params, sharding.replicated(self.mesh))
        self.dtype = jnp.dtype(dtype)

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def dispatch(self, batch) -> jax.Array:
        """Start the features of ``batch`` (NumPy, or a device array that is never waited for) without waiting
        for them: (rows padded to the devices, 2048)."""
        batch = check_images(batch)
        pad = -len(batch) % self.mesh.size
        if pad:
            xp = jnp if isinstance(batch, jax.Array) else np
            batch = xp.concatenate([batch, xp.zeros((pad,) + batch.shape[1:], batch.dtype)])
        x = jax.device_put(batch, sharding.batch_sharding(self.mesh))
        return _forward(self.params, x, dtype=self.dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.dispatch(batch))[: len(batch)]


def _how_to_get() -> str:
    return (
        f"FID, KID and precision/recall need pytorch-fid's Inception weights, {WEIGHTS_FILE} "
        f"(SHA-256 starts with {WEIGHTS_SHA256_PREFIX}), published at {WEIGHTS_URL}. Download it once and pass "
        f"--inception_weights PATH or set ${WEIGHTS_ENV}; `python -m wngan_jax.inception export "
        f"--inception_weights {WEIGHTS_FILE} --out inception.npz` makes a copy that reads without PyTorch "
        "(docs/metrics.md)"
    )


@functools.cache
def _param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    """Every parameter of :class:`InceptionV3`, path -> shape."""
    shapes = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    return {tuple(k.key for k in path): leaf.shape for path, leaf in flat}


def random_weights(seed: int = 0) -> InceptionWeights:
    """He-scaled random kernels and zero biases (for benchmarks and tests: the features mean nothing)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in _param_shapes().items():
        if path[-1] == "kernel":
            flat[path] = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        else:
            flat[path] = np.zeros(shape)
    return InceptionWeights(_checked(flat, "random weights"), f"random-{seed}")


def _nest(flat: dict[tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _checked(flat: dict[tuple[str, ...], np.ndarray], source: str) -> dict:
    """``flat`` nested, after checking it holds exactly the parameters of :class:`InceptionV3`."""
    expected = _param_shapes()
    missing = [p for p in expected if p not in flat]
    wrong = [p for p in expected if p in flat and tuple(flat[p].shape) != expected[p]]
    if missing or wrong:
        first = "/".join((missing or wrong)[0])
        raise CheckpointError(
            f"{source} is not pytorch-fid's Inception state dict ({len(missing)} parameters missing, "
            f"{len(wrong)} of the wrong shape, e.g. {first}). {_how_to_get()}"
        )
    nonfinite = [p for p in expected if not np.isfinite(flat[p]).all()]
    if nonfinite:
        raise CheckpointError(
            f"{source} holds NaN or infinite weights ({len(nonfinite)} parameters, e.g. {'/'.join(nonfinite[0])}): "
            f"the file is damaged. {_how_to_get()}"
        )
    return _nest({p: np.asarray(flat[p], np.float32) for p in expected})


def params_from_state_dict(state_dict, source: str = "the state dict") -> dict:
    """:class:`InceptionV3` parameters from pytorch-fid's state dict (name -> array, PyTorch layout).

    Each ``NAME.conv.weight`` (O, I, kh, kw) with ``NAME.bn.{weight,bias,running_mean,running_var}`` becomes
    ``NAME/kernel`` (kh, kw, I, O) scaled by ``weight / sqrt(running_var + 1e-3)`` and ``NAME/bias`` =
    ``bias - running_mean * scale``, computed in float64; ``fc.*`` (the classifier) is not used.
    """
    sd = {k: np.asarray(v, np.float64) for k, v in state_dict.items()}
    flat = {}
    for key, weight in sd.items():
        if not key.endswith(".conv.weight"):
            continue
        name = key[: -len(".conv.weight")]
        try:
            gamma, beta, mean, var = (sd[f"{name}.bn.{p}"] for p in ("weight", "bias", "running_mean", "running_var"))
        except KeyError:
            continue  # reported as missing by _checked
        scale = gamma / np.sqrt(var + BN_EPS)
        path = tuple(name.split("."))
        flat[path + ("kernel",)] = weight.transpose(2, 3, 1, 0) * scale
        flat[path + ("bias",)] = beta - mean * scale
    return _checked(flat, source)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_pth(path: Path) -> InceptionWeights:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"reading {path} (a PyTorch file) needs PyTorch: pip install 'wngan_jax[torch]', or export it once "
            "to .npz on a machine that has PyTorch (python -m wngan_jax.inception export, docs/metrics.md)"
        ) from None
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a state dict
        raise CheckpointError(f"{path} is not a PyTorch state dict ({type(e).__name__}). {_how_to_get()}") from None
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} holds a {type(state_dict).__name__}, not a state dict. {_how_to_get()}")
    sha = _sha256(path)
    if not sha.startswith(WEIGHTS_SHA256_PREFIX):
        warnings.warn(
            f"{path} has SHA-256 {sha[:16]}..., not {WEIGHTS_SHA256_PREFIX}... of {WEIGHTS_FILE}: FID from it is "
            "not comparable with published FIDs",
            stacklevel=3,
        )
    arrays = {k: v.detach().cpu().double().numpy() for k, v in state_dict.items() if hasattr(v, "detach")}
    return InceptionWeights(params_from_state_dict(arrays, str(path)), sha, str(path))


def _read_npz(path: Path) -> InceptionWeights:
    try:
        loaded = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable .npz ({e or 'empty file'}). {_how_to_get()}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds one .npy array, not an .npz archive of weights. {_how_to_get()}")
    try:
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable .npz ({e}). {_how_to_get()}") from None
    sha = str(arrays.pop("sha256", ""))
    if not sha:
        raise CheckpointError(f"{path} was not written by `python -m wngan_jax.inception export`. {_how_to_get()}")
    return InceptionWeights(_checked({tuple(k.split("/")): v for k, v in arrays.items()}, str(path)), sha, str(path))


def load_weights(path: str | os.PathLike | None = None) -> InceptionWeights:
    """pytorch-fid's Inception weights from ``path`` (default ``$WNGAN_INCEPTION_WEIGHTS``): its ``.pth``
    (needs PyTorch; a file whose SHA-256 is not the published one loads with a warning) or an ``.npz`` from
    :func:`export_npz`. A missing or unreadable file, or one that is not these weights, is one error that says
    where the file is published."""
    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise MissingDataError(f"no Inception weights given. {_how_to_get()}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"Inception weights {path} do not exist. {_how_to_get()}")
    return _read_npz(path) if path.suffix == ".npz" else _read_pth(path)


def npz_path(out: str | os.PathLike) -> Path:
    """``out``, with ``.npz`` appended unless it ends so (where :func:`export_npz` writes)."""
    out = Path(out)
    return out if out.suffix == ".npz" else out.with_name(out.name + ".npz")


def export_npz(weights: InceptionWeights, out: str | os.PathLike) -> Path:
    """Write ``weights`` (folded, float32) and the source file's SHA-256 to ``out``: an ``.npz`` that
    :func:`load_weights` reads without PyTorch."""
    out = npz_path(out)
    flat = jax.tree_util.tree_flatten_with_path(weights.params)[0]
    arrays = {"/".join(k.key for k in path): np.asarray(leaf) for path, leaf in flat}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, sha256=np.asarray(weights.sha256), **arrays)
    return out
