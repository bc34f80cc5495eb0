"""Image <-> text retrieval metrics, computed in blocks (bounded memory)."""

import numpy as np


class NonFiniteEmbeddingsError(ValueError):
    """Embeddings or scores hold NaN or inf: the model is broken, and no
    metric computed from them means anything."""


def check_finite(values, what):
    """Raises `NonFiniteEmbeddingsError` when `values` holds NaN or inf.

    Ranking with `scores > true` is False for NaN everywhere, so a NaN model
    would otherwise rank every target first and score a perfect 1.0.
    """
    values = np.asarray(values)
    finite = np.isfinite(values)
    if not finite.all():
        rows = int((~finite.reshape(len(values), -1).all(1)).sum()) if values.ndim else 1
        raise NonFiniteEmbeddingsError(
            f"{what} contain NaN or inf ({rows} of {len(values) if values.ndim else 1} rows); the model is "
            "broken (did training diverge? lower the learning rate) and cannot be evaluated."
        )
    return values


def ranks_from_scores(scores, targets):
    """Rank (0 = best) of `targets[i]` in row i of `scores`, as a stable sort by
    descending score would place it: candidates with a strictly higher score,
    plus tied candidates with a smaller index."""
    true = scores[np.arange(len(scores)), targets][:, None]
    index = np.arange(scores.shape[1])[None, :]
    return (scores > true).sum(1) + ((scores == true) & (index < targets[:, None])).sum(1)


def _ranks(queries, candidates, targets, block_size):
    """Rank of each query's target among all candidates, `block_size` queries at
    a time: memory is `block_size x len(candidates)` whatever the collection size."""
    ranks = np.empty(len(queries), "int64")
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        scores = queries[start:stop] @ candidates.T  # (b, N)
        ranks[start:stop] = ranks_from_scores(scores, targets[start:stop])
    return ranks


def _summary(ranks, ks, prefix):
    out = {f"{prefix}_R@{k}": float(np.mean(ranks < k)) for k in ks}
    out[f"{prefix}_mean_rank"] = float(np.mean(ranks) + 1)
    out[f"{prefix}_median_rank"] = float(np.median(ranks) + 1)
    return out


def retrieval_metrics(image_embeddings, text_embeddings, text_to_image=None, ks=(1, 5, 10), block_size=1024):
    """Recall@k, mean and median rank (1 = best) in both directions.

    Args:
        image_embeddings: `(N, D)` normalised.
        text_embeddings: `(M, D)` normalised.
        text_to_image: optional `(M,)` int: the image each caption belongs to
            (several captions may share an image). Default: caption i <-> image i.
        ks: the k of Recall@k.
        block_size: queries scored at once.

    Image-to-text counts a hit at k when ANY of the image's captions is in the
    top k (the rank of its best-ranked caption), as in CLIP's evaluation.
    """
    img = check_finite(np.asarray(image_embeddings, "float32"), "image embeddings")
    txt = check_finite(np.asarray(text_embeddings, "float32"), "text embeddings")
    if text_to_image is None:
        if len(img) != len(txt):
            raise ValueError(
                f"{len(img)} images but {len(txt)} captions; pass text_to_image to say "
                "which image each caption belongs to."
            )
        text_to_image = np.arange(len(txt))
    text_to_image = np.asarray(text_to_image, "int64")
    t2i = _ranks(txt, img, text_to_image, block_size)
    # Image -> text: the rank of the image's best-placed caption (highest score,
    # then smallest index: the first of its captions in a stable sort).
    i2t = np.full(len(img), -1, "int64")
    for start in range(0, len(img), block_size):
        stop = min(start + block_size, len(img))
        scores = img[start:stop] @ txt.T  # (b, M)
        own = text_to_image[None, :] == np.arange(start, stop)[:, None]  # (b, M)
        best = np.where(own, scores, -np.inf).argmax(1)  # (b,)
        block_ranks = ranks_from_scores(scores, best)
        i2t[start:stop] = np.where(own.any(1), block_ranks, -1)
    has_caption = i2t >= 0
    result = _summary(i2t[has_caption], ks, "image_to_text")
    result.update(_summary(t2i, ks, "text_to_image"))
    return result
