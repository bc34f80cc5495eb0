"""Micro-batched (GradCache) steps equal the unsplit step: loss and weights
after 2 optimizer steps, for InfoNCE, SigLIP and SupCon, with SGD and AdamW;
clear errors for objectives it cannot serve and for B not divisible by K."""

import keras
import numpy as np
import pytest

from tests.models.conftest import tiny_batch
from tests.models.conftest import tiny_clip

B, K = 8, 4


def _batch(labels):
    batch = tiny_batch(batch=B, seed=3)
    if labels:
        batch["labels"] = np.array([0, 1, 0, 2, 1, -1, 3, 0], "int32")
    return batch


def _optimizer(name):
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=0.5)
    # Adam's step is ~lr whatever the gradient, and for a gradient near its
    # epsilon (1e-7) float32 rounding moves the step by up to ~lr/100: at
    # lr=1e-2 a few such elements differ by 8e-5, at 1e-3 below 1e-5.
    return keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.1)


def _train(loss, optimizer, micro_batches, weights, bias, steps=2):
    model = tiny_clip(**({"logit_scale": {"init": 10.0, "bias_init": -10.0}} if bias else {}))
    model.set_weights(weights)
    model.compile(
        optimizer=_optimizer(optimizer),
        loss=loss,
        micro_batches=micro_batches,
        # XLA compiles of TensorFlow steps take ~30 s each on a busy CPU; the
        # micro-batched step also passes under XLA (jit_compile="auto").
        jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
    )
    batch = _batch(labels=loss == "supcon")
    logs = [model.train_on_batch(batch, return_dict=True) for _ in range(steps)]
    return logs, [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights], [
        w.path for w in model.weights
    ]


def _tolerance(path, optimizer):
    # An attention key bias shifts every logit of a query's softmax equally,
    # so its gradient is exactly 0 in real arithmetic and ~1e-9 rounding
    # noise in float32, different noise for different chunkings. Adam
    # divides by sqrt(v) + 1e-7 and turns that noise into ~1e-4 steps (SGD
    # moves it by ~1e-8), so with AdamW these are compared at noise level.
    if optimizer == "adamw" and path.endswith("key/bias"):
        return 1e-3
    return 1e-5


@pytest.mark.parametrize(
    "loss,optimizer",
    [
        ("infonce", "sgd"),
        ("supcon", "adamw"),
        # The rest of the grid: two compiled steps each (JAX ~30 s on a busy
        # CPU); run with -m slow.
        pytest.param("siglip", "adamw", marks=pytest.mark.slow),
        pytest.param("infonce", "adamw", marks=pytest.mark.slow),
        pytest.param("siglip", "sgd", marks=pytest.mark.slow),
        pytest.param("supcon", "sgd", marks=pytest.mark.slow),
    ],
)
def test_k_chunks_equal_the_unsplit_step(loss, optimizer):
    bias = loss == "siglip"
    keras.utils.set_random_seed(0)
    start = tiny_clip(**({"logit_scale": {"init": 10.0, "bias_init": -10.0}} if bias else {})).get_weights()
    logs_1, weights_1, paths = _train(loss, optimizer, 1, start, bias)
    logs_k, weights_k, _ = _train(loss, optimizer, K, start, bias)
    for a, b in zip(logs_1, logs_k):
        for key in ("loss", "i2t_acc", "t2i_acc", "logit_scale"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)
    changed = False
    for path, before, a, b in zip(paths, start, weights_1, weights_k):
        atol = _tolerance(path, optimizer)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=path)
        changed = changed or not np.allclose(before, a)
    assert changed, "the steps did not change any weight"


def test_filip_and_views_are_refused_with_a_reason():
    model = tiny_clip()
    with pytest.raises(ValueError, match="per-token features"):
        model.compile(optimizer="sgd", loss="filip", micro_batches=2)
    with pytest.raises(ValueError, match="second augmented image view"):
        model.compile(optimizer="sgd", loss="nt_xent", micro_batches=2)
    with pytest.raises(ValueError, match="batch statistics"):
        tiny_clip(image_head={"kind": "mlp", "normalization": "batch"}).compile(
            optimizer="sgd", micro_batches=2
        )
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1"):
        model.compile(optimizer="sgd", micro_batches=0)


