"""The automatic training settings: `training.learning_rate: auto` and
`training.epochs: auto` (the defaults) resolved from the batch size and the
size of the training data, before the run starts.

The rule, for image-caption files (`data.train`, `--data`):

- learning rate = BASE_LEARNING_RATE x batch_size / 256 (the linear scaling
  rule: twice the batch, twice the rate), 1e-3 at batch 128, 5e-4 at 64;
- epochs = TARGET_EXAMPLES / records, rounded up and kept within
  [MIN_EPOCHS, MAX_EPOCHS]: every data set gets about the same number of
  examples seen (so, with the linear rule, about the same training), small
  sets more passes, large ones fewer;
- warmup stays `training.warmup_fraction` of the steps (5%).

On the built-in shapes set, `auto` means the recipe's own measured settings
(learning rate 0.002, 20 epochs), so the default recipe is unchanged.

A value the user sets (in a config, `--set`, `--learning-rate`, `--epochs`)
is always used as given; only `auto` (or `null`) values are chosen here.
"""

import math

AUTO = "auto"
BASE_LEARNING_RATE = 2e-3  # per 256 examples in a batch
REFERENCE_BATCH = 256
TARGET_EXAMPLES = 64_000  # training examples seen over a run (records x epochs)
MIN_EPOCHS, MAX_EPOCHS = 3, 100
# The default recipe on the built-in shapes set (measured: zero-shot top-1 0.95-0.97 in 4.4-6.9 min on 2 CPU cores).
BUILTIN_SHAPES = {"learning_rate": 0.002, "epochs": 20}


def is_auto(value):
    return value is None or (isinstance(value, str) and value.strip().lower() == AUTO)


def _check(key, value):
    if is_auto(value):
        return
    if key == "epochs":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Config key 'training.epochs' must be an integer or 'auto' (the default); received {value!r}.")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"Config key 'training.learning_rate' must be a positive number or 'auto' (the default); received {value!r}."
        )


def auto_learning_rate(batch_size):
    return BASE_LEARNING_RATE * batch_size / REFERENCE_BATCH


def auto_epochs(num_records):
    return int(min(max(math.ceil(TARGET_EXAMPLES / max(num_records, 1)), MIN_EPOCHS), MAX_EPOCHS))


def resolve_training(training, num_records, builtin=False):
    """({"learning_rate": float, "epochs": int}, {key: how it was chosen})
    for a `training:` config section; `num_records`: the training records;
    `builtin`: the data is the built-in shapes set. Values that are set are
    returned unchanged and get no note."""
    for key in ("learning_rate", "epochs"):
        _check(key, training.get(key))
    batch_size = int(training["batch_size"])
    rules = {  # key -> (type of a set value, the automatic value, how it was chosen)
        "learning_rate": (
            float, lambda: auto_learning_rate(batch_size),
            lambda value: f"{BASE_LEARNING_RATE:.0e} x {batch_size}/{REFERENCE_BATCH}",
        ),
        "epochs": (
            int, lambda: auto_epochs(num_records),
            lambda value: f"~{TARGET_EXAMPLES:,} examples seen: "
            f"{max(num_records // batch_size, 1) * value:,} steps for {num_records:,} records",
        ),
    }
    values, notes = {}, {}
    for key, (cast, choose, explain) in rules.items():
        value = training.get(key)
        if not is_auto(value):
            values[key] = cast(value)
        elif builtin:
            values[key], notes[key] = BUILTIN_SHAPES[key], "the shapes recipe"
        else:
            values[key] = choose()
            notes[key] = explain(values[key])
    return values, notes


def describe_choice(values, notes, warmup_fraction):
    """The one line a run prints at its start, e.g. `Training: learning rate
    5.0e-04 (auto: 2e-03 x 64/256), 46 epochs (auto: ...), warmup 5%`."""
    def part(text, key):
        return f"{text} (auto: {notes[key]})" if key in notes else f"{text} (set)"

    lr = part(f"learning rate {float(values['learning_rate']):.1e}", "learning_rate")
    epochs = part(f"{values['epochs']} epochs", "epochs")
    return f"Training: {lr}, {epochs}, warmup {float(warmup_fraction):.0%} of the steps"
