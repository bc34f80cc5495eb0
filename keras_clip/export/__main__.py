"""`python -m keras_clip.export MODEL --output DIR [options]`: export a `.keras`
file or a `keras-clip train` run directory as a SavedModel.

This is also the TensorFlow-side worker that `export_saved_model` runs under
the PyTorch backend (with `--spec`, a JSON file of its arguments).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m keras_clip.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a .keras file or a run directory holding model.keras")
    parser.add_argument("--output", required=True, help="base directory; the model goes to OUTPUT/<version>/")
    parser.add_argument("--version", type=int, default=None, help="version folder (default: next free integer)")
    parser.add_argument("--classes", default=None, help="text file of class names (one per line) for zero_shot")
    parser.add_argument("--templates", default=None, help="text file of prompt templates with {} (one per line)")
    parser.add_argument("--serving-default", default="encode_image_bytes", help="signature served by default")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)  # JSON of export arguments (internal)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from keras_clip.export.saved_model import export_saved_model, load_model, read_lines

    kwargs = {
        "version": args.version,
        "class_names": read_lines(args.classes) if args.classes else None,
        "templates": read_lines(args.templates) if args.templates else None,
        "serving_default": args.serving_default,
        "overwrite": args.overwrite,
    }
    if args.spec:
        with open(args.spec, encoding="utf-8") as f:
            kwargs.update(json.load(f))
        if kwargs.get("class_embeddings") is not None:
            import numpy as np

            kwargs["class_embeddings"] = np.load(kwargs["class_embeddings"])
    path = args.model
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model at {args.model!r}; pass a .keras file or a run directory with model.keras.")
    target = export_saved_model(load_model(path), args.output, **kwargs)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
