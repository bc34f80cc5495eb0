"""Test-only helper: import open_clip (the reference implementation) on CPU torch.

Why: open_clip imports `torchvision` and `timm` at import time, although its
model and tokenizer code never use them. PyPI's torchvision wheels are built
against CUDA torch and fail to load next to the pinned CPU torch, so a plain
`import open_clip` breaks. `import_open_clip()` imports it with stand-ins:

- every `torchvision*` module is an empty stand-in whose attributes are
  placeholder classes (instantiating one raises), so open_clip's
  `from torchvision.transforms import ...` lines succeed;
- `import timm` raises ModuleNotFoundError, which open_clip already handles.

`transformers` is imported first, for real, so that it never sees the
stand-ins. Only for tests (parity checks against open_clip); library code must
never import this module. The finders stay installed for the rest of the test
process, so do not import the real torchvision in the same process.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types


class _PlaceholderMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Placeholder(metaclass=_PlaceholderMeta):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "torchvision is a test stand-in (tests/_reference_imports.py); "
            "open_clip's image transforms are not available in tests."
        )


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Placeholder,), {})
        setattr(self, name, value)
        return value


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


class _NoTimm(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "timm" or fullname.startswith("timm."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (test stand-in)", name=fullname)
        return None


def import_open_clip():
    """Returns the `open_clip` module, imported without torchvision and timm."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    import transformers  # noqa: F401  (the real one, before the stand-ins)

    if not any(isinstance(f, _TorchvisionStandIn) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTimm())
        sys.meta_path.insert(0, _TorchvisionStandIn())
    return importlib.import_module("open_clip")
