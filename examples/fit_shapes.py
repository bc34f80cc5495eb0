"""Build a small CLIP and train it with `model.fit` on the embedded shapes data.

    KERAS_BACKEND=jax python examples/fit_shapes.py [TRAIN_EXAMPLES] [EPOCHS]

Swap in your own `images` (N, H, W, 3 uint8) and `captions` (list of str):
everything below works the same.
"""

import sys

import keras

import keras_clip
from keras_clip.data import CaptionTokenizer, ShapesDataset, make_dataset
from keras_clip.eval import zero_shot_evaluate

keras.utils.set_random_seed(0)
shapes = ShapesDataset(image_size=32)
num_train = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
train = shapes.generate("train", num_train)
test = shapes.generate("test", 500)

# 1. A tokenizer whose vocabulary is learned from the captions.
tokenizer = CaptionTokenizer.from_corpus(train["captions"] + sum(shapes.zero_shot_prompts(), []), context_length=16)

# 2. The model: the `shapes` preset's towers, sized to the tokenizer.
model = keras_clip.CLIP.from_preset("shapes", tokenizer=tokenizer)

# 3. A tf.data pipeline of {"images", "token_ids"} batches; fit with InfoNCE.
dataset = make_dataset(train["images"], train["captions"], tokenizer, batch_size=64)
model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05), loss="infonce")
model.fit(dataset, epochs=epochs, shuffle=False, verbose=2)

# 4. Zero-shot classification of unseen images from class names alone.
result = zero_shot_evaluate(model, test["images"], test["labels"], shapes.class_names, shapes.prompt_templates)
print(f"zero-shot top-1 {result['top1']:.3f} (chance {result['chance_top1']:.3f})")
