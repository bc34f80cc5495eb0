"""Run configs: plain nested dicts (YAML on disk), merged over defaults and validated.

A config has five sections: `model`, `data`, `training`, `loss`, `eval`. An
unknown key anywhere is an error that names it and lists the valid keys. A
top-level `base: NAME_OR_PATH` starts from another config and overrides it.
"""

import copy
import os

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")

DEFAULTS = {
    "model": {
        "embed_dim": 512,
        "image_encoder": {
            "image_size": 224,
            "patch_size": 32,
            "width": 768,
            "layers": 12,
            "heads": 12,
            "mlp_dim": 3072,
            "activation": "quick_gelu",
            "patch_dropout": 0.0,
        },
        "text_encoder": {
            "vocabulary_size": 49408,
            "context_length": 77,
            "width": 512,
            "layers": 12,
            "heads": 8,
            "mlp_dim": 2048,
            "activation": "quick_gelu",
        },
        "end_token_id": 49407,
        "pad_token_id": 0,
        "start_token_id": None,
        "image_head": "linear",
        "text_head": "linear",
        "logit_scale": {"init": 1.0 / 0.07, "max": 100.0, "learnable": True, "bias_init": None},
        "queue_size": 0,
        "momentum": None,
        "dtype": None,
        "init": None,
        "init_activation": "quick_gelu",
    },
    "data": {
        "name": "shapes",
        "train": None,
        "eval": None,
        "classes": None,
        "templates": None,
        "strict": False,
        "max_eval_examples": 5000,
        "train_examples": 8000,
        "test_examples": 1000,
        "heldout_examples": 600,
        "two_shape_fraction": 0.3,
        "seed": 0,
    },
    "training": {
        "batch_size": 128,
        # "auto": chosen from the batch size and the data size (keras_clip/train/defaults.py).
        "epochs": "auto",
        "learning_rate": "auto",
        "weight_decay": 0.1,
        "warmup_fraction": 0.05,
        "seed": 0,
        "jit_compile": "auto",
        "mixed_precision": None,
        "lock": {"image": None, "text": None},
        "micro_batches": 1,
        "distribution": None,  # or data_parallel, or {name: data_parallel, layout: local}; see train/distribution.py
        "remat": False,
    },
    "loss": {"name": "infonce"},
    "eval": {"batch_size": 256, "every_epochs": 5, "max_examples": 1000},
}

# Sections whose values are free-form (checked by the code that reads them).
FREE_FORM = {("loss",), ("model", "image_head"), ("model", "text_head")}


def validate_config(config, defaults=None, path=()):
    """Raises on an unknown key anywhere in `config` (naming it and the valid
    keys there) or a section that is not a mapping. `defaults`: the schema
    (default: the full `DEFAULTS`)."""
    if defaults is None:
        defaults = DEFAULTS
    for key, value in config.items():
        if path + (key,) in FREE_FORM or path in FREE_FORM:
            continue
        if key not in defaults:
            where = ".".join(path) or "the top level"
            raise KeyError(
                f"Unknown config key {'.'.join(path + (key,))!r} in {where}; "
                f"valid keys there: {sorted(defaults)}."
            )
        _check_type(path + (key,), value, defaults[key])
        if isinstance(defaults[key], dict) and value is not None:
            if not isinstance(value, dict):
                raise TypeError(
                    f"Config key {'.'.join(path + (key,))!r} must be a mapping; received {value!r}."
                )
            validate_config(value, defaults[key], path + (key,))


def _check_type(path, value, default):
    """Numbers where the default is a number, booleans where it is a boolean."""
    name = ".".join(path)
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        return
    if not ok:
        raise TypeError(f"Config key {name!r} must be {expected} (default {default!r}); received {value!r}.")


def merge_config(base, update):
    """`update` merged over a deep copy of `base` (nested dicts merged key by
    key; the free-form sections replaced whole)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and (key,) not in FREE_FORM:
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Config file not found: {path!r}.")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"Config file {path!r} is not valid YAML at{where}: {problem}.") from None
    if not isinstance(data, dict):
        raise TypeError(f"Config file {path!r} must hold a mapping; it holds {type(data).__name__}.")
    return data


def list_presets():
    """Names of the configs shipped with the package (`keras_clip/configs/*.yaml`)."""
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def resolve_path(name_or_path):
    """A preset name or a path -> a YAML file path (clear error if neither)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    if os.path.isfile(candidate):
        return candidate
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        raise FileNotFoundError(f"Config file not found: {name_or_path!r}.")
    raise ValueError(
        f"Unknown preset {name_or_path!r}; known presets: {list_presets()} "
        "(or pass the path of a YAML config or of a run directory)."
    )


def load_config(source=None, overrides=None):
    """Full, validated config from a preset name, a YAML path or a dict.

    `None` gives the default recipe (`shapes`). `overrides` is a nested dict
    merged last.
    """
    if source is None:
        source = "shapes"
    raw = read_yaml(resolve_path(source)) if isinstance(source, str) else dict(source)
    base = raw.pop("base", None)
    validate_config(raw, DEFAULTS)
    config = load_config(base) if base else copy.deepcopy(DEFAULTS)
    if "loss" in raw:
        config["loss"] = raw["loss"]  # a loss section replaces the base's whole
    config = merge_config(config, raw)
    if overrides:
        validate_config(overrides, DEFAULTS)
        config = merge_config(config, overrides)
    return config


def save_config(config, path):
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
