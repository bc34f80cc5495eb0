"""Pictures of a run: training curves, a similarity heatmap, the zero-shot
confusion matrix and a retrieval grid (`keras-clip report RUN_DIR`), for
shapes runs and runs trained on files.

Needs matplotlib (`pip install "keras-clip[plots]"`).
"""

import json
import os

import numpy as np

from keras_clip.config import load_config
from keras_clip.data import load_eval_arrays
from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.run import evaluation_sets
from keras_clip.eval.zero_shot import load_templates, zero_shot_evaluate
from keras_clip.models.presets import load_run_model
from keras_clip.utils.text_files import read_lines


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError('keras-clip report needs matplotlib: pip install "keras-clip[plots]"') from error
    return plt


EVAL_KEYS = [
    "val_zero_shot_top1",
    "val_zero_shot_top5",
    "val_image_to_text_R@1",
    "val_image_to_text_R@5",
    "val_text_to_image_R@1",
    "val_text_to_image_R@5",
]


def _series(values):
    """Epoch numbers (from 1) and values, without the epochs a key was not
    logged at (None: an evaluation every N epochs)."""
    points = [(i + 1, v) for i, v in enumerate(values) if v is not None]
    return [e for e, _ in points], [v for _, v in points]


def plot_history(history, path):
    """Loss, logit scale, in-batch accuracy and (when the run evaluated
    during training) the evaluation metrics per epoch.

    Args:
        history: dict key -> list with one value per epoch (None where the
            key was not logged that epoch), as in `metrics.json`.
        path: the PNG to write.

    Returns:
        dict key -> (epochs, values) of the curves drawn.
    """
    plt = _pyplot()
    panels = [("loss", ["loss"]), ("logit scale exp(t)", ["logit_scale"]), ("in-batch top-1", ["i2t_acc", "t2i_acc"])]
    evaluated = [k for k in EVAL_KEYS if any(v is not None for v in history.get(k, []))]
    if evaluated:
        panels.append(("evaluation during training", evaluated))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    drawn = {}
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in history:
                epochs, values = _series(history[key])
                drawn[key] = (epochs, values)
                ax.plot(epochs, values, marker="o", ms=3, label=key[4:] if key.startswith("val_") else key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot_similarity(model, images, captions, path):
    """Cosine-similarity heatmap of a batch, images and captions on the axes;
    returns the `(N, N)` similarities drawn."""
    plt = _pyplot()
    sim = embed_images(model, images) @ embed_texts(model, captions).T  # (N, N)
    n = len(captions)
    fig = plt.figure(figsize=(2 + 0.9 * n, 2.5 + 0.9 * n))
    grid = fig.add_gridspec(2, 2, width_ratios=[1, n], height_ratios=[n, 1], wspace=0.02, hspace=0.02)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(sim, cmap="viridis", vmin=min(0, sim.min()), vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if sim[i, j] < 0.6 else "black")
    ax.set_xticks(range(n), [c[:28] for c in captions], rotation=60, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_title("cosine similarity: image (row) x caption (column)")
    side = fig.add_subplot(grid[0, 0])
    side.imshow(np.concatenate(list(np.asarray(images, "uint8")), axis=0))
    side.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return sim


def plot_confusion(confusion, class_names, path):
    """Zero-shot confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.3 * len(class_names) + 3, 0.3 * len(class_names) + 2.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"zero-shot confusion (top-1 {np.trace(confusion) / max(confusion.sum(), 1):.3f})")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def top_images(model, images, queries, k=5):
    """`(Q, k)` indices of the k images most similar to each query caption,
    best first (ties: the smaller index first, as the retrieval metrics)."""
    k = min(k, len(images))
    image_emb = embed_images(model, images)  # (N, D)
    query_emb = embed_texts(model, queries)  # (Q, D)
    return np.argsort(-(query_emb @ image_emb.T), axis=1, kind="stable")[:, :k]


def plot_retrieval(model, images, captions, queries, path, k=5, targets=None):
    """For each query caption, its top-k images with their captions (the
    query's own image, when `targets` gives its index, framed in green).
    Returns the `(Q, k)` indices of the images shown."""
    plt = _pyplot()
    top = top_images(model, images, queries, k)  # (Q, k)
    k = top.shape[1]
    fig, axes = plt.subplots(len(queries), k, figsize=(2 * k, 2.3 * len(queries)), squeeze=False)
    for q, query in enumerate(queries):
        for r in range(k):
            ax = axes[q, r]
            ax.imshow(np.asarray(images[top[q, r]], "uint8"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(captions[top[q, r]][:30], fontsize=6)
            if targets is not None and top[q, r] == targets[q]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green")
                    spine.set_linewidth(3)
        axes[q, 0].set_ylabel(query, fontsize=8)
    fig.suptitle(f"text -> image retrieval: top-{k} images per query caption")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return top


REPORT_EXAMPLES = 300  # images decoded for the pictures of a file run


def _is_pattern(path):
    return any(c in path for c in "{*?[")


def report_source(config, data=None):
    """The image-caption source the pictures of a file run come from, and
    where it was found: `data` when given, else the run's eval data, else
    its training data (the paths its `config.yaml` records)."""
    data_cfg = config["data"]
    if data:
        source, where = data, "--data"
    elif data_cfg["eval"]:
        source, where = data_cfg["eval"], "the run's eval data"
    else:
        source, where = data_cfg["train"], "the run's training data (it has no eval data)"
    paths = source if isinstance(source, (list, tuple)) else [source]
    for path in paths:
        if not _is_pattern(str(path)) and not os.path.exists(path):
            raise FileNotFoundError(
                f"{where} {str(path)!r} does not exist (moved or deleted?); pass --data SOURCE "
                "(a manifest, an image folder or tar shards) to draw the report's pictures from."
            )
    return source, where


def _confusion_classes(config, class_names):
    """(class names, None) or (None, why the confusion matrix is skipped)."""
    if class_names:
        return list(class_names), None
    classes_file = config["data"]["classes"]
    if not classes_file:
        return None, "the run has no class names (train with --classes FILE, or pass --classes FILE)"
    if not os.path.isfile(classes_file):
        return None, f"the run's classes file {classes_file!r} does not exist (pass --classes FILE)"
    return read_lines(classes_file), None


def _file_report(model, config, history, output_dir, data, class_names, templates):
    """The pictures of a run trained on files (`keras-clip train --data`)."""
    source, where = report_source(config, data)
    arrays = load_eval_arrays(source, model.image_shape, max_examples=REPORT_EXAMPLES)
    count = len(arrays["images"])
    if count == 0:
        raise ValueError(f"No usable image-caption pairs in {where} {source!r}: {arrays['report'].summary()}")
    images = arrays["images"]
    # One caption per image: its first one.
    _, first = np.unique(arrays["text_to_image"], return_index=True)
    captions = [arrays["captions"][j] for j in first]
    notes = [f"pictures drawn from {count} images of {where}: {source}"]
    paths = {"curves": os.path.join(output_dir, "training_curves.png")}
    plot_history(history, paths["curves"])
    paths["similarity"] = os.path.join(output_dir, "similarity.png")
    plot_similarity(model, images[:8], captions[:8], paths["similarity"])
    classes, why = _confusion_classes(config, class_names)
    if classes and arrays["labels"] is None:
        classes, why = None, f"{where} {source!r} has no labels (add a `label` column)"
    if classes:
        if templates is None:
            templates = load_templates(config["data"]["templates"] or "default")
        result = zero_shot_evaluate(model, images, arrays["labels"], classes, list(templates))
        paths["confusion"] = os.path.join(output_dir, "confusion.png")
        plot_confusion(result["confusion"], classes, paths["confusion"])
    else:
        notes.append(f"confusion matrix skipped: {why}")
    paths["retrieval"] = os.path.join(output_dir, "retrieval.png")
    queries = np.unique(np.linspace(0, count - 1, min(4, count)).round().astype(int))
    plot_retrieval(model, images, captions, [captions[i] for i in queries], paths["retrieval"], targets=queries)
    return paths, notes


def write_report(run_dir, output_dir=None, data=None, class_names=None, templates=None):
    """Writes the PNGs of a run into `output_dir` (default `RUN_DIR/report`).

    Training curves come from the run's `metrics.json` history. For a shapes
    run the other pictures use its test split; for a run trained on files,
    up to 300 images of `data` (a manifest, folder or tar shards) when
    given, else of the run's eval data, else of its training data. The
    zero-shot confusion matrix needs class names (`class_names`, else the
    run's `data.classes`) and labelled data; without them it is skipped.

    Returns:
        (paths, notes): dict picture name -> PNG path, and lines saying
        where the pictures come from and what was skipped and why.
    """
    if not os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise FileNotFoundError(
            f"No finished run in {run_dir!r} (no metrics.json); point to a directory written by `keras-clip train`."
        )
    output_dir = output_dir or os.path.join(run_dir, "report")
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    model = load_run_model(run_dir)
    if config["data"]["train"] or data:
        return _file_report(model, config, metrics.get("history", {}), output_dir, data, class_names, templates)
    test = evaluation_sets(config, model.image_shape)[0]  # the shapes test split
    paths = {}
    paths["curves"] = os.path.join(output_dir, "training_curves.png")
    plot_history(metrics.get("history", {}), paths["curves"])
    paths["similarity"] = os.path.join(output_dir, "similarity.png")
    plot_similarity(model, test.images[:8], test.captions[:8], paths["similarity"])
    result = zero_shot_evaluate(model, test.images, test.labels, test.class_names, test.templates)
    paths["confusion"] = os.path.join(output_dir, "confusion.png")
    plot_confusion(result["confusion"], test.class_names, paths["confusion"])
    paths["retrieval"] = os.path.join(output_dir, "retrieval.png")
    queries = ["a red circle", "a blue square", "a large green triangle", "a yellow cross"]
    plot_retrieval(model, test.images[:300], test.captions[:300], queries, paths["retrieval"])
    return paths, []
