"""Every docstring example in keras_clip.losses runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import keras_clip.losses

MODULES = sorted(
    info.name
    for info in pkgutil.iter_modules(keras_clip.losses.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"keras_clip.losses.{name}")
    result = doctest.testmod(
        module,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_public_api_has_docstrings_with_reference_and_example():
    for name in keras_clip.losses.__all__:
        obj = getattr(keras_clip.losses, name)
        doc = obj.__doc__ or ""
        assert doc.strip(), f"{name} has no docstring"
        assert ">>>" in doc, f"{name}'s docstring has no runnable example"


def test_no_backend_imports_in_the_losses_package():
    # keras.ops only: no direct jax / torch / tensorflow import.
    root = keras_clip.losses.__path__[0]
    for info in pkgutil.iter_modules([root]):
        with open(f"{root}/{info.name}.py") as f:
            source = f.read()
        for backend in ("jax", "torch", "tensorflow"):
            assert f"import {backend}" not in source, (info.name, backend)
            assert f"from {backend}" not in source, (info.name, backend)
