"""The accelerator computes what the CPU computes (``pytest -m accelerator``; ``tools/accelerator_check.sh``).

Each check runs the same computation on the accelerator (the default device) and on the CPU
(``jax.devices('cpu')``, present on every JAX install) from the same host values:

* every convolution layer of the paper's models, forward and both gradients, with ``ops``' custom VJPs and
  with XLA's own derivative of the plain formulation, against XLA:CPU's derivative in float64;
* one training iteration (D step and G step) from the same state and batch;
* a short reconstruction (paper §4) of the same targets.

Tolerances are max-normalized errors ``max|a - b| / max|b|`` and depend on the precision asked for:

* ``highest`` (float32 products and sums: ``jax.default_matmul_precision('highest')``): 1e-4. Float32 sums
  of these lengths (up to 4x4x1024 terms) taken in any order stay within 1e-5 on XLA:CPU (tests/test_ops.py);
  the factor 10 leaves room for the FFT and Winograd algorithms that cuDNN may pick for float32. A wrong tap,
  phase or padding gives errors of order 1.
* ``default``: what JAX does unless told otherwise. On Ampere and newer NVIDIA GPUs float32 convolutions and
  matmuls then round their inputs to TensorFloat-32 (10 mantissa bits, unit roundoff 2^-11 = 4.9e-4): a
  product's relative error is up to ~1e-3, and the normalized error of a sum of them a few 1e-3: 1e-2.
  (On a CPU ``default`` is float32.)
* ``bfloat16`` (7 mantissa bits, unit roundoff 2^-8 = 3.9e-3 for the bfloat16 outputs; sums in float32):
  3e-2, as tests/test_ops.py allows bfloat16 against float32 on the same values.

On a machine without an accelerator the "accelerator" is the CPU itself: the harness runs in every test
run, at tiny sizes and with each computation compiled once, and its results must then agree exactly.
With ``WNGAN_ACCELERATOR_RECORD=FILE`` every comparison is appended to FILE as a JSON line (check,
quantity, precision, error, tolerance), which ``tools/accelerator_check.py`` collects into its report.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from test_ops import model_layer_shapes

from wngan_jax import ops, reconstruction
from wngan_jax.config import TrainConfig
from wngan_jax.train_step import init_state, make_train_step

pytestmark = pytest.mark.accelerator

ON_ACCELERATOR = jax.default_backend() != "cpu"
TOLERANCE = {"highest": 1e-4, "default": 1e-2, "bfloat16": 3e-2}
# On a CPU ``default`` is ``highest``; there the harness runs each computation once and at tiny sizes.
FLOAT32_PRECISIONS = ("highest", "default") if ON_ACCELERATOR else ("highest",)
# The paper's layer shapes on an accelerator (batch 8 keeps the float64 reference on the CPU quick).
LAYER_SIZES, LAYER_BATCH = ((64, 160), 8) if ON_ACCELERATOR else ((8,), 2)
# One iteration and one reconstruction: the 32x32 model at the paper's width on an accelerator (it compiles
# in seconds on both devices), a narrow 8x8 one on a CPU.
MODEL = (
    dict(image_size=(32, 32), nfeature=64, code_size=256, batch_size=32)
    if ON_ACCELERATOR
    else dict(image_size=(8, 8), nfeature=8, code_size=8, batch_size=4)
)


def accelerator() -> jax.Device:
    """The default device; on a CPU-only machine the CPU itself, so each comparison is of a computation with
    itself (compiled once) and exercises the harness only."""
    return jax.devices()[0]


def cpu() -> jax.Device:
    return jax.devices("cpu")[0]


def normalized_error(got, want) -> float:
    """``max|got - want| / max|want|`` in float64 (0 when both are zero)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want)) if want.size else 0.0
    diff = np.max(np.abs(got - want)) if want.size else 0.0
    return float(diff / scale) if scale else float(diff)


def check(name: str, quantity: str, precision: str, error: float, tolerance: float) -> None:
    """Record one comparison (``WNGAN_ACCELERATOR_RECORD``) and assert it."""
    path = os.environ.get("WNGAN_ACCELERATOR_RECORD")
    ok = bool(np.isfinite(error) and error <= tolerance)
    if path:
        record = dict(
            check=name,
            quantity=quantity,
            precision=precision,
            device=accelerator().device_kind,
            error=error,
            tolerance=tolerance,
            ok=ok,
        )
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    assert ok, f"{name}: {quantity} at precision {precision}: error {error:.3g} > tolerance {tolerance:g}"


def _precision_context(precision: str):
    return jax.default_matmul_precision("highest" if precision == "bfloat16" else precision)


# --- convolutions ----------------------------------------------------------------------------------------


