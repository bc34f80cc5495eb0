"""Text files of one entry per line: class names, prompt templates."""

import os


def read_lines(path):
    """The entries of a class-names or templates file: one per line.

    Leading / trailing whitespace is stripped; blank lines and lines whose
    first non-blank character is `#` are skipped.

    Raises:
        FileNotFoundError: no file at `path` (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r} (expected a text file with one entry per line).")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith("#")]
