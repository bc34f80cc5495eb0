#!/usr/bin/env bash
# One-command GPU check (about 8 minutes or less on one GPU): ViT-B/32 on
# synthetic data, mixed_bfloat16, batch 256, on TensorFlow, JAX, PyTorch and
# open_clip (when installed), from the same initial weights. Prints samples/s,
# MFU against the GPU's bf16 peak (override: GPU_BF16_PEAK_TFLOPS=...), peak
# memory, and the losses, and exits 1 if the backends disagree.
#   bash benchmarks/gpu_check.sh                 # all variants
#   bash benchmarks/gpu_check.sh --variants jax,torch
#   bash benchmarks/gpu_check.sh --cpu-smoke     # tiny model on CPU: checks the script only
# PYTHON=/path/to/python picks the interpreter (default: python); GPU_CHECK_TIMEOUT=SECONDS
# replaces the 480 s limit of the whole run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python}" "$here/gpu_check.py" "$@"
