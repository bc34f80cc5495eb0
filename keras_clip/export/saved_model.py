"""SavedModel export for TensorFlow Serving, from any Keras backend.

How each backend exports:
- TensorFlow: `keras.export.ExportArchive.add_endpoint` traces the model's
  `encode_image` / `encode_text` into `tf.function`s.
- JAX: the same call converts them with jax2tf (native serialisation, no
  gradients, lowered for CPU and CUDA so that an export made on a CPU
  machine also serves on a GPU).
- Both: every signature is a TensorFlow function around those two (shape
  check, decode / resize / crop, tokenisation, zero-shot head), so string
  and bytes inputs never go through jax2tf. jax2tf assumes each symbolic
  dimension is >= 1, so each call of an encoder is guarded by a `tf.cond`
  that answers an empty batch with an empty `(0, D)` result.
- PyTorch: Keras 3.15's torch export path (torch.export) fails on this
  model, but a `.keras` file is backend independent: the model is saved to
  a temporary `.keras` file and re-loaded under TensorFlow in a subprocess
  (`python -m keras_clip.export`), which writes the same SavedModel. One
  line on stderr says so.
"""

import json
import os
import shutil
import sys
import uuid

import keras
import numpy as np
import tensorflow as tf

from keras_clip.data.decode import decode_images
from keras_clip.export.tensorflow_worker import SOURCE_BACKEND_ENV, export_in_tensorflow_subprocess, run_tensorflow_worker
from keras_clip.utils.text_files import read_lines  # noqa: F401  (kept importable here)

SIGNATURES = ("encode_image", "encode_image_bytes", "encode_text", "encode_text_strings", "zero_shot", "class_names")
METADATA_FILENAME = "keras_clip.json"  # written to <version>/assets.extra/


def next_version(path):
    """The next free TF Serving version under `path`: 1 + the largest integer folder name, or 1."""
    if not os.path.isdir(path):
        return 1
    versions = [int(name) for name in os.listdir(path) if name.isdigit() and os.path.isdir(os.path.join(path, name))]
    return max(versions, default=0) + 1


