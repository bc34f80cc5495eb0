"""Reference libraries for the parity tests (open_clip, transformers, torch).

PyPI's torchvision is built against CUDA torch and does not load with the
pinned CPU torch, yet open_clip (and transformers' image utilities) import
it at import time without using it here. Until tests/_reference_imports.py
provides `import_open_clip()`, this file installs its own workaround: a
meta-path finder serving stand-in `torchvision*` modules, and `timm` made
unimportable (open_clip then skips its timm towers). transformers is
imported first so that it records the real state of the environment.
"""

import importlib.abc
import importlib.machinery
import sys
import types

import pytest


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Placeholder(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is a test stand-in here")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Placeholder,), {})
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "timm" or fullname.startswith("timm."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _install():
    try:
        import transformers  # noqa: F401  (before the stand-ins)
    except ImportError:
        pass
    if not any(isinstance(f, _StandInFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StandInFinder())


_install()


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
    return pytest.importorskip("open_clip")


@pytest.fixture(scope="session")
def hf_clip(torch):
    transformers = pytest.importorskip("transformers")
    return transformers
