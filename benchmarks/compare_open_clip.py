"""keras_clip on each backend against open_clip, same architecture, in one run.

    python benchmarks/compare_open_clip.py --configs shapes,small-vit --batch-size 64
    python benchmarks/compare_open_clip.py --variants open_clip,tensorflow:xla,jax

Every variant runs in its own process, one after the other (KERAS_BACKEND is
fixed per process), `--rounds` times round-robin, and one table is printed:
training and inference pairs/s (medians over the rounds), the ratio to
open_clip (the median of the ratios taken within each round, with their
range), and the fraction of the float32 matmul peak.

What is measured, per variant:
- the model: the config's towers (vision width/layers/heads/MLP/patch/image
  size, text width/layers/heads/MLP/context/vocabulary, embed dim, activation),
  built by keras_clip, and for open_clip as an `open_clip.model.CLIP` with
  the same numbers (`open_clip_config`);
- training: float32, batch B of random pixels and token ids, AdamW. keras_clip
  times `model.train_on_batch` after `compile(jit_compile=<variant>)`
  ("auto" is the library's `resolve_jit_compile`); open_clip times a plain
  step: forward, `ClipLoss`, backward, `optimizer.step()`. Two warm-up steps
  (compilation) are excluded, then `--steps` steps are averaged;
- inference: keras_clip's `predict_on_batch`, open_clip's `encode_image` +
  `encode_text` under `torch.no_grad()`;
- FLOP utilisation: model FLOPs counted analytically from the matmuls of the
  towers (`keras_clip.models.flops.config_forward_flops`: patch embedding, q/k/v/out
  projections, attention scores and weighted sum, MLP, heads; norms, softmax
  and the loss are left out), training = 3 x forward (the backward pass costs
  two matmuls per forward one), divided by the float32 peak of a square
  `--matmul-size` matmul timed in the same process with the same framework.

open_clip is imported the way the tests do (tests/_reference_imports.py):
with a torchvision stand-in, because PyPI's torchvision wheel does not load
next to the pinned CPU torch. Install it with `pip install -e .[bench]`.
Timings on a shared machine are noisy: compare ratios within one run. When
other jobs load the machine differently from one process to the next, the
"peak-normalised" ratio (each variant's FLOP/s over its own process's matmul
peak, relative to open_clip's) is the steadier comparison; `--threads 1`
keeps multi-threaded kernels from stalling on a busy machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_VARIANTS = "open_clip,tensorflow,tensorflow:xla,jax,torch"


def open_clip_config(model_cfg):
    """`open_clip.model.CLIP` keyword arguments for a merged keras_clip `model:` section."""
    img, txt = model_cfg["image_encoder"], model_cfg["text_encoder"]
    if img["activation"] != txt["activation"] or img["activation"] not in ("gelu", "quick_gelu"):
        raise ValueError(f"open_clip has one activation, gelu or quick_gelu; got {img['activation']!r} "
                         f"and {txt['activation']!r}")
    return dict(
        embed_dim=model_cfg["embed_dim"],
        vision_cfg=dict(width=img["width"], layers=img["layers"], head_width=img["width"] // img["heads"],
                        mlp_ratio=img["mlp_dim"] / img["width"], patch_size=img["patch_size"],
                        image_size=img["image_size"]),
        text_cfg=dict(context_length=txt["context_length"], vocab_size=txt["vocabulary_size"], width=txt["width"],
                      heads=txt["heads"], layers=txt["layers"], mlp_ratio=txt["mlp_dim"] / txt["width"]),
        quick_gelu=img["activation"] == "quick_gelu",
    )


def thread_environment(threads):
    """Environment variables that cap every framework's CPU threads at `threads`."""
    n = str(threads)
    return {
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                     f"intra_op_parallelism_threads={n}",
    }


def _time(fn, steps, warmup=2):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def run_open_clip(config_name, batch_size, steps, matmul_size):
    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from _reference_imports import import_open_clip

    from keras_clip.config import load_config
    from keras_clip.models.flops import config_forward_flops

    open_clip = import_open_clip()
    model_cfg = load_config(config_name)["model"]
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**open_clip_config(model_cfg))
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    size, txt = model_cfg["image_encoder"]["image_size"], model_cfg["text_encoder"]
    images = torch.from_numpy(rng.standard_normal((batch_size, 3, size, size)).astype("float32"))
    tokens = torch.from_numpy(rng.integers(4, txt["vocabulary_size"], (batch_size, txt["context_length"])))

    def train_step():
        model.train()
        image_features, text_features, logit_scale = model(images, tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss)

    def infer_step():
        model.eval()
        with torch.no_grad():
            model.encode_image(images, normalize=True).sum().item()
            model.encode_text(tokens, normalize=True).sum().item()

    train_s = _time(train_step, steps)
    infer_s = _time(infer_step, steps)
    a = torch.randn(matmul_size, matmul_size)
    peak = 2 * matmul_size**3 / _time(lambda: (a @ a)[0, 0].item(), 10)
    flops = config_forward_flops(model_cfg)
    return {
        "variant": "open_clip", "config": config_name, "batch_size": batch_size,
        "train_pairs_per_s": batch_size / train_s, "infer_pairs_per_s": batch_size / infer_s,
        "train_flops_fraction": 3 * flops * batch_size / train_s / peak,
        "infer_flops_fraction": flops * batch_size / infer_s / peak,
        "matmul_peak_gflops": peak / 1e9, "forward_gflops_per_pair": flops / 1e9,
        "versions": f"open_clip {open_clip.__version__}, torch {torch.__version__}",
    }


