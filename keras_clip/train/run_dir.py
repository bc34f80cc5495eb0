"""Reading and writing a run directory.

A run directory holds `model.keras` (weights + tokenizer), `tokenizer/` (the
tokenizer's assets), `config.yaml` (the resolved config), `metrics.json`,
`checkpoints/` (weights after each epoch), `logs/` (TensorBoard) and, while a
run is in progress, `backup/` (the state a killed run resumes from).
"""

import json
import math
import os

import numpy as np

from keras_clip.config import save_config

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"


def backup_dir(output_dir):
    return os.path.join(output_dir, BACKUP_DIR) if output_dir else None


def jsonable(obj):
    """`obj` with NumPy values turned into Python ones and non-finite floats into None."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, data):
    """Writes JSON atomically (a temporary file renamed over `path`)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(jsonable(data), f, indent=2)
    os.replace(path + ".tmp", path)


def write_run(output_dir, model, tokenizer, config, metrics):
    """Writes the finished run: model, tokenizer assets, config, metrics."""
    os.makedirs(output_dir, exist_ok=True)
    model.save(os.path.join(output_dir, MODEL_FILE))
    if tokenizer is not None:
        tokenizer.save(os.path.join(output_dir, "tokenizer"))
    save_config(config, os.path.join(output_dir, CONFIG_FILE))
    write_json(os.path.join(output_dir, METRICS_FILE), metrics)


def _absolute(path):
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def absolute_data_paths(config):
    """The config with its data paths (`data.train`, `data.eval`,
    `data.classes`, a `data.templates` file) made absolute, so that the run
    directory's `config.yaml` still finds them from another folder
    (`keras-clip eval`, `keras-clip report`). Shard brace patterns are kept
    as they are, only prefixed."""
    data_cfg = config["data"]
    for key in ("train", "eval", "classes"):
        value = data_cfg.get(key)
        if isinstance(value, (list, tuple)):
            data_cfg[key] = [_absolute(v) for v in value]
        elif isinstance(value, dict) and isinstance(value.get("path"), str):  # a {"kind": ...} spec
            data_cfg[key] = {**value, "path": _absolute(value["path"])}
        elif isinstance(value, (str, os.PathLike)) and value:
            data_cfg[key] = _absolute(value)
    templates = data_cfg.get("templates")
    if templates and os.path.isfile(templates):  # else a shipped set's name
        data_cfg["templates"] = _absolute(templates)
    return config
