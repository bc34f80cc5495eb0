import keras
import numpy as np
from keras import ops

import keras_clip
from keras_clip.models.feature_queue import FeatureQueue

QUEUE_LOSS = [
    {"name": "queue_infonce", "include_batch_negatives": True, "query_key": "image_embeddings",
     "key_key": "text_embeddings", "queue_key": "text_queue", "weight": 0.5},
    {"name": "queue_infonce", "include_batch_negatives": True, "query_key": "text_embeddings",
     "key_key": "image_embeddings", "queue_key": "image_queue", "weight": 0.5},
]


def _np(x):
    return ops.convert_to_numpy(x)


def test_ring_buffer_order_and_valid_slots():
    queue = FeatureQueue(size=4, dim=2)
    queue.build()
    assert not _np(queue.contents()["queue_valid"]).any()
    batches = [np.full((2, 2), v, "float32") for v in (1.0, 2.0, 3.0)]
    for b in batches:
        queue.enqueue(b, -b)
    # 3 batches of 2 into 4 slots: batch 3 overwrote batch 1's slots.
    np.testing.assert_array_equal(_np(queue.image_queue)[:, 0], [3, 3, 2, 2])
    np.testing.assert_array_equal(_np(queue.text_queue)[:, 0], [-3, -3, -2, -2])
    assert _np(queue.contents()["queue_valid"]).all()
    assert int(_np(queue.pointer)) == 2


def test_queue_fills_during_fit_and_empty_queue_changes_nothing(tiny_clip, tiny_batch):
    model = tiny_clip(queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=QUEUE_LOSS)
    batch = tiny_batch(batch=4)
    # Empty queue (all slots unfilled, values zero): the loss is plain InfoNCE,
    # and evaluation (training=False) does not enqueue.
    evaluated = model.evaluate(batch, batch_size=4, verbose=0, return_dict=True)["loss"]
    out = model(batch)
    expected = keras_clip.losses.infonce(out["image_embeddings"], out["text_embeddings"], out["logit_scale"])
    np.testing.assert_allclose(evaluated, _np(expected), rtol=1e-5)
    assert not _np(model.queue.valid).any()
    # Three training steps of 4 pairs into 8 slots.
    data = {k: np.concatenate([tiny_batch(batch=4, seed=s)[k] for s in range(3)]) for k in batch}
    model.fit(data, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert int(_np(model.queue.valid).sum()) == 8
    assert int(_np(model.queue.pointer)) == 12 % 8
    stored = _np(model.queue.image_queue)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-5)


def test_filled_queue_adds_negatives(tiny_clip, tiny_batch):
    """Once filled, the queue's entries enter the denominator: the loss grows."""
    model = tiny_clip(queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=QUEUE_LOSS)
    batch = tiny_batch(batch=4)
    before = model.evaluate(batch, batch_size=4, verbose=0, return_dict=True)["loss"]
    model.fit({k: np.concatenate([batch[k], tiny_batch(batch=4, seed=3)[k]]) for k in batch},
              batch_size=4, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate(batch, batch_size=4, verbose=0, return_dict=True)["loss"]
    assert after > before + 1e-4
