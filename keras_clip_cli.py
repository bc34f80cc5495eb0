"""The `keras-clip` console entry point.

It lives outside the `keras_clip` package so that `keras-clip --help` and
usage errors import no backend: importing `keras_clip` itself imports Keras
and registers every class a saved run can hold (so that
`keras.saving.load_model` works after a bare `import keras_clip`). Here the
package is told to defer that until a command needs it, and TensorFlow's
start-up log lines are silenced unless the user set `TF_CPP_MIN_LOG_LEVEL`.
"""

import os
import sys


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_CLIP_LAZY_IMPORT"] = "1"
    from keras_clip.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
