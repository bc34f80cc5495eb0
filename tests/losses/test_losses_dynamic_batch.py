"""TensorFlow graphs with an unknown batch size (model.fit on a dataset
without drop_remainder): every objective traces and matches eager mode."""

import keras
import numpy as np
import pytest

from keras_clip.losses import filip
from keras_clip.losses import infonce
from keras_clip.losses import nt_xent
from keras_clip.losses import queue_infonce
from keras_clip.losses import siglip
from keras_clip.losses import supcon
from keras_clip.losses import supervised_contrastive

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow graphs have a batch size unknown when tracing",
)

LABELS = np.array([0, 1, 0, -1, 1], "int32")


def _objectives():
    return {
        "infonce": lambda x, y, xt, yt, m: infonce(x, y, 5.0),
        "dcl": lambda x, y, xt, yt, m: infonce(x, y, 5.0, decoupled=True),
        "supervised": lambda x, y, xt, yt, m: supervised_contrastive(
            x, y, 5.0, _labels(x)
        ),
        "supcon": lambda x, y, xt, yt, m: supcon(
            keras.ops.concatenate([x, y]),
            keras.ops.concatenate([_labels(x), _labels(x)]),
            0.2,
        ),
        "nt_xent": lambda x, y, xt, yt, m: nt_xent(x, y, 0.2),
        "siglip": lambda x, y, xt, yt, m: siglip(x, y, 5.0, -2.0),
        "queue": lambda x, y, xt, yt, m: queue_infonce(
            x, y, y[:3], None, 5.0, include_batch_negatives=True
        ),
        "filip": lambda x, y, xt, yt, m: filip(xt, yt, 5.0, None, m, chunk_size=2),
    }


def _labels(x):
    import tensorflow as tf

    return tf.constant(LABELS)[: tf.shape(x)[0]]


@pytest.mark.parametrize("name", sorted(_objectives()))
def test_unknown_batch_size(unit_rows, rng, name):
    import tensorflow as tf

    fn = _objectives()[name]
    x, y = unit_rows(rng, 5, 6), unit_rows(rng, 5, 6)
    xt, yt = unit_rows(rng, 5, 3, 6), unit_rows(rng, 5, 4, 6)
    mask = rng.random((5, 4)) < 0.7
    mask[:, 0] = True
    spec = [
        tf.TensorSpec([None, 6]),
        tf.TensorSpec([None, 6]),
        tf.TensorSpec([None, 3, 6]),
        tf.TensorSpec([None, 4, 6]),
        tf.TensorSpec([None, 4], tf.bool),
    ]

    @tf.function(input_signature=spec)
    def graph(x, y, xt, yt, m):
        with tf.GradientTape() as tape:
            tape.watch([x, y, xt, yt])
            loss = fn(x, y, xt, yt, m)
        return loss, tape.gradient(loss, [x, y, xt, yt])

    def eager(*args):
        args = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args[:4])
            loss = fn(*args)
        return loss, tape.gradient(loss, args[:4])

    loss, grads = graph(x, y, xt, yt, mask)
    want, want_grads = eager(x, y, xt, yt, mask)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
    for g, w in zip(grads, want_grads):
        if w is None:
            continue
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-7)
