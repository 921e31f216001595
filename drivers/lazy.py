"""Names of a package that load their module on first use (PEP 562 module ``__getattr__``), for the
parts that pull in a heavy library a site may not need (paho, aiomqtt, influxdb-client)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, module_of: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``module_of[name]`` and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
