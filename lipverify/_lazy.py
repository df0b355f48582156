"""Deferred imports of heavy optional dependencies, so that ``import lipverify`` stays cheap.

``sympy = LazyModule("sympy")`` at the top of a module keeps every ``sympy.X`` in it unchanged while importing
sympy on the first attribute access only (a float network never touches it).  :func:`is_instance` answers
``isinstance(x, sympy.Basic)`` without importing sympy: an object can only be an instance of a class of a module
that has been imported already.  ``tests/test_imports.py`` checks which modules ``import lipverify`` and a float
bound load.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute access imports it (``importlib.import_module``)."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            self._module = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (loaded)'}>"


def is_instance(x: Any, module: str, cls: str) -> bool:
    """``isinstance(x, module.cls)``, False without importing ``module`` when it is not loaded yet (then no object can
    be an instance of one of its classes)."""
    klass = getattr(sys.modules.get(module), cls, None)
    return klass is not None and isinstance(x, klass)
