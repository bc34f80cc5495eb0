"""Reference libraries for the parity tests (open_clip, transformers, torch).

PyPI's torchvision is built against CUDA torch and does not load with the
pinned CPU torch, yet open_clip imports it at import time without using it
here: `tests/_reference_imports.import_open_clip()` imports open_clip behind
stand-ins (transformers first, for real).
"""

import pytest

from tests._reference_imports import import_open_clip


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _reference_models_without_grad(request):
    """The reference models run without autograd, test by test; grad mode is
    restored afterwards (a global switch would break every later torch
    training in the session). Tests marked `trains` keep autograd."""
    import torch

    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(request.node.get_closest_marker("trains") is not None)
    yield
    torch.set_grad_enabled(previous)


@pytest.fixture(scope="session")
def open_clip(torch):
    return import_open_clip()


@pytest.fixture(scope="session")
def hf_clip(torch):
    transformers = pytest.importorskip("transformers")
    # transformers' CLIPModel imports torchvision lazily, on first use: the
    # stand-ins must be in place by then, whichever test of the worker
    # comes first (a worker that ran no open_clip test imported the real,
    # broken torchvision here).
    import_open_clip()
    return transformers
