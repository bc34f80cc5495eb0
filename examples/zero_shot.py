"""Zero-shot use of a trained run, in both directions.

    keras-clip train --output-dir runs/shapes      # once
    python examples/zero_shot.py runs/shapes

1. image -> which of several texts matches it best;
2. text  -> which of several images matches it best.
"""

import sys

import keras
import numpy as np

import keras_clip
from keras_clip.data import ShapesDataset
from keras_clip.eval import embed_images, embed_texts

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/shapes"
model = keras_clip.CLIP.from_preset(run_dir)  # model.keras with its tokenizer

images = ShapesDataset(image_size=model.image_shape[0], seed=123).generate("test", 6)
texts = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple ring", "an orange circle"]

image_emb = embed_images(model, images["images"])  # (6, D), L2-normalised
text_emb = embed_texts(model, texts)  # (6, D)
scale = float(keras.ops.convert_to_numpy(model.logit_scale()))
logits = scale * image_emb @ text_emb.T  # (images, texts)

probs = np.exp(logits - logits.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)
for i, caption in enumerate(images["captions"]):
    best = probs[i].argmax()
    print(f"image {i} (truth: {caption!r}) -> {texts[best]!r} p={probs[i, best]:.2f}")

text = "a red circle"
best_image = (text_emb[0] @ image_emb.T).argmax()
print(f"text {text!r} -> image {best_image} ({images['captions'][best_image]!r})")
