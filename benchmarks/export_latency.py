"""Serving latency of the exported SavedModel against the Keras model, same backend.

    python benchmarks/export_latency.py                      # the current KERAS_BACKEND
    python benchmarks/export_latency.py --backends all       # one process per backend, one table

Model: the `shapes` preset (32 px ViT, 16-token text encoder) with a
tokenizer built from a few captions. For batch 1 and 32 it times, as the
median of `--repeats` calls (after warm-up):
- exported `encode_image_bytes` (PNG bytes in; decode, resize, crop and the
  image tower in the graph) and `encode_text_strings` (captions in;
  tokenisation and the text tower in the graph), loaded with
  `tf.saved_model.load` in this process;
- Keras, same inputs: decode + resize with the same TF ops, or the
  tokenizer (each in a `tf.function`, as in a tf.data pipeline), then
  `predict_on_batch` of a one-tower Keras model (compiled like `predict`:
  XLA under JAX, tf.function under TensorFlow, eager under PyTorch);
- Keras model only (pixels / token ids already prepared): `predict_on_batch`.
Ratios are exported / Keras (< 1: the export is faster). Timings on a shared
machine are noisy: compare the ratios of one run.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from _backends import run_per_backend  # benchmarks/ is sys.path[0] when run as a script

CAPTIONS = [
    "a red circle",
    "a small blue square",
    "a green triangle left of a yellow star",
    "two purple circles above an orange square",
    "a large white star",
]


def _median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_current_backend(repeats, batches, image_size):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_clip
    from keras_clip.data import CaptionTokenizer
    from keras_clip.export import decode_images, export_saved_model

    tokenizer = CaptionTokenizer.from_corpus(CAPTIONS, context_length=16)
    model = keras_clip.CLIP.from_preset("shapes", tokenizer=tokenizer)
    height, width, _ = model.image_shape

    class Tower(keras.Model):
        """One CLIP tower as a Keras model, for `predict_on_batch`."""

        def __init__(self, clip, modality):
            super().__init__()
            self.clip, self.modality = clip, modality
            self.jit_compile = keras.backend.backend() == "jax"

        def call(self, x):
            return self.clip.encode_image(x) if self.modality == "image" else self.clip.encode_text(x)

    image_tower, text_tower = Tower(model, "image"), Tower(model, "text")
    decode = tf.function(lambda files: decode_images(files, (height, width)))
    tokenize = tf.function(tokenizer.tokenize)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        version_dir = export_saved_model(model, os.path.join(tmp, "clip"))
        export_s = time.perf_counter() - start
        served = tf.saved_model.load(version_dir)
        encode_image_bytes = served.signatures["encode_image_bytes"]
        encode_text_strings = served.signatures["encode_text_strings"]

        rng = np.random.default_rng(0)
        rows = []
        for batch in batches:
            files = tf.constant(
                [
                    tf.io.encode_png(rng.integers(0, 256, (image_size, image_size, 3)).astype("uint8")).numpy()
                    for _ in range(batch)
                ]
            )
            texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
            texts_tensor = tf.constant(texts)
            pixels = decode(files).numpy()
            token_ids = tokenize(texts_tensor).numpy()

            def run(fn):
                return lambda: np.asarray(keras.ops.convert_to_numpy(fn()))

            exported_image = run(lambda: encode_image_bytes(image_bytes=files)["embeddings"])
            keras_image = run(lambda: image_tower.predict_on_batch(decode(files).numpy()))
            keras_image_only = run(lambda: image_tower.predict_on_batch(pixels))
            exported_text = run(lambda: encode_text_strings(texts=texts_tensor)["embeddings"])
            keras_text = run(lambda: text_tower.predict_on_batch(tokenize(texts_tensor).numpy()))
            keras_text_only = run(lambda: text_tower.predict_on_batch(token_ids))
            gap_image = float(np.abs(exported_image() - keras_image()).max())
            gap_text = float(np.abs(exported_text() - keras_text()).max())
            for signature, exported, full, only, gap in (
                ("encode_image_bytes", exported_image, keras_image, keras_image_only, gap_image),
                ("encode_text_strings", exported_text, keras_text, keras_text_only, gap_text),
            ):
                rows.append(
                    {
                        "signature": signature,
                        "batch": batch,
                        "exported_ms": _median_ms(exported, repeats),
                        "keras_ms": _median_ms(full, repeats),
                        "keras_model_only_ms": _median_ms(only, repeats),
                        "max_abs_diff": gap,
                    }
                )
    return {"backend": keras.backend.backend(), "export_s": export_s, "rows": rows}


def _print_table(results, repeats):
    print(f"median of {repeats} calls, milliseconds; ratio = exported / Keras")
    print()
    print("| backend | signature | batch | exported | Keras (preprocess + predict_on_batch) | ratio | Keras model only | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for r in result["rows"]:
            print(
                f"| {result['backend']} | {r['signature']} | {r['batch']} | {r['exported_ms']:.2f} | "
                f"{r['keras_ms']:.2f} | {r['exported_ms'] / r['keras_ms']:.2f} | {r['keras_model_only_ms']:.2f} | "
                f"{r['exported_ms'] / r['keras_model_only_ms']:.2f} | {r['max_abs_diff']:.1e} |"
            )
    print()
    print("export time: " + ", ".join(f"{r['backend']} {r['export_s']:.1f} s" for r in results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", default="1,32", help="comma list of batch sizes")
    parser.add_argument("--image-size", type=int, default=64, help="side of the PNG files sent (resized to the model's)")
    parser.add_argument("--backends", default="current", help="'current', 'all' or a comma list")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    if args.backends == "current":
        results = [run_current_backend(args.repeats, batches, args.image_size)]
    else:
        child_args = ["--repeats", str(args.repeats), "--batches", args.batches, "--image-size", str(args.image_size)]
        results = run_per_backend(__file__, child_args, args.backends)
    if args.json:
        print(json.dumps(results[0]))
        return
    _print_table(results, args.repeats)


if __name__ == "__main__":
    main()
