"""What a `keras-clip train` epoch costs over the bare optimizer steps.

Runs the library's real training path, `keras_clip.train.train` with a run
directory (its per-epoch fit loop, callbacks, evaluation every
`eval.every_epochs`, checkpoints, TensorBoard, resume backups, one line per
epoch as when stdout is a pipe), then, on a freshly built and compiled
model of the same config, `model.train_on_batch` on the very same batches
(the epochs' datasets read to NumPy beforehand). Both clocks start after the
first step (so tracing/compilation is out of both) and stop after the last
step; the fit side includes everything the run does in between. Prints the
seconds and the ratio (target <= 1.15) for the backend in KERAS_BACKEND, or
for several with `--backends all`.

    KERAS_BACKEND=jax python benchmarks/fit_overhead.py --steps 300
    python benchmarks/fit_overhead.py --backends all
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _backends import run_for_backends_option  # noqa: E402


def _config(args):
    from keras_clip.config import load_config

    steps_per_epoch = args.steps // args.epochs
    return load_config(args.config, {
        "data": {"train_examples": steps_per_epoch * args.batch_size},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size},
        **({} if args.with_eval else {"eval": {"every_epochs": 0}}),
    })


def _fit_seconds(config):
    """(seconds from the end of the first step to the end of the last epoch, steps) of `train`."""
    import keras

    from keras_clip.train import train

    class Clock(keras.callbacks.Callback):
        first = last = None
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.first is None:
                self.first = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        train(config, os.path.join(out, "run"), verbose=2, callbacks=[clock])
    return clock.last - clock.first, clock.steps


def _raw_seconds(config):
    """(seconds of steps 2..N, steps) of `train_on_batch` on the same batches."""
    import keras
    import numpy as np

    from keras_clip import losses
    from keras_clip.data.config_sources import train_source
    from keras_clip.models.builder import build_clip
    from keras_clip.train.optimizer import make_optimizer, resolve_jit_compile
    from keras_clip.train.train import corpus_tokenizer, resolve_auto_settings

    config, _ = resolve_auto_settings(config)
    training = config["training"]
    keras.utils.set_random_seed(int(training["seed"]))
    source = train_source(config)
    tokenizer = corpus_tokenizer(source, config["model"]["text_encoder"]["context_length"])
    model = build_clip(config["model"], tokenizer=tokenizer)
    batch_size, epochs = int(training["batch_size"]), int(training["epochs"])
    model.compile(
        optimizer=make_optimizer(training, source.num_records // batch_size * epochs),
        loss=losses.get(config["loss"]),
        jit_compile=resolve_jit_compile(training["jit_compile"], source.num_records // batch_size * epochs,
                                        training["micro_batches"]),
    )
    batches = []
    for epoch in range(epochs):
        ds = source.dataset(tokenizer, model.image_shape, batch_size, training=True, seed=int(training["seed"]), epoch=epoch)
        batches.extend(keras.tree.map_structure(np.asarray, b) for b in ds.as_numpy_iterator())
    model.train_on_batch(batches[0])
    start = time.perf_counter()
    for batch in batches[1:]:
        logs = model.train_on_batch(batch)
    float(np.asarray(logs if not isinstance(logs, (list, tuple)) else logs[0]))  # wait for the last step
    return time.perf_counter() - start, len(batches)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="shapes")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps in all (default 300)")
    p.add_argument("--epochs", type=int, default=6, help="epochs they are split into (default 6)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--with-eval", action="store_true",
                   help="keep the config's evaluation every eval.every_epochs epochs (and after the last) inside "
                        "the fit side; by default it is off, so that both sides do the same training work")
    p.add_argument("--backends", default=None, help="'all' or a comma list: one child process per backend")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.backends:
        for r in run_for_backends_option(__file__, args.backends):
            print(f"{r['backend']:>10}: fit {r['fit_s']:.2f} s, train_on_batch {r['raw_s']:.2f} s "
                  f"({r['steps']} steps), ratio {r['ratio']:.3f}")
        return
    import keras

    config = _config(args)
    fit_s, fit_steps = _fit_seconds(config)
    raw_s, raw_steps = _raw_seconds(config)
    assert fit_steps == raw_steps, (fit_steps, raw_steps)
    result = {"backend": keras.backend.backend(), "config": args.config, "steps": fit_steps, "epochs": args.epochs,
              "with_eval": bool(args.with_eval),
              "fit_s": round(fit_s, 3), "raw_s": round(raw_s, 3), "ratio": round(fit_s / raw_s, 4)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['backend']}: fit {fit_s:.2f} s vs train_on_batch {raw_s:.2f} s over {fit_steps - 1} steps "
              f"after the first ({args.epochs} epochs of {args.config}): ratio {fit_s / raw_s:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
