"""Zero-shot use of a trained run, in both directions, with the answers checked.

    keras-clip train --output-dir runs/shapes      # once (about 4 minutes)
    python examples/zero_shot.py runs/shapes

1. image -> which of several texts describes it (the candidates include
   every image's true class);
2. text  -> which of several images it describes.
Each answer is marked right or wrong against the images' true labels.
"""

import sys

import keras
import numpy as np

import keras_clip
from keras_clip.data import ShapesDataset
from keras_clip.data.shapes import fix_articles
from keras_clip.eval import embed_images, embed_texts

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/shapes"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
model = keras_clip.CLIP.from_preset(run_dir)  # model.keras with its tokenizer

shapes = ShapesDataset(image_size=model.image_shape[0], seed=123)
test = shapes.generate("test", count)  # unseen images, one object each at most two
labels = test["labels"]
classes = sorted(set(labels.tolist()))  # the candidate classes: every image's true one
texts = [fix_articles(f"a {shapes.class_names[c]}") for c in classes]

image_emb = embed_images(model, test["images"])  # (N, D), L2-normalised
text_emb = embed_texts(model, texts)  # (C, D)
scale = float(keras.ops.convert_to_numpy(model.logit_scale()))
logits = scale * image_emb @ text_emb.T  # (images, texts)
probs = np.exp(logits - logits.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)

print(f"1. image -> text, {len(texts)} candidate texts")
right = 0
for i in range(len(labels)):
    best = int(probs[i].argmax())
    ok = classes[best] == labels[i]
    right += ok
    print(f"  image {i} (true class: {shapes.class_names[labels[i]]}) -> {texts[best]!r} "
          f"p={probs[i, best]:.2f}  {'right' if ok else 'WRONG'}")
print(f"  {right} of {len(labels)} right")

print(f"2. text -> image, {len(labels)} candidate images")
right = 0
for j, text in enumerate(texts):
    best = int((text_emb[j] @ image_emb.T).argmax())
    ok = labels[best] == classes[j]
    right += ok
    print(f"  {text!r} -> image {best} (true class: {shapes.class_names[labels[best]]})  {'right' if ok else 'WRONG'}")
print(f"  {right} of {len(texts)} right")