def _version_dir(path, version, overwrite):
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(
            f"Export path {path!r} is a file; TF Serving expects a directory holding numbered versions."
        )
    if version is None:
        version = next_version(path)
    elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative int (TF Serving's version folder); received {version!r}.")
    version = int(version)
    target = os.path.join(path, str(version))
    if os.path.exists(target) and os.listdir(target) and not overwrite:
        raise FileExistsError(
            f"{target!r} already exists; pick another version, omit version= to use the next free one "
            f"({next_version(path)}), or pass overwrite=True."
        )
    return target, version


def _check_args(model, class_names, templates, class_embeddings, serving_default):
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if not class_names:
            raise ValueError("class_names is empty; pass at least one class name, or None for no zero_shot signature.")
    if templates is not None and class_names is None:
        raise ValueError("templates were given without class_names; the templates only build the zero_shot classes.")
    if class_embeddings is not None:
        if class_names is None:
            raise ValueError("class_embeddings were given without class_names (the zero_shot output names).")
        class_embeddings = np.asarray(class_embeddings, "float32")
        if class_embeddings.shape != (len(class_names), model.embed_dim):
            raise ValueError(
                f"class_embeddings has shape {class_embeddings.shape} but {len(class_names)} class names and "
                f"embed_dim {model.embed_dim} need ({len(class_names)}, {model.embed_dim})."
            )
    elif class_names is not None:
        raise ValueError(
            "class_names need class_embeddings, a (C, D) array of the classes' text embeddings; compute "
            "them with keras_clip.eval.zero_shot_classifier(model, class_names, templates) "
            "(`keras-clip export --classes` does this for you)."
        )
    available = [
        name
        for name in SIGNATURES[:4]
        if name != "encode_text_strings" or model.tokenizer is not None
    ] + (["zero_shot"] if class_names is not None else [])
    if serving_default not in available:
        raise ValueError(f"serving_default must be one of the exported signatures {available}; received {serving_default!r}.")
    return class_names, class_embeddings


def export_saved_model(
    model,
    path,
    version=None,
    class_names=None,
    templates=None,
    class_embeddings=None,
    serving_default="encode_image_bytes",
    overwrite=False,
    verbose=False,
):
    """Writes `model` as a SavedModel in TensorFlow Serving's layout.

    The model goes to `path/<version>/` (`saved_model.pb`, `variables/`, and
    `assets.extra/keras_clip.json` describing the export). The version folder
    is written under a temporary name and renamed when complete, so a
    server watching `path` never loads a half-written version.

    Signatures (every batch dimension is dynamic, `B` may be 0):
    - `encode_image`: `images` float32 `(B, H, W, 3)`, pixels in `[0, 255]`
      -> `embeddings` float32 `(B, D)`, L2-normalised.
    - `encode_image_bytes`: `image_bytes` string `(B,)`, encoded JPEG / PNG /
      GIF / BMP files of any size -> `embeddings` `(B, D)`. Decoded to RGB
      (grey repeated, alpha dropped), resized bicubic (antialiased) so that
      the image covers `H x W` (shorter side to `H` for a square model),
      centre-cropped, rounded to integer levels: the data pipeline's
      evaluation preprocessing; see `keras_clip.data.decode`.
    - `encode_text`: `token_ids` int32 `(B, T)` with `T` the model's context
      length -> `embeddings` `(B, D)`.
    - `encode_text_strings` (when the model has a tokenizer): `texts` string
      `(B,)` -> `embeddings` `(B, D)`, tokenised in the graph by the model's
      tokenizer.
    - `zero_shot` (when `class_names` are given): `image_bytes` string `(B,)`
      -> `probabilities` float32 `(B, C)` (softmax of `logit_scale` x cosine
      similarity to each class), `top_class` string `(B,)`, `top_index` int32
      `(B,)`, `top_probability` float32 `(B,)`. The class embeddings are
      constants in the graph.
    - `class_names` (with `zero_shot`): no inputs -> `class_names` string `(C,)`.
    - `serving_default`: the signature named by `serving_default`
      (default `encode_image_bytes`: what a server most often receives).

    Args:
        model: a built `keras_clip.CLIP`.
        path: the model's base directory (TF Serving's `--model_base_path`).
        version: int folder name; default the next free one (1 for a new path).
        class_names: optional list of str: adds `zero_shot` and `class_names`
            (needs `class_embeddings`).
        templates: optional prompt templates the class embeddings were made
            with; recorded in the export's metadata only.
        class_embeddings: `(C, D)` array baked into `zero_shot`, one row per
            class name, e.g. `keras_clip.eval.zero_shot_classifier(model,
            class_names, templates)` (the re-normalised mean of each class's
            normalised prompt embeddings). Export imports nothing from
            evaluation: the caller computes them.
        serving_default: the signature TF Serving uses when none is named.
        overwrite: replace an existing, non-empty version folder.
        verbose: print Keras' list of endpoints.

    Returns:
        The version directory written (`path/<version>`).

    Example:
    ```python
    classes, templates = ["red circle", "blue square"], ["a {}."]
    version_dir = keras_clip.export.export_saved_model(
        model, "serving/clip", class_names=classes, templates=templates,
        class_embeddings=keras_clip.eval.zero_shot_classifier(model, classes, templates),
    )
    served = tf.saved_model.load(version_dir)
    served.signatures["zero_shot"](image_bytes=tf.constant([open("x.png", "rb").read()]))
    ```
    """
    class_names, class_embeddings = _check_args(
        model, class_names, templates, class_embeddings, serving_default
    )
    target, version = _version_dir(path, version, overwrite)
    options = {
        "class_names": class_names,
        "templates": None if templates is None else list(templates),
        "class_embeddings": class_embeddings,
        "serving_default": serving_default,
        "overwrite": overwrite,
        "verbose": verbose,
    }
    if keras.backend.backend() == "torch":
        export_in_tensorflow_subprocess(model, target, options)
    else:
        _write(model, target, **options)
    return target


def export_run(run_dir, output, version=None, class_names=None, templates=None, **kwargs):
    """Exports the model of a `keras-clip train` run directory (`run_dir/model.keras`).

    `class_names` / `templates` are lists of str (see `read_lines` for files);
    class names need `class_embeddings=` as in `export_saved_model`.
    Other keyword arguments go to `export_saved_model`. Returns the version
    directory written. Under PyTorch the run's `model.keras` is handed to the
    TensorFlow subprocess directly (not loaded under torch first).
    """
    model_path = os.path.join(os.fspath(run_dir), "model.keras")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"No model.keras in {os.fspath(run_dir)!r}; point to a directory written by `keras-clip train`.")
    if keras.backend.backend() == "torch":
        target, version = _version_dir(output, version, kwargs.get("overwrite", False))
        if templates is not None and class_names is None:
            raise ValueError("templates were given without class_names; the templates only build the zero_shot classes.")
        spec = {"class_names": class_names, "templates": templates, "version": version, **kwargs}
        run_tensorflow_worker(model_path, output, spec)
        return target
    model = load_model(model_path)
    return export_saved_model(model, output, version=version, class_names=class_names, templates=templates, **kwargs)


