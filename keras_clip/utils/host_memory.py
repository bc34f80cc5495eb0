"""The C heap of a training process on CPU (glibc; elsewhere these are no-ops).

Imports no backend: `keras_clip/__init__.py` calls `keep_step_buffers`
before the backend starts its threads.
"""

import ctypes
import ctypes.util
import json
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
OPT_OUT = "KERAS_CLIP_HOST_ALLOCATOR"  # "system": leave glibc's defaults
_LIBC = []  # [glibc, or None where there is none]


def _glibc():
    if not _LIBC:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            libc.gnu_get_libc_version  # glibc only (not musl, not macOS)
            _LIBC.append(libc)
        except (OSError, AttributeError, TypeError):
            _LIBC.append(None)
    return _LIBC[0]


def trim_host_heap():
    """Hand the C heap's freed pages back to the OS (glibc `malloc_trim(0)`);
    a no-op with a C library that has none (macOS, musl).

    On CPU, eager PyTorch and TensorFlow's graph executor free each chunk's
    activations with `free()`, and glibc keeps freed heap pages for reuse, so
    without a trim the resident memory grew chunk after chunk
    (`benchmarks/micro_batch_memory.py`, 2 layers per tower, B=512 in K=8
    chunks against one B=64 step: 292 against 160 MB on PyTorch, 416 against
    257 MB on TensorFlow) while the live tensors peaked as one chunk's do.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def configured_backend():
    """The Keras backend this process will use, read as Keras reads it
    (`KERAS_BACKEND`, else `keras.json`, else TensorFlow), without importing Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def keep_step_buffers(backend=None):
    """On JAX and TensorFlow (Linux, glibc): keep the memory a training step
    frees for the next step instead of unmapping it. Returns True if applied.

    XLA allocates a step's temporaries as one buffer from a worker thread
    (148 MB for the `shapes` model's step at batch 64 on JAX). glibc serves
    a request that large from a fresh `mmap` and unmaps it on `free`, so
    every step touched every page anew: 36,000 page faults per step on JAX
    (`shapes`), 182,000 on JAX `small-vit`, 20,000 on TensorFlow with XLA.
    With one malloc arena, no `mmap` and no trimming of the heap's top, the
    buffer stays in the heap and is reused, with no faults. Measured on a
    2-core CPU, processes alternated, ms per step kept / glibc default:
    JAX `shapes` 84-97 / 112-121, JAX `small-vit` 1172-1194 / 1392-1489,
    TensorFlow with XLA `shapes` 75-81 / 87-91; TensorFlow without XLA
    129-148 / 132-134 (3,000-9,500 faults, no clear gain). PyTorch had ~700
    faults per step, so it keeps glibc's defaults. Freed memory then stays
    with the process until it ends (`trim_host_heap` still returns it).

    The settings bind threads when they first allocate, so this must run
    before the backend starts its threads: `import keras_clip` calls it
    (after `import keras` is fine; after the first step is too late). Set
    `KERAS_CLIP_HOST_ALLOCATOR=system` to keep glibc's defaults.
    """
    backend = backend or configured_backend()
    if os.environ.get(OPT_OUT, "").lower() == "system" or backend not in ("jax", "tensorflow"):
        return False
    libc = _glibc() if sys.platform.startswith("linux") else None
    if libc is None:
        return False
    applied = [libc.mallopt(_M_ARENA_MAX, 1), libc.mallopt(_M_MMAP_MAX, 0),
               libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)]
    return all(applied)
