"""Package attributes loaded on first use (PEP 562), so that importing a package's light module
does not load its heavy siblings (``closeloop.schemas``, ``closeloop.simulate``,
``closeloop.stats``)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def load_export(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any], name: str
) -> Any:
    """Attribute ``name`` of ``package``, imported from the submodule ``exports`` names and kept in
    the package's ``namespace`` (later look-ups skip ``__getattr__``)."""
    module = exports.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{module}"), name)
    namespace[name] = value
    return value
