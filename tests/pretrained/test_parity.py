"""Imported models match their reference implementation (random weights, float32, CPU)."""

import os

import numpy as np
import pytest

from keras_clip.pretrained import load_checkpoint
from pretrained_helpers import SMALL_OPEN_CLIP, check_parity, make_inputs, reference_pixels


def _open_clip_features(torch, model, images, tokens):
    model.eval()
    image = model.encode_image(torch.from_numpy(reference_pixels(images)))
    text = model.encode_text(torch.from_numpy(tokens.astype("int64")))
    return image.numpy(), text.numpy()


def _small_open_clip(open_clip, torch, quick_gelu, seed=0):
    torch.manual_seed(seed)
    return open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=quick_gelu)


@pytest.mark.slow  # ~30-80 s on 2 CPU cores; deselect with -m "not slow"
def test_open_clip_vit_b32_pt(open_clip, torch, tmp_path):
    """OpenAI's ViT-B/32 layout (quick_gelu), a plain `.pt` state dict.

    8 images and 8 captions (a full 32 x 32 batch costs ~40 s of CPU in the
    two frameworks); the small configs below check 32 x 32 logits."""
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    path = os.path.join(tmp_path, "vit_b32.pt")
    torch.save(reference.state_dict(), path)
    images, tokens = make_inputs(224, 77, n=8)
    ref_image, ref_text = _open_clip_features(torch, reference, images, tokens)
    del reference
    model, config = load_checkpoint(path, return_config=True)
    assert config["image_encoder"] == {
        "image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12,
        "mlp_dim": 3072, "activation": "quick_gelu",
    }
    assert config["text_encoder"]["heads"] == 8 and config["embed_dim"] == 512
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 151_277_313
    check_parity(model, images, tokens, ref_image, ref_text, "open_clip ViT-B/32 .pt")


def test_open_clip_small_safetensors_gelu(open_clip, torch, tmp_path):
    """A small custom open_clip config with exact GELU, as `.safetensors`."""
    from safetensors.torch import save_file

    reference = _small_open_clip(open_clip, torch, quick_gelu=False)
    path = os.path.join(tmp_path, "small.safetensors")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    images, tokens = make_inputs(64, 16)
    ref_image, ref_text = _open_clip_features(torch, reference, images, tokens)
    model, config = load_checkpoint(path, activation="gelu", return_config=True)
    assert config["image_encoder"]["patch_size"] == 16 and config["image_encoder"]["heads"] == 2
    assert config["text_encoder"]["heads"] == 3 and config["text_encoder"]["context_length"] == 16
    assert config["text_encoder"]["activation"] == "gelu"
    check_parity(model, images, tokens, ref_image, ref_text, "open_clip small .safetensors")


def test_open_clip_training_checkpoint_bin(open_clip, torch, tmp_path):
    """open_clip's training checkpoint layout: `{"state_dict": {"module.<name>": ...}}`."""
    reference = _small_open_clip(open_clip, torch, quick_gelu=True, seed=1)
    path = os.path.join(tmp_path, "epoch_1.bin")
    state = {"module." + k: v for k, v in reference.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, path)
    images, tokens = make_inputs(64, 16, seed=1)
    ref_image, ref_text = _open_clip_features(torch, reference, images, tokens)
    check_parity(load_checkpoint(path), images, tokens, ref_image, ref_text, "open_clip small .bin")


def _hf_features(out):
    """`get_*_features` return a tensor or (transformers 5) a model output."""
    return (out if hasattr(out, "numpy") else out.pooler_output).numpy()


def test_hugging_face_clip_model(hf_clip, torch, tmp_path):
    """transformers' CLIPModel via save_pretrained; vision heads come from config.json."""
    # The small open_clip architecture (shared shapes keep JAX's per-shape
    # compilations down), but 4 vision heads of 32: not width // 64.
    vision, text = SMALL_OPEN_CLIP["vision_cfg"], SMALL_OPEN_CLIP["text_cfg"]
    config = hf_clip.CLIPConfig(
        text_config=dict(
            hidden_size=text["width"], intermediate_size=4 * text["width"],
            num_hidden_layers=text["layers"], num_attention_heads=text["heads"],
            max_position_embeddings=text["context_length"],
        ),
        vision_config=dict(
            hidden_size=vision["width"], intermediate_size=4 * vision["width"],
            num_hidden_layers=vision["layers"], num_attention_heads=4,
            image_size=vision["image_size"], patch_size=vision["patch_size"],
        ),
        projection_dim=SMALL_OPEN_CLIP["embed_dim"],
    )
    torch.manual_seed(0)
    reference = hf_clip.CLIPModel(config).eval()
    reference.save_pretrained(tmp_path)
    images, tokens = make_inputs(vision["image_size"], text["context_length"])
    ref_image = _hf_features(reference.get_image_features(pixel_values=torch.from_numpy(reference_pixels(images))))
    ref_text = _hf_features(reference.get_text_features(input_ids=torch.from_numpy(tokens.astype("int64"))))
    model, imported = load_checkpoint(tmp_path, activation="gelu", return_config=True)
    assert imported["image_encoder"]["activation"] == "quick_gelu"  # from config.json
    assert imported["image_encoder"]["heads"] == 4 and imported["text_encoder"]["heads"] == 3
    check_parity(model, images, tokens, ref_image, ref_text, "HF CLIPModel")


def test_keras_hub_preset(tmp_path):
    import keras_hub
    from keras import ops

    v, t = SMALL_OPEN_CLIP["vision_cfg"], SMALL_OPEN_CLIP["text_cfg"]
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=v["patch_size"], hidden_dim=v["width"], num_layers=v["layers"], num_heads=2,
        intermediate_dim=4 * v["width"], intermediate_activation="gelu",
        image_shape=(v["image_size"], v["image_size"], 3),
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=49408, embedding_dim=t["width"], hidden_dim=t["width"],
        num_layers=t["layers"], num_heads=t["heads"], intermediate_dim=4 * t["width"],
        max_sequence_length=t["context_length"],
    )
    backbone = keras_hub.models.CLIPBackbone(vision, text, projection_dim=SMALL_OPEN_CLIP["embed_dim"])
    # Real presets store position ids 0..P; a fresh backbone has zeros.
    ids = vision.embedding.position_ids
    ids.assign(ops.cast(ops.arange(ids.shape[1])[None], ids.dtype))
    preset = os.path.join(tmp_path, "preset")
    backbone.save_to_preset(preset)
    images, tokens = make_inputs(v["image_size"], t["context_length"])
    x = (reference_pixels(images)).transpose(0, 2, 3, 1)  # NHWC, normalised
    ref_image = ops.convert_to_numpy(backbone.get_vision_embeddings(x))
    ref_text = ops.convert_to_numpy(backbone.get_text_embeddings(tokens))
    model, config = load_checkpoint(preset, return_config=True)
    assert config["image_encoder"]["activation"] == "gelu"
    assert config["text_encoder"]["activation"] == "quick_gelu"
    assert model.text_encoder.final_layer_norm_epsilon == pytest.approx(1e-6)
    np.testing.assert_allclose(
        float(model.logit_scale()), float(np.exp(ops.convert_to_numpy(backbone.clip_head.logit_scale))), rtol=1e-6
    )
    check_parity(model, images, tokens, ref_image, ref_text, "keras-hub preset")
