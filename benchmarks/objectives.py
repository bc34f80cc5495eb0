"""Zero-shot top-1 of each objective on the shapes set at one training budget.

    python benchmarks/objectives.py --epochs 6
    python benchmarks/objectives.py --configs shapes-queue shapes-batch16 --epochs 6

Each config runs in its own process (fresh seed and state) on the current
KERAS_BACKEND; prints a markdown table.
"""

import argparse
import json
import os
import subprocess
import sys

CONFIGS = [
    "shapes",
    "shapes-dcl",
    "shapes-supcon",
    "shapes-filip",
    "shapes-slip",
    "shapes-siglip",
    "shapes-mlp-heads",
    "shapes-batch16",
    "shapes-queue",
    "shapes-queue-no-momentum",
]

WORKER = """
import json, sys
from keras_clip.train import train
overrides = {"training": {"epochs": int(sys.argv[2])}, "eval": {"every_epochs": 0}}
if int(sys.argv[3]):
    overrides["data"] = {"train_examples": int(sys.argv[3])}
_, m = train(sys.argv[1], None, overrides=overrides, verbose=0)
print(json.dumps({k: m[k] for k in ("zero_shot_top1", "heldout_zero_shot_top1", "image_to_text_R@10",
                                      "text_to_image_R@10", "train_seconds", "final_loss", "backend")}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    parser.add_argument("--train-examples", type=int, default=0, help="0: the config's own")
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print(f"{args.epochs} epochs, {args.train_examples or 'default'} training pairs, backend from KERAS_BACKEND")
    print("| config | zero-shot top-1 (seen) | top-1 (held-out) | I→T R@10 | T→I R@10 | train s |")
    print("|---|---|---|---|---|---|")
    for name in args.configs:
        out = subprocess.run([sys.executable, "-c", WORKER, name, str(args.epochs), str(args.train_examples)], env=env, capture_output=True, text=True)
        if out.returncode:
            print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1][:120]} |||||", flush=True)
            continue
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {m['zero_shot_top1']:.3f} | {m['heldout_zero_shot_top1']:.3f} | {m['image_to_text_R@10']:.3f} | "
              f"{m['text_to_image_R@10']:.3f} | {m['train_seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
