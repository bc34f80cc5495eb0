"""Evaluating a model or a saved run on the evaluation sets its config names,
and formatting the metrics.

A config's evaluation sets: for the shapes recipe its `test` split (retrieval,
zero-shot over the shapes classes) and its `heldout` split (zero-shot on
colour-shape combinations never seen in training, keys prefixed `heldout_`);
for a run on files, `data.eval` (retrieval; zero-shot when `data.classes` is
given and the records have labels).
"""

import os

import keras

from keras_clip.config import load_config
from keras_clip.data.config_sources import shapes_eval_sources
from keras_clip.data import load_eval_arrays
from keras_clip.eval.callback import ZeroShotRetrievalCallback
from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.retrieval import retrieval_metrics
from keras_clip.eval.zero_shot import load_templates, zero_shot_evaluate
from keras_clip.models.presets import load_run_model
from keras_clip.utils.text_files import read_lines

DEFAULT_EVAL_MAX_EXAMPLES = 1000


class EvalSet:
    """Decoded evaluation data: images, captions (with `text_to_image`), and
    optionally labels with their class names and prompt templates."""

    def __init__(self, arrays, class_names=None, templates=None, prefix="", where=None):
        self.images = arrays["images"]
        self.captions = list(arrays["captions"])
        self.text_to_image = arrays.get("text_to_image")
        self.labels = arrays.get("labels")
        self.report = arrays.get("report")
        self.class_names = list(class_names) if class_names else None
        self.templates = list(templates) if templates else None
        self.prefix = prefix
        self.where = where
        if len(self.images) == 0:
            summary = self.report.summary() if self.report is not None else "no examples"
            raise ValueError(f"No usable image-caption pairs in {where!r}: {summary}")

    @property
    def zero_shot(self):
        return bool(self.class_names) and self.labels is not None


def zero_shot_setup(data_cfg, class_names=None, templates=None):
    """(class names, templates) of a files config (`data.classes`,
    `data.templates`; the shipped `default` templates when none are given),
    or (None, None) without classes."""
    if class_names is None and data_cfg.get("classes"):
        class_names = read_lines(data_cfg["classes"])
    if not class_names:
        return None, None
    if templates is None:
        templates = load_templates(data_cfg["templates"] or "default")
    return list(class_names), list(templates)


def evaluation_sets(config, image_shape, data=None, class_names=None, templates=None, max_examples=None, strict=False):
    """The `EvalSet`s of a config (see the module docstring); `data`
    replaces a files config's `data.eval`. Empty for a files config without
    evaluation data."""
    data_cfg = config["data"]
    if not data and not data_cfg["train"]:
        sets = []
        for prefix, source in shapes_eval_sources(config, image_size=image_shape[0]):
            arrays = source.eval_arrays(image_shape, max_examples=max_examples)
            if len(arrays["images"]):
                sets.append(EvalSet(arrays, source.class_names, source.templates, prefix, where=f"shapes {prefix or 'test'}"))
        return sets
    data = data or data_cfg["eval"]
    if not data:
        return []
    if max_examples is None:
        max_examples = data_cfg["max_eval_examples"]
    class_names, templates = zero_shot_setup(data_cfg, class_names, templates)
    arrays = load_eval_arrays(data, image_shape, max_examples=max_examples, strict=strict)
    return [EvalSet(arrays, class_names, templates, "", where=data)]


def evaluate_set(model, eval_set, batch_size=256):
    """Retrieval R@1/5/10 and ranks, plus zero-shot top-1/top-5 when the set has
    labels and classes; keys prefixed with the set's prefix."""
    metrics = {}
    if not eval_set.prefix:
        metrics.update(
            retrieval_metrics(
                embed_images(model, eval_set.images, batch_size),
                embed_texts(model, eval_set.captions, batch_size),
                eval_set.text_to_image,
            )
        )
        metrics["num_images"] = len(eval_set.images)
        metrics["num_captions"] = len(eval_set.captions)
    if eval_set.zero_shot:
        result = zero_shot_evaluate(
            model, eval_set.images, eval_set.labels, eval_set.class_names, eval_set.templates, batch_size=batch_size
        )
        metrics.update({"zero_shot_top1": result["top1"], "zero_shot_top5": result["top5"]})
        if not eval_set.prefix:
            metrics.update(
                {
                    "chance_top1": result["chance_top1"],
                    "num_classes": len(eval_set.class_names),
                    "per_class_top1": result["per_class"],
                }
            )
    if eval_set.report is not None and not eval_set.prefix:
        metrics["bad_records"] = eval_set.report.run_counts()
    return {f"{eval_set.prefix}{k}": v for k, v in metrics.items()}


