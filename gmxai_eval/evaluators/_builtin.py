"""Imports every implementation module of this package so that it registers its entries.

Any module here whose name does not start with an underscore and is not ``base`` / ``cli``
registers itself on import; adding a file is all it takes.
"""

from __future__ import annotations

import importlib
import pkgutil

import gmxai_eval.evaluators as _pkg

for _info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda i: i.name):
    if not _info.name.startswith("_") and _info.name not in ("base", "cli"):
        importlib.import_module(f"{_pkg.__name__}.{_info.name}")
