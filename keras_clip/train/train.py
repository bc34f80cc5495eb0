"""`train(config, output_dir)`: one training run for every data source.

config -> training source -> tokenizer -> model -> compile -> one dataset per
epoch -> fit -> evaluation -> run directory. The shapes set and image-caption
files are both `DataSource`s; nothing below branches on which one it is.
"""

import os
import sys
import time

import keras

from keras_clip import losses as clip_losses
from keras_clip.config import load_config, save_config
from keras_clip.data import BadRecordLogger, BadRecordReport
from keras_clip.data.config_sources import describe, train_source
from keras_clip.eval.run import evaluate_sets, evaluation_sets, training_evaluation
from keras_clip.models.builder import build_clip
from keras_clip.models.flops import train_step_flops
from keras_clip.models.remat import prepare_jax_cpu_remat, set_remat
from keras_clip.tokenizers import CaptionTokenizer
from keras_clip.train import defaults as auto_defaults
from keras_clip.train import distribution, guard
from keras_clip.train.init import apply_locks, init_model
from keras_clip.train.loop import fit_epochs
from keras_clip.train.optimizer import make_optimizer, resolve_jit_compile, tf_xla_min_steps
from keras_clip.train.run_dir import CONFIG_FILE, absolute_data_paths, write_run


def corpus_tokenizer(source, context_length):
    """A word-level tokenizer whose vocabulary comes from the source's captions."""
    captions = source.captions()
    if not captions:
        raise ValueError(f"No captions found in the training data {describe(source)!r}.")
    return CaptionTokenizer.from_corpus(captions, context_length=context_length)


def _run_summary(model, history, train_seconds, epochs, **extra):
    """The metrics.json entries every run has, plus `extra`."""
    return {
        "backend": keras.backend.backend(),
        "train_seconds": round(train_seconds, 2),
        "epochs": epochs,
        **extra,
        "final_loss": history["loss"][-1] if history.get("loss") else None,
        "final_logit_scale": float(keras.ops.convert_to_numpy(model.logit_scale())),
        "history": {k: [None if v is None else float(v) for v in values] for k, values in history.items()},
    }


def check_training_settings(config):
    """Refuses settings that would train nothing, before any work."""
    training = config["training"]
    for key, low in (("epochs", 1), ("batch_size", 2)):
        value = training[key]
        if key == "epochs" and auto_defaults.is_auto(value):
            continue  # chosen from the data size by resolve_auto_settings
        if isinstance(value, bool) or not isinstance(value, int):
            also = " or 'auto' (the default)" if key == "epochs" else ""
            raise ValueError(f"Config key 'training.{key}' must be an integer{also}; received {value!r}.")
        if value < low:
            why = "a run needs at least one epoch" if key == "epochs" else "a contrastive batch needs negatives"
            raise ValueError(f"training.{key} must be >= {low} ({why}); received {value}.")
    distribution.check_settings(training)


def _check_enough_data(source, num_records, batch_size):
    if num_records < batch_size:
        raise ValueError(
            f"the training data {describe(source)!r} has {num_records} image-caption "
            f"records, fewer than one batch (training.batch_size={batch_size}); a contrastive step needs a "
            f"full batch: lower --batch-size to at most {num_records} or add data."
        )


# --- Automatic settings (keras_clip/train/defaults.py) -----------------------
def resolve_auto_settings(config):
    """`config` with its `auto` learning rate and epochs replaced by the
    chosen values, and {key: how it was chosen} for those. Runs before the
    run directory is checked, so a resumed or continued run compares (and
    config.yaml records) the values actually used."""
    training = config["training"]
    if not any(auto_defaults.is_auto(training.get(k)) for k in ("learning_rate", "epochs")):
        return config, {}
    builtin = not config["data"]["train"]
    if builtin:
        num_records = int(config["data"]["train_examples"])
    else:
        source = train_source(config)
        num_records = source.num_records
        if num_records is None:
            num_records = len(source.captions())
    values, notes = auto_defaults.resolve_training(training, num_records, builtin=builtin)
    config = {**config, "training": {**training, **values}}
    return config, notes
# --- end of the automatic settings block ---------------------------------------


