"""Plug-ins: modules that register extensions (feature extractors, ...) with a registry when imported.

Lower layers ask this module which modules to import instead of naming the packages that provide the
extensions, so ``edmbench.metrics`` never names ``edmbench.digits``. edmbench's own plug-in modules are
listed here, at the package root (which knows its subpackages); other installed packages add theirs
through the entry-point group, whose values are module names, e.g. in their ``pyproject.toml``::

    [project.entry-points."edmbench.feature_extractors"]
    mine = "mypackage.features"

This module imports nothing from edmbench.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

FEATURE_EXTRACTORS = "edmbench.feature_extractors"  # modules that register torch-fidelity extractors

BUILTIN: dict[str, tuple[str, ...]] = {
    FEATURE_EXTRACTORS: ("edmbench.metrics.extractors", "edmbench.digits.features"),
}


def plugin_modules(group: str) -> tuple[str, ...]:
    """The built-in modules of ``group``, then those installed packages declare (duplicates dropped)."""
    declared = tuple(ep.value for ep in entry_points(group=group))
    return tuple(dict.fromkeys(BUILTIN.get(group, ()) + declared))


def import_plugins(group: str) -> None:
    """Import every module of ``group`` so it registers itself; a module that is not installed (e.g. an
    optional part left out of a slim install) is skipped, an error inside a module is not."""
    for module in plugin_modules(group):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise
