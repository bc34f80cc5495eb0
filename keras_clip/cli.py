"""`keras-clip`: train, evaluate and inspect CLIP runs. Thin: parse, call the library, print."""

import argparse
import json
import os
import sys

import yaml


def _parse_set(items):
    """`--set training.epochs=3 model.embed_dim=64` -> nested override dict."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set takes KEY=VALUE (dotted keys); received {item!r}.")
        key, value = item.split("=", 1)
        node = overrides
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return overrides


def _cmd_train(args):
    from keras_clip.eval.run import format_metrics
    from keras_clip.train import train

    overrides = _parse_set(args.set)
    data = overrides.setdefault("data", {})
    for flag in ("data", "eval_data", "classes", "templates"):
        if getattr(args, flag):
            data[{"data": "train", "eval_data": "eval"}.get(flag, flag)] = getattr(args, flag)
    if args.strict:
        data["strict"] = True
    training = overrides.setdefault("training", {})
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("learning_rate", "learning_rate")):
        if getattr(args, flag) is not None:
            training[key] = getattr(args, flag)
    if args.init:
        overrides.setdefault("model", {})["init"] = os.path.abspath(args.init) if os.path.exists(args.init) else args.init
    for tower in ("image", "text"):
        value = getattr(args, f"lock_{tower}")
        if value is not None:
            training.setdefault("lock", {})[tower] = "all" if value == "all" else int(value)
    _, metrics = train(args.config, args.output_dir, overrides=overrides, overwrite=args.overwrite)
    print(format_metrics(metrics))
    print(f"backend {metrics['backend']}, trained in {metrics['train_seconds']:.1f} s; run written to {args.output_dir}")


def _cmd_convert(args):
    from keras_clip.pretrained import save_run
    from keras_clip.train.guard import RUN_FILES
    from keras_clip.train.init import load_pretrained

    if os.path.isdir(args.output) and any(os.path.exists(os.path.join(args.output, f)) for f in RUN_FILES):
        if not args.overwrite:
            raise FileExistsError(
                f"{args.output!r} already holds a run; pick another --output or pass --overwrite to replace it."
            )
    model, model_config = load_pretrained(args.source, args.activation)
    save_run(model, args.output, model_config=model_config, source=args.source)
    tokenizer = type(model.tokenizer).__name__ if model.tokenizer is not None else "none (vocabulary is not OpenAI's)"
    activation = (model_config or {}).get("image_encoder", {}).get("activation", args.activation)
    print(
        f"converted {args.source} -> {args.output}: {model.count_params():,} weights, image {model.image_shape[0]} px, "
        f"context {model.context_length}, activation {activation} (state dicts do not record it; "
        f"--activation gelu for most LAION weights), tokenizer {tokenizer}"
    )


def _cmd_eval(args):
    from keras_clip.eval import load_templates
    from keras_clip.eval.run import evaluate_run, format_metrics
    from keras_clip.utils.text_files import read_lines

    metrics = evaluate_run(
        args.run_dir,
        data=args.data,
        class_names=read_lines(args.classes) if args.classes else None,
        templates=load_templates(args.templates) if args.templates else None,
    )
    print(format_metrics(metrics))
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))


def _cmd_predict(args):
    from keras_clip.eval.predict import list_images, rank_images, rank_texts
    from keras_clip.models.presets import load_run_model

    if bool(args.image) == bool(args.text):
        raise ValueError("predict takes either --image PATH --texts ... or --text TEXT --images DIR.")
    model = load_run_model(args.run_dir)
    if args.image:
        if not args.texts:
            raise ValueError("--image needs --texts with at least one caption to rank.")
        ranking = rank_texts(model, args.image, args.texts)
        print(f"texts ranked for {args.image}:")
    else:
        if not args.images:
            raise ValueError("--text needs --images DIR (a folder of images to rank).")
        skipped = []
        ranking = rank_images(model, args.text, list_images(args.images), skipped=skipped)
        for path, reason in skipped:
            print(f"skipped: {reason}")
        print(f"images ranked for {args.text!r}" + (f" ({len(skipped)} unreadable skipped)" if skipped else "") + ":")
    for rank, (item, prob) in enumerate(ranking[: args.top], 1):
        print(f"{rank:3d}. p={prob:.3f}  {item}")


def _cmd_export(args):
    from keras_clip.eval import load_templates, zero_shot_classifier
    from keras_clip.export import export_run
    from keras_clip.models.presets import load_run_model
    from keras_clip.utils.text_files import read_lines

    classes = read_lines(args.classes) if args.classes else None
    templates = load_templates(args.templates) if args.templates else None
    if templates and not classes:
        raise ValueError("--templates needs --classes (they build the zero_shot signature's classes).")
    embeddings = None
    if classes:
        templates = templates or load_templates("default")
        embeddings = zero_shot_classifier(load_run_model(args.run_dir), classes, templates)
    target = export_run(
        args.run_dir, args.output, version=args.version, class_names=classes, templates=templates,
        class_embeddings=embeddings,
    )
    print(f"SavedModel written to {target}")


def _cmd_report(args):
    from keras_clip.eval import load_templates
    from keras_clip.eval.report import write_report
    from keras_clip.utils.text_files import read_lines

    paths, notes = write_report(
        args.run_dir,
        args.output,
        data=args.data,
        class_names=read_lines(args.classes) if args.classes else None,
        templates=load_templates(args.templates) if args.templates else None,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    for note in notes:
        print(note)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-clip",
        description="Train, evaluate and export CLIP models with Keras 3 "
        "(backend from KERAS_BACKEND: tensorflow, jax or torch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (default: the embedded shapes recipe)")
    p.add_argument("--config", default=None, help="preset name or YAML file (default: shapes)")
    p.add_argument("--output-dir", default=os.path.join("runs", "shapes"), help="run directory to write")
    p.add_argument("--epochs", type=int, default=None,
                   help="default (auto): about 64,000 examples seen, i.e. ceil(64000 / records), 3 to 100 epochs; 20 on the shapes set")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default (auto): 2e-3 x batch size / 256 (5e-4 at 64); 0.002 on the shapes set")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. training.epochs=3")
    p.add_argument("--data", help="train on files: a CSV/TSV/JSONL manifest, an image folder with .txt captions, or tar shards (data-{000..009}.tar)")
    p.add_argument("--eval-data", help="held-out files to evaluate on every eval.every_epochs epochs and after training (same kinds as --data)")
    p.add_argument("--classes", help="class names file (one per line) for zero-shot evaluation of labelled eval data")
    p.add_argument("--templates", help="prompt templates file (one per line, each with {})")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record instead of skipping and counting it")
    p.add_argument("--overwrite", action="store_true", help="delete a finished run in --output-dir (checkpoints included) and train again")
    p.add_argument("--init", help="start from pretrained weights: a run directory (keras-clip train / convert) or a checkpoint (.pt, .safetensors, a Hugging Face folder, a keras-hub preset)")
    p.add_argument("--lock-image", metavar="all|N", help="freeze the image tower (all), or all but its last N blocks (LiT)")
    p.add_argument("--lock-text", metavar="all|N", help="freeze the text tower (all), or all but its last N blocks")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert", help="import a pretrained CLIP checkpoint (OpenAI, open_clip, Hugging Face, keras-hub) as a run directory")
    p.add_argument("source", help="a .pt / .bin / .safetensors state dict, a Hugging Face CLIPModel folder, or a keras-hub preset folder or name")
    p.add_argument("--output", required=True, help="run directory to write (model.keras, tokenizer, config.yaml)")
    p.add_argument("--activation", choices=["quick_gelu", "gelu"], default="quick_gelu", help="MLP activation of a state dict (default quick_gelu: OpenAI's weights; most LAION weights use gelu)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --output")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("eval", help="re-evaluate a saved run (on its own data, or on --data)")
    p.add_argument("run_dir")
    p.add_argument("--data", help="a manifest, image folder or tar shards to evaluate on")
    p.add_argument("--classes", help="class names file (one per line) for zero-shot accuracy")
    p.add_argument("--templates", help="prompt templates file (one per line, each with {})")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="rank texts for an image, or images for a text")
    p.add_argument("run_dir")
    p.add_argument("--image", help="an image file to classify against --texts")
    p.add_argument("--texts", nargs="*", help="candidate captions for --image")
    p.add_argument("--text", help="a caption to find images for")
    p.add_argument("--images", help="a folder of images to rank for --text")
    p.add_argument("--top", type=int, default=10, help="how many to print")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a run as a SavedModel (TensorFlow Serving layout)")
    p.add_argument("run_dir")
    p.add_argument("--output", required=True, help="export base directory (version subfolders inside)")
    p.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    p.add_argument("--classes", help="file with one class name per line (adds the zero_shot signature)")
    p.add_argument("--templates", help="file with one prompt template per line, each with {}")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("report", help="write PNG pictures of a run (needs matplotlib)")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="folder for the PNGs (default RUN_DIR/report)")
    p.add_argument("--data", help="a manifest, image folder or tar shards to draw the pictures from (default: the run's eval data, else its training data)")
    p.add_argument("--classes", help="class names file for the confusion matrix (default: the run's --classes)")
    p.add_argument("--templates", help="prompt templates file (one per line, each with {})")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv=None, before_command=None):
    """Runs one `keras-clip` command; returns the exit code (2 on an error,
    printed as one line). `before_command` runs after the arguments parsed
    (the console entry point imports TensorFlow quietly there)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if before_command is not None:
        before_command()
    try:
        args.func(args)
    except (OSError, KeyError, ValueError, TypeError, ImportError, RuntimeError) as error:
        # One line, not a traceback. An OSError raised by the system carries
        # (errno, text, path): print its text, not the errno.
        message = error.args[0] if len(error.args) == 1 else str(error)
        print(f"keras-clip {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