def test_batch_not_divisible_by_k_is_a_clear_error():
    model = tiny_clip()
    model.compile(optimizer="sgd", micro_batches=3)
    with pytest.raises(ValueError, match="cannot be split into micro_batches=3"):
        model.train_on_batch(_batch(labels=False))


class _DropoutHead(keras.layers.Layer):
    """Dropout then a linear projection: a head with its own randomness."""

    def __init__(self, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(0.3, seed=7)
        self.dense = keras.layers.Dense(output_dim, use_bias=False)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x, training=None):
        return self.dense(self.dropout(x, training=training))


class _ChunkedCallCLIP(keras_clip_CLIP := __import__("keras_clip").CLIP):
    """Reference: the forward pass itself runs the K chunks one after the
    other (dropout draws chunk by chunk, as in GradCache's first pass) and
    the ordinary one-graph step differentiates through all of them."""

    chunks = K

    def call(self, inputs, training=None):
        n = inputs["images"].shape[0] // self.chunks
        outs = [
            super(_ChunkedCallCLIP, self).call(
                {key: value[k * n : (k + 1) * n] for key, value in inputs.items()},
                training=training,
            )
            for k in range(self.chunks)
        ]
        merged = dict(outs[0])
        for key in ("image_embeddings", "text_embeddings"):
            merged[key] = keras.ops.concatenate([o[key] for o in outs], axis=0)
        return merged


def _dropout_clip(cls):
    towers = tiny_clip()
    return cls(
        towers.image_encoder,
        towers.text_encoder,
        embed_dim=16,
        end_token_id=3,
        start_token_id=2,
        image_head=_DropoutHead(16, name="image_head"),
        text_head=_DropoutHead(16, name="text_head"),
        name=cls.__name__.strip("_").lower(),  # TF: no leading "_" in scopes
    )


def test_dropout_masks_are_replayed_in_the_second_pass():
    keras.utils.set_random_seed(0)
    reference = _dropout_clip(_ChunkedCallCLIP)
    model = _dropout_clip(keras_clip_CLIP)
    batch = _batch(labels=False)
    train = keras.ops.convert_to_numpy(model(batch, training=True)["image_embeddings"])
    infer = keras.ops.convert_to_numpy(model(batch, training=False)["image_embeddings"])
    assert not np.allclose(train, infer), "dropout is not active"
    # Same weights and same seed-generator states in both models.
    assert len(model.variables) == len(reference.variables)
    for target, source in zip(model.variables, reference.variables):
        target.assign(keras.ops.convert_to_numpy(source.value))
    reference.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5), micro_batches=K, jit_compile=False)
    want = reference.train_on_batch(batch, return_dict=True)
    got = model.train_on_batch(batch, return_dict=True)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for a, b in zip(model.trainable_weights, reference.trainable_weights):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="JAX's compiled step owns its buffers; it frees nothing to the C heap mid-step",
)
def test_host_heap_is_trimmed_after_every_chunk(monkeypatch):
    # On CPU each chunk's freed activations go back to the OS before the
    # next chunk runs, in the no-gradient pass and in the re-encoding pass:
    # 2 * K trims per step (benchmarks/micro_batch_memory.py measures the
    # memory this saves).
    from keras_clip.models import micro_batch

    calls = []
    monkeypatch.setattr(micro_batch, "trim_host_heap", lambda: calls.append(1))
    keras.utils.set_random_seed(0)
    model = tiny_clip()
    model.compile(optimizer=keras.optimizers.SGD(0.5), micro_batches=K, jit_compile=False)
    model.train_on_batch(_batch(labels=False))
    assert len(calls) == 2 * K
    model.train_on_batch(_batch(labels=False))
    assert len(calls) == 4 * K
