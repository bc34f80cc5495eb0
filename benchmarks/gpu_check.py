"""GPU check: train ViT-B/32 on synthetic data on every backend (and open_clip).

    bash benchmarks/gpu_check.sh                     # ViT-B/32, mixed_bfloat16, batch 256
    python benchmarks/gpu_check.py --cpu-smoke       # tiny model, a few steps, on CPU

Each variant (tensorflow, jax, torch, open_clip) runs in its own process and
starts from the SAME weights: the parent writes one random OpenAI-layout state
dict (`init.safetensors`, fixed seed); keras_clip imports it with
`keras_clip.pretrained.load_checkpoint`, open_clip with `load_state_dict`. All
train on the same synthetic batches (fixed seed, cycled), with AdamW at a
constant learning rate, under `mixed_bfloat16` (torch.autocast for open_clip).

Printed per variant: samples/s over the timed steps (the warm-up steps, which
compile, are excluded), model FLOP utilisation (MFU: analytic matmul FLOPs,
3 x forward per trained pair, `keras_clip.models.flops.config_forward_flops`, over the
GPU's dense bf16 peak, looked up from the device name or `GPU_BF16_PEAK_TFLOPS`),
peak accelerator memory, the loss of the first step (the initial weights) and
of the last step.

Agreement: the first-step losses must agree within 1% and the last-step losses
within 5% (relative to the median over variants); the run exits 1 if not.
bfloat16 rounding differs per backend (XLA on TensorFlow/JAX fuses differently
from eager torch), and Adam amplifies small differences over steps, hence the
looser bound at the end. These bounds are unverified until run on a GPU.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], "float32")
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], "float32")
# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets; SXM parts).
BF16_PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0)]
VIT_B_32 = {
    "embed_dim": 512,
    "image_encoder": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12,
                      "mlp_dim": 3072, "activation": "quick_gelu"},
    "text_encoder": {"vocabulary_size": 49408, "context_length": 77, "width": 512, "layers": 12, "heads": 8,
                     "mlp_dim": 2048, "activation": "quick_gelu"},
}
TINY = {
    "embed_dim": 32,
    "image_encoder": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "heads": 2,
                      "mlp_dim": 128, "activation": "quick_gelu"},
    "text_encoder": {"vocabulary_size": 500, "context_length": 16, "width": 64, "layers": 2, "heads": 2,
                     "mlp_dim": 128, "activation": "quick_gelu"},
}


def write_initial_weights(model_cfg, path, seed):
    """A random OpenAI-layout state dict for `model_cfg` (std 0.02 weights, unit norms)."""
    from safetensors.numpy import save_file

    from keras_clip.pretrained.mapping import checkpoint_layout

    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in checkpoint_layout(model_cfg).items():
        if key == "logit_scale":
            value = np.array(np.log(1 / 0.07))
        elif key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            value = np.ones(shape)
        elif key.endswith("bias"):
            value = np.zeros(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        tensors[key] = np.ascontiguousarray(value, dtype="float32")
    save_file(tensors, path)


def synthetic_batches(model_cfg, batch_size, count, seed):
    """`count` batches of pixels in [0, 255] (NHWC) and token ids ending in the last vocabulary id."""
    rng = np.random.default_rng(seed)
    size, txt = model_cfg["image_encoder"]["image_size"], model_cfg["text_encoder"]
    vocab, context = txt["vocabulary_size"], txt["context_length"]
    batches = []
    for _ in range(count):
        tokens = rng.integers(1, vocab - 1, (batch_size, context)).astype("int32")
        lengths = rng.integers(4, context, batch_size)
        for row, length in enumerate(lengths):
            tokens[row, length] = vocab - 1  # end token: keras_clip pools here, open_clip at the argmax
            tokens[row, length + 1:] = 0
        images = rng.integers(0, 256, (batch_size, size, size, 3)).astype("float32")
        batches.append((images, tokens))
    return batches


def bf16_peak_tflops():
    override = os.environ.get("GPU_BF16_PEAK_TFLOPS")
    if override:
        return float(override), "GPU_BF16_PEAK_TFLOPS"
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None, "no GPU found (set GPU_BF16_PEAK_TFLOPS)"
    for key, value in BF16_PEAK_TFLOPS:
        if key in name:
            return value, name
    return None, f"{name}: unknown, set GPU_BF16_PEAK_TFLOPS"


def _host_peak_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_keras(args, model_cfg, batches):
    import keras

    from keras_clip.pretrained import load_checkpoint
    from keras_clip.train.optimizer import resolve_jit_compile

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    img, txt = model_cfg["image_encoder"], model_cfg["text_encoder"]
    model = load_checkpoint(args.weights, activation=img["activation"], vision_heads=img["heads"],
                            text_heads=txt["heads"])
    optimizer = keras.optimizers.AdamW(args.learning_rate, weight_decay=0.1, beta_2=0.98, epsilon=1e-6)
    model.compile(optimizer=optimizer, jit_compile=resolve_jit_compile(
        {"true": True, "false": False}.get(args.jit_compile, "auto")))
    feeds = [{"images": images, "token_ids": tokens} for images, tokens in batches]

    def step(i):
        return float(keras.ops.convert_to_numpy(model.train_on_batch(feeds[i % len(feeds)], return_dict=True)["loss"]))

    losses, seconds = _train(step, args)
    peak_mb = None
    try:
        if backend == "torch":
            import torch

            peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        elif backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            peak_mb = stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
        else:
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                peak_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # memory statistics are best effort
        pass
    return losses, seconds, peak_mb, f"jit_compile={bool(model.jit_compile)}"


def run_open_clip(args, model_cfg, batches):
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from _reference_imports import import_open_clip
    from compare_open_clip import open_clip_config

    open_clip = import_open_clip()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = open_clip.model.CLIP(**open_clip_config(model_cfg))
    state = load_file(args.weights)
    state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "attn_mask"]  # a buffer open_clip builds itself
    if missing or unexpected:
        raise KeyError(f"open_clip's CLIP and the initial weights differ: missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}")
    model.to(device).train()
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.1, betas=(0.9, 0.98),
                                  eps=1e-6)
    feeds = [(torch.from_numpy(((images / 255 - OPENAI_MEAN) / OPENAI_STD).transpose(0, 3, 1, 2).copy()).to(device),
              torch.from_numpy(tokens.astype("int64")).to(device)) for images, tokens in batches]
    autocast = args.precision == "mixed_bfloat16"

    def step(i):
        images, tokens = feeds[i % len(feeds)]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            image_features, text_features, logit_scale = model(images, tokens)
            loss = loss_fn(image_features.float(), text_features.float(), logit_scale.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss)

    losses, seconds = _train(step, args)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return losses, seconds, peak_mb, f"open_clip {open_clip.__version__}, eager torch {torch.__version__}"


def _train(step, args):
    losses = [step(i) for i in range(args.warmup)]
    start = time.perf_counter()
    losses += [step(args.warmup + i) for i in range(args.steps)]
    return losses, time.perf_counter() - start


def child(args):
    model_cfg = json.loads(args.model_json)
    batches = synthetic_batches(model_cfg, args.batch_size, args.distinct_batches, args.seed)
    runner = run_open_clip if args.child == "open_clip" else run_keras
    losses, seconds, peak_mb, note = runner(args, model_cfg, batches)
    print(json.dumps({"variant": args.child, "first_loss": losses[0], "last_loss": losses[-1],
                      "samples_per_s": args.batch_size * args.steps / seconds, "peak_mb": peak_mb,
                      "host_peak_mb": _host_peak_mb(), "note": note}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="tensorflow,jax,torch,open_clip")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (compilation)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    parser.add_argument("--precision", default="mixed_bfloat16", help="Keras dtype policy (float32 to compare)")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--distinct-batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"],
                        help="keras_clip's XLA switch (auto: keras_clip.train.optimizer.resolve_jit_compile)")
    parser.add_argument("--timeout", type=int, default=115, help="seconds per variant (4 variants fit the 480 s of gpu_check.sh)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny model, batch 8, 2 + 3 steps, on CPU: checks the script, not a GPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--model-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    model_cfg = TINY if args.cpu_smoke else VIT_B_32
    if args.cpu_smoke:
        args.batch_size, args.warmup, args.steps = 8, 2, 3
    peak, device = (None, "CPU smoke run") if args.cpu_smoke else bf16_peak_tflops()
    sys.path[:0] = [ROOT, HERE]
    from keras_clip.models.flops import config_forward_flops

    flops = 3 * config_forward_flops(model_cfg)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "init.safetensors")
        write_initial_weights(model_cfg, weights, args.seed)
        for variant in args.variants.split(","):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="torch" if variant == "open_clip" else variant,
                       PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
            if args.cpu_smoke:
                env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--weights", weights,
                   "--model-json", json.dumps(model_cfg), "--batch-size", str(args.batch_size),
                   "--warmup", str(args.warmup), "--steps", str(args.steps), "--precision", args.precision,
                   "--learning-rate", str(args.learning_rate), "--distinct-batches", str(args.distinct_batches),
                   "--seed", str(args.seed), "--jit-compile", args.jit_compile]
            try:
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{variant}: over --timeout {args.timeout} s (left out)", file=sys.stderr)
                continue
            if out.returncode:
                print(f"{variant}: failed (left out)\n{out.stderr[-1500:]}", file=sys.stderr)
                continue
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'tiny smoke model' if args.cpu_smoke else 'ViT-B/32'}, batch {args.batch_size}, {args.precision}, "
          f"{args.warmup} warm-up + {args.steps} timed steps; {flops / 1e9:.2f} GFLOP per trained pair; "
          f"bf16 peak: {f'{peak:.0f} TFLOP/s' if peak else 'n/a'} ({device})")
    print("| variant | samples/s | MFU | peak memory MB | loss, step 1 | loss, last step | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{r['samples_per_s'] * flops / (peak * 1e12):.2f}" if peak else "n/a"
        memory = f"{r['peak_mb']:.0f}" if r["peak_mb"] else f"host {r['host_peak_mb']:.0f}"
        print(f"| {r['variant']} | {r['samples_per_s']:.1f} | {mfu} | {memory} | {r['first_loss']:.4f} | "
              f"{r['last_loss']:.4f} | {r['note']} |")
    if len(results) < 2:
        return 1 if not results else 0
    ok = True
    for key, tolerance in (("first_loss", 0.01), ("last_loss", 0.05)):
        median = statistics.median(r[key] for r in results)
        worst = max(abs(r[key] - median) / abs(median) for r in results)
        agree = worst <= tolerance
        ok &= agree
        print(f"{key}: largest relative deviation from the median {worst:.4f} "
              f"(tolerance {tolerance}): {'agree' if agree else 'DISAGREE'}")
    return 0 if ok and len(results) == len(args.variants.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
