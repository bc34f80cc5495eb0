"""The momentum (EMA) key towers of MoCo: k <- m k + (1 - m) q, keys as constants."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_clip
from keras_clip.models.feature_queue import FeatureQueue  # noqa: F401  (registers the layer)
from keras_clip.models.momentum import momentum_pairs


def _np(x):
    return ops.convert_to_numpy(x)


def _pairs(model):
    return [(_np(q), _np(k)) for q, k in momentum_pairs(model)]


def _queue_loss(key_suffix):
    """The symmetric queue loss; keys from the momentum towers or the trained ones."""
    return [
        {"name": "queue_infonce", "include_batch_negatives": True, "query_key": "image_embeddings",
         "key_key": f"text_{key_suffix}", "queue_key": "text_queue", "weight": 0.5},
        {"name": "queue_infonce", "include_batch_negatives": True, "query_key": "text_embeddings",
         "key_key": f"image_{key_suffix}", "queue_key": "image_queue", "weight": 0.5},
    ]


def test_copies_start_equal_and_are_not_trained(tiny_clip):
    plain = tiny_clip()
    model = tiny_clip(momentum=0.99)
    assert len(model.trainable_weights) == len(plain.trainable_weights)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == sum(
        int(np.prod(w.shape)) for w in plain.trainable_weights
    )
    pairs = _pairs(model)
    # Every float weight of both towers and both heads has a twin.
    assert len(pairs) > 10
    for q, k in pairs:
        np.testing.assert_array_equal(q, k)
    twins = {id(t) for _, t in momentum_pairs(model)}
    assert not twins & {id(w) for w in model.trainable_weights}


def test_ema_follows_the_trained_weights(tiny_clip, tiny_batch):
    """Two SGD steps: the twins are the EMA of the weights each step started from."""
    m = 0.75
    model = tiny_clip(momentum=m, queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=_queue_loss("keys"))
    batches = [tiny_batch(batch=4, seed=s) for s in (0, 1)]
    expected = [k for _, k in _pairs(model)]
    for batch in batches:
        before = [q for q, _ in _pairs(model)]
        expected = [m * k + (1 - m) * q for k, q in zip(expected, before)]
        model.fit(batch, batch_size=4, epochs=1, verbose=0, shuffle=False)
    after = _pairs(model)
    moved = [not np.allclose(q, k0) for (q, _), k0 in zip(after, expected)]
    assert sum(moved) > len(after) // 2, "SGD should move most weights away from the twins"
    for (_, k), e in zip(after, expected):
        np.testing.assert_allclose(k, e, rtol=1e-5, atol=1e-6)
    # Evaluation computes keys but takes no EMA step.
    model.evaluate(batches[0], batch_size=4, verbose=0)
    for (_, k), (_, k_before) in zip(_pairs(model), after):
        np.testing.assert_array_equal(k, k_before)



@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph ordering")
def test_tensorflow_step_reads_and_writes_the_weights_after_the_ema(tiny_clip, tiny_batch):
    """In TensorFlow's traced step every read and write of a trained weight,
    other than the EMA's own read, depends on the EMA's new values: the
    optimizer cannot change a weight before the EMA has used its old value
    (a read that has started is not enough: its consumers may run later)."""
    import tensorflow as tf

    model = tiny_clip(momentum=0.75, queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=_queue_loss("keys"))
    batch = tiny_batch(batch=4)
    model.fit(batch, batch_size=4, epochs=1, verbose=0, shuffle=False)
    graph = tf.function(model.train_step).get_concrete_function({k: tf.constant(v) for k, v in batch.items()}).graph
    placeholders = {id(external): internal for external, internal in graph.captures}
    online = {id(placeholders[id(source.value.handle)]) for source, _ in momentum_pairs(model)}
    twins = {id(placeholders[id(target.value.handle)]) for _, target in momentum_pairs(model)}
    ema_assigns = [op for op in graph.get_operations()
                   if op.type == "AssignVariableOp" and id(op.inputs[0]) in twins]
    assert len(ema_assigns) == len(twins)
    ema_values = {assign.inputs[1].op for assign in ema_assigns}

    def ancestors(op):
        seen, stack = set(), [op]
        while stack:
            current = stack.pop()
            for parent in [t.op for t in current.inputs] + list(current.control_inputs):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    ema_reads = {op for value in ema_values for op in ancestors(value) if op.type == "ReadVariableOp"}
    uses = [op for op in graph.get_operations()
            if op.inputs and id(op.inputs[0]) in online and op not in ema_reads]
    writes = [op for op in uses if op.type != "ReadVariableOp"]
    assert writes, "the optimizer should write the trained weights"
    late = [op.name for op in uses if not ema_values <= ancestors(op)]
    assert not late, f"{len(late)} reads/writes of trained weights do not wait for the EMA, e.g. {late[:3]}"

def test_momentum_zero_equals_keys_from_the_trained_towers(tiny_clip, tiny_batch):
    """With m = 0 the twins copy the weights at the start of the step, so the
    keys are exactly the trained towers' embeddings and training matches a
    model without momentum step for step (losses and weights)."""
    data = {k: np.concatenate([tiny_batch(batch=4, seed=s)[k] for s in range(3)]) for k in ("images", "token_ids")}
    keras.utils.set_random_seed(3)
    with_twins = tiny_clip(momentum=0.0, queue_size=8)
    keras.utils.set_random_seed(3)
    without = tiny_clip(queue_size=8)
    with_twins.compile(optimizer=keras.optimizers.SGD(0.5), loss=_queue_loss("keys"))
    without.compile(optimizer=keras.optimizers.SGD(0.5), loss=_queue_loss("embeddings"))
    a = with_twins.fit(data, batch_size=4, epochs=2, verbose=0, shuffle=False).history["loss"]
    b = without.fit(data, batch_size=4, epochs=2, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-4)
    for wa, wb in zip(with_twins.trainable_weights, without.trainable_weights):
        np.testing.assert_allclose(_np(wa), _np(wb), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(with_twins.queue.text_queue), _np(without.queue.text_queue), atol=1e-4)


class AlignWithTextKeys(keras_clip.losses.ContrastiveLoss):
    """-<image_i, key_i>: its only path to the text tower is through the keys."""

    def call(self, y_true, y_pred):
        return -ops.mean(ops.sum(y_pred["image_embeddings"] * y_pred["text_keys"], axis=1))


def test_keys_carry_no_gradient(tiny_clip, tiny_batch):
    """A loss that reads text keys must not train the text tower (the keys and
    the EMA are stop-gradient), while the image tower does move."""
    model = tiny_clip(momentum=0.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=AlignWithTextKeys())
    text_before = [_np(w) for w in model.text_encoder.trainable_weights + model.text_head.trainable_weights]
    image_before = [_np(w) for w in model.image_head.trainable_weights]
    model.fit(tiny_batch(batch=4), batch_size=4, epochs=1, verbose=0)
    text_after = [_np(w) for w in model.text_encoder.trainable_weights + model.text_head.trainable_weights]
    for b, a in zip(text_before, text_after):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(b, _np(w)) for b, w in zip(image_before, model.image_head.trainable_weights))


def test_queue_stores_the_keys_and_save_load_keeps_the_twins(tiny_clip, tiny_batch, tmp_path):
    model = tiny_clip(momentum=0.5, queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=_queue_loss("keys"))
    batch = tiny_batch(batch=4)
    model.fit(batch, batch_size=4, epochs=1, verbose=0, shuffle=False)
    image_keys, text_keys = model.encode_keys(batch["images"], batch["token_ids"])
    np.testing.assert_allclose(_np(model.queue.image_queue)[:4], _np(image_keys), atol=1e-5)
    np.testing.assert_allclose(_np(model.queue.text_queue)[:4], _np(text_keys), atol=1e-5)
    # The trained towers have moved on (lr 0.5): their embeddings differ from the stored keys.
    assert not np.allclose(_np(model.encode_text(batch["token_ids"])), _np(text_keys), atol=1e-4)

    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.momentum == pytest.approx(0.5)
    for (q0, k0), (q1, k1) in zip(_pairs(model), _pairs(loaded)):
        np.testing.assert_array_equal(k0, k1)
        np.testing.assert_array_equal(q0, q1)
    np.testing.assert_array_equal(_np(loaded.queue.text_queue), _np(model.queue.text_queue))


def test_momentum_true_means_moco_default(tiny_clip):
    assert tiny_clip(momentum=True).momentum == pytest.approx(0.999)
    assert tiny_clip(momentum=False).momentum is None


@pytest.mark.parametrize("bad", [1.0, -0.1, 2])
def test_bad_momentum_is_a_clear_error(tiny_clip, bad):
    with pytest.raises(ValueError, match=rf"momentum must be in \[0, 1\).*received momentum={float(bad)}"):
        tiny_clip(momentum=bad)


def test_without_momentum_keys_are_an_error(tiny_clip, tiny_batch):
    model = tiny_clip()
    with pytest.raises(ValueError, match="no momentum copy"):
        model.encode_keys(tiny_batch()["images"], tiny_batch()["token_ids"])


def test_momentum_queue_config_trains(tiny_clip, tiny_batch):
    config = keras_clip.load_config("shapes-queue")
    assert config["model"]["momentum"] is not None and config["model"]["queue_size"] > 0
    model = tiny_clip(momentum=config["model"]["momentum"], queue_size=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=config["loss"])
    data = {k: np.concatenate([tiny_batch(batch=4, seed=s)[k] for s in range(3)]) for k in ("images", "token_ids")}
    history = model.fit(data, batch_size=4, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert int(_np(model.queue.valid).sum()) == 8
