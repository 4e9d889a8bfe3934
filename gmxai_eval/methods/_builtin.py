"""Imports every implementation module of this package so that it registers its entries.

Any module here whose name does not start with an underscore and is not ``base`` / ``cli``
registers itself on import; adding a file is all it takes.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

# the package by name and folder, not by importing it (the package imports this module)
_PACKAGE = __name__.rpartition(".")[0]

for _info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
    if not _info.name.startswith("_") and _info.name not in ("base", "cli"):
        importlib.import_module(f"{_PACKAGE}.{_info.name}")