def _verbose(verbose):
    """Keras' progress bar on a terminal; one line per epoch when stdout is a file or a pipe."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def train(config=None, output_dir=None, overrides=None, verbose="auto", callbacks=(), overwrite=False):
    """Trains a CLIP model as `config` says and writes a run directory.

    Args:
        config: preset name, YAML path or dict (None: the `shapes` recipe).
        output_dir: where to write the run (None: nothing is written).
        overrides: nested dict merged over the config.
        verbose: passed to `model.fit` (progress bar by default).
        callbacks: extra Keras callbacks.
        overwrite: bool. Remove a finished run in `output_dir` first
            (without it a finished run is never overwritten; see
            `keras_clip.train.guard`).

    The training data is `data.train` (a manifest, an image folder or tar
    shards) when set, else the embedded shapes set. With an `output_dir`, a
    run that is killed resumes where it stopped when started again with the
    same arguments: weights, optimizer state, the epoch and the history so
    far come back from `output_dir/backup`, and the data stream skips the
    epochs already done (each epoch's order, caption draws and crops depend
    only on the seed and the epoch), so the result equals an uninterrupted
    run.

    Returns:
        (model, metrics dict).
    """
    config = absolute_data_paths(load_config(config, overrides))
    check_training_settings(config)
    config, auto_notes = resolve_auto_settings(config)
    check_training_settings(config)
    verbose = _verbose(verbose)
    print_fn = print if verbose else (lambda *_: None)
    if config["training"]["remat"] is True:
        prepare_jax_cpu_remat()  # before anything (a distribution, the weights) starts JAX's backend
    with guard.RunLock(output_dir, print_fn):
        guard.prepare(output_dir, config, overwrite, print_fn)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            save_config(config, os.path.join(output_dir, CONFIG_FILE))  # read back by a resumed run
        with distribution.scope(config["training"]):  # data parallel, when training.distribution asks
            return _train(config, output_dir, verbose, callbacks, print_fn, auto_notes)


def _train(config, output_dir, verbose, callbacks, print_fn, auto_notes=None):
    data_cfg, training = config["data"], config["training"]
    print_fn(auto_defaults.describe_choice(training, auto_notes or {}, training["warmup_fraction"]))
    keras.utils.set_random_seed(int(training["seed"]))
    if training["mixed_precision"]:
        keras.mixed_precision.set_dtype_policy(training["mixed_precision"])
    strict = bool(data_cfg["strict"])

    if config["model"]["init"]:  # fine-tuning: the pretrained model's own tokenizer and image size
        model = init_model(config, print_fn)
        tokenizer = model.tokenizer
        source = train_source(config, image_size=model.image_shape[0])
    else:
        source = train_source(config)
        tokenizer = corpus_tokenizer(source, config["model"]["text_encoder"]["context_length"])
        model = build_clip(config["model"], tokenizer=tokenizer)
    apply_locks(model, training["lock"], print_fn)
    set_remat(model, training["remat"])
    loss = clip_losses.get(config["loss"])
    batch_size, epochs, seed = int(training["batch_size"]), int(training["epochs"]), int(training["seed"])
    num_records = source.num_records
    if num_records is None:  # a kind that cannot count its records: one caption each assumed
        num_records = len(source.captions())
    _check_enough_data(source, num_records, batch_size)
    steps_per_epoch = max(num_records // batch_size, 1)
    steps, step_flops = steps_per_epoch * epochs, train_step_flops(model, batch_size)
    jit_compile = resolve_jit_compile(training["jit_compile"], steps, training["micro_batches"], step_flops)
    if training["jit_compile"] == "auto":
        rule = f"; XLA from {tf_xla_min_steps(step_flops)}" if keras.backend.backend() == "tensorflow" else ""
        print_fn(f"jit_compile: auto -> {'XLA' if jit_compile else 'no XLA'} "
                 f"({keras.backend.backend()}, {steps} steps of {step_flops / 1e9:.1f} GFLOP{rule})")
    model.compile(
        optimizer=make_optimizer(training, steps),
        loss=loss,
        jit_compile=jit_compile,
        micro_batches=int(training["micro_batches"]),
        loss_layout=distribution.loss_layout(training["distribution"]),
    )
    report = BadRecordReport()

    def epoch_dataset(epoch):
        # Order, caption draws and crops keyed by (seed, epoch): a resumed
        # run sees exactly the batches an uninterrupted one would.
        return source.dataset(
            tokenizer, model.image_shape, batch_size, training=True, seed=seed, epoch=epoch, strict=strict,
            report=report, image_views=bool(getattr(loss, "needs_image_views", False)),
        )

    evaluation = distribution.evaluate_unsharded(training_evaluation(config, model.image_shape, epochs, print_fn))
    logger = BadRecordLogger(report, print_fn=print_fn, verbose=bool(verbose), run_summary=False, one_line=True)
    epoch_callbacks = ([evaluation] if evaluation else []) + [logger]
    start = time.time()
    history, _ = fit_epochs(
        model, epoch_dataset, epochs, output_dir, epoch_callbacks, callbacks, verbose,
        describe_data=repr(describe(source)),
    )
    train_seconds = time.time() - start
    if report.total:
        print_fn("Bad records over the whole run: " + report.summary(cumulative=True))

    final_sets = evaluation_sets(config, model.image_shape, strict=strict)
    with distribution.paused():
        metrics = evaluate_sets(model, final_sets, batch_size=int(config["eval"]["batch_size"]))
    if "bad_records" in metrics:
        metrics["eval_bad_records"] = metrics.pop("bad_records")
    skipped = report.run_counts()
    extra = {
        "steps": steps_per_epoch * epochs,
        "train_records": num_records,  # image-caption records the training data lists, bad ones included
        "train_records_skipped": skipped["skipped"],  # distinct bad records skipped over the run
        "bad_records": skipped,
        "learning_rate": float(training["learning_rate"]),
        "auto": dict(auto_notes or {}),  # the settings chosen automatically, and how
    }
    metrics.update(_run_summary(model, history, train_seconds, epochs, **extra))
    if output_dir:
        write_run(output_dir, model, tokenizer, config, metrics)
    return model, metrics
