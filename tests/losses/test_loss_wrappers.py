"""The keras.losses.Loss wrappers: dict inputs, config, errors, WeightedSum."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_clip.losses import FILIP
from keras_clip.losses import ContrastiveLoss
from keras_clip.losses import InfoNCE
from keras_clip.losses import NTXent
from keras_clip.losses import QueueInfoNCE
from keras_clip.losses import SigLIP
from keras_clip.losses import SupervisedContrastive
from keras_clip.losses import WeightedSum
from keras_clip.losses import filip
from keras_clip.losses import infonce
from keras_clip.losses import nt_xent
from keras_clip.losses import queue_infonce
from keras_clip.losses import siglip
from keras_clip.losses import supervised_contrastive

LABELS = np.array([0, 1, 0, -1, 1, 0])


def _y_pred(unit_rows, rng, dtype="float32"):
    """A CLIP output dict, floats in `dtype` (the wrappers cast to float32)."""
    mask = rng.random((6, 4)) < 0.7
    mask[:, 0] = True
    out = {
        "image_embeddings": unit_rows(rng, 6, 6),
        "text_embeddings": unit_rows(rng, 6, 6),
        "image_views": unit_rows(rng, 6, 6),
        "image_tokens": unit_rows(rng, 6, 3, 6),
        "text_tokens": unit_rows(rng, 6, 4, 6),
        "logit_scale": np.float32(8.0),
        "logit_bias": np.float32(-3.0),
        "queue": unit_rows(rng, 8, 6),
    }
    out = {k: ops.cast(v, dtype) for k, v in out.items()}
    out["text_token_mask"] = mask
    out["queue_valid"] = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
    return out


def _f32(y_pred, *keys):
    return [ops.cast(y_pred[key], "float32") for key in keys]


def _pure_infonce(p, _, decoupled=False):
    x, y, s = _f32(p, "image_embeddings", "text_embeddings", "logit_scale")
    return infonce(x, y, s, decoupled=decoupled)


def _pure_supcon(p, labels):
    x, y, s = _f32(p, "image_embeddings", "text_embeddings", "logit_scale")
    return supervised_contrastive(x, y, s, labels)


def _pure_filip(p, _):
    x, y, s = _f32(p, "image_tokens", "text_tokens", "logit_scale")
    return filip(x, y, s, text_mask=p["text_token_mask"], chunk_size=4)


def _pure_nt_xent(p, _):
    return nt_xent(*_f32(p, "image_embeddings", "image_views"), 0.2)


def _pure_siglip(p, _):
    return siglip(
        *_f32(p, "image_embeddings", "text_embeddings", "logit_scale", "logit_bias")
    )


def _pure_queue(p, _):
    q, k, queue, s = _f32(
        p, "image_embeddings", "text_embeddings", "queue", "logit_scale"
    )
    return queue_infonce(q, k, queue, p["queue_valid"], s, True)


CASES = {
    "infonce": (InfoNCE(), _pure_infonce),
    "dcl": (
        InfoNCE(decoupled=True),
        lambda p, y: _pure_infonce(p, y, decoupled=True),
    ),
    "supcon": (SupervisedContrastive(), _pure_supcon),
    "filip": (FILIP(chunk_size=4), _pure_filip),
    "nt_xent": (NTXent(temperature=0.2), _pure_nt_xent),
    "siglip": (SigLIP(), _pure_siglip),
    "queue": (QueueInfoNCE(include_batch_negatives=True), _pure_queue),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrapper_equals_pure_function(unit_rows, rng, compute, name):
    loss, pure = CASES[name]
    y_pred = _y_pred(unit_rows, rng, "float16")  # mixed-precision outputs
    got, want = compute(
        lambda: (loss(LABELS, y_pred), pure(y_pred, LABELS))
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip(name):
    loss, _ = CASES[name]
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(loss)
    )
    assert type(restored) is type(loss)
    assert restored.get_config() == config


def test_constructor_arguments_are_in_the_config():
    assert InfoNCE(decoupled=True).get_config()["decoupled"] is True
    assert FILIP(chunk_size=7).get_config()["chunk_size"] == 7
    assert NTXent(temperature=0.3).get_config()["temperature"] == 0.3
    config = QueueInfoNCE(True, query_key="a", key_key="b").get_config()
    assert config["include_batch_negatives"] is True
    assert (config["query_key"], config["key_key"]) == ("a", "b")


@pytest.mark.parametrize(
    "loss,key,fix",
    [
        (SigLIP(), "logit_bias", "logit_bias_init=-10.0"),
        (NTXent(), "image_views", "second augmented view"),
        (FILIP(), "image_tokens", "token"),
        (InfoNCE(), "logit_scale", "logit_scale"),
        (QueueInfoNCE(), "queue", "queue"),
    ],
)
def test_missing_key_errors_name_the_key_and_the_fix(
    unit_rows, rng, loss, key, fix
):
    y_pred = _y_pred(unit_rows, rng)
    del y_pred[key]
    with pytest.raises(ValueError, match=key) as error:
        loss(LABELS, y_pred)
    assert fix in str(error.value)


def test_supervised_contrastive_without_labels_names_the_fix(unit_rows, rng):
    with pytest.raises(ValueError, match="labels"):
        SupervisedContrastive()(None, _y_pred(unit_rows, rng))


def test_sample_weight_and_non_dict_predictions_are_errors(unit_rows, rng):
    y_pred = _y_pred(unit_rows, rng)
    with pytest.raises(ValueError, match="sample_weight"):
        InfoNCE()(None, y_pred, sample_weight=np.ones(6))
    with pytest.raises(ValueError, match="output dict"):
        InfoNCE()(None, y_pred["image_embeddings"])


def test_weighted_sum(unit_rows, rng, compute):
    y_pred = _y_pred(unit_rows, rng)
    combined = WeightedSum([InfoNCE(), NTXent(temperature=0.2)], [1.0, 0.5])
    got, a, b = compute(
        lambda: (
            combined(None, y_pred),
            InfoNCE()(None, y_pred),
            NTXent(temperature=0.2)(None, y_pred),
        )
    )
    np.testing.assert_allclose(got, a + 0.5 * b, rtol=1e-6)
    assert combined.needs_image_views and not combined.needs_tokens
    assert WeightedSum([FILIP(), "siglip"]).needs_tokens


def test_weighted_sum_config_round_trip():
    combined = WeightedSum(
        [InfoNCE(decoupled=True), FILIP(chunk_size=8), SigLIP()], [1.0, 0.2, 3.0]
    )
    config = combined.get_config()
    clone = WeightedSum.from_config(config)
    assert [type(loss) for loss in clone.losses] == [InfoNCE, FILIP, SigLIP]
    assert clone.losses[0].decoupled and clone.losses[1].chunk_size == 8
    assert clone.weights == [1.0, 0.2, 3.0]
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(combined)
    )
    assert restored.get_config() == config


def test_weighted_sum_argument_errors():
    with pytest.raises(ValueError, match="2 losses but 1 weights"):
        WeightedSum([InfoNCE(), SigLIP()], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])


def test_needs_flags():
    assert FILIP.needs_tokens and not InfoNCE.needs_tokens
    assert SupervisedContrastive.needs_labels and NTXent.needs_image_views
    assert issubclass(SigLIP, ContrastiveLoss)
