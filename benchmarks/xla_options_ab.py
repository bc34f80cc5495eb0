"""JAX: one training step compiled with different XLA compiler options, timed
in one process on one model.

    KERAS_BACKEND=jax python benchmarks/xla_options_ab.py --config shapes \
        --option xla_cpu_enable_fast_math=true \
        --option xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED

XLA reads `XLA_FLAGS` once, when JAX starts, so comparing flags across
processes mixes the flag's effect with the host's load from one minute to the
next (on the shared 2-core machine identical processes differed by 10-50%).
Here the model's own train step (`model.train_step`, what `fit` and
`train_on_batch` jit) is lowered once and compiled once per variant, each
`--option "NAME=VALUE [NAME=VALUE ...]"` giving XLA compiler options (the
`DebugOptions` fields that `XLA_FLAGS` sets; enums by their full name,
booleans as true/false). The default build is the baseline. Each round runs `--steps`
steps of every variant in turn, threading one training state through all of
them, the order rotating from round to round; the first round is not
counted. It prints min / 25th percentile / median ms per step and each
variant's median relative to the baseline's, and the loss of one more step
taken by every variant from the same state: the options must not change what
is computed beyond float rounding. It also counts, in each compiled
program, the operations handed to kernel libraries (YNNPACK, XNNPACK, oneDNN
fusions) and the `dot`s, and marks a variant whose optimised HLO is the
default's: an option the installed jaxlib accepts but does not act on shows
so (as does one acting only in machine-code generation, e.g. fast math).
"""

import argparse
import os
import sys
import time

from _timing import percentiles  # benchmarks/ is sys.path[0] when run as a script


def parse_option(text):
    """'NAME=VALUE' -> (name, value) with true/false as bools, digits as ints."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("xla_"):
        raise SystemExit(f"xla_options_ab: --option takes NAME=VALUE with an xla_ name; received {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    return name, int(value) if value.lstrip("-").isdigit() else value


def program_summary(hlo_text):
    """Kernel-library fusions and plain dots in a compiled program's HLO text."""
    counts = {kind: hlo_text.count(f"__{kind}_fusion") for kind in ("ynn", "xnn", "onednn")}
    counts["dot"] = hlo_text.count(" dot(")
    listed = ", ".join(f"{kind} {count}" for kind, count in counts.items())
    return f"{listed}; {len(hlo_text)} chars"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shapes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--option", action="append", default=[],
                        help="'NAME=VALUE [NAME=VALUE ...]': one variant; repeat for more")
    parser.add_argument("--steps", type=int, default=4, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "jax":
        sys.exit("xla_options_ab: it compiles a JAX step; run it with KERAS_BACKEND=jax")
    if not args.option:
        sys.exit("xla_options_ab: give at least one --option NAME=VALUE to compare with the default build")
    import jax
    import numpy as np
    from keras.src.backend.jax.trainer import _distribute_data
    from train_throughput import model_and_batch

    model, batch, _ = model_and_batch(args.config, args.batch_size, True)
    model.train_on_batch(batch)  # builds the model, the optimizer and the metrics
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
                                 metrics_variables=True, purge_model_variables=False)
    data = _distribute_data((batch, None, None))
    lowered = jax.jit(model.train_step, donate_argnums=0).lower(state, data)
    variants = {"default": {}}
    for text in args.option:
        variants[text] = dict(parse_option(part) for part in text.split())
    compiled, programs = {}, {}
    for name, options in variants.items():
        start = time.perf_counter()
        compiled[name] = lowered.compile(compiler_options=options)
        print(f"compiled {name} in {time.perf_counter() - start:.1f} s", flush=True)
        programs[name] = program_summary(compiled[name].as_text())

    names = list(compiled)
    times = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(args.steps):
                start = time.perf_counter()
                logs, state = compiled[name](state, data)
                jax.block_until_ready(logs)
                if round_index:
                    times[name].append((time.perf_counter() - start) * 1e3)

    # What each build computes: one step from the same state (a copy, as the
    # step donates its input), losses compared.
    losses = {}
    for name in names:
        logs, _ = compiled[name](jax.tree_util.tree_map(lambda v: v.copy(), state), data)
        losses[name] = float(np.asarray(logs["loss"]))

    base = percentiles(times["default"])[2]
    print(f"\nconfig {args.config}, batch {args.batch_size}, {args.rounds - 1} counted rounds of {args.steps} "
          f"steps per variant, jax {jax.__version__}")
    print("| XLA options | ms per step: min / 25th pct. / median | median ÷ default "
          "| loss, one step from the same state | compiled program: library fusions, dots |")
    print("|---|---|---|---|---|")
    for name in names:
        low, quarter, median = percentiles(times[name])
        same = " (HLO = default's)" if name != "default" and programs[name] == programs["default"] else ""
        print(f"| {name} | {low:.1f} / {quarter:.1f} / {median:.1f} | {median / base:.2f} | {losses[name]:.6f} "
              f"| {programs[name]}{same} |")


if __name__ == "__main__":
    main()
