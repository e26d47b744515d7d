"""Package names imported on first use: `from engine.formats import read_frame` loads only the
module that defines it (importing every reader at once pulled numpy and astropy into programs that
wanted a file name parser, and the app's first paint waited for them)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """(the package's module `__getattr__`, its `__all__`) for `exports`: relative module -> names."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__, sorted(module_of)
