"""Peak memory of a micro-batched (GradCache) training step: B=512 in K=8
chunks against a plain B=64 step, on a small ViT CLIP (64 px, 2 + 2 layers).

    python benchmarks/micro_batch_memory.py                  # every backend
    python benchmarks/micro_batch_memory.py --backends torch

Each configuration runs in a fresh process: the model is built and compiled,
one step on a batch of 16 examples loads kernels and traces the step,
then one step at full size runs. Reported: the growth of the process's peak
resident memory over its resident memory just before the full-size step
(activations, gradients, allocator caching; on JAX and TensorFlow also the
compilation of the full-size program). Target: ratio (B=512, K=8) / (B=64,
K=1) <= 1.5, i.e. the step costs the memory of one chunk, not of B. Each
case is measured with the C heap as it comes and with a fixed mmap threshold
(see HEAPS).
"""

import argparse
import json
import os
import resource
import subprocess
import sys

MODEL = {
    "embed_dim": 128,
    "image_encoder": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 2, "heads": 4, "mlp_dim": 512},
    "text_encoder": {"vocabulary_size": 100, "context_length": 32, "width": 128, "layers": 2, "heads": 4, "mlp_dim": 512},
    "end_token_id": 3,
    "start_token_id": 2,
}


# Each case runs twice: in the process as it comes ("default heap"), and with
# glibc's mmap threshold fixed at 128 KiB, so that every freed block over it
# goes back to the OS at once and the resident memory follows the live
# tensors. By default glibc raises that threshold as blocks are freed and
# keeps freed heap pages for reuse; a step that frees and re-allocates
# chunk after chunk then grows its resident memory without holding more
# (measured on TensorFlow: 345 MB default heap, 253 MB fixed threshold, for
# the same K=8 step).
# "default heap" is the heap as `import keras_clip` leaves it: on JAX and
# TensorFlow that keeps freed step buffers in the heap (keras_clip's
# utils.host_memory.keep_step_buffers); "glibc default" opts out of that.
HEAPS = {
    "default heap": {},
    "glibc default": {"KERAS_CLIP_HOST_ALLOCATOR": "system"},
    "fixed mmap threshold": {"MALLOC_MMAP_THRESHOLD_": "131072", "KERAS_CLIP_HOST_ALLOCATOR": "system"},
}


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _batch(n, rng):
    import numpy as np

    images = rng.integers(0, 256, (n, 64, 64, 3)).astype("uint8")
    tokens = rng.integers(4, 100, (n, 32)).astype("int32")
    tokens[:, 0], tokens[:, -1] = 2, 3
    return {"images": images, "token_ids": tokens}


def measure(batch, micro_batches):
    import time

    import keras
    import numpy as np

    from keras_clip.models.builder import build_clip

    keras.utils.set_random_seed(0)  # same initial weights in every process
    model = build_clip(MODEL)
    model.compile(optimizer="adamw", micro_batches=micro_batches)
    model.train_on_batch(_batch(16, np.random.default_rng(1)))  # warm-up (same for every K)
    full = _batch(batch, np.random.default_rng(0))  # same batch: same loss for any K
    before, start = _rss_mb(), time.perf_counter()
    loss = float(model.train_on_batch(full, return_dict=True)["loss"])
    return {
        "backend": keras.backend.backend(),
        "batch": batch,
        "micro_batches": micro_batches,
        "growth_mb": _peak_mb() - before,
        "seconds": time.perf_counter() - start,
        "loss": loss,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--unsplit", action="store_true", help="also run B=512 with K=1")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    configs = ((64, 1), (512, 8)) + (((512, 1),) if args.unsplit else ())
    for backend in args.backends.split(","):
        for heap, heap_env in HEAPS.items():
            results = {}
            for batch, k in configs:
                env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", **heap_env)
                out = subprocess.run(
                    [sys.executable, __file__, "--one", str(batch), str(k)],
                    env=env, capture_output=True, text=True,
                )
                if out.returncode:
                    print(f"[{backend}, {heap}] B={batch} K={k} failed:\n{out.stderr[-2000:]}")
                    break
                results[(batch, k)] = r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"[{backend}, {heap}] B={batch} K={k}: peak memory growth {r['growth_mb']:.0f} MB, "
                    f"{r['seconds']:.1f} s, loss {r['loss']:.4f}", flush=True,
                )
            if (64, 1) in results and (512, 8) in results:
                ratio = results[(512, 8)]["growth_mb"] / max(results[(64, 1)]["growth_mb"], 1.0)
                verdict = "meets" if ratio <= 1.5 else "MISSES"
                print(f"[{backend}, {heap}] memory ratio (B=512, K=8) / (B=64, K=1) = {ratio:.2f} "
                      f"({verdict} the <= 1.5 target)")

if __name__ == "__main__":
    main()
