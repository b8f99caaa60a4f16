"""Lazy imports: package exports, heavy modules and registered functions resolve on first use.

Registries (samplers, discretisations, knobs) are metadata that spec validation, ``--help`` and
``--dry-run`` read; the implementations behind them need torch. ``resolve("pkg.mod:name")`` imports an
implementation when it is first called, and ``lazy_module("torch")`` stands for a module in code that
only touches it inside functions, so importing the metadata imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``names[name]`` and returns ``name``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


@cache
def _resolve_target(target: str) -> Any:
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"a lazy target must read 'package.module:name', got {target!r}")
    return getattr(importlib.import_module(module), name)


def resolve(target: Any) -> Any:
    """``target`` itself, or the object a ``"package.module:name"`` string names (imported once)."""
    return _resolve_target(target) if isinstance(target, str) else target


class LazyModule:
    """Stands for a module that is imported on the first attribute access (``torch.float64``)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (imported)' if self._module is not None else ''}>"


def lazy_module(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (typed ``Any`` so call sites read like the real module)."""
    return LazyModule(name)
