"""Shared helpers for the loss tests, exposed as fixtures.

- `backend_grad(fn, arrays, dtype="float32", args=())`: value and
  gradients of a scalar `fn(*tensors, *args)` computed by the active
  backend's autodiff (tf.GradientTape / jax.grad / torch.autograd). Each
  float32 array becomes a differentiable tensor, cast to `dtype` before `fn`
  sees it; `args` are passed through undifferentiated.
- `evaluate(fn, *arrays)`: `float(fn(*arrays))`, jit-compiled under JAX
  (one compilation instead of one per eager op keeps the suite fast).
- `compute(fn, *arrays)`: `fn(*arrays)` as NumPy arrays (same caching).
- `numeric_grad(fn, arrays, eps)`: central finite differences of a NumPy
  float64 function.
- `unit_rows(rng, *shape)`: random float32 rows L2-normalised on the last
  axis.
- `rounded(array, dtype)`: the array rounded to float16 / bfloat16 and back
  to float64: the inputs a low-precision loss actually sees, for the NumPy
  reference; `low_precision_rtol` is the tolerance to compare at.
"""

import keras
import numpy as np
import pytest
from keras import ops

BACKEND = keras.backend.backend()


# Under JAX every new traced function is compiled by XLA, which takes
# 0.3-1.5 s on CPU: most of this suite's time. Compiled test functions are
# cached per (kind, fn, argument signature), so tests calling the same
# module-level function on the same shapes compile it once, and they are
# compiled without LLVM optimisations nor fusion emitters (3x faster to
# compile; the inputs are tiny, so run time does not matter).
_JAX_CACHE = {}
_JAX_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
}


def _jax_call(key, make_fn, args):
    import jax

    signature = tuple((np.shape(a), np.asarray(a).dtype.str) for a in args)
    key = key + (signature,)
    if key not in _JAX_CACHE:
        lowered = jax.jit(make_fn()).lower(*args)
        _JAX_CACHE[key] = lowered.compile(compiler_options=_JAX_COMPILER_OPTIONS)
    return _JAX_CACHE[key](*args)


def _check_float32(value):
    dtype = keras.backend.standardize_dtype(value.dtype)
    assert dtype == "float32", f"the loss returned {dtype}, not float32"


def _backend_grad(fn, arrays, dtype="float32", args=()):
    """Value and gradients of `fn(*arrays, *args)` w.r.t. `arrays`.

    `arrays` are float32 and cast to `dtype` before `fn` sees them; `args`
    (masks, scales, ...) are passed through and not differentiated.
    """
    arrays = [np.asarray(a, dtype="float32") for a in arrays]
    n = len(arrays)

    def cast_all(tensors):
        return [ops.cast(t, dtype) for t in tensors]

    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*cast_all(tensors), *args)
        grads = tape.gradient(value, tensors)
        grads = [
            np.zeros_like(a) if g is None else ops.convert_to_numpy(g)
            for a, g in zip(arrays, grads)
        ]
    elif BACKEND == "jax":
        import jax

        def make_fn():
            def scalar(*tensors):
                return fn(*cast_all(tensors[:n]), *tensors[n:])

            return jax.value_and_grad(scalar, argnums=tuple(range(n)))

        value, grads = _jax_call(("grad", fn, n, dtype), make_fn, [*arrays, *args])
        grads = [np.asarray(g) for g in grads]
    elif BACKEND == "torch":
        tensors = [
            ops.convert_to_tensor(a).detach().requires_grad_(True)
            for a in arrays
        ]
        value = fn(*cast_all(tensors), *args)
        value.backward()
        grads = [
            np.zeros_like(a)
            if t.grad is None
            else t.grad.detach().cpu().numpy()
            for a, t in zip(arrays, tensors)
        ]
    else:  # pragma: no cover
        pytest.skip(f"no gradient helper for backend {BACKEND}")
    _check_float32(value)
    value = float(ops.convert_to_numpy(ops.cast(value, "float32")))
    return value, [np.asarray(g, dtype="float64") for g in grads]


def _compute(fn, *arrays):
    """fn(*arrays) as NumPy (a tuple if fn returns several tensors).

    Under JAX, jit-compiled (and cached per fn and argument signature).
    """
    if BACKEND == "jax":
        out = _jax_call(("run", fn), lambda: fn, list(arrays))
    else:
        out = fn(*arrays)
    if isinstance(out, (tuple, list)):
        return tuple(ops.convert_to_numpy(o) for o in out)
    return ops.convert_to_numpy(out)


def _evaluate(fn, *arrays):
    """float(fn(*arrays)) for a scalar loss, checking that it is float32.

    Under JAX, jit-compiled (and cached per fn and argument signature).
    """
    if BACKEND == "jax":
        value = _jax_call(("eval", fn), lambda: fn, list(arrays))
    else:
        value = fn(*arrays)
    _check_float32(value)
    return float(ops.convert_to_numpy(value))


def _numeric_grad(fn, arrays, eps=1e-6):
    arrays = [np.asarray(a, dtype="float64").copy() for a in arrays]
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = fn(*arrays)
            flat[i] = old - eps
            down = fn(*arrays)
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _unit_rows(rng, *shape):
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype("float32")


# Low-precision checks compare with the float64 reference on the rounded
# inputs: the loss itself is computed in float32, so only float32 rounding is
# left. Tight enough that a wrong formula (DCL for InfoNCE, one direction
# instead of two, a constant) fails.
LOW_PRECISION_RTOL = 2e-3


def _rounded(array, dtype):
    import ml_dtypes

    low = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}[dtype]
    return np.asarray(array, "float32").astype(low).astype("float64")


@pytest.fixture
def rounded():
    return _rounded


@pytest.fixture
def low_precision_rtol():
    return LOW_PRECISION_RTOL


@pytest.fixture
def backend_grad():
    return _backend_grad


@pytest.fixture
def evaluate():
    return _evaluate


@pytest.fixture
def compute():
    return _compute


@pytest.fixture
def numeric_grad():
    return _numeric_grad


@pytest.fixture
def unit_rows():
    return _unit_rows


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