def layer_cases(size: int, dtype):
    """(transpose, strides, padding, x, kernel, cotangent) for every conv layer of the size's model."""
    rng = np.random.default_rng(size)
    cases = []
    for transpose, x_shape, kernel_shape, strides, padding, _ in model_layer_shapes(size, LAYER_BATCH):
        x = rng.standard_normal(x_shape).astype(np.float32)
        bound = 1 / np.sqrt(np.prod(kernel_shape[:2]) * kernel_shape[3])
        kernel = rng.uniform(-bound, bound, kernel_shape).astype(np.float32)
        op = ops.conv_transpose if transpose else ops.conv
        y = jax.eval_shape(lambda a, k, op=op, s=strides, p=padding: op(a, k, s, p), x, kernel)
        cotangent = rng.standard_normal(y.shape).astype(np.float32)
        # Rounded to the dtype here, so that the float64 reference sees exactly the values computed with.
        x, kernel, cotangent = (np.asarray(jnp.asarray(a, dtype).astype(jnp.float32)) for a in (x, kernel, cotangent))
        cases.append((transpose, strides, padding, x, kernel, cotangent))
    return cases


def all_layers(kind: str, dtype, device, cases):
    """Forward, input gradient and kernel gradient of every layer, jitted as one computation on ``device``.

    ``kind`` is ``custom`` (``ops.conv``/``ops.conv_transpose``) or ``xla`` (XLA's derivative of
    ``ops.reference_conv``/``ops.reference_conv_transpose``)."""
    statics = [(t, s, p) for t, s, p, *_ in cases]

    def run(arrays):
        out = []
        for (transpose, strides, padding), (x, kernel, cotangent) in zip(statics, arrays):
            if kind == "custom":
                op = ops.conv_transpose if transpose else ops.conv
            else:
                op = ops.reference_conv_transpose if transpose else ops.reference_conv
            y, pullback = jax.vjp(lambda a, k, op=op, s=strides, p=padding: op(a, k, s, p), x, kernel)
            out.append((y, *pullback(cotangent)))
        return out

    arrays = jax.device_put([tuple(jnp.asarray(a, dtype) for a in c[3:]) for c in cases], device)
    return jax.tree.map(lambda a: np.asarray(a).astype(np.float64), jax.jit(run)(arrays))


@functools.cache
def float64_reference(size: int, dtype_name: str):
    """XLA:CPU's derivative of the plain formulation, in float64, on the (rounded) values of the case."""
    cases = layer_cases(size, jnp.dtype(dtype_name))
    with jax.enable_x64(True):
        return cases, all_layers("xla", jnp.float64, cpu(), cases)


@pytest.mark.parametrize("precision", [*FLOAT32_PRECISIONS, "bfloat16"])
@pytest.mark.parametrize("size", LAYER_SIZES)
def test_convolutions_match_float64_on_the_accelerator(size, precision):
    """Every layer of the size's model: the custom VJPs and XLA's own derivative, on the accelerator, each
    within the precision's tolerance of float64 on the CPU."""
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    cases, want = float64_reference(size, jnp.dtype(dtype).name)
    with _precision_context(precision):
        got = {kind: all_layers(kind, dtype, accelerator(), cases) for kind in ("custom", "xla")}
    for kind, results in got.items():
        for quantity, i in (("forward", 0), ("input gradient", 1), ("kernel gradient", 2)):
            error = max(normalized_error(g[i], w[i]) for g, w in zip(results, want))
            check(f"{size}x{size} layers, {kind} VJP", quantity, precision, error, TOLERANCE[precision])


# --- one training iteration ------------------------------------------------------------------------------


def _config(norm: str, dtype: str) -> TrainConfig:
    return TrainConfig().replace(norm=norm, dtype=dtype, **MODEL)


def one_iteration(norm: str, precision: str, device):
    """State before, state after and metrics of one training iteration on ``device``, from the same start."""
    config = _config(norm, "bfloat16" if precision == "bfloat16" else "float32")
    with jax.default_device(cpu()):
        start = jax.tree.map(np.asarray, init_state(config, jax.random.key(0)))
    shape = (config.batch_size, *config.model.image_size, config.model.channels)
    real = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
    key_data = np.asarray(jax.random.key_data(jax.random.key(2)))
    mesh = Mesh(np.asarray([device]), ("data",))
    replicated = NamedSharding(mesh, P())
    state, real, key_data = jax.device_put(
        (start, real, key_data), (replicated, NamedSharding(mesh, P("data")), replicated)
    )
    with _precision_context(precision):
        after, metrics = _train_step(config, mesh)(state, real, key_data)
    return start, jax.tree.map(np.asarray, after), jax.tree.map(np.asarray, metrics)


