"""When XLA pays on TensorFlow: whole `keras-clip train` runs with and without it.

For each config and each run length (optimizer steps) it trains one epoch of
that many steps with `jit_compile` true and false, each in its own process,
and times the `train()` call: data, tracing or compiling, the steps and the
final evaluation, as a user waits for them. A line fitted through the run
lengths gives each variant's fixed cost and its cost per step. The crossover
is the run length from which XLA's run is the shorter one. It is printed next
to the step's FLOPs (`keras_clip.models.flops.train_step_flops`) and the run
length from which `jit_compile: auto` picks XLA at that size
(`keras_clip.train.optimizer.tf_xla_min_steps`).

    python benchmarks/jit_crossover.py --configs shapes:30,150 small-vit:4,28

Run it with nothing else on the machine; the runs go one after another.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def one_run(config, steps, jit, batch_size):
    """Seconds of one `train()` call of `steps` steps; this run's train FLOPs."""
    import keras_clip  # noqa: F401  (before the backend starts its threads)
    from keras_clip.models.flops import train_step_flops
    from keras_clip.train import train

    overrides = {
        "data": {"train_examples": steps * batch_size, "test_examples": 256, "heldout_examples": 128},
        "training": {"epochs": 1, "batch_size": batch_size, "jit_compile": jit},
    }
    start = time.perf_counter()
    model, _ = train(config, None, overrides=overrides, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "step_flops": train_step_flops(model, batch_size)}


def fit_line(points):
    """Least-squares (intercept, slope) of seconds against steps."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


def child(config, steps, jit, batch_size):
    cmd = [sys.executable, __file__, "--one", config, str(steps), jit, str(batch_size)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{config} {steps} steps jit={jit} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["shapes:30,150", "small-vit:4,28"],
                   help="CONFIG:STEPS,STEPS,... (at least two run lengths each)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        config, steps, jit, batch_size = args.one
        print(json.dumps(one_run(config, int(steps), jit == "true", int(batch_size))))
        return

    from keras_clip.train.optimizer import tf_xla_min_steps

    print("| config | steps | no XLA s | XLA s | auto picks |")
    print("|---|---|---|---|---|")
    summary = []
    for spec in args.configs:
        config, _, lengths = spec.partition(":")
        lengths = [int(s) for s in lengths.split(",")]
        runs = {jit: [] for jit in ("false", "true")}
        for steps in lengths:  # the two variants alternate, so drift hits both
            for jit in runs:
                r = child(config, steps, jit, args.batch_size)
                runs[jit].append((steps, r["seconds"]))
            flops = r["step_flops"]
            auto = "XLA" if steps >= tf_xla_min_steps(flops) else "no XLA"
            print(f"| {config} | {steps} | {runs['false'][-1][1]:.1f} | {runs['true'][-1][1]:.1f} | {auto} |",
                  flush=True)
        (plain_fixed, plain_step), (xla_fixed, xla_step) = fit_line(runs["false"]), fit_line(runs["true"])
        gain = plain_step - xla_step
        crossover = (xla_fixed - plain_fixed) / gain if gain > 0 else float("inf")
        summary.append((config, flops, plain_fixed, plain_step, xla_fixed, xla_step, crossover))
    print("\n| config | train GFLOP/step | no XLA: fixed s + ms/step | XLA: fixed s + ms/step "
          "| crossover steps | auto: XLA from steps |")
    print("|---|---|---|---|---|---|")
    for config, flops, pf, ps, xf, xs, cross in summary:
        print(f"| {config} | {flops / 1e9:.1f} | {pf:.1f} + {1e3 * ps:.0f} | {xf:.1f} + {1e3 * xs:.0f} "
              f"| {cross:.0f} | {tf_xla_min_steps(flops)} |")


if __name__ == "__main__":
    main()
