"""CLIPTokenizer: ids equal open_clip's (OpenAI's SimpleTokenizer), eagerly and in graphs."""

import gzip
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_clip.tokenizers import CLIPTokenizer, Tokenizer, check_tokenizer
from keras_clip.tokenizers.clip_tokenizer import (
    MERGES_FILENAME,
    build_vocabulary,
    clean_text_eager,
    clean_text_graph,
    read_merges,
)
from tests._reference_imports import import_open_clip
from tests.tokenizers.clip_strings import graph_safe_strings, varied_strings


@pytest.fixture(scope="module")
def reference():
    return import_open_clip().get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def tokenizer():
    return CLIPTokenizer()


# The tokenizer is TensorFlow ops under every Keras backend: the full 2,000
# strings are compared once, in the TensorFlow run; the other backends check
# a 300-string subset of the same seeded set (the machinery is the same).
FULL = keras.backend.backend() == "tensorflow"
NUM_VARIED = 2000 if FULL else 300
NUM_GRAPH_SAFE = 500 if FULL else 100


# Construction, config, files and export are Keras-backend independent
# (TensorFlow ops and Python): checked in the TensorFlow run only.
tensorflow_run_only = pytest.mark.skipif(
    not FULL, reason="backend independent (TensorFlow ops): checked in the TensorFlow run"
)


@pytest.fixture(scope="module")
def varied():
    return varied_strings(2000, seed=0)[:NUM_VARIED]


def reference_ids(reference, texts, context_length=77):
    return reference(texts, context_length=context_length).numpy().astype(np.int32)


def graph_ids(tokenizer, texts, batch_size=128):
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(batch_size).map(tokenizer)
    return np.concatenate([batch.numpy() for batch in dataset], axis=0)


def describe_mismatches(texts, got, want, limit=5):
    bad = np.flatnonzero(~(got == want).all(axis=1))
    lines = [f"{len(bad)} of {len(texts)} rows differ"]
    for i in bad[:limit]:
        lines.append(f"  {texts[i]!r}\n    got  {got[i][:20].tolist()}\n    want {want[i][:20].tolist()}")
    return "\n".join(lines)


# ---------------------------------------------------------------- parity
def test_eager_ids_equal_open_clip_on_2000_varied_strings(tokenizer, reference, varied):
    assert len(varied) == NUM_VARIED and "" in varied
    assert any(len(t.split()) > 77 for t in varied)  # longer than the context
    got = tokenizer(varied)
    want = reference_ids(reference, varied)
    assert isinstance(got, np.ndarray) and got.dtype == np.int32 and got.shape == (NUM_VARIED, 77)
    assert (got == want).all(), describe_mismatches(varied, got, want)


def test_graph_ids_equal_open_clip_where_graph_cleaning_is_exact(tokenizer, reference):
    texts = graph_safe_strings(500, seed=1)[:NUM_GRAPH_SAFE]
    got = graph_ids(tokenizer, texts)
    want = reference_ids(reference, texts)
    assert got.shape == (NUM_GRAPH_SAFE, 77)
    assert (got == want).all(), describe_mismatches(texts, got, want)


@tensorflow_run_only
def test_graph_bpe_equals_open_clip_on_every_varied_string_it_cleans_alike(tokenizer, reference, varied):
    # The graph path differs from OpenAI only through cleaning (ftfy cannot
    # run in a graph): wherever its cleaning agrees, the ids must agree.
    graph_clean = [s.decode("utf-8") for s in clean_text_graph(tf.constant(varied)).numpy()]
    alike = [g == clean_text_eager(t) for g, t in zip(graph_clean, varied)]
    got = graph_ids(tokenizer, varied)
    want = reference_ids(reference, varied)
    rows_equal = (got == want).all(axis=1)
    print(f"graph path: {rows_equal.sum()} of {len(varied)} varied strings equal open_clip; cleaning alike on {sum(alike)}")
    assert sum(alike) >= 0.6 * len(varied)  # the comparison below covers most strings
    assert rows_equal[alike].all(), describe_mismatches(
        [t for t, a in zip(varied, alike) if a], got[alike], want[alike]
    )


def test_eager_and_tf_function_give_the_same_ids_on_clean_text(tokenizer):
    texts = ["a photo of a cat", "東京 tower, 2024!", "", "it's naïve &amp; fun 🐱"]
    encode = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    np.testing.assert_array_equal(encode(tf.constant(texts)).numpy(), tokenizer(texts))


# ------------------------------------------------------- vocabulary, ids
def test_vocabulary_and_special_ids_equal_openai(tokenizer, reference):
    assert tokenizer.vocabulary_size == 49408
    assert (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) == (49406, 49407, 0)
    assert tokenizer.context_length == 77
    vocabulary = tokenizer.get_vocabulary()
    assert vocabulary == [reference.decoder[i] for i in range(49408)]
    assert vocabulary[-2:] == ["<start_of_text>", "<end_of_text>"]
    assert vocabulary[256] == vocabulary[0] + "</w>"
    ids = tokenizer(["a photo of a cat"])[0]
    np.testing.assert_array_equal(ids[:7], [49406, 320, 1125, 539, 320, 2368, 49407])
    assert (ids[7:] == 0).all()
    assert isinstance(tokenizer, Tokenizer) and check_tokenizer(tokenizer) is tokenizer


