"""Pictures of a run: training curves, a similarity heatmap, the zero-shot
confusion matrix and a retrieval grid (`keras-clip report RUN_DIR`).

Needs matplotlib (`pip install "keras-clip[plots]"`).
"""

import json
import os

import keras
import numpy as np

from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.zero_shot import zero_shot_evaluate


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError('keras-clip report needs matplotlib: pip install "keras-clip[plots]"') from error
    return plt


def plot_history(history, path):
    """Loss, logit scale and in-batch accuracy per epoch."""
    plt = _pyplot()
    panels = [("loss", ["loss"]), ("logit scale exp(t)", ["logit_scale"]), ("in-batch top-1", ["i2t_acc", "t2i_acc"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in history:
                ax.plot(np.arange(1, len(history[key]) + 1), history[key], marker="o", ms=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_similarity(model, images, captions, path):
    """Cosine-similarity heatmap of a batch, images and captions on the axes."""
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


def plot_retrieval(model, images, captions, queries, path, k=5):
    """For each query caption, its top-k images with their captions."""
    plt = _pyplot()
    image_emb = embed_images(model, images)
    query_emb = embed_texts(model, queries)
    top = np.argsort(-(query_emb @ image_emb.T), axis=1, kind="stable")[:, :k]  # (Q, k)
    fig, axes = plt.subplots(len(queries), k, figsize=(2 * k, 2.3 * len(queries)), squeeze=False)
    for q, query in enumerate(queries):
        for r in range(k):
            ax = axes[q, r]
            ax.imshow(np.asarray(images[top[q, r]], "uint8"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(captions[top[q, r]][:30], fontsize=6)
        axes[q, 0].set_ylabel(query, fontsize=8)
    fig.suptitle("text -> image retrieval: top-5 images per query caption")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir, output_dir=None):
    """Writes the four PNGs of a shapes run into `output_dir` (default `RUN_DIR/report`)."""
    from keras_clip.config import load_config
    from keras_clip.models.builder import load_run_model
    from keras_clip.training import load_data

    output_dir = output_dir or os.path.join(run_dir, "report")
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    model = load_run_model(run_dir)
    shapes, splits = load_data(config)
    test = splits["test"]
    paths = {}
    paths["curves"] = os.path.join(output_dir, "training_curves.png")
    plot_history(metrics.get("history", {}), paths["curves"])
    paths["similarity"] = os.path.join(output_dir, "similarity.png")
    plot_similarity(model, test["images"][:8], test["captions"][:8], paths["similarity"])
    result = zero_shot_evaluate(model, test["images"], test["labels"], shapes.class_names, shapes.prompt_templates)
    paths["confusion"] = os.path.join(output_dir, "confusion.png")
    plot_confusion(result["confusion"], shapes.class_names, paths["confusion"])
    paths["retrieval"] = os.path.join(output_dir, "retrieval.png")
    queries = ["a red circle", "a blue square", "a large green triangle", "a yellow cross"]
    plot_retrieval(model, test["images"][:300], test["captions"][:300], queries, paths["retrieval"])
    return paths
