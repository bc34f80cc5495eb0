"""Zero-shot classification checked against answers computed without it.

`zero_shot_classifier` must give, for class c, the re-normalised mean of the
normalised embeddings of `template.format(class_c)` over the templates. Two
checks that do not reuse the function under test for their reference:
- a stub model whose prompt and image embeddings are chosen by hand, so the
  classifier rows, the predictions and the confusion matrix are known;
- a real tiny CLIP, against a NumPy computation that embeds each prompt on
  its own with `model.encode_text`.
Both use 3 classes x 2 templates, so mixing up the class and template axes
(prompts are ordered class-major) changes the answer.
"""

import keras
import numpy as np
from keras import ops

from keras_clip.eval import zero_shot_classifier, zero_shot_evaluate

CLASSES = ["red circle", "green square", "blue triangle"]
TEMPLATES = ["a {}.", "a drawing of a {}."]


def _unit(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class StubCLIP:
    """Just what `embed_texts` / `embed_images` use: `tokenizer`, `embed_dim`,
    the input checks and `encode_text` / `encode_image`.

    Each prompt tokenizes to one id: its index in `prompts`; token id i
    embeds to `text_table[i]`. Image i (pixel [0, 0, 0] holds i) embeds to
    `image_table[i]`.
    """

    def __init__(self, prompts, text_table, image_table):
        self.prompts = list(prompts)
        self.text_table = np.asarray(text_table, "float32")
        self.image_table = np.asarray(image_table, "float32")
        self.embed_dim = self.text_table.shape[1]
        self.tokenizer = self._tokenize

    def _tokenize(self, texts):
        return np.array([[self.prompts.index(t)] for t in texts], "int32")

    def _check_images(self, images):
        pass

    def _check_token_ids(self, token_ids):
        pass

    def encode_text(self, token_ids):
        return ops.take(ops.convert_to_tensor(self.text_table), ops.cast(token_ids[:, 0], "int32"), axis=0)

    def encode_image(self, images):
        index = ops.cast(images[:, 0, 0, 0], "int32")
        return ops.take(ops.convert_to_tensor(self.image_table), index, axis=0)


def _stub():
    """Prompt (class c, template t) embeds to unit(e_c + e_3) for t = 0 and
    unit(e_c - e_3) for t = 1: the mean over templates points along e_c, so
    the right classifier is exactly the 3x3 identity (in 4 dimensions)."""
    prompts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    e = np.eye(4)
    text_table = [_unit(e[c] + (1 if t == 0 else -1) * e[3]) for c in range(3) for t in range(2)]
    # Images 0-2 are e_0, e_1, e_2 (labels 0, 1, 2). Image 3, labelled 1, lies
    # nearer class 0 (wrong at top-1, right at top-2); image 4, labelled 2,
    # lies nearer class 1.
    image_table = [e[0], e[1], e[2], _unit(e[0] + 0.5 * e[1]), _unit(e[1] + 0.5 * e[2])]
    labels = np.array([0, 1, 2, 1, 2])
    images = np.zeros((5, 2, 2, 3), "uint8")
    images[:, 0, 0, 0] = np.arange(5)
    return StubCLIP(prompts, text_table, image_table), images, labels


def test_stub_classifier_is_the_known_one():
    model, _, _ = _stub()
    weights = zero_shot_classifier(model, CLASSES, TEMPLATES)
    np.testing.assert_allclose(weights, np.eye(3, 4), atol=1e-6)


def test_stub_evaluation_gives_the_known_accuracies_and_confusion():
    model, images, labels = _stub()
    result = zero_shot_evaluate(model, images, labels, CLASSES, TEMPLATES, ks=(1, 2))
    assert result["top1"] == 3 / 5 and result["top2"] == 1.0
    np.testing.assert_array_equal(result["confusion"], [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    assert result["per_class"] == {"red circle": 1.0, "green square": 0.5, "blue triangle": 0.5}
    assert result["chance_top1"] == 1 / 3


def _tiny_clip_and_tokenizer():
    from keras_clip.data import CaptionTokenizer
    from keras_clip.models.builder import build_clip

    corpus = [t.format(c) for c in CLASSES for t in TEMPLATES]
    tokenizer = CaptionTokenizer.from_corpus(corpus, context_length=10)
    config = {
        "embed_dim": 8,
        "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "text_encoder": {"width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    }
    return build_clip(config, tokenizer=tokenizer), tokenizer


def _reference_classifier(model, tokenizer):
    """NumPy: each prompt embedded alone, normalised, averaged per class, re-normalised."""
    rows = []
    for name in CLASSES:
        prompt_embeddings = []
        for template in TEMPLATES:
            ids = np.asarray(tokenizer([template.format(name)]), "int32")
            raw = keras.ops.convert_to_numpy(model.encode_text(ids, normalize=False))[0]
            prompt_embeddings.append(_unit(raw))
        rows.append(_unit(np.mean(prompt_embeddings, axis=0)))
    return np.stack(rows)  # (C, D)


def test_classifier_and_evaluation_match_an_independent_numpy_computation():
    model, tokenizer = _tiny_clip_and_tokenizer()
    want = _reference_classifier(model, tokenizer)
    # The six prompts embed differently enough that averaging the wrong ones shows.
    prompts = np.stack([_unit(keras.ops.convert_to_numpy(model.encode_text(
        np.asarray(tokenizer([t.format(c)]), "int32")))[0]) for c in CLASSES for t in TEMPLATES])
    assert np.abs(prompts @ prompts.T - 1).max() > 1e-3
    got = zero_shot_classifier(model, CLASSES, TEMPLATES, batch_size=4)  # two batches
    np.testing.assert_allclose(got, want, atol=1e-5)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 16, 16, 3)).astype("uint8")
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    image_emb = np.stack([_unit(keras.ops.convert_to_numpy(model.encode_image(images[i : i + 1]))[0]) for i in range(7)])
    predicted = np.argmax(image_emb @ want.T, axis=1)
    confusion = np.zeros((3, 3), "int64")
    for true, pred in zip(labels, predicted):
        confusion[true, pred] += 1
    result = zero_shot_evaluate(model, images, labels, CLASSES, TEMPLATES, ks=(1,))
    np.testing.assert_array_equal(result["confusion"], confusion)
    assert result["top1"] == np.mean(predicted == labels)
