"""Peak memory of the FILIP loss (value + gradient) at B=256, 50 image tokens,
77 text tokens, width 512, chunked vs one whole (B, Ni, B, Nt) block.

    python benchmarks/filip_memory.py                      # every backend
    python benchmarks/filip_memory.py --backends tensorflow --chunks 32 16

Each (backend, chunk size) runs in a fresh process: inputs are made, the
loss and its gradient run once on a small batch (kernels loaded, programs
traced), then once at full size under the same compiled function the way a
training step runs it (tf.function / jax.jit / torch eager). Reported:
the growth of the process's peak resident memory over its resident memory
just before the full-size call (what the loss itself costs, the allocator's
caching included), and for JAX also XLA's own count of temporary buffers.
`--chunks 0` means one chunk holding the whole batch (no chunking).
"""

import argparse
import json
import os
import resource
import subprocess
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(batch, image_tokens, text_tokens, width, chunk):
    import numpy as np

    import keras
    from keras import ops

    from keras_clip.losses import filip

    backend = keras.backend.backend()
    chunk = chunk or batch
    rng = np.random.default_rng(0)

    def inputs(b):
        x = rng.standard_normal((b, image_tokens, width)).astype("float32")
        y = rng.standard_normal((b, text_tokens, width)).astype("float32")
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        y /= np.linalg.norm(y, axis=-1, keepdims=True)
        mask = np.zeros((b, text_tokens), bool)
        for i, n in enumerate(rng.integers(3, text_tokens, b)):
            mask[i, :n] = True
        return x, y, mask

    def loss_fn(x, y, mask):
        return filip(x, y, 100.0, text_mask=mask, chunk_size=chunk)

    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x, y, mask):
            with tf.GradientTape() as tape:
                tape.watch([x, y])
                loss = loss_fn(x, y, mask)
            return loss, tape.gradient(loss, [x, y])

        def run(x, y, mask):
            loss, grads = step(tf.constant(x), tf.constant(y), tf.constant(mask))
            return float(loss), [g.numpy() for g in grads]

    elif backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

        def run(x, y, mask):
            loss, grads = step(x, y, mask)
            return float(loss), [np.asarray(g) for g in grads]

    else:
        import torch

        def run(x, y, mask):
            x = torch.tensor(x, requires_grad=True)
            y = torch.tensor(y, requires_grad=True)
            loss = loss_fn(x, y, torch.tensor(mask))
            loss.backward()
            return float(loss), [x.grad.numpy(), y.grad.numpy()]

    run(*inputs(8))  # kernels, tracing of the small shapes
    x, y, mask = inputs(batch)
    xla_temp = None
    if backend == "jax":
        compiled = step.lower(x, y, mask).compile()
        analysis = compiled.memory_analysis()
        xla_temp = getattr(analysis, "temp_size_in_bytes", None)
        xla_temp = None if xla_temp is None else xla_temp / 2**20
    before = _rss_mb()
    loss, grads = run(x, y, mask)
    after = _peak_mb()
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads)
    return {
        "backend": backend,
        "chunk": chunk,
        "peak_growth_mb": max(after - before, 0.0),
        "xla_temp_mb": xla_temp,
        "loss": loss,
        "whole_block_mb": batch * batch * image_tokens * text_tokens * 4 / 2**20,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="all", help="'all' or a comma list")
    parser.add_argument("--chunks", type=int, nargs="*", default=[32, 16, 0], help="chunk sizes; 0 = whole batch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-tokens", type=int, default=50)
    parser.add_argument("--text-tokens", type=int, default=77)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.batch, args.image_tokens, args.text_tokens, args.width)
    if args.child is not None:
        print(json.dumps(measure(*shape, args.child)))
        return
    names = list(BACKENDS) if args.backends == "all" else args.backends.split(",")
    print(f"B={args.batch}, {args.image_tokens} image tokens, {args.text_tokens} text tokens, width {args.width}; "
          f"the whole similarity block is {shape[0] ** 2 * shape[1] * shape[2] * 4 / 2**20:.0f} MB in float32")
    print("| backend | chunk | peak RSS growth, MB | XLA temporaries, MB | vs whole batch |")
    print("|---|---|---|---|---|")
    for backend in names:
        rows = []
        for chunk in args.chunks:
            cmd = [sys.executable, __file__, "--child", str(chunk), "--batch", str(args.batch),
                   "--image-tokens", str(args.image_tokens), "--text-tokens", str(args.text_tokens),
                   "--width", str(args.width)]
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode:
                print(f"| {backend} | {chunk or 'whole'} | failed: {out.stderr.strip().splitlines()[-1][:100]} | | |")
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        whole = next((r["peak_growth_mb"] for r in rows if r["chunk"] == args.batch), None)
        for r in rows:
            ratio = f"{r['peak_growth_mb'] / whole:.2f}" if whole else ""
            xla = f"{r['xla_temp_mb']:.0f}" if r["xla_temp_mb"] is not None else ""
            print(f"| {backend} | {r['chunk']} | {r['peak_growth_mb']:.0f} | {xla} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