def evaluate_sets(model, eval_sets, batch_size=256):
    metrics = {}
    for eval_set in eval_sets:
        metrics.update(evaluate_set(model, eval_set, batch_size))
    return metrics


def evaluation_callback(eval_sets, every, epochs, batch_size, print_fn=print):
    """A `ZeroShotRetrievalCallback` on the first evaluation set, or None."""
    if not eval_sets or every <= 0:
        return None
    first = eval_sets[0]
    if first.class_names and first.labels is None:
        print_fn(
            f"Zero-shot evaluation skipped during training: the eval data {first.where!r} has no labels "
            "(add a `label` column); retrieval only."
        )
    return ZeroShotRetrievalCallback(
        first.images, first.labels if first.zero_shot else None, first.class_names, first.templates,
        captions=first.captions, text_to_image=first.text_to_image,
        every=every, total_epochs=epochs, batch_size=batch_size,
    )


def eval_limit(config):
    """Images evaluated during training: `eval.max_examples` (default 1000),
    at most `data.max_eval_examples`."""
    limit = int(config["eval"].get("max_examples", DEFAULT_EVAL_MAX_EXAMPLES))
    if config["data"].get("max_eval_examples"):
        limit = min(limit, int(config["data"]["max_eval_examples"]))
    return limit


def training_evaluation(config, image_shape, epochs, print_fn=print):
    """The evaluation callback of a run, or None: every `eval.every_epochs`
    epochs (0: never), on the first `eval_limit(config)` images of the
    config's first evaluation set (decoded once, before training)."""
    every = int(config["eval"]["every_epochs"] or 0)
    if every <= 0:
        return None
    sets = evaluation_sets(
        config, image_shape, max_examples=eval_limit(config), strict=bool(config["data"].get("strict"))
    )
    return evaluation_callback(sets, every, epochs, int(config["eval"]["batch_size"]), print_fn)


def evaluate_run(run_dir, data=None, class_names=None, templates=None):
    """Re-evaluates a saved run: on `data` (a manifest, folder or tar shards)
    when given, else on its config's evaluation data."""
    config = load_config(os.path.join(run_dir, "config.yaml"))
    model = load_run_model(run_dir)
    if not data and config["data"]["train"] and not config["data"]["eval"]:
        raise ValueError(f"Run {run_dir!r} trained on files and has no eval data; pass --data.")
    sets = evaluation_sets(config, model.image_shape, data, class_names, templates)
    metrics = evaluate_sets(model, sets, batch_size=int(config["eval"]["batch_size"]))
    metrics["backend"] = keras.backend.backend()
    return metrics


def format_metrics(metrics):
    """The metrics a person reads, one line each: zero-shot (seen and
    held-out), retrieval in both directions, bad records. Lines for metrics
    a run does not have are left out."""
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
        if f"{direction}_R@1" not in metrics:
            continue
        lines.append(
            f"{direction.replace('_', ' ')}: "
            + "  ".join(f"R@{k} {metrics[f'{direction}_R@{k}']:.3f}" for k in (1, 5, 10))
            + f"  median rank {metrics[f'{direction}_median_rank']:.0f}"
        )
    if "final_loss" in metrics and not any(key.endswith("_R@1") for key in metrics):
        loss = metrics["final_loss"]
        lines.append(f"final training loss {loss:.4f}" if loss is not None else "final training loss: none")
    bad = metrics.get("bad_records") or {}
    if bad.get("skipped"):
        lines.append(f"bad records skipped: {bad['skipped']} {bad.get('skipped_by_reason', '')}")
    return "\n".join(lines)
