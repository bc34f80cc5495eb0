"""One training run: config -> data -> model -> fit -> evaluation -> run directory.

`keras-clip train` is a thin wrapper around `train()`. A run directory holds
`model.keras` (weights + tokenizer), `tokenizer/` (the tokenizer's assets),
`config.yaml` (the resolved config) and `metrics.json`.
"""

import json
import math
import os
import shutil
import time

import keras
import numpy as np

from keras_clip import losses as clip_losses
from keras_clip.config import load_config, save_config
from keras_clip.data import CaptionTokenizer, ShapesDataset, image_text_dataset, load_eval_arrays, make_dataset, open_source
from keras_clip.data.bad_records import BadRecordLogger, BadRecordReport
from keras_clip.data.shapes import PROMPT_TEMPLATES
from keras_clip.eval import ZeroShotRetrievalCallback, load_templates, embed_images, embed_texts, retrieval_metrics, zero_shot_evaluate
from keras_clip.export.saved_model import read_lines
from keras_clip.models.builder import build_clip, load_run_model

NO_DECAY = ["bias", "gamma", "beta", "embedding", "log_scale", "logit_bias"]


def make_optimizer(training_config, steps):
    """AdamW with linear warmup then cosine decay; no weight decay on biases,
    norms, embeddings and the temperature (as open_clip does)."""
    lr = float(training_config["learning_rate"])
    warmup = int(round(training_config["warmup_fraction"] * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else lr,
        decay_steps=max(steps - warmup, 1),
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=float(training_config["weight_decay"]), beta_2=0.98, epsilon=1e-6
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def resolve_jit_compile(value):
    """`"auto"`: XLA on JAX (without it JAX runs op by op), off on TensorFlow and
    PyTorch, where on CPU the small models here train faster without it
    (benchmarks/train_throughput.py measures both)."""
    if value == "auto":
        return keras.backend.backend() == "jax"
    return bool(value)


def load_data(config):
    """The data splits a config asks for, as numpy arrays and caption lists."""
    data_cfg = config["data"]
    if data_cfg["name"] != "shapes":
        raise ValueError(f"Unknown data set {data_cfg['name']!r}; built in: ['shapes'].")
    image_size = config["model"]["image_encoder"]["image_size"]
    shapes = ShapesDataset(
        image_size=image_size, seed=data_cfg["seed"], two_shape_fraction=data_cfg["two_shape_fraction"]
    )
    splits = {
        "train": shapes.generate("train", data_cfg["train_examples"]),
        "test": shapes.generate("test", data_cfg["test_examples"]),
        "heldout": shapes.generate("heldout", data_cfg["heldout_examples"]),
    }
    return shapes, splits


def evaluate(model, shapes, splits, batch_size=256):
    """Zero-shot accuracy (seen and held-out combinations) and test-set retrieval."""
    templates = list(shapes.prompt_templates)
    seen = zero_shot_evaluate(
        model, splits["test"]["images"], splits["test"]["labels"], shapes.class_names, templates, batch_size=batch_size
    )
    metrics = {
        "zero_shot_top1": seen["top1"],
        "zero_shot_top5": seen["top5"],
        "chance_top1": seen["chance_top1"],
        "num_classes": len(shapes.class_names),
    }
    if len(splits["heldout"]["labels"]):
        held = zero_shot_evaluate(
            model,
            splits["heldout"]["images"],
            splits["heldout"]["labels"],
            shapes.class_names,
            templates,
            batch_size=batch_size,
        )
        metrics["heldout_zero_shot_top1"] = held["top1"]
        metrics["heldout_zero_shot_top5"] = held["top5"]
    image_emb = embed_images(model, splits["test"]["images"], batch_size)
    text_emb = embed_texts(model, splits["test"]["captions"], batch_size)
    metrics.update(retrieval_metrics(image_emb, text_emb))
    return metrics


def evaluate_files(model, source, class_names=None, templates=None, batch_size=256, max_examples=None, strict=False):
    """Retrieval (and zero-shot, when the source has labels and classes are
    given) on an image-caption source: a manifest, a folder or tar shards."""
    arrays = load_eval_arrays(source, model.image_shape, max_examples=max_examples, strict=strict)
    if len(arrays["images"]) == 0:
        raise ValueError(f"No usable image-caption pairs in {source!r}: {arrays['report'].summary()}")
    metrics = retrieval_metrics(
        embed_images(model, arrays["images"], batch_size),
        embed_texts(model, arrays["captions"], batch_size),
        arrays["text_to_image"],
    )
    metrics["num_images"] = len(arrays["images"])
    metrics["num_captions"] = len(arrays["captions"])
    if class_names and arrays["labels"] is not None:
        result = zero_shot_evaluate(
            model, arrays["images"], arrays["labels"], class_names, templates or list(PROMPT_TEMPLATES), batch_size=batch_size
        )
        metrics.update(
            {
                "zero_shot_top1": result["top1"],
                "zero_shot_top5": result["top5"],
                "chance_top1": result["chance_top1"],
                "num_classes": len(class_names),
                "per_class_top1": result["per_class"],
            }
        )
    metrics["bad_records"] = arrays["report"].to_dict()
    return metrics


def format_metrics(metrics):
    lines = []
    if "zero_shot_top1" in metrics:
        lines.append(
            f"zero-shot top-1 {metrics['zero_shot_top1']:.3f}  top-5 {metrics['zero_shot_top5']:.3f}  "
            f"(chance {metrics['chance_top1']:.3f}, {metrics.get('num_classes', '?')} classes"
            + (", seen combinations)" if "heldout_zero_shot_top1" in metrics else ")")
        )
    if "heldout_zero_shot_top1" in metrics:
        lines.append(
            f"zero-shot top-1 {metrics['heldout_zero_shot_top1']:.3f}  top-5 "
            f"{metrics['heldout_zero_shot_top5']:.3f}  (held-out, never-seen combinations)"
        )
    for direction in ("image_to_text", "text_to_image"):
        lines.append(
            f"{direction.replace('_', ' ')}: "
            + "  ".join(f"R@{k} {metrics[f'{direction}_R@{k}']:.3f}" for k in (1, 5, 10))
            + f"  median rank {metrics[f'{direction}_median_rank']:.0f}"
        )
    bad = metrics.get("bad_records") or {}
    if bad.get("total"):
        lines.append(f"bad records skipped: {bad['total']} {bad.get('total_counts', '')}")
    return "\n".join(lines)


def resumed_epoch(output_dir):
    """The epoch a killed run restarts at (0 for a fresh run), from the
    `BackupAndRestore` state in `output_dir/backup`."""
    path = os.path.join(output_dir, "backup", "training_metadata.json") if output_dir else None
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run even though
    `train` calls `fit` once per epoch."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


def run_callbacks(output_dir, evaluation=None):
    """Evaluation during training, resume state, TensorBoard logs and
    per-epoch weight checkpoints (the evaluation first, so that History and
    TensorBoard see its numbers)."""
    first = [evaluation] if evaluation is not None else []
    if not output_dir:
        return first
    return first + [
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup"), delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"), save_weights_only=True
        ),
    ]


