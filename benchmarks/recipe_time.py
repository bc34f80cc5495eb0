"""The default recipe end to end: wall time and zero-shot top-1 per backend.

Trains `configs/shapes.yaml` unchanged, exactly as `keras-clip train` does
(20 epochs, evaluation, checkpoints, the run directory), and prints the
seconds from the call to the returned model (process start-up and imports
excluded), the run's own `train_seconds` (the fit loop), and the zero-shot
top-1 on seen and held-out combinations. Targets (issue: "the main job on
every backend"): at most 300 s and top-1 >= 0.90 on a quiet 2-core CPU.
Run it with nothing else on the machine; the backends run one after another.

    python benchmarks/recipe_time.py --backends all
    KERAS_BACKEND=jax python benchmarks/recipe_time.py
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _backends import run_for_backends_option  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="shapes")
    p.add_argument("--backends", default=None, help="'all' or a comma list: one child process per backend")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.backends:
        for r in run_for_backends_option(__file__, args.backends):
            print(f"{r['backend']:>10}: {r['wall_s']:.0f} s in all ({r['train_s']:.0f} s fit), zero-shot top-1 "
                  f"{r['zero_shot_top1']:.3f} (held-out {r['heldout_zero_shot_top1']:.3f})")
        return
    import keras

    from keras_clip.train import train

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        _, metrics = train(args.config, os.path.join(out, "run"), verbose=0)
        wall = time.perf_counter() - start
    result = {"backend": keras.backend.backend(), "config": args.config, "wall_s": round(wall, 1),
              "train_s": metrics["train_seconds"], "zero_shot_top1": metrics["zero_shot_top1"],
              "heldout_zero_shot_top1": metrics["heldout_zero_shot_top1"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['backend']}: {wall:.0f} s in all ({result['train_s']:.0f} s fit), zero-shot top-1 "
              f"{result['zero_shot_top1']:.3f} (held-out {result['heldout_zero_shot_top1']:.3f}); "
              "target <= 300 s and >= 0.90")


if __name__ == "__main__":
    main()
