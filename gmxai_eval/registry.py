"""One strict generic registry, used for methods, evaluators, models and datasets.

Like timm's ``register_model`` / ``create_model`` / ``list_models``, but a duplicate name
raises and an unknown name raises with close matches.

Example::

    METHODS = Registry("method", entry_point_group="gmxai_eval.methods")

    @METHODS.register
    class Saliency(Explainer):
        card = MethodCard(name="saliency", ...)

    METHODS.create("saliency", reduce="max_abs")
    METHODS.list("*cam*")
"""

from __future__ import annotations

import difflib
import fnmatch
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from gmxai_eval.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> (object, card) table.

    Args:
        kind: what is registered (``"method"``), used in error messages.
        entry_point_group: an ``importlib.metadata`` entry-point group whose entries are
            loaded (imported) once, on first lookup, so third-party packages can register.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._cards: dict[str, Any] = {}
        self._entry_points_loaded = entry_point_group is None

    # -- registration ---------------------------------------------------------------
    def register(self, obj: T | None = None, *, name: str | None = None, card: Any = None,
                 override: bool = False) -> Any:
        """Register ``obj`` (usable as ``@reg.register`` or ``@reg.register(name=..., card=...)``).

        The card is ``card`` if given, else ``obj.card``. The name is ``name`` if given,
        else ``card.name``, else ``obj.__name__``. A duplicate name raises
        :class:`DuplicateNameError` unless ``override=True``.
        """

        def deco(o: T) -> T:
            c = card if card is not None else getattr(o, "card", None)
            n = name or getattr(c, "name", None) or getattr(o, "__name__", None)
            if not n:
                raise TypeError(f"cannot infer a name for {o!r}; pass name=")
            if n in self._entries and not override:
                raise DuplicateNameError(
                    f"{self.kind} {n!r} is already registered (by {self._entries[n]!r}); "
                    "pick another name or pass override=True")
            self._entries[n] = o
            self._cards[n] = c
            return o

        return deco if obj is None else deco(obj)

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._entries[name]
        del self._cards[name]

    # -- lookup -----------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            ep.load()  # importing the module registers its entries

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (expected one of {len(self._entries)} "
                f"registered names, see list())") from None

    def card(self, name: str) -> Any:
        self.get(name)
        return self._cards[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Call the registered constructor with ``kwargs``."""
        factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
        return factory(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style wildcard ``pattern``."""
        self._load_entry_points()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load_entry_points()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
