"""Training-step speed with patch dropout (FLIP) on `small-vit`: pairs/s at
patch_dropout 0.0, 0.5 and 0.75, and the speed-up over 0.0.

    KERAS_BACKEND=jax python benchmarks/patch_dropout_speed.py
    python benchmarks/patch_dropout_speed.py --backends all

The three models live in one process and are timed in interleaved rounds
(one step each per round, the median per model), so that load on a shared
machine hits them alike: compare the ratios, not absolute numbers across runs.
"""

import argparse
import json
import os
import statistics
import time

from _backends import run_per_backend  # benchmarks/ is sys.path[0] when run as a script

RATES = (0.0, 0.5, 0.75)


def run_current_backend(config_name, batch_size, rounds):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_clip.config import load_config
    from keras_clip.models.builder import build_clip

    cfg = load_config(config_name)["model"]
    rng = np.random.default_rng(0)
    size, context = cfg["image_encoder"]["image_size"], cfg["text_encoder"]["context_length"]
    token_ids = rng.integers(4, cfg["text_encoder"]["vocabulary_size"], (batch_size, context)).astype("int32")
    token_ids[:, context // 2] = cfg["end_token_id"]
    batch = {"images": rng.integers(0, 256, (batch_size, size, size, 3)).astype("float32"), "token_ids": token_ids}
    models = {}
    for rate in RATES:
        keras.utils.set_random_seed(0)
        model = build_clip({**cfg, "image_encoder": {**cfg["image_encoder"], "patch_dropout": rate}})
        model.compile(optimizer=keras.optimizers.AdamW(1e-4))
        model.train_on_batch(batch)  # compile / warm up
        model.train_on_batch(batch)
        models[rate] = model
    times = {rate: [] for rate in RATES}
    for _ in range(rounds):
        for rate, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(batch)
            times[rate].append(time.perf_counter() - start)
    pairs = {rate: batch_size / statistics.median(t) for rate, t in times.items()}
    return {
        "backend": keras.backend.backend(),
        "config": config_name,
        "batch_size": batch_size,
        "patches": (size // cfg["image_encoder"]["patch_size"]) ** 2,
        "train_pairs_per_s": {str(r): p for r, p in pairs.items()},
        "speedup": {str(r): p / pairs[0.0] for r, p in pairs.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small-vit")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="current", help="'current', 'all' or a comma list")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backends == "current":
        results = [run_current_backend(args.config, args.batch_size, args.rounds)]
    else:
        child = ["--config", args.config, "--batch-size", str(args.batch_size), "--rounds", str(args.rounds)]
        results = run_per_backend(__file__, child, args.backends)
    if args.json:
        print(json.dumps(results[0]))
        return
    print(f"config {args.config}, batch {args.batch_size}, {results[0]['patches']} patches per image")
    print("| backend | " + " | ".join(f"pairs/s at p={r}" for r in RATES) + " | speed-up p=0.5 | speed-up p=0.75 |")
    print("|---|" + "---|" * (len(RATES) + 2))
    for r in results:
        pairs, up = r["train_pairs_per_s"], r["speedup"]
        print(f"| {r['backend']} | " + " | ".join(f"{pairs[str(x)]:.1f}" for x in RATES)
              + f" | {up['0.5']:.2f} | {up['0.75']:.2f} |")


if __name__ == "__main__":
    main()
