"""The FLOP count that `jit_compile: auto` decides with, against closed forms
derived by hand from the architecture."""

from keras_clip.config import load_config
from keras_clip.models import flops
from keras_clip.models.builder import build_clip
from tests.models.conftest import tiny_clip


def _transformer(tokens, width, layers, mlp_dim):
    # q, k, v and out: 4 W x W kernels on every token; the MLP: W x M and M x W;
    # attention: q.k (T x T x W) and the weighted sum (T x T x W). 2 per multiply-add.
    per_layer = 2 * tokens * (4 * width * width + 2 * width * mlp_dim) + 2 * 2 * tokens * tokens * width
    return layers * per_layer


def test_the_shapes_recipe_model_by_hand():
    model = build_clip(load_config("shapes")["model"])
    # 32 px, patch 4: 8 x 8 = 64 patches + the class token.
    assert flops.image_tokens(model) == 65
    patch = 2 * 64 * (4 * 4 * 3) * 64  # every patch, a 48 x 64 kernel
    image = patch + _transformer(65, 64, 3, 128)
    text = _transformer(16, 64, 2, 128)
    heads = 2 * 64 * 64 + 2 * 64 * 64  # one 64 x 64 projection per tower
    assert (image, text) == (16_417_536, 2_228_224)  # the numbers worked out on paper
    assert flops.layer_flops(model.image_encoder, 65, model.image_shape) == image
    assert flops.layer_flops(model.text_encoder, 16) == text
    assert flops.forward_flops(model) == image + text + heads == 18_662_144
    assert flops.train_step_flops(model, 64) == 3 * 64 * 18_662_144


def test_mlp_heads_and_a_different_size_are_counted():
    model = tiny_clip(image_head={"kind": "mlp", "hidden_dims": [24]}, text_head={"kind": "mlp", "hidden_dims": [24]})
    # 16 px, patch 8: 4 patches + the class token; text: 8 tokens; width 16, MLP 32, one layer each.
    image = 2 * 4 * (8 * 8 * 3) * 16 + _transformer(5, 16, 1, 32)
    text = _transformer(8, 16, 1, 32)
    heads = 2 * (2 * 16 * 24 + 2 * 24 * 16)  # width -> 24 -> embed_dim (16), per tower
    assert flops.forward_flops(model) == image + text + heads
    assert flops.train_step_flops(model, 3) == 9 * (image + text + heads)


def test_the_config_closed_form_agrees_with_the_built_model():
    for name in ("shapes", "small-vit"):
        config = load_config(name)["model"]
        assert flops.config_forward_flops(config) == flops.forward_flops(build_clip(config)), name
