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


def quiet_tensorflow_import(user_set_level=False):
    """Imports TensorFlow with its start-up lines (oneDNN, cudart_stub,
    cpu_feature_guard, a cuInit error on a machine without a GPU) kept off the
    terminal. TensorFlow 2.21 writes them from C++ before its logging is set
    up, so `TF_CPP_MIN_LOG_LEVEL` cannot stop them: file descriptor 2 points at
    /dev/null for the import and the device scan only. A user who set
    `TF_CPP_MIN_LOG_LEVEL` sees everything."""
    if user_set_level:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        import keras  # noqa: F401
        import keras_hub  # noqa: F401  (loads tensorflow-text's own library, which logs again)
    except Exception:  # noqa: BLE001  (the real import below reports it)
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    user_set_level = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    os.environ["KERAS_CLIP_LAZY_IMPORT"] = "1"
    from keras_clip.cli import main as run

    return run(argv, before_command=lambda: quiet_tensorflow_import(user_set_level))


if __name__ == "__main__":
    sys.exit(main())