def load_model(path):
    """Loads a keras_clip `.keras` file for export (no optimizer state)."""
    import keras_clip.models  # noqa: F401  (registers the model, its layers, losses and tokenizers)

    return keras.saving.load_model(path, compile=False)


# ---------------------------------------------------------------------------
# Writing (TensorFlow and JAX backends)
# ---------------------------------------------------------------------------
def _check_shape(x, shape):
    """A run-time shape check that stays in the served graph: a loaded
    signature does not check shapes itself, and a wrong one would otherwise
    fail deep inside the model. Message: "Shape of tensor images [2,8,8,3]
    is not compatible with expected shape [?,16,16,3]"."""
    return tf.ensure_shape(x, shape, name=f"check_{x.name.split(':')[0]}_shape")


def _guarded(fn, inputs, embed_dim):
    """`fn(inputs)`, or an empty `(0, D)` result for an empty batch."""
    return tf.cond(
        tf.shape(inputs)[0] > 0,
        lambda: tf.cast(fn(inputs), tf.float32),
        lambda: tf.zeros([0, embed_dim], tf.float32),
    )  # (B, D)


def _numeric_functions(model):
    """`tf.function`s for the model's two encoders, on the TF or JAX backend.

    `ExportArchive.add_endpoint` is Keras' bridge from a backend function to
    a `tf.function` (a plain trace on TensorFlow, jax2tf on JAX); this
    archive is only used for that conversion, never written.
    """
    if keras.backend.backend() != "jax":
        return _convert(model, {})
    # No gradients in a serving graph; serialise for CPU and CUDA so that an
    # export made on a CPU machine also serves on a GPU. If this jaxlib can't
    # lower for CUDA (or JAX runs on a GPU that TF can't see), fall back to
    # Keras' defaults.
    try:
        return _convert(model, {"with_gradient": False, "native_serialization_platforms": ("cpu", "cuda")})
    except Exception as error:  # noqa: BLE001
        print(f"keras_clip.export: CPU+CUDA serialisation failed ({type(error).__name__}); using Keras' default jax2tf settings.", file=sys.stderr)
        return _convert(model, {"with_gradient": False})


def _convert(model, jax2tf_kwargs):
    height, width, _ = model.image_shape
    converter = keras.export.ExportArchive()
    converter.track(model)
    kwargs = {"jax2tf_kwargs": jax2tf_kwargs} if keras.backend.backend() == "jax" else {}

    def encode_image(images):
        return model.encode_image(images)

    def encode_text(token_ids):
        return model.encode_text(token_ids)

    image_fn = converter.add_endpoint(
        "encode_image",
        encode_image,
        input_signature=[keras.InputSpec(shape=(None, height, width, 3), dtype="float32")],
        **kwargs,
    )
    text_fn = converter.add_endpoint(
        "encode_text",
        encode_text,
        input_signature=[keras.InputSpec(shape=(None, model.context_length), dtype="int32")],
        **kwargs,
    )
    image_fn.get_concrete_function()  # trace (and convert) now, so failures surface here
    text_fn.get_concrete_function()
    return image_fn, text_fn


