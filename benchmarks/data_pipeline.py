"""Input pipeline throughput against the training step's consumption rate.

Writes N JPEGs (random sizes, 256-500 px a side) and a CSV manifest to a
temporary folder, then measures on the current Keras backend:

1. the `image_text_dataset` pipeline alone (training mode: Pillow decode,
   RandomResizedCrop to 224 px, tokenization, batches of 64), in images/s;
2. the `small-vit` preset's training step (`train_on_batch`, AdamW) on a
   random batch of the same shape, in images/s;

and prints both and their ratio (the pipeline should be >= 3x faster than
the step, so it never starves training).

    KERAS_BACKEND=jax python benchmarks/data_pipeline.py
    python benchmarks/data_pipeline.py --num-images 512 --batch-size 64 --skip-model

Timings on a shared machine are noisy: compare the ratio of one run.
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
THINGS = ["dog", "cat", "car", "tree", "house", "boat", "bird", "flower"]


def write_images(folder, num_images, seed=0):
    """N JPEGs of 256-500 px sides with smooth content plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    lines = ["filepath,caption"]
    for i in range(num_images):
        width, height = (int(v) for v in rng.integers(256, 501, 2))
        base = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        pixels = np.asarray(base.resize((width, height), Image.BICUBIC), np.int16)
        pixels = pixels + rng.integers(-12, 13, pixels.shape, dtype=np.int16)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        name = f"img{i:05d}.jpg"
        image.save(os.path.join(folder, name), "JPEG", quality=90)
        caption = f"a {COLORS[i % 8]} {THINGS[(i // 8) % 8]} in photo {i % 10}"
        lines.append(f"{name},{caption}")
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return manifest, [line.split(",", 1)[1] for line in lines[1:]]


def pipeline_rate(manifest, tokenizer, image_size, batch_size, num_batches):
    from keras_clip.data.image_pipeline import image_text_dataset

    dataset = image_text_dataset(
        manifest, tokenizer, image_size, batch_size, training=True, repeat=True
    )
    iterator = iter(dataset)
    for _ in range(2):  # warm up: tracing, thread pools, page cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        batch = next(iterator)
    batch["images"].numpy()
    elapsed = time.perf_counter() - start
    assert dataset.bad_records.total == 0, dataset.bad_records.summary()
    return num_batches * batch_size / elapsed


def train_step_rate(batch_size, steps):
    import keras
    import numpy as np

    import keras_clip

    model = keras_clip.CLIP.from_preset("small-vit")
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    height, width, _ = model.image_shape
    context = model.context_length
    rng = np.random.default_rng(0)
    token_ids = rng.integers(4, model.vocabulary_size, (batch_size, context)).astype("int32")
    token_ids[:, 0] = 2 if model.start_token_id is None else model.start_token_id
    token_ids[:, context // 2] = model.end_token_id
    token_ids[:, context // 2 + 1 :] = 0
    batch = {
        "images": rng.uniform(0, 255, (batch_size, height, width, 3)).astype("float32"),
        "token_ids": token_ids,
    }
    for _ in range(2):  # compile / warm up
        model.train_on_batch(batch)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(batch)
    elapsed = time.perf_counter() - start
    return steps * batch_size / elapsed, (height, width)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--pipeline-batches", type=int, default=16,
                        help="batches timed (after 2 warm-up batches)")
    parser.add_argument("--train-steps", type=int, default=3,
                        help="training steps timed (after 2 warm-up steps)")
    parser.add_argument("--skip-model", action="store_true",
                        help="only measure the pipeline")
    parser.add_argument("--folder", default=None,
                        help="where to write the images (default: a temp dir, removed)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_clip.data import CaptionTokenizer

    folder = args.folder or tempfile.mkdtemp(prefix="keras_clip_bench_")
    os.makedirs(folder, exist_ok=True)
    try:
        start = time.perf_counter()
        manifest, captions = write_images(folder, args.num_images)
        print(f"wrote {args.num_images} JPEGs (256-500 px) in "
              f"{time.perf_counter() - start:.1f} s to {folder}")
        tokenizer = CaptionTokenizer.from_corpus(captions, context_length=32)
        print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPU cores, "
              f"TF devices {[d.device_type for d in tf.config.list_logical_devices()]}")
        rate = pipeline_rate(
            manifest, tokenizer, args.image_size, args.batch_size, args.pipeline_batches
        )
        print(f"pipeline   : {rate:8.1f} images/s  (training mode, "
              f"{args.image_size} px, batch {args.batch_size})")
        if args.skip_model:
            return
        step_rate, shape = train_step_rate(args.batch_size, args.train_steps)
        print(f"train step : {step_rate:8.1f} images/s  (small-vit, {shape[0]} px, "
              f"batch {args.batch_size}, AdamW, train_on_batch)")
        ratio = rate / step_rate
        verdict = "OK" if ratio >= 3 else "BELOW the 3x target"
        print(f"ratio      : {ratio:8.2f}x  pipeline / train step ({verdict})")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
