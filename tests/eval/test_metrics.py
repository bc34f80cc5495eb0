"""Evaluation numbers on hand-made scores whose right answers are known in advance
(the zero-shot stub encoder with known answers is in test_zero_shot.py)."""

import keras
import numpy as np
import pytest

from keras_clip.eval import ZeroShotRetrievalCallback, retrieval_metrics, topk_accuracy
from keras_clip.eval.retrieval import ranks_from_scores


def test_topk_accuracy_hand_example():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    # row 0: true 0 ranked 1st; row 1: true 0 ranked 3rd; row 2: tie, true 1 after index 0 -> 2nd.
    result = topk_accuracy(scores, [0, 0, 1], ks=(1, 2, 3))
    assert result == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}


def test_perfect_and_reversed_retrieval():
    e = np.eye(6, dtype="float32")
    perfect = retrieval_metrics(e, e)
    assert perfect["image_to_text_R@1"] == 1.0 and perfect["text_to_image_median_rank"] == 1.0
    # Texts are shifted by one: text i matches image i+1 best, image i at rank 2.
    shifted = np.roll(e, 1, axis=0) * 1.0 + e * 0.5
    m = retrieval_metrics(e, shifted)
    assert m["image_to_text_R@1"] == 0.0 and m["image_to_text_R@5"] == 1.0
    assert m["text_to_image_mean_rank"] == 2.0


def test_several_captions_per_image_counts_the_best_one():
    images = np.eye(3, dtype="float32")
    texts = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], "float32")
    text_to_image = np.array([0, 0, 2, 1])
    m = retrieval_metrics(images, texts, text_to_image)
    # Image 0 owns texts 0 (wrong direction) and 1 (exact): its best caption ranks 1st.
    # Image 1 owns text 3, tied with text 0, which comes first: rank 2. Image 2: rank 1.
    assert m["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert m["image_to_text_R@5"] == 1.0
    assert m["text_to_image_R@1"] == pytest.approx(3 / 4)


def test_blocked_equals_full_matrix_with_ties():
    rng = np.random.default_rng(0)
    img = rng.integers(-2, 3, (300, 4)).astype("float32")  # small integers: many exact ties
    txt = rng.integers(-2, 3, (300, 4)).astype("float32")
    full = retrieval_metrics(img, txt, block_size=10_000)
    blocked = retrieval_metrics(img, txt, block_size=7)
    assert full == blocked
    scores = txt @ img.T
    order = np.argsort(-scores, axis=1, kind="stable")
    stable_rank = np.argmax(order == np.arange(300)[:, None], axis=1)
    np.testing.assert_array_equal(ranks_from_scores(scores, np.arange(300)), stable_rank)


def test_callback_puts_metrics_in_history(tmp_path):
    import keras_clip
    from keras_clip.data import CaptionTokenizer, ShapesDataset, make_dataset
    from keras_clip.models.builder import build_clip

    shapes = ShapesDataset(image_size=16)
    train = shapes.generate("train", 32)
    test = shapes.generate("test", 16)
    tokenizer = CaptionTokenizer.from_corpus(train["captions"] + [t.format(c) for c in shapes.class_names for t in shapes.prompt_templates], context_length=12)
    model = build_clip({"embed_dim": 8, "image_encoder": {"image_size": 16, "patch_size": 8, "width": 8, "layers": 1, "heads": 1, "mlp_dim": 8},
                        "text_encoder": {"width": 8, "layers": 1, "heads": 1, "mlp_dim": 8}}, tokenizer=tokenizer)
    model.compile(optimizer="adam")
    callback = ZeroShotRetrievalCallback(test["images"], test["labels"], shapes.class_names, shapes.prompt_templates,
                                         captions=test["captions"], every=2)
    history = model.fit(make_dataset(train["images"], train["captions"], tokenizer, 16), epochs=3, verbose=0,
                        shuffle=False, callbacks=[callback])
    assert "val_zero_shot_top1" in history.history
    # Evaluated at epochs 2 and 3 (the last): two values logged.
    assert len(history.history["val_zero_shot_top1"]) == 2
    assert all(0.0 <= v <= 1.0 for v in history.history["val_image_to_text_R@10"])


def test_shipped_template_sets():
    from keras_clip.eval import load_templates

    openai = load_templates("openai_imagenet")
    assert len(openai) == 80 and len(set(openai)) == 80
    assert all(t.count("{}") == 1 for t in openai)
    assert "a photo of a {}." in load_templates("default")
    with pytest.raises(FileNotFoundError, match="openai_imagenet"):
        load_templates("nope")
