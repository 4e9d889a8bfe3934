"""Deprecation aliases of the former ``gmxai_eval.gaze`` modules (their code moved by layer)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Sequence


def alias(module: str, targets: Sequence[str], removed: dict[str, str] | None = None,
          stacklevel: int = 2) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving a public name in the first of ``targets`` (module
    paths) that has it, with a :class:`DeprecationWarning` naming the new home.

    Args:
        module: the deprecated module's ``__name__``.
        targets: the modules the names moved to, searched in order.
        removed: ``{name: what to use instead}`` for names that have no alias.
        stacklevel: of the warning (2: the code that accessed the name).
    """
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if removed and name in removed:
            raise AttributeError(f"{module}.{name} was removed: {removed[name]}")
        for target in targets:
            mod = importlib.import_module(target)
            if hasattr(mod, name):
                warnings.warn(f"{module}.{name} is deprecated: import it from {target}",
                              DeprecationWarning, stacklevel=stacklevel)
                return getattr(mod, name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
