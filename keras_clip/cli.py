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
    from keras_clip.training import format_metrics, train

    overrides = _parse_set(args.set)
    training = overrides.setdefault("training", {})
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("learning_rate", "learning_rate")):
        if getattr(args, flag) is not None:
            training[key] = getattr(args, flag)
    _, metrics = train(args.config, args.output_dir, overrides=overrides)
    print(format_metrics(metrics))
    print(f"backend {metrics['backend']}, trained in {metrics['train_seconds']:.1f} s; run written to {args.output_dir}")


def _cmd_eval(args):
    from keras_clip.training import evaluate_run, format_metrics

    metrics = evaluate_run(args.run_dir)
    print(format_metrics(metrics))
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))


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
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. training.epochs=3")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="re-evaluate a saved run")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"keras-clip {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
