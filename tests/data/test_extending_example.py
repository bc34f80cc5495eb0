"""docs/extending_data_sources.md: its example kind, run exactly as written."""

import json
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

from keras_clip.data import CaptionTokenizer, open_source
from keras_clip.data.sources import base
from keras_clip.models.builder import build_clip

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "extending_data_sources.md")
TINY = {
    "embed_dim": 16,
    "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "text_encoder": {"vocabulary_size": 20, "context_length": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
}


def _example_code():
    with open(DOC) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    return blocks[0]


@pytest.fixture
def coco_kind():
    code = _example_code()
    assert "register_source(" in code and len(code.splitlines()) <= 30
    namespace = {"__name__": "coco_example"}
    exec(compile(code, DOC, "exec"), namespace)
    yield namespace["CocoCaptionsSource"]
    base._REGISTRY.pop("coco", None)


def test_the_example_kind_trains_and_evaluates(coco_kind, tmp_path):
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in range(6):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": 100 + i, "file_name": f"{i}.png"})
        annotations += [{"image_id": 100 + i, "caption": f"a red circle {i}"}, {"image_id": 100 + i, "caption": "a blue square"}]
    path = tmp_path / "captions.coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))

    source = open_source(str(path), image_dir=str(tmp_path / "images"))  # detected
    assert isinstance(source, coco_kind) and source.kind == "coco"
    assert source.num_records == 6 and len(source.captions()) == 12
    same = open_source({"kind": "coco", "path": str(path), "image_dir": str(tmp_path / "images")})
    assert same.records == source.records

    tokenizer = CaptionTokenizer.from_corpus(source.captions(), context_length=8)
    keras.utils.set_random_seed(0)
    model = build_clip(TINY, tokenizer=tokenizer)
    model.compile(optimizer="adam")
    train = source.dataset(model.tokenizer, model.image_shape, 3, training=True, seed=0, epoch=0)
    batches = list(train.as_numpy_iterator())
    assert len(batches) == 2 and batches[0]["images"].shape == (3, 16, 16, 3)
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    arrays = source.eval_arrays(model.image_shape)
    assert arrays["images"].shape == (6, 16, 16, 3) and len(arrays["captions"]) == 12
    assert arrays["labels"] is None and arrays["report"].total == 0


def test_the_readme_shows_the_same_example():
    readme = os.path.join(os.path.dirname(DOC), "..", "README.md")
    with open(readme) as f:
        assert _example_code() in re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
