"""Peak memory of a training step with and without rematerialised transformer
blocks (`training.remat`), on a small ViT CLIP (64 px, patch 8, 4 + 4 layers).

    python benchmarks/remat_memory.py                      # every backend, B=256
    python benchmarks/remat_memory.py --backends jax --batch 512

Each case runs in a fresh process and is measured as in
`benchmarks/micro_batch_memory.py`: one warm-up step on 16 examples, then the
growth of the peak resident memory over the resident memory just before one
step at full size (on JAX and TensorFlow it includes compiling that step).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from micro_batch_memory import MODEL, _batch, _peak_mb, _rss_mb  # benchmarks/ is sys.path[0]

DEEP = {
    **MODEL,
    "image_encoder": {**MODEL["image_encoder"], "layers": 4},
    "text_encoder": {**MODEL["text_encoder"], "layers": 4},
}


def measure(batch, remat):
    import keras
    import numpy as np

    from keras_clip.models.builder import build_clip

    keras.utils.set_random_seed(0)
    model = build_clip(DEEP, remat=remat)
    model.compile(optimizer="adamw")
    model.train_on_batch(_batch(16, np.random.default_rng(1)))
    full = _batch(batch, np.random.default_rng(0))
    before, start = _rss_mb(), time.perf_counter()
    loss = float(model.train_on_batch(full, return_dict=True)["loss"])
    return {
        "backend": keras.backend.backend(), "batch": batch, "remat": remat,
        "growth_mb": _peak_mb() - before, "seconds": time.perf_counter() - start, "loss": loss,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], bool(args.one[1]))))
        return
    for backend in args.backends.split(","):
        results = {}
        for remat in (0, 1):
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(args.batch), str(remat)],
                env=env, capture_output=True, text=True,
            )
            if out.returncode:
                print(f"[{backend}] remat={bool(remat)} failed:\n{out.stderr[-2000:]}")
                break
            results[remat] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"[{backend}] B={args.batch} remat={bool(remat)}: peak memory growth {r['growth_mb']:.0f} MB, "
                  f"{r['seconds']:.1f} s, loss {r['loss']:.6f}", flush=True)
        if len(results) == 2:
            ratio = results[0]["growth_mb"] / max(results[1]["growth_mb"], 1.0)
            print(f"[{backend}] plain / remat peak growth = {ratio:.2f}")


if __name__ == "__main__":
    main()