def run_variant(variant, config_name, batch_size, steps, matmul_size):
    """In this process: `variant` is 'open_clip' or BACKEND[:xla|:noxla]."""
    if variant == "open_clip":
        return run_open_clip(config_name, batch_size, steps, matmul_size)
    from train_throughput import run_current_backend

    jit = {"xla": True, "noxla": False}[variant.split(":")[1]] if ":" in variant else "auto"
    result = run_current_backend(config_name, batch_size, steps, jit, matmul_size=matmul_size)
    import keras

    result["variant"] = variant
    result["versions"] = f"keras {keras.__version__}"
    return result


def label(result):
    if result["variant"] == "open_clip":
        return "open_clip (eager torch)"
    return f"keras_clip {result['backend']} ({'XLA' if result['jit_compile'] else 'no XLA'})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="shapes,small-vit", help="comma list of configs")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma list of open_clip and BACKEND[:xla|:noxla] (no suffix: jit_compile auto)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3,
                        help="run every variant this many times, round-robin, and report medians; each ratio to "
                             "open_clip is taken within a round")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per process for every framework (OpenMP, TensorFlow, XLA, torch); "
                             "1 keeps a shared machine's contention from stalling multi-threaded kernels")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config_name, variant = args.child.split("|")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_variant(variant, config_name, args.batch_size, args.steps, args.matmul_size)))
        return

    for config_name in args.configs.split(","):
        rounds = [[r for r in (_run_child(variant, config_name, args) for variant in args.variants.split(","))
                   if r is not None] for _ in range(args.rounds)]
        results = summarise(rounds)
        if not results:
            continue
        reference = next((r for r in results if r["variant"] == "open_clip"), None)
        threads = f"{args.threads} CPU thread(s) per process" if args.threads else "default threads"
        print(f"\nconfig {config_name}, batch {args.batch_size}, float32, AdamW, {args.steps} timed steps, {threads}, "
              f"{args.rounds} round(s), {results[0]['forward_gflops_per_pair']:.3f} forward GFLOP per pair; "
              + "; ".join(sorted({r["versions"] for r in results})))
        print("| variant | train pairs/s | × open_clip (rounds' range) | × open_clip, peak-normalised | infer pairs/s | "
              "× open_clip | train FLOP/s ÷ matmul peak | infer ÷ peak | matmul peak GFLOP/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            def ratio(key, r=r):
                if reference is None:
                    return "-"
                text = f"{r[key]:.2f}"
                if len(r.get(key + "_rounds", [])) > 1:
                    text += f" ({min(r[key + '_rounds']):.2f}–{max(r[key + '_rounds']):.2f})"
                return text

            print(f"| {label(r)} | {r['train_pairs_per_s']:.1f} | {ratio('train_ratio')} | {ratio('peak_ratio')} | "
                  f"{r['infer_pairs_per_s']:.1f} | {ratio('infer_ratio')} | {r['train_flops_fraction']:.2f} | "
                  f"{r['infer_flops_fraction']:.2f} | {r['matmul_peak_gflops']:.0f} |")
        sys.stdout.flush()


def _run_child(variant, config_name, args):
    """One variant in its own process; its result dict, or None when it failed."""
    backend = variant.split(":")[0]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="torch" if backend == "open_clip" else backend,
               PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    if args.threads:
        env.update(thread_environment(args.threads))
    cmd = [sys.executable, __file__, "--child", f"{config_name}|{variant}", "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--matmul-size", str(args.matmul_size)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        print(f"{variant}: failed (left out)\n{out.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summarise(rounds):
    """One row per variant from R rounds (each a list of result dicts, the
    variants run one after another): the median of each measured figure over
    the rounds, and each ratio to open_clip taken within a round (so that the
    two processes compared ran minutes apart, not a whole run apart), its
    median and, in `<ratio>_rounds`, every round's value."""
    rows = {}
    for results in rounds:
        reference = next((r for r in results if r["variant"] == "open_clip"), None)
        for r in results:
            row = rows.setdefault(r["variant"], {"samples": [], "train_ratio_rounds": [], "infer_ratio_rounds": [],
                                                 "peak_ratio_rounds": []})
            row["samples"].append(r)
            if reference is not None:
                row["train_ratio_rounds"].append(r["train_pairs_per_s"] / reference["train_pairs_per_s"])
                row["infer_ratio_rounds"].append(r["infer_pairs_per_s"] / reference["infer_pairs_per_s"])
                row["peak_ratio_rounds"].append(r["train_flops_fraction"] / reference["train_flops_fraction"])
    summary = []
    for row in rows.values():
        first = row.pop("samples")
        out = dict(first[0])
        for key in ("train_pairs_per_s", "infer_pairs_per_s", "train_flops_fraction", "infer_flops_fraction",
                    "matmul_peak_gflops"):
            out[key] = _median([r[key] for r in first])
        for key in ("train_ratio", "infer_ratio", "peak_ratio"):
            if row[key + "_rounds"]:
                out[key] = _median(row[key + "_rounds"])
                out[key + "_rounds"] = row[key + "_rounds"]
        summary.append(out)
    return summary

if __name__ == "__main__":
    main()
