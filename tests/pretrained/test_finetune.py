"""`keras-clip convert`, then `train --init` with locked towers (LiT)."""

import os

import keras
import numpy as np
import pytest

from keras_clip import cli
from keras_clip.tokenizers import CLIPTokenizer
from keras_clip.train import train
from pretrained_helpers import SMALL_OPEN_CLIP, check_parity, make_inputs, reference_pixels


@pytest.fixture(scope="module")
def small_checkpoint(open_clip, torch, tmp_path_factory):
    """A random-initialised small open_clip model (OpenAI's vocabulary,
    context 16, 64-pixel images, GELU) as `.safetensors`, with its features."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=False).eval()
    path = str(tmp_path_factory.mktemp("ckpt") / "small.safetensors")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    images, tokens = make_inputs(64, 16)
    with torch.no_grad():
        features = (
            reference.encode_image(torch.from_numpy(reference_pixels(images))).numpy(),
            reference.encode_text(torch.from_numpy(tokens.astype("int64"))).numpy(),
        )
    return path, images, tokens, features


@pytest.fixture(scope="module")
def converted(small_checkpoint, tmp_path_factory):
    path = small_checkpoint[0]
    run = str(tmp_path_factory.mktemp("converted") / "run")
    assert cli.main(["convert", path, "--output", run, "--activation", "gelu"]) == 0
    return run


def test_convert_writes_a_run_with_openai_tokenizer(small_checkpoint, converted, capsys):
    _, images, tokens, (ref_image, ref_text) = small_checkpoint
    model = keras.saving.load_model(os.path.join(converted, "model.keras"))
    assert isinstance(model.tokenizer, CLIPTokenizer) and model.tokenizer.context_length == 16
    check_parity(model, images, tokens, ref_image, ref_text, "convert .safetensors")
    ids = model.tokenizer(["a red circle"])
    assert ids.shape == (1, 16) and ids[0, 0] == 49406 and 49407 in ids[0]
    # A second convert into the same folder is refused, in one line.
    capsys.readouterr()
    assert cli.main(["convert", small_checkpoint[0], "--output", converted]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


@pytest.mark.trains
def test_train_init_locks_the_image_tower_and_all_but_the_last_text_block(converted, tmp_path):
    from keras_clip.models.presets import load_run_model

    before = load_run_model(converted)
    overrides = {
        "model": {"init": converted},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "lock": {"image": "all", "text": 1}},
        "data": {"train_examples": 64, "test_examples": 16, "heldout_examples": 16},
        "eval": {"every_epochs": 0},
    }
    model, metrics = train("shapes", str(tmp_path / "run"), overrides=overrides, verbose=0)
    assert model.image_shape[0] == 64 and isinstance(model.tokenizer, CLIPTokenizer)
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))  # noqa: E731
    assert same(model.image_encoder, before.image_encoder) and same(model.image_head, before.image_head)
    text_blocks, old_blocks = model.text_encoder.encoder_layers, before.text_encoder.encoder_layers
    assert same(model.text_encoder.embedding, before.text_encoder.embedding)
    assert all(same(a, b) for a, b in zip(text_blocks[:-1], old_blocks[:-1]))
    assert not same(text_blocks[-1], old_blocks[-1])  # the last block trained
    assert not same(model.text_head, before.text_head)
    assert np.isfinite(metrics["final_loss"])


@pytest.mark.slow
@pytest.mark.trains
def test_fine_tuning_an_imported_model_beats_chance(converted, tmp_path):
    overrides = {
        "model": {"init": converted},
        "training": {"epochs": 4, "batch_size": 64, "learning_rate": 1e-3, "warmup_fraction": 0.1},
        "data": {"train_examples": 3000, "test_examples": 500, "heldout_examples": 100},
        "eval": {"every_epochs": 0},
    }
    _, metrics = train("shapes", str(tmp_path / "run"), overrides=overrides, verbose=2)
    print(f"\nfine-tuned imported model: zero-shot top-1 {metrics['zero_shot_top1']:.3f} "
          f"(chance {metrics['chance_top1']:.3f})")
    assert metrics["zero_shot_top1"] > 3 * metrics["chance_top1"]