def _caption_corpus(source):
    """All captions of a source and its number of images (one streaming pass for shards)."""
    if hasattr(source, "records"):
        return [c for r in source.records for c in r.captions], len(source.records)
    captions, count = [], 0
    for sample in source.iter_samples(report=BadRecordReport(log=False)):
        captions.extend(sample.captions)
        count += 1
    return captions, count


def train_on_files(config, output_dir=None, verbose="auto", callbacks=()):
    """`train` for image-caption files (`data.train`: a manifest, a folder or tar shards)."""
    data_cfg, training = config["data"], config["training"]
    source = open_source(data_cfg["train"])
    captions, num_images = _caption_corpus(source)
    if not captions:
        raise ValueError(f"No captions found in {data_cfg['train']!r}.")
    tokenizer = CaptionTokenizer.from_corpus(captions, context_length=config["model"]["text_encoder"]["context_length"])
    model = build_clip(config["model"], tokenizer=tokenizer)
    loss = clip_losses.get(config["loss"])
    batch_size = int(training["batch_size"])
    epochs = int(training["epochs"])
    steps = max(num_images // batch_size, 1) * epochs
    model.compile(
        optimizer=make_optimizer(training, steps),
        loss=loss,
        jit_compile=resolve_jit_compile(training["jit_compile"]),
    )
    report = BadRecordReport()
    dataset = image_text_dataset(
        data_cfg["train"], tokenizer, model.image_shape, batch_size, training=True,
        seed=int(training["seed"]), strict=bool(data_cfg["strict"]), report=report,
    )
    start = time.time()
    history = model.fit(
        dataset, epochs=epochs, verbose=verbose, shuffle=False,
        callbacks=run_callbacks(output_dir) + [BadRecordLogger(report)] + list(callbacks),
    )
    train_seconds = time.time() - start
    if output_dir:
        shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
    metrics = {}
    if data_cfg["eval"]:
        metrics = evaluate_files(
            model, data_cfg["eval"], data_cfg["classes"] and read_lines(data_cfg["classes"]),
            data_cfg["templates"] and load_templates(data_cfg["templates"]),
            batch_size=int(config["eval"]["batch_size"]), max_examples=data_cfg["max_eval_examples"],
        )
        metrics["eval_bad_records"] = metrics.pop("bad_records")
    metrics.update(
        {
            "backend": keras.backend.backend(),
            "train_seconds": round(train_seconds, 2),
            "epochs": epochs,
            "train_images": num_images,
            "bad_records": report.to_dict(),
            "final_loss": float(history.history["loss"][-1]),
            "final_logit_scale": float(keras.ops.convert_to_numpy(model.logit_scale())),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        }
    )
    if output_dir:
        write_run(output_dir, model, tokenizer, config, metrics)
    return model, metrics


def train(config=None, output_dir=None, overrides=None, verbose="auto", callbacks=()):
    """Trains a CLIP model as `config` says and writes a run directory.

    Args:
        config: preset name, YAML path or dict (None: the `shapes` recipe).
        output_dir: where to write the run (None: nothing is written).
        overrides: nested dict merged over the config.
        verbose: passed to `model.fit` (progress bar by default).
        callbacks: extra Keras callbacks.

    With an `output_dir`, a run that is killed resumes where it stopped when
    started again with the same arguments: weights, optimizer state and the
    epoch come back from `output_dir/backup`, and the data stream skips the
    epochs already done (each epoch's data order depends only on the seed and
    the epoch), so the result equals an uninterrupted run.

    Returns:
        (model, metrics dict).
    """
    config = load_config(config, overrides)
    training = config["training"]
    keras.utils.set_random_seed(int(training["seed"]))
    if training["mixed_precision"]:
        keras.mixed_precision.set_dtype_policy(training["mixed_precision"])
    if config["data"]["train"]:
        return train_on_files(config, output_dir, verbose, callbacks)

    shapes, splits = load_data(config)
    context = config["model"]["text_encoder"]["context_length"]
    tokenizer = CaptionTokenizer.from_corpus(
        splits["train"]["captions"]
        + [t.format(c) for c in shapes.class_names for t in shapes.prompt_templates],
        context_length=context,
    )
    model = build_clip(config["model"], tokenizer=tokenizer)
    loss = clip_losses.get(config["loss"])
    batch_size = int(training["batch_size"])
    steps_per_epoch = len(splits["train"]["captions"]) // batch_size
    epochs = int(training["epochs"])
    model.compile(
        optimizer=make_optimizer(training, steps_per_epoch * epochs),
        loss=loss,
        jit_compile=resolve_jit_compile(training["jit_compile"]),
    )

    def epoch_dataset(epoch):
        # Each epoch's order is a NumPy permutation keyed by (seed, epoch): a
        # resumed run sees exactly the batches an uninterrupted one would.
        order = np.random.default_rng([int(training["seed"]), epoch]).permutation(len(splits["train"]["captions"]))
        return make_dataset(
            splits["train"]["images"][order],
            [splits["train"]["captions"][i] for i in order],
            tokenizer,
            batch_size,
            labels=splits["train"]["labels"][order],
            shuffle=False,
            seed=int(training["seed"]) * 100_003 + epoch,
            image_views=bool(getattr(loss, "needs_image_views", False)),
        )

    evaluation = None
    if config["eval"]["every_epochs"]:
        test = splits["test"]
        evaluation = ZeroShotRetrievalCallback(
            test["images"], test["labels"], shapes.class_names, list(shapes.prompt_templates),
            captions=test["captions"], every=int(config["eval"]["every_epochs"]), total_epochs=epochs,
        )
    callbacks = run_callbacks(output_dir, evaluation) + list(callbacks) + [EpochProgbar(epochs)]
    logs = {}
    start = time.time()
    for epoch in range(resumed_epoch(output_dir), epochs):
        history = model.fit(
            epoch_dataset(epoch), initial_epoch=epoch, epochs=epoch + 1, verbose=verbose, shuffle=False, callbacks=callbacks
        )
        for key, values in history.history.items():
            logs.setdefault(key, []).extend(values)
    if output_dir:
        shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
    train_seconds = time.time() - start

    metrics = evaluate(model, shapes, splits, batch_size=int(config["eval"]["batch_size"]))
    metrics.update(
        {
            "backend": keras.backend.backend(),
            "train_seconds": round(train_seconds, 2),
            "epochs": epochs,
            "steps": steps_per_epoch * epochs,
            "final_loss": float(logs["loss"][-1]) if logs else None,
            "final_logit_scale": float(keras.ops.convert_to_numpy(model.logit_scale())),
            "history": {k: [float(v) for v in vals] for k, vals in logs.items()},
        }
    )
    if output_dir:
        write_run(output_dir, model, tokenizer, config, metrics)
    return model, metrics


def write_run(output_dir, model, tokenizer, config, metrics):
    os.makedirs(output_dir, exist_ok=True)
    model.save(os.path.join(output_dir, "model.keras"))
    tokenizer.save(os.path.join(output_dir, "tokenizer"))
    save_config(config, os.path.join(output_dir, "config.yaml"))
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(_jsonable(metrics), f, indent=2)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_run(run_dir, data=None, class_names=None, templates=None):
    """Re-evaluates a saved run: on `data` (a manifest, folder or tar shards)
    when given, else on its config's evaluation data."""
    config = load_config(os.path.join(run_dir, "config.yaml"))
    model = load_run_model(run_dir)
    data = data or config["data"]["eval"]
    if data or config["data"]["train"]:
        if not data:
            raise ValueError(f"Run {run_dir!r} trained on files and has no eval data; pass --data.")
        metrics = evaluate_files(
            model, data,
            class_names or (config["data"]["classes"] and read_lines(config["data"]["classes"])),
            templates or (config["data"]["templates"] and load_templates(config["data"]["templates"])),
            batch_size=int(config["eval"]["batch_size"]),
        )
        metrics["backend"] = keras.backend.backend()
        return metrics
    shapes, splits = load_data(config)
    metrics = evaluate(model, shapes, splits, batch_size=int(config["eval"]["batch_size"]))
    metrics["backend"] = keras.backend.backend()
    return metrics
