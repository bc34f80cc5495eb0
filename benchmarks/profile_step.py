"""Where a training step's time goes: forward, backward and the rest, per backend.

    python benchmarks/profile_step.py --config shapes --backends all
    python benchmarks/profile_step.py --config shapes --backends jax,torch --ops 12

For one config and batch, each backend (in its own process) times, after two
warm-up calls each, in three interleaved rounds (the median is reported):
- forward: the model's training-mode call, compiled as `fit` compiles it
  (`jax.jit`; `tf.function` with the model's `jit_compile`; eager PyTorch);
- forward + backward: the gradient of the compiled contrastive loss with
  respect to the trainable weights, compiled the same way;
- step: `train_on_batch` (the above plus the optimizer update, the metrics
  and the trainer's own work).
"backward" is (forward + backward) - forward and "rest" is step - (forward +
backward).

`--ops N` adds the N most expensive operations of a step:
- PyTorch: `torch.profiler` over `train_on_batch`, by self CPU time;
- JAX on CPU: the compiled forward + backward program, traced with XLA's
  per-operation trace events (`--xla_cpu_enable_xprof_traceme`), each fused
  operation attributed through its HLO metadata to a kind of layer
  (attention, MLP, layer norm, embeddings, heads, the rest) and to the pass:
  "backward" for JAX's transposed operations, "forward" for the rest, which
  includes the linearisation the backward pass reads (so these forward
  operations can cost more than the forward program alone);
- TensorFlow: not provided (its profiler writes XPlane files that need
  TensorBoard's profile plugin to read).
Timings on a shared machine are noisy: compare within one run.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from _backends import run_per_backend  # benchmarks/ is sys.path[0] when run as a script

LAYER_KINDS = (  # (substring of an HLO op_name, kind), first match wins
    ("attention", "attention"), ("dense_1", "MLP"), ("dense_2", "MLP"), ("activation", "MLP"),
    ("layer_norm", "layer norm"), ("embedding", "embeddings"), ("head", "heads"),
)


def _ms(fn, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def _rounds(parts, repeats, rounds=3):
    """ms per call of each function in `parts`: two warm-up calls each, then
    `rounds` rounds that time every part in turn (so a noisy spell on a
    shared machine hits all parts alike); the median round per part."""
    for fn in parts.values():
        fn()
        fn()
    times = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            times[name].append(_ms(fn, repeats))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def layer_kind(op_name):
    """'backward'/'forward' and the kind of layer an XLA op_name belongs to."""
    phase = "backward" if "transpose(" in op_name else "forward (with what the backward keeps)"
    for key, kind in LAYER_KINDS:
        if key in op_name:
            return phase, kind
    return phase, "other (loss, pooling, casts)"


def _jax_parts(model, batch, repeats, top):
    import jax

    data = jax.tree_util.tree_map(jax.numpy.asarray, batch)

    def state():  # read anew: train_on_batch donates the buffers it was given
        return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]

    def forward(tv, ntv, x):
        return model.stateless_call(tv, ntv, x, training=True)[0]

    def loss(tv, ntv, x):
        return model.contrastive_loss(None, forward(tv, ntv, x))

    fwd, grad = jax.jit(forward), jax.jit(jax.grad(loss))
    times = _rounds({
        "step": lambda: model.train_on_batch(batch),
        "forward": lambda: jax.block_until_ready(fwd(*state(), data)),
        "forward_backward": lambda: jax.block_until_ready(grad(*state(), data)),
    }, repeats)
    ops = None
    if top and jax.default_backend() == "cpu":
        ops = _jax_op_table(grad, (*state(), data), top)
    return times, ops


def _jax_op_table(fn, args, top, runs=3):
    """Per fused XLA operation: ms per run, by (pass, layer kind) and the top `top` ones."""
    import jax

    hlo = fn.lower(*args).compile().as_text()
    op_names = dict(re.findall(r"%([\w.\-]+) = [^\n]*?op_name=\"([^\"]+)\"", hlo))
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(runs):
                jax.block_until_ready(fn(*args))
        path = glob.glob(os.path.join(directory, "**", "*perfetto_trace.json.gz"), recursive=True)[0]
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    per_op, per_kind = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in op_names:
            ms = e.get("dur", 0) / 1000 / runs
            per_op[e["name"]] += ms
            per_kind[layer_kind(op_names[e["name"]])] += ms
    return {
        "by_kind": [[phase, kind, ms] for (phase, kind), ms in per_kind.most_common()],
        "top": [[name, ms, op_names[name][:90]] for name, ms in per_op.most_common(top)],
        "traced_ms": sum(per_op.values()),
    }


def _tensorflow_parts(model, batch, repeats):
    import tensorflow as tf

    data = {k: tf.constant(v) for k, v in batch.items()}
    jit = bool(model.jit_compile)
    fwd = tf.function(lambda x: model(x, training=True), jit_compile=jit)

    def gradients(x):
        with tf.GradientTape() as tape:
            value = model.contrastive_loss(None, model(x, training=True))
        return [tf.convert_to_tensor(g) for g in tape.gradient(value, model.trainable_variables) if g is not None]

    grad = tf.function(gradients, jit_compile=jit)
    return _rounds({
        "step": lambda: model.train_on_batch(batch),
        "forward": lambda: tf.nest.map_structure(lambda t: t.numpy(), fwd(data)),
        "forward_backward": lambda: [g.numpy() for g in grad(data)],
    }, repeats)


def _torch_parts(model, batch, repeats, top):
    import torch

    data = {k: torch.from_numpy(v) for k, v in batch.items()}

    def forward():
        return model(data, training=True)

    def forward_backward():
        model.contrastive_loss(None, forward()).backward()
        for v in model.trainable_variables:
            v.value.grad = None

    times = _rounds({"step": lambda: model.train_on_batch(batch), "forward": forward,
                     "forward_backward": forward_backward}, repeats)
    ops = None
    if top:
        from torch.profiler import ProfilerActivity, profile

        runs = 3
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model.train_on_batch(batch)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
        ops = {"top": [[e.key, e.self_cpu_time_total / 1000 / runs, f"{e.count // runs} calls"] for e in rows]}
    return times, ops


def run_current_backend(config_name, batch_size, repeats, jit_compile, top):
    import keras

    from train_throughput import model_and_batch

    model, batch, _ = model_and_batch(config_name, batch_size, jit_compile)
    backend, ops = keras.backend.backend(), None
    if backend == "jax":
        times, ops = _jax_parts(model, batch, repeats, top)
    elif backend == "torch":
        times, ops = _torch_parts(model, batch, repeats, top)
    else:
        times = _tensorflow_parts(model, batch, repeats)
    return {
        "backend": backend, "jit_compile": bool(model.jit_compile), "config": config_name,
        "batch_size": batch_size, "step_ms": times["step"], "forward_ms": times["forward"],
        "backward_ms": times["forward_backward"] - times["forward"],
        "rest_ms": times["step"] - times["forward_backward"], "ops": ops,
    }


def print_report(results):
    print(f"config {results[0]['config']}, batch {results[0]['batch_size']}, ms per step")
    print("| backend | step | forward | backward | rest (optimizer, metrics, trainer) | backward / forward |")
    print("|---|---|---|---|---|---|")
    for r in results:
        name = f"{r['backend']} ({'XLA' if r['jit_compile'] else 'no XLA'})"
        print(f"| {name} | {r['step_ms']:.1f} | {r['forward_ms']:.1f} | {r['backward_ms']:.1f} | "
              f"{r['rest_ms']:.1f} | {r['backward_ms'] / r['forward_ms']:.1f} |")
    for r in results:
        ops = r["ops"]
        if not ops:
            continue
        if "by_kind" in ops:
            print(f"\n{r['backend']}: forward + backward program, {ops['traced_ms']:.1f} ms of traced operations")
            print("| pass | layer kind | ms |")
            print("|---|---|---|")
            for phase, kind, ms in ops["by_kind"]:
                print(f"| {phase} | {kind} | {ms:.2f} |")
        print(f"\n{r['backend']}: most expensive operations per step")
        print("| operation | ms | detail |")
        print("|---|---|---|")
        for name, ms, detail in ops["top"]:
            print(f"| {name} | {ms:.2f} | {detail} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shapes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="current", help="'current', 'all' or a comma list")
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--ops", type=int, default=0, help="also list the N most expensive operations")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jit = {"true": True, "false": False}.get(args.jit_compile.lower(), "auto")
    if args.backends == "current":
        if args.ops and "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
            # read when JAX starts: XLA:CPU then emits one trace event per operation
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
        results = [run_current_backend(args.config, args.batch_size, args.repeats, jit, args.ops)]
    else:
        child = ["--config", args.config, "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
                 "--jit-compile", args.jit_compile, "--ops", str(args.ops)]
        results = run_per_backend(__file__, child, args.backends)
    if args.json:
        print(json.dumps(results[0]))
        return
    if not results:
        sys.exit("profile_step: every backend failed (see above)")
    print_report(results)


if __name__ == "__main__":
    main()
