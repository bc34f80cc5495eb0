"""Peak memory of the blockwise InfoNCE loss + gradient at a very large batch,
and its agreement with the dense loss at a batch the dense loss can hold.

    KERAS_BACKEND=torch python benchmarks/blockwise_memory.py
    KERAS_BACKEND=jax python benchmarks/blockwise_memory.py --batch 65536 --block 256

1. B=65,536, D=512 (default): inputs are made, then the loss and its
   gradient (w.r.t. both embeddings and the logit scale) run once; reported:
   the growth of the process's peak resident memory over its resident memory
   just before the call (the dense loss would need 16 GiB for one B x B
   float32 matrix, several times that with its gradient). Target: < 2 GB.
2. B=4,096 (`--check-batch`): dense `infonce` vs `blockwise_infonce`, and
   dense `siglip` vs `blockwise_siglip`: the largest absolute difference of
   value and gradients. Target: <= 1e-5.

The call runs as a training step would: tf.function on TensorFlow, jax.jit
on JAX, eager on PyTorch.
"""

import argparse
import os
import resource
import time


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _unit(rng, n, d):
    import numpy as np

    x = rng.standard_normal((n, d), dtype="float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def value_and_grads(loss_fn, arrays):
    """(value, [grads]) of loss_fn(*arrays) w.r.t. every array, as NumPy."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(*tensors):
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                loss = loss_fn(*tensors)
            return loss, tape.gradient(loss, tensors)

        loss, grads = step(*[tf.constant(a) for a in arrays])
        return float(loss), [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(loss_fn, argnums=tuple(range(len(arrays)))))
        loss, grads = step(*arrays)
        return float(loss), [np.asarray(g) for g in grads]
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    loss = loss_fn(*tensors)
    grads = torch.autograd.grad(loss, tensors)
    return float(loss.detach()), [g.numpy() for g in grads]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--check-batch", type=int, default=4096)
    args = parser.parse_args()

    import keras
    import numpy as np

    from keras_clip.losses import infonce, siglip
    from keras_clip.losses.blockwise import blockwise_infonce, blockwise_siglip

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    block = args.block

    def big_loss(x, y, s):
        return blockwise_infonce(x, y, s, block_size=block)

    x, y = _unit(rng, args.batch, args.dim), _unit(rng, args.batch, args.dim)
    s = np.float32(1 / 0.07)
    before, start = _rss_mb(), time.perf_counter()
    value, grads = value_and_grads(big_loss, [x, y, s])
    seconds = time.perf_counter() - start
    growth = _peak_mb() - before
    finite = bool(np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads))
    print(
        f"[{backend}] blockwise_infonce B={args.batch} D={args.dim} block={block}: "
        f"loss={value:.6f} finite={finite} peak memory growth={growth:.0f} MB "
        f"({'under' if growth < 2048 else 'OVER'} the 2 GB target), {seconds:.1f} s"
    )
    del x, y, grads

    n = args.check_batch
    x, y = _unit(rng, n, args.dim), _unit(rng, n, args.dim)
    checks = (
        ("infonce", lambda x, y, s: infonce(x, y, s),
         lambda x, y, s: blockwise_infonce(x, y, s, block_size=block), [x, y, s]),
        ("siglip", lambda x, y, t, b: siglip(x, y, t, b),
         lambda x, y, t, b: blockwise_siglip(x, y, t, b, block_size=block),
         [x, y, np.float32(10.0), np.float32(-10.0)]),
    )
    for name, dense, blockwise, arrays in checks:
        dv, dg = value_and_grads(dense, arrays)
        bv, bg = value_and_grads(blockwise, arrays)
        diffs = [abs(dv - bv)] + [float(np.max(np.abs(a - b))) for a, b in zip(dg, bg)]
        labels = ["value", "d_image", "d_text"] + (["d_scale", "d_bias"][: len(arrays) - 2])
        detail = ", ".join(f"{k}={v:.2e}" for k, v in zip(labels, diffs))
        verdict = "within" if max(diffs) <= 1e-5 else "NOT within"
        print(f"[{backend}] dense vs blockwise {name} B={n}: max |diff| {detail} ({verdict} 1e-5)")


if __name__ == "__main__":
    main()
