"""Training and inference throughput of a CLIP config, as pairs/s and as a
fraction of the float32 matmul peak measured in the same process.

    python benchmarks/train_throughput.py --config shapes --batch-size 64
    python benchmarks/train_throughput.py --config small-vit --batch-size 64 --backends all

With `--backends all` each backend runs in its own process (KERAS_BACKEND is
fixed per process) and one table is printed. Timings on a shared machine are
noisy: compare ratios from one run, not absolute numbers across runs.
"""

import argparse
import json
import os
import time

from _backends import run_per_backend  # benchmarks/ is sys.path[0] when run as a script


def _time(fn, repeats):
    fn()  # warm up / compile
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def model_and_batch(config_name, batch_size, jit_compile):
    """A config's compiled CLIP (AdamW) and one random batch of pixels and token ids."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_clip.config import load_config
    from keras_clip.models.builder import build_clip
    from keras_clip.train.optimizer import resolve_jit_compile

    model_cfg = load_config(config_name)["model"]
    model = build_clip(model_cfg)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=resolve_jit_compile(jit_compile))
    rng = np.random.default_rng(0)
    size = model_cfg["image_encoder"]["image_size"]
    vocab = model_cfg["text_encoder"]["vocabulary_size"]
    context = model_cfg["text_encoder"]["context_length"]
    token_ids = rng.integers(4, vocab, (batch_size, context)).astype("int32")
    token_ids[:, context // 2] = model_cfg["end_token_id"]
    batch = {
        "images": rng.integers(0, 256, (batch_size, size, size, 3)).astype("float32"),
        "token_ids": token_ids,
    }
    return model, batch, model_cfg


def run_current_backend(config_name, batch_size, steps, jit_compile, matmul_size=1024):
    import keras
    import numpy as np

    model, batch, model_cfg = model_and_batch(config_name, batch_size, jit_compile)
    rng = np.random.default_rng(0)
    train_s = _time(lambda: model.train_on_batch(batch), steps)
    infer_s = _time(lambda: model.predict_on_batch(batch), steps)

    # float32 matmul peak of this process/backend: a jit-compiled square matmul.
    n = matmul_size
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"))
    matmul = keras.ops.matmul
    if keras.backend.backend() == "jax":
        import jax

        matmul = jax.jit(keras.ops.matmul)

    def run_matmul():
        keras.ops.convert_to_numpy(matmul(a, a)[0, 0])

    peak = 2 * n**3 / _time(run_matmul, 10)
    from keras_clip.models.flops import config_forward_flops

    flops = config_forward_flops(model_cfg)
    return {
        "backend": keras.backend.backend(),
        "jit_compile": bool(model.jit_compile),
        "config": config_name,
        "batch_size": batch_size,
        "train_pairs_per_s": batch_size / train_s,
        "infer_pairs_per_s": batch_size / infer_s,
        "train_flops_fraction": 3 * flops * batch_size / train_s / peak,
        "infer_flops_fraction": flops * batch_size / infer_s / peak,
        "matmul_peak_gflops": peak / 1e9,
        "forward_gflops_per_pair": flops / 1e9,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shapes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backends", default="current", help="'current', 'all' or a comma list")
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jit = {"true": True, "false": False}.get(args.jit_compile.lower(), "auto")

    if args.backends == "current":
        results = [run_current_backend(args.config, args.batch_size, args.steps, jit)]
    else:
        child_args = ["--config", args.config, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                      "--jit-compile", args.jit_compile]
        results = run_per_backend(__file__, child_args, args.backends)
    if args.json:
        print(json.dumps(results[0]))
        return
    fastest = max(r["train_pairs_per_s"] for r in results)
    print(f"config {args.config}, batch {args.batch_size}, "
          f"{results[0]['forward_gflops_per_pair']:.3f} forward GFLOP per pair")
    print("| backend | train pairs/s | vs fastest | infer pairs/s | train FLOP/s / matmul peak | infer FLOP/s / peak | matmul peak GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['train_pairs_per_s']:.1f} | {r['train_pairs_per_s'] / fastest:.2f} | "
              f"{r['infer_pairs_per_s']:.1f} | {r['train_flops_fraction']:.2f} | {r['infer_flops_fraction']:.2f} | "
              f"{r['matmul_peak_gflops']:.0f} |")


if __name__ == "__main__":
    main()