def test_empty_string_gives_start_end_then_padding(tokenizer):
    ids = tokenizer([""])[0]
    np.testing.assert_array_equal(ids[:2], [49406, 49407])
    assert (ids[2:] == 0).all()


def test_context_length_16_truncation_keeps_end_token_last(reference):
    tokenizer = CLIPTokenizer(context_length=16)
    texts = ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen", "short"]
    eager = tokenizer(texts)
    graph = graph_ids(tokenizer, texts)
    want = reference_ids(reference, texts, context_length=16)
    assert eager.shape == (2, 16)
    np.testing.assert_array_equal(eager, want)
    np.testing.assert_array_equal(graph, want)
    assert eager[0, -1] == 49407 and eager[0, 0] == 49406 and (eager[0] != 0).all()
    assert eager[0, -2] != 49407  # real text up to the end token


def test_scalar_and_nested_inputs_keep_their_shape(tokenizer):
    assert tokenizer("a cat").shape == (77,)
    nested = tokenizer([["a cat", "a dog", ""], ["x", "y", "z"]])
    assert nested.shape == (2, 3, 77)
    np.testing.assert_array_equal(nested[0, 1], tokenizer(["a dog"])[0])
    scalar_graph = tf.function(tokenizer.tokenize)(tf.constant("a cat"))
    np.testing.assert_array_equal(scalar_graph.numpy(), tokenizer("a cat"))


@tensorflow_run_only
def test_bad_arguments_raise_clear_errors(tokenizer):
    with pytest.raises(ValueError, match="context_length"):
        CLIPTokenizer(context_length=1)
    with pytest.raises(TypeError, match="context_length"):
        CLIPTokenizer(context_length=7.5)
    with pytest.raises(TypeError, match="dtype int32"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(TypeError, match="flat index 1"):
        tokenizer(["ok", 3])
    with pytest.raises(FileNotFoundError, match="merges"):
        CLIPTokenizer(merges_file="/nonexistent/merges.txt.gz")


# ------------------------------------------------------- serialization
@tensorflow_run_only
def test_get_config_round_trip_keeps_context_length():
    tokenizer = CLIPTokenizer(context_length=16, name="clip_tok")
    config = tokenizer.get_config()
    assert config["context_length"] == 16 and config["merges_file"] is None
    restored = CLIPTokenizer.from_config(config)
    assert restored.context_length == 16 and restored.name == "clip_tok"
    np.testing.assert_array_equal(restored(["a red circle"]), tokenizer(["a red circle"]))
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert isinstance(rebuilt, CLIPTokenizer) and rebuilt.context_length == 16


@tensorflow_run_only
def test_save_and_load_round_trip(tmp_path):
    tokenizer = CLIPTokenizer(context_length=24)
    tokenizer.save(str(tmp_path / "tok"))
    with open(tmp_path / "tok" / "tokenizer.json") as f:
        saved = json.load(f)
    assert saved["context_length"] == 24 and saved["class_name"] == "CLIPTokenizer"
    loaded = CLIPTokenizer.load(str(tmp_path / "tok"))
    assert loaded.context_length == 24
    texts = ["a photo of a dog", "Ångström &amp; 東京"]
    np.testing.assert_array_equal(loaded(texts), tokenizer(texts))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        CLIPTokenizer.load(str(tmp_path / "missing"))


@tensorflow_run_only
def test_plain_text_merges_file_gives_the_same_tokenizer(tmp_path, tokenizer):
    default = os.path.join(os.path.dirname(__import__("keras_clip").tokenizers.clip_tokenizer.__file__), "data", MERGES_FILENAME)
    plain = tmp_path / "merges.txt"
    plain.write_bytes(gzip.open(default).read())
    custom = CLIPTokenizer(merges_file=str(plain))
    assert custom.get_vocabulary() == tokenizer.get_vocabulary()
    custom.save(str(tmp_path / "saved"))  # compresses the plain file
    assert read_merges(str(tmp_path / "saved" / MERGES_FILENAME)) == read_merges(str(plain))
    assert build_vocabulary(read_merges(str(plain)))[512] == "in"
    bad = tmp_path / "bad.txt"
    bad.write_text("header\na b\n")
    with pytest.raises(ValueError, match="not a CLIP merges file"):
        CLIPTokenizer(merges_file=str(bad))


def test_export_archive_tracking_export_resources_tokenizes_strings(tmp_path, tokenizer):
    # As keras_clip.export does: track the resources, add a traced endpoint.
    archive = keras.export.ExportArchive()
    for resource in tokenizer.export_resources():
        archive.track(resource)
    encode = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    encode.get_concrete_function()
    archive.add_endpoint("tokenize", encode)
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    texts = ["a photo of a cat", "Ｆｕｌｌ “width” ﬁne &amp;amp; café", "unseen wordsmithery"]
    np.testing.assert_array_equal(restored.tokenize(tf.constant(texts)).numpy(), tokenizer(texts))
