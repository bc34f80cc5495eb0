"""PyTorch: the fused transformer block (`keras_clip.models.fused_block`)
against keras-hub's own block call, in one process on one model.

    KERAS_BACKEND=torch python benchmarks/fused_block_speed.py --config shapes
    KERAS_BACKEND=torch python benchmarks/fused_block_speed.py --config small-vit --steps 1 --rounds 8

Each round times `--steps` calls of `train_on_batch`, `predict_on_batch` and a
forward pass at batch 2 (where the kernels cost little, so the time is mostly
Python) with the blocks' fused call and with keras-hub's call, in turn, the
order alternating from round to round. It prints the minimum, 25th percentile
and median ms per call of each: on a shared machine the low percentiles move
least.
"""

import argparse
import os
import sys
import time

from _timing import percentiles  # benchmarks/ is sys.path[0] when run as a script


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shapes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "torch":
        sys.exit("fused_block_speed: the fused block runs on PyTorch; run it with KERAS_BACKEND=torch")
    from train_throughput import model_and_batch

    model, batch, _ = model_and_batch(args.config, args.batch_size, False)
    small = {key: value[:2] for key, value in batch.items()}
    blocks = list(model.image_encoder.encoder_layers) + list(model.text_encoder.encoder_layers)
    fused_calls = [vars(block).get("call") for block in blocks]
    if not all(getattr(call, "fused", False) for call in fused_calls):
        sys.exit("fused_block_speed: this model's blocks are not fused (see keras_clip.models.fused_block)")

    def use(fused):
        for block, call in zip(blocks, fused_calls):
            if fused:
                block.call = call
            elif "call" in vars(block):
                del block.call

    cases = {
        f"train_on_batch, B = {args.batch_size}": lambda: model.train_on_batch(batch),
        f"predict_on_batch, B = {args.batch_size}": lambda: model.predict_on_batch(batch),
        "forward pass, B = 2": lambda: model(small, training=False),
    }
    times = {(case, fused): [] for case in cases for fused in (False, True)}
    for fused in (False, True):
        use(fused)
        for fn in cases.values():
            fn()
            fn()
    for r in range(args.rounds):
        for fused in ((True, False) if r % 2 else (False, True)):
            use(fused)
            for case, fn in cases.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[(case, fused)].append((time.perf_counter() - start) / args.steps * 1000)
    use(True)
    print(f"config {args.config}, {args.rounds} alternating rounds of {args.steps} calls; ms per call")
    print("| case | keras-hub block call (min / 25th pct. / median) | fused (min / 25th pct. / median) | "
          "fused ÷ keras-hub, 25th pct. |")
    print("|---|---|---|---|")
    for case in cases:
        plain, fused = percentiles(times[(case, False)]), percentiles(times[(case, True)])
        print(f"| {case} | {' / '.join(f'{v:.1f}' for v in plain)} | {' / '.join(f'{v:.1f}' for v in fused)} | "
              f"{fused[1] / plain[1]:.2f} |")


if __name__ == "__main__":
    main()
