"""keep_step_buffers: on JAX and TensorFlow a large buffer freed by one step
is reused by the next without page faults (glibc, Linux)."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_clip.utils import host_memory

linux_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or host_memory._glibc() is None, reason="glibc's mallopt"
)

# From a worker thread (as XLA allocates), 100 MB allocated, written and freed
# five times; prints the page faults of the last four rounds.
_FAULTS = textwrap.dedent("""
    import ctypes, ctypes.util, resource, threading
    {setup}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = 100 * 2**20
    def one():
        p = libc.malloc(SIZE)
        ctypes.memset(p, 1, SIZE)
        libc.free(p)
    def rounds(out):
        one()  # the first round may fault anywhere
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            one()
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    out = []
    t = threading.Thread(target=rounds, args=(out,)); t.start(); t.join()
    print(out[0])
""")

def _faults(setup, **env):
    code = _FAULTS.format(setup=setup)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


@linux_glibc
def test_freed_step_buffers_are_reused_without_page_faults():
    pages = 4 * 100 * 2**20 // 4096  # 102,400: every page of the four buffers
    default = _faults("")
    kept = _faults("from keras_clip.utils.host_memory import keep_step_buffers; assert keep_step_buffers('jax')")
    assert default > pages // 2, f"glibc's default should map each buffer afresh ({default} faults)"
    assert kept < pages // 100, f"the kept heap should reuse the buffer ({kept} faults)"


@linux_glibc
def test_import_keras_clip_keeps_buffers_on_jax_and_tensorflow_only():
    backend = keras.backend.backend()
    pages = 4 * 100 * 2**20 // 4096
    faults = _faults("import keras_clip", KERAS_BACKEND=backend)
    if backend in ("jax", "tensorflow"):
        assert faults < pages // 100
        opted_out = _faults("import keras_clip", KERAS_BACKEND=backend, KERAS_CLIP_HOST_ALLOCATOR="system")
        assert opted_out > pages // 2
    else:
        assert faults > pages // 2


def test_keep_step_buffers_declines_where_it_does_not_apply(monkeypatch):
    assert host_memory.keep_step_buffers("torch") is False
    monkeypatch.setenv(host_memory.OPT_OUT, "system")
    assert host_memory.keep_step_buffers("jax") is False


def test_configured_backend_reads_keras_json_without_keras(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert host_memory.configured_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert host_memory.configured_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert host_memory.configured_backend() == "torch"
