import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _share_jax_compilations():
    """JAX's persistent compilation cache for this test session (and the
    subprocesses its tests start, through the environment): the many tests
    that build the same tiny model compile its step once, not once per test
    (a repeat compile goes from ~30 s to ~3 s on a loaded 2-core machine).
    Removed when the session ends; a directory set by the user is kept."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    directory = tempfile.mkdtemp(prefix="keras_clip_jax_cache_")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


_share_jax_compilations()


def _mark_expression(argv):
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-m") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:].lstrip("=")
    return None


def _quick_xla_compiles_for_the_fast_suite():
    """`-m "not slow"` (the fast suite): XLA's CPU code generation at LLVM -O0.
    Its tests compile hundreds of tiny programs and run each a few times, so
    compile time is most of their time on JAX: -O0 cut a sample of them from
    211 s to 154 s. Only the XLA-to-machine-code step changes (the same HLO
    passes, no fast-math either way), and the slow tests, which train to
    accuracy, keep the default that users get. Set before Keras imports JAX;
    pytest-xdist's workers inherit it through the environment."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags or (_mark_expression(sys.argv) or "").strip() != "not slow":
        return
    os.environ["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()


_quick_xla_compiles_for_the_fast_suite()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_state():
    """Each test starts from the float32 policy and a fixed seed."""
    keras.mixed_precision.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
