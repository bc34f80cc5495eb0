import pytest

from export_helpers import train_tiny_model


@pytest.fixture(scope="module")
def trained_model():
    """The tiny CLIP (with tokenizer), compiled with Adam and fit 2 steps on this backend."""
    return train_tiny_model()
