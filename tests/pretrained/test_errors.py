"""Clear errors for missing, unreadable, unknown and mis-shaped checkpoints."""

import json
import os

import numpy as np
import pytest

from keras_clip.pretrained import checkpoint_format, load_checkpoint
from keras_clip.pretrained.mapping import hf_to_openai, infer_architecture
from pretrained_helpers import SMALL_OPEN_CLIP


@pytest.fixture(scope="module")
def small_state(open_clip, torch):
    torch.manual_seed(0)
    model = open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=True)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _save(state, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path)
    return path


def test_missing_file_names_the_path(tmp_path):
    for name in ("nothing.pt", "nothing.safetensors", os.path.join("no", "such", "folder")):
        path = os.path.join(tmp_path, name)
        with pytest.raises(FileNotFoundError, match="nothing|folder"):
            load_checkpoint(path)


def test_unreadable_files_name_the_path(tmp_path):
    for name in ("garbage.pt", "garbage.safetensors"):
        path = os.path.join(tmp_path, name)
        with open(path, "wb") as f:
            f.write(b"not a checkpoint at all" * 10)
        if name.endswith(".pt"):
            pytest.importorskip("torch")
        with pytest.raises(ValueError, match="garbage"):
            load_checkpoint(path)
    odd = os.path.join(tmp_path, "weights.npz")
    open(odd, "wb").close()
    with pytest.raises(ValueError, match="weights.npz"):
        load_checkpoint(odd)
    with pytest.raises(ValueError, match="neither a Hugging Face"):
        load_checkpoint(tmp_path)


def test_format_detection(tmp_path):
    assert checkpoint_format("clip_vit_base_patch32") == "keras_hub"
    assert checkpoint_format("kaggle://keras/clip/keras/clip_vit_base_patch32") == "keras_hub"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    assert checkpoint_format(tmp_path) == "hf"


def test_bad_activation():
    with pytest.raises(ValueError, match="activation"):
        load_checkpoint("x.pt", activation="relu")


def test_unknown_key_is_named(small_state, tmp_path):
    state = dict(small_state, **{"visual.attn_pool.query": np.zeros((4, 128), "float32")})
    with pytest.raises(KeyError, match="visual.attn_pool.query"):
        load_checkpoint(_save(state, os.path.join(tmp_path, "extra.safetensors")))


def test_missing_key_is_named(small_state, tmp_path):
    state = {k: v for k, v in small_state.items() if k != "transformer.resblocks.1.ln_2.bias"}
    with pytest.raises(KeyError, match=r"transformer\.resblocks\.1\.ln_2\.bias"):
        load_checkpoint(_save(state, os.path.join(tmp_path, "missing.safetensors")))


def test_shape_mismatch_names_key_and_both_shapes(small_state, tmp_path):
    state = dict(small_state)
    state["visual.transformer.resblocks.1.mlp.c_fc.bias"] = np.zeros((100,), "float32")
    with pytest.raises(ValueError, match=r"resblocks\.1\.mlp\.c_fc\.bias.*\(100,\).*\(512,\)"):
        load_checkpoint(_save(state, os.path.join(tmp_path, "shape.safetensors")))


def test_not_a_vit_state_dict():
    with pytest.raises(KeyError, match="ResNet"):
        infer_architecture({"visual.layer1.0.conv1.weight": np.zeros((1,))})


def test_hf_unknown_key_is_named():
    with pytest.raises(KeyError, match="vision_model.head.weight"):
        hf_to_openai({"vision_model.head.weight": np.zeros((2, 2))})
    with pytest.raises(KeyError, match="k_proj"):
        hf_to_openai({"text_model.encoder.layers.0.self_attn.q_proj.weight": np.zeros((2, 2))})


def test_tokenizer_must_fit_the_checkpoint(small_state, tmp_path):
    from keras_clip.tokenizers import CaptionTokenizer

    path = _save(small_state, os.path.join(tmp_path, "small.safetensors"))
    with pytest.raises(ValueError, match="49408"):
        load_checkpoint(path, tokenizer=CaptionTokenizer(["a", "b"], context_length=16))


def test_torchscript_archive(torch, tmp_path):
    """OpenAI's files are TorchScript archives: read through torch.jit.load."""
    from keras_clip.pretrained.state_dict import read_torch

    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    path = os.path.join(tmp_path, "scripted.pt")
    module.save(path)
    state = read_torch(path)
    assert sorted(state) == ["0.bias", "0.weight"] and state["0.weight"].shape == (2, 3)
