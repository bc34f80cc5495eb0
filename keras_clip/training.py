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
import warnings

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


class ResumeOnce(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` for a run that calls `fit` once per epoch: it
    restores the saved state at the first `fit` only (a restart); the later
    ones go on from the weights in memory and their own `initial_epoch`.

    Restoring at every epoch would re-read the state just saved, and on JAX,
    once an evaluation has cached its compiled encoder views on the model,
    Keras' loader follows the view's reference back to the model and
    recurses without end.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._restored = False

    def on_train_begin(self, logs=None):
        if self._restored:
            # Undo the epoch the first restore set (fit prefers it to its own
            # initial_epoch argument).
            self.model._initial_epoch = None
            return
        self._restored = True
        super().on_train_begin(logs)


def run_callbacks(output_dir):
    """Resume state, TensorBoard logs and per-epoch weight checkpoints of a
    run written to `output_dir` (none without one)."""
    if not output_dir:
        return []
    return [
        ResumeOnce(os.path.join(output_dir, "backup"), delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"), save_weights_only=True
        ),
    ]


class EpochHistory(keras.callbacks.Callback):
    """The logs of every finished epoch, kept across a kill and restart.

    With a `path` (in the run's backup folder, written before
    `BackupAndRestore` saves the epoch), a resumed run's history covers the
    epochs done before the kill too. Epochs at or after the one a run
    resumes from are dropped when read back (`previous_epochs`).
    """

    def __init__(self, path=None, epochs=()):
        super().__init__()
        self.path = path
        self.epochs = list(epochs)  # [{"epoch": 0, "loss": ..., ...}, ...]

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            try:
                entry[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.epochs = [e for e in self.epochs if e["epoch"] < epoch] + [entry]
        if self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path + ".tmp", "w") as f:
                json.dump(_jsonable(self.epochs), f)
            os.replace(self.path + ".tmp", self.path)

    @staticmethod
    def previous_epochs(path, resume_epoch):
        """The saved entries of the epochs before `resume_epoch`."""
        if not resume_epoch or not path or not os.path.exists(path):
            return []
        with open(path) as f:
            return [e for e in json.load(f) if e["epoch"] < resume_epoch]

    def columns(self):
        """key -> one value per epoch, None where the key was not logged that
        epoch (an evaluation every N epochs)."""
        keys = dict.fromkeys(k for e in self.epochs for k in e if k != "epoch")
        return {k: [e.get(k) for e in self.epochs] for k in keys}


def fit_epochs(model, epoch_dataset, epochs, output_dir=None, epoch_callbacks=(), callbacks=(), verbose="auto"):
    """Fits one epoch at a time on `epoch_dataset(epoch)`, from the epoch a
    killed run stopped at (0 for a fresh run).

    Each epoch's data comes from its own dataset, keyed by the epoch, so a
    resumed run sees exactly the batches an uninterrupted one would.

    Args:
        epoch_callbacks: callbacks that add entries to the epoch logs (the
            evaluation, the bad-record count): run first, so that the
            history, TensorBoard and the resume state see their numbers.
        callbacks: the caller's own callbacks, run after those.

    Returns:
        (history, epochs run now): the whole run's history (the epochs
        before a restart too) as key -> list over epochs (None where a key
        was not logged that epoch), and the number of epochs this call ran.
    """
    start = resumed_epoch(output_dir)
    path = os.path.join(output_dir, "backup", "history.json") if output_dir else None
    history = EpochHistory(path, EpochHistory.previous_epochs(path, start))
    all_callbacks = (
        list(epoch_callbacks) + [history] + run_callbacks(output_dir) + list(callbacks) + [EpochProgbar(epochs)]
    )
    for epoch in range(start, epochs):
        with warnings.catch_warnings():
            # Each epoch's dataset is finite by design (bad records make its
            # length unknown beforehand): its end is the end of the epoch, not
            # the "ran out of data" mistake Keras warns about.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(
                epoch_dataset(epoch), initial_epoch=epoch, epochs=epoch + 1, verbose=verbose, shuffle=False,
                callbacks=all_callbacks,
            )
    if output_dir:
        shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
    return history.columns(), max(epochs - start, 0)


def _run_summary(model, history, train_seconds, epochs, **extra):
    """The metrics.json entries every run has, plus `extra`."""
    return {
        "backend": keras.backend.backend(),
        "train_seconds": round(train_seconds, 2),
        "epochs": epochs,
        **extra,
        "final_loss": history["loss"][-1] if history.get("loss") else None,
        "final_logit_scale": float(keras.ops.convert_to_numpy(model.logit_scale())),
        "history": _history_lists(history),
    }


def _history_lists(history):
    return {k: [None if v is None else float(v) for v in values] for k, values in history.items()}


def _caption_corpus(source):
    """All captions of a source and its number of images (one streaming pass for shards)."""
    if hasattr(source, "records"):
        return [c for r in source.records for c in r.captions], len(source.records)
    captions, count = [], 0
    for sample in source.iter_samples(report=BadRecordReport(log=False)):
        captions.extend(sample.captions)
        count += 1
    return captions, count


def _absolute(path):
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def absolute_data_paths(config):
    """The config with its data paths (`data.train`, `data.eval`,
    `data.classes`, a `data.templates` file) made absolute, so that the run
    directory's `config.yaml` still finds them from another folder
    (`keras-clip eval`, `keras-clip report`). Shard brace patterns are kept
    as they are, only prefixed."""
    data_cfg = config["data"]
    for key in ("train", "eval", "classes"):
        value = data_cfg.get(key)
        if isinstance(value, (list, tuple)):
            data_cfg[key] = [_absolute(v) for v in value]
        elif value:
            data_cfg[key] = _absolute(value)
    templates = data_cfg.get("templates")
    if templates and os.path.isfile(templates):  # else a shipped set's name
        data_cfg["templates"] = _absolute(templates)
    return config


def zero_shot_setup(data_cfg):
    """(class names, templates) from `data.classes` / `data.templates`;
    (None, None) without classes."""
    if not data_cfg["classes"]:
        return None, None
    templates = load_templates(data_cfg["templates"]) if data_cfg["templates"] else list(PROMPT_TEMPLATES)
    return read_lines(data_cfg["classes"]), templates


DEFAULT_EVAL_MAX_EXAMPLES = 1000


def file_evaluation(config, model, epochs, print_fn=print):
    """The evaluation callback of a file run, or None.

    Every `eval.every_epochs` epochs (0: never), retrieval R@1/5/10 on the
    first `eval.max_examples` (default 1000, at most
    `data.max_eval_examples`) images of `data.eval` with all their captions,
    and zero-shot top-1/top-5 when `data.classes` is given and the eval
    records have labels. The images are decoded once, before training.
    """
    data_cfg, eval_cfg = config["data"], config["eval"]
    every = int(eval_cfg["every_epochs"] or 0)
    if not data_cfg["eval"] or every <= 0:
        return None
    limit = int(eval_cfg.get("max_examples", DEFAULT_EVAL_MAX_EXAMPLES))
    if data_cfg["max_eval_examples"]:
        limit = min(limit, int(data_cfg["max_eval_examples"]))
    arrays = load_eval_arrays(data_cfg["eval"], model.image_shape, max_examples=limit, strict=bool(data_cfg["strict"]))
    if len(arrays["images"]) == 0:
        raise ValueError(
            f"No usable image-caption pairs in the eval data {data_cfg['eval']!r}: {arrays['report'].summary()}"
        )
    class_names, templates = zero_shot_setup(data_cfg)
    labels = arrays["labels"] if class_names else None
    if class_names and labels is None:
        print_fn(
            f"Zero-shot evaluation skipped during training: the eval data {data_cfg['eval']!r} has no labels "
            "(add a `label` column); retrieval only."
        )
    return ZeroShotRetrievalCallback(
        arrays["images"], labels, class_names, templates,
        captions=arrays["captions"], text_to_image=arrays["text_to_image"],
        every=every, total_epochs=epochs, batch_size=int(eval_cfg["batch_size"]),
    )


def train_on_files(config, output_dir=None, verbose="auto", callbacks=()):
    """`train` for image-caption files (`data.train`: a manifest, a folder or tar shards)."""
    config = absolute_data_paths(config)
    data_cfg, training = config["data"], config["training"]
    strict = bool(data_cfg["strict"])
    source = open_source(data_cfg["train"], strict=strict)
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

    def epoch_dataset(epoch):
        # Order, caption draws and crops keyed by (seed, epoch): a resumed
        # run sees exactly the batches an uninterrupted one would.
        return image_text_dataset(
            source, tokenizer, model.image_shape, batch_size, training=True,
            seed=int(training["seed"]), epoch=epoch, strict=strict, report=report,
        )

    evaluation = file_evaluation(config, model, epochs, print_fn=print if verbose else (lambda *_: None))
    epoch_callbacks = ([evaluation] if evaluation else []) + [BadRecordLogger(report, run_summary=False)]
    start = time.time()
    history, _ = fit_epochs(model, epoch_dataset, epochs, output_dir, epoch_callbacks, callbacks, verbose)
    train_seconds = time.time() - start
    if verbose and report.total:
        print("Bad records over the whole run: " + report.summary(cumulative=True))
    metrics = {}
    if data_cfg["eval"]:
        class_names, templates = zero_shot_setup(data_cfg)
        metrics = evaluate_files(
            model, data_cfg["eval"], class_names, templates,
            batch_size=int(config["eval"]["batch_size"]), max_examples=data_cfg["max_eval_examples"],
        )
        metrics["eval_bad_records"] = metrics.pop("bad_records")
    metrics.update(
        _run_summary(model, history, train_seconds, epochs, train_images=num_images, bad_records=report.to_dict())
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
    started again with the same arguments: weights, optimizer state, the
    epoch and the history so far come back from `output_dir/backup`, and
    the data stream skips the epochs already done (each epoch's data order,
    caption draws and crops depend only on the seed and the epoch, for the
    shapes set and for files alike), so the result equals an uninterrupted
    run.

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

    evaluation = []
    if config["eval"]["every_epochs"]:
        test = splits["test"]
        evaluation = [
            ZeroShotRetrievalCallback(
                test["images"], test["labels"], shapes.class_names, list(shapes.prompt_templates),
                captions=test["captions"], every=int(config["eval"]["every_epochs"]), total_epochs=epochs,
                batch_size=int(config["eval"]["batch_size"]),
            )
        ]
    start = time.time()
    logs, _ = fit_epochs(model, epoch_dataset, epochs, output_dir, evaluation, callbacks, verbose)
    train_seconds = time.time() - start

    metrics = evaluate(model, shapes, splits, batch_size=int(config["eval"]["batch_size"]))
    metrics.update(_run_summary(model, logs, train_seconds, epochs, steps=steps_per_epoch * epochs))
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
