"""Zero-shot classification: class names x prompt templates -> a linear classifier."""

import os

import numpy as np

from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.retrieval import check_finite, ranks_from_scores
from keras_clip.utils.text_files import read_lines


def _normalize(x, axis=-1):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")


# Short names of the shipped sets.
TEMPLATE_ALIASES = {"openai": "openai_imagenet"}


def load_templates(name_or_path="default"):
    """Prompt templates: a shipped set (`"default"`, 4 general templates, or
    `"openai"` / `"openai_imagenet"`, CLIP's 80 ImageNet templates) or a text
    file with one template per line (blank lines and `#` comments skipped)."""
    name = TEMPLATE_ALIASES.get(name_or_path, name_or_path)
    path = os.path.join(TEMPLATE_DIR, f"{name}.txt")
    if not os.path.isfile(path):
        path = name_or_path
    if not os.path.isfile(path):
        shipped = sorted(f[:-4] for f in os.listdir(TEMPLATE_DIR) if f.endswith(".txt"))
        raise FileNotFoundError(
            f"No template set or file {name_or_path!r}; shipped sets: {shipped + sorted(TEMPLATE_ALIASES)}."
        )
    return read_lines(path)


def zero_shot_classifier(model, class_names, templates, tokenizer=None, batch_size=256):
    """Class embeddings `(C, D)`: for each class, the mean of its normalised
    prompt embeddings (`template.format(name)` for every template),
    re-normalised (as CLIP and open_clip build their zero-shot heads).

    Example:
    ```python
    weights = zero_shot_classifier(model, ["red circle", "blue square"], ["a {}."])
    ```
    """
    if not class_names:
        raise ValueError("zero_shot_classifier needs at least one class name; received none.")
    if not templates:
        raise ValueError("zero_shot_classifier needs at least one prompt template, e.g. ['a photo of a {}.'].")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"Each prompt template needs a '{{}}' for the class name; received {bad}.")
    prompts = [t.format(name) for name in class_names for t in templates]
    emb = embed_texts(model, prompts, batch_size=batch_size, tokenizer=tokenizer)  # (C*K, D)
    emb = emb.reshape(len(class_names), len(templates), -1).mean(axis=1)  # (C, D)
    return _normalize(emb)


def topk_accuracy(scores, labels, ks=(1, 5)):
    """Fraction of rows whose true label is among the k highest scores."""
    scores = check_finite(np.asarray(scores), "zero-shot scores")
    labels = np.asarray(labels)
    rank = ranks_from_scores(scores, labels)
    return {k: float(np.mean(rank < k)) for k in ks}


def zero_shot_evaluate(model, images, labels, class_names, templates, tokenizer=None, batch_size=256, ks=(1, 5)):
    """Zero-shot top-k accuracy of `model` on labelled images.

    Returns a dict with `top1`, `top5` (for the requested `ks`),
    `chance_top1` (1 / number of classes), `per_class` accuracy and the
    `confusion` matrix (rows: true class, columns: predicted).
    """
    labels = np.asarray(labels, dtype="int64")
    if len(images) != len(labels):
        raise ValueError(f"images has {len(images)} examples but labels has {len(labels)}.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"labels must index class_names (0..{len(class_names) - 1}); received values "
            f"in [{labels.min()}, {labels.max()}]."
        )
    classifier = zero_shot_classifier(model, class_names, templates, tokenizer, batch_size)
    image_emb = embed_images(model, images, batch_size)
    scores = image_emb @ classifier.T  # (N, C)
    result = {f"top{k}": v for k, v in topk_accuracy(scores, labels, ks).items()}
    predicted = scores.argmax(1)
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), "int64")
    np.add.at(confusion, (labels, predicted), 1)
    counts = confusion.sum(1)
    result["per_class"] = {
        name: (float(confusion[i, i] / counts[i]) if counts[i] else None) for i, name in enumerate(class_names)
    }
    result["confusion"] = confusion
    result["chance_top1"] = 1.0 / num_classes
    return result