def _signature_functions(model, image_fn, text_fn, class_names, class_embeddings):
    """The exported `tf.function`s by signature name, each traced once."""
    height, width, _ = model.image_shape
    dim = model.embed_dim
    tokenizer = model.tokenizer
    functions = {}

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="images")])
    def encode_image(images):
        images = _check_shape(images, [None, height, width, 3])
        return {"embeddings": _guarded(image_fn, images, dim)}  # (B, D)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def encode_image_bytes(image_bytes):
        image_bytes = _check_shape(image_bytes, [None])
        images = decode_images(image_bytes, (height, width))  # (B, H, W, 3)
        return {"embeddings": _guarded(image_fn, images, dim)}

    @tf.function(input_signature=[tf.TensorSpec([None, model.context_length], tf.int32, name="token_ids")])
    def encode_text(token_ids):
        token_ids = _check_shape(token_ids, [None, model.context_length])
        return {"embeddings": _guarded(text_fn, token_ids, dim)}

    functions.update(encode_image=encode_image, encode_image_bytes=encode_image_bytes, encode_text=encode_text)

    if tokenizer is not None:

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
        def encode_text_strings(texts):
            texts = _check_shape(texts, [None])
            token_ids = tf.cast(tokenizer.tokenize(texts), tf.int32)  # (B, T)
            return {"embeddings": _guarded(text_fn, token_ids, dim)}

        functions["encode_text_strings"] = encode_text_strings

    if class_names is not None:
        names = np.asarray(class_names, dtype=object)
        weights = np.asarray(class_embeddings, "float32")  # (C, D)
        scale = float(keras.ops.convert_to_numpy(model.logit_scale()))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def zero_shot(image_bytes):
            image_bytes = _check_shape(image_bytes, [None])
            images = decode_images(image_bytes, (height, width))  # (B, H, W, 3)
            embeddings = _guarded(image_fn, images, dim)  # (B, D)
            logits = scale * tf.matmul(embeddings, tf.constant(weights), transpose_b=True)  # (B, C)
            probabilities = tf.nn.softmax(logits, axis=-1)
            top_index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # (B,)
            return {
                "probabilities": probabilities,
                "top_class": tf.gather(tf.constant(names, tf.string), top_index),
                "top_index": top_index,
                "top_probability": tf.reduce_max(probabilities, axis=-1),
            }

        @tf.function(input_signature=[])
        def class_names_fn():
            return {"class_names": tf.constant(names, tf.string)}  # (C,)

        functions["zero_shot"] = zero_shot
        functions["class_names"] = class_names_fn

    for fn in functions.values():
        fn.get_concrete_function()
    return functions


def _metadata(model, class_names, templates, serving_default, functions):
    height, width, _ = model.image_shape
    return {
        "format": "keras_clip SavedModel export",
        "exported_from_backend": os.environ.get(SOURCE_BACKEND_ENV, keras.backend.backend()),
        "graph_written_by": {"jax": "jax2tf"}.get(keras.backend.backend(), "tensorflow"),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "image_shape": [int(height), int(width), 3],
        "embed_dim": int(model.embed_dim),
        "context_length": int(model.context_length),
        "image_preprocessing": {
            "decode": "RGB (grey repeated, alpha dropped); JPEG with dct_method INTEGER_ACCURATE (as Pillow)",
            "resize": f"bicubic, antialias; the image covers {height}x{width} (shorter side to {height}), centre crop, rounded",
            "pixel_range": "[0, 255]; /255 and mean/std are inside the model",
            "image_mean": list(model.image_mean),
            "image_std": list(model.image_std),
        },
        "logit_scale": float(keras.ops.convert_to_numpy(model.logit_scale())),
        "class_names": class_names,
        "templates": templates,
        "signatures": sorted(functions) + ["serving_default"],
        "serving_default": serving_default,
    }


def _write(model, target, class_names, templates, class_embeddings, serving_default, overwrite, verbose):
    if model.context_length is None:
        raise ValueError("The model's text encoder has no max_sequence_length; cannot fix the token_ids signature.")
    image_fn, text_fn = _numeric_functions(model)
    functions = _signature_functions(model, image_fn, text_fn, class_names, class_embeddings)

    archive = keras.export.ExportArchive()
    if model.tokenizer is not None:
        for resource in model.tokenizer.export_resources():
            archive.track(resource)
    # Keras makes the first endpoint `serving_default` too.
    order = [serving_default] + [name for name in functions if name != serving_default]
    for name in order:
        archive.add_endpoint(name, functions[name])

    base = os.path.dirname(os.path.abspath(target))
    os.makedirs(base, exist_ok=True)
    staging = os.path.join(base, f".tmp-{os.path.basename(target)}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(staging, verbose=verbose)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, METADATA_FILENAME), "w", encoding="utf-8") as f:
            json.dump(_metadata(model, class_names, templates, serving_default, functions), f, indent=2)
        if os.path.exists(target):
            if os.listdir(target) and not overwrite:
                raise FileExistsError(f"{target!r} appeared while exporting; not overwriting it.")
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