@functools.cache
def _train_step(config: TrainConfig, mesh: Mesh):
    return make_train_step(config, mesh)


@functools.cache
def cpu_iteration(norm: str, precision: str):
    """The CPU's iteration: float32, or bfloat16 for a bfloat16 one (both devices then round alike)."""
    return one_iteration(norm, "bfloat16" if precision == "bfloat16" else "highest", cpu())


def _leaves(tree, name: str):
    return jax.tree_util.tree_flatten_with_path(tree[name])[0]


@pytest.mark.parametrize("norm,precision", [("bn", "highest"), ("wn", "highest"), ("wn", "bfloat16")])
def test_training_iteration_matches_the_cpu(norm, precision):
    """Losses, D's outputs, batch statistics and RMSProp's second moments (``0.1 g^2`` after the first step,
    so the gradients themselves) equal the CPU's float32 iteration; parameters move alike.

    The first RMSProp step moves a parameter by ``-lr g / (sqrt(0.1 g^2) + eps)``, about ``-3.16 lr sign(g)``:
    the parameters carry little more than the gradients' signs, which may differ where a gradient is within
    rounding of zero. So for them the check is the share of entries whose step differs by more than 1%
    (at most 1e-3); the gradients are checked through the second moments."""
    name = f"iteration {norm}"
    start, want, want_metrics = cpu_iteration(norm, precision)
    _, got, got_metrics = one_iteration(norm, precision, accelerator())
    tol = TOLERANCE[precision]
    assert bool(got_metrics["finite"])
    for metric in ("d_loss", "g_loss", "d_real", "d_fake"):
        check(name, metric, precision, normalized_error(got_metrics[metric], want_metrics[metric]), tol)
    for opt in ("d_opt", "g_opt"):
        errors = [normalized_error(g, w) for (_, g), (_, w) in zip(_leaves(got, opt), _leaves(want, opt))]
        check(name, f"{opt} second moments", precision, max(errors), 2 * tol)  # g^2: twice g's relative error
    for net in ("generator", "discriminator"):
        if "batch_stats" in want[net]:
            pairs = zip(_leaves(got[net], "batch_stats"), _leaves(want[net], "batch_stats"))
            check(
                name, f"{net} batch statistics", precision, max(normalized_error(g, w) for (_, g), (_, w) in pairs), tol
            )
        if precision == "bfloat16":
            continue  # bfloat16 gradients differ in sign wherever they are within 1% of zero
        moved, total = 0, 0
        for (_, before), (_, g), (_, w) in zip(
            _leaves(start[net], "params"), _leaves(got[net], "params"), _leaves(want[net], "params")
        ):
            step_got, step_want = g.astype(np.float64) - before, w.astype(np.float64) - before
            moved += int(np.sum(np.abs(step_got - step_want) > 0.01 * np.maximum(np.abs(step_want), 1e-12)))
            total += w.size
        check(name, f"{net} parameters: share of steps off by >1%", precision, moved / total, 1e-3)


# --- reconstruction --------------------------------------------------------------------------------------


@functools.cache
def _reconstruction_case():
    config = _config("wn", "float32").model
    module = config.generator()
    with jax.default_device(cpu()):
        variables = jax.tree.map(np.asarray, module.init(jax.random.key(3), jnp.zeros((1, config.code_size))))
    targets = np.random.default_rng(4).integers(0, 256, (24, *config.image_size, config.channels), dtype=np.uint8)
    return reconstruction.generator_fn(module, variables), targets


def reconstruct_on(device, precision: str):
    gen, targets = _reconstruction_case()
    with _precision_context(precision):
        result = reconstruction.reconstruct(gen, targets, steps=20, mesh=Mesh(np.asarray([device]), ("data",)))
    return result


@functools.cache
def cpu_reconstruction():
    return reconstruct_on(cpu(), "highest")


@pytest.mark.parametrize("precision", FLOAT32_PRECISIONS)
def test_reconstruction_matches_the_cpu(precision):
    """20 RMSProp steps on 24 targets: per-sample losses and codes as on the CPU in float32.

    RMSProp divides each step by the running gradient size, so rounding differences move the codes by up
    to about ``lr`` per step where a gradient is near zero: codes get ten times the tolerance."""
    want = cpu_reconstruction()
    got = reconstruct_on(accelerator(), precision)
    tol = TOLERANCE[precision]
    check(
        "reconstruction", "per-sample loss", precision, normalized_error(got.per_sample_loss, want.per_sample_loss), tol
    )
    check("reconstruction", "mean loss", precision, normalized_error(got.mean_loss, want.mean_loss), tol)
    check("reconstruction", "codes", precision, normalized_error(got.codes, want.codes), 10 * tol)
