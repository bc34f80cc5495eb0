import keras
import numpy as np

from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.retrieval import retrieval_metrics
from keras_clip.eval.zero_shot import zero_shot_evaluate


class ZeroShotRetrievalCallback(keras.callbacks.Callback):
    """Zero-shot accuracy and retrieval recall every `every` epochs during `fit`.

    The numbers go into the epoch logs (so into `History` and into a
    `TensorBoard` callback placed after this one), prefixed with `val_`:
    `val_zero_shot_top1`, `val_zero_shot_top5`, `val_image_to_text_R@1`, ...

    Args:
        images: `(N, H, W, 3)` evaluation pixels in [0, 255].
        labels: optional `(N,)` class indices (zero-shot needs them).
        class_names, templates: the zero-shot classifier's classes and prompts.
        captions: optional list of captions for retrieval (`text_to_image`
            maps each to its image when there are several per image).
        text_to_image: optional `(M,)` int, the image index of each caption
            (default: caption i belongs to image i).
        every: int. Evaluate every `every` epochs (and after the last one).
        total_epochs: optional int, the run's last epoch when `fit` is called
            once per epoch (default: `fit`'s own `epochs`).
        batch_size: int, images or captions encoded at once.

    Example:
    ```python
    callback = ZeroShotRetrievalCallback(test["images"], test["labels"],
                                         shapes.class_names, shapes.prompt_templates,
                                         captions=test["captions"], every=5)
    model.fit(dataset, epochs=20, callbacks=[callback])
    ```
    """

    def __init__(
        self, images, labels=None, class_names=None, templates=None, captions=None, text_to_image=None,
        every=1, total_epochs=None, batch_size=256,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch; received every={every}.")
        if labels is None and captions is None:
            raise ValueError("Nothing to evaluate: pass labels (zero-shot) and/or captions (retrieval).")
        if labels is not None:
            if not (class_names and templates):
                raise ValueError("Zero-shot evaluation needs class_names and templates along with labels.")
            labels = np.asarray(labels, "int64")
            if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                # Found now rather than at the end of the first evaluated epoch.
                raise ValueError(
                    f"labels must index class_names (0..{len(class_names) - 1}); received values in "
                    f"[{labels.min()}, {labels.max()}]. Pass the class names file the labels refer to."
                )
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.templates = templates
        self.captions = captions
        self.text_to_image = text_to_image
        self.every = int(every)
        self.total_epochs = total_epochs
        self.batch_size = int(batch_size)

    def evaluate(self):
        results = {}
        if self.labels is not None:
            zs = zero_shot_evaluate(
                self.model, self.images, self.labels, self.class_names, self.templates, batch_size=self.batch_size
            )
            results["zero_shot_top1"] = zs["top1"]
            results["zero_shot_top5"] = zs["top5"]
        if self.captions is not None:
            ret = retrieval_metrics(
                embed_images(self.model, self.images, self.batch_size),
                embed_texts(self.model, self.captions, self.batch_size),
                self.text_to_image,
            )
            results.update({k: v for k, v in ret.items() if "R@" in k})
        return results

    def on_epoch_end(self, epoch, logs=None):
        last = (self.total_epochs or self.params.get("epochs")) == epoch + 1
        if (epoch + 1) % self.every and not last:
            return
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in self.evaluate().items()})
