"""``gmxai-eval methods|evaluators|models [PATTERN] [--json]``: the registries with their cards.

The table abbreviates long default configurations; ``--json`` prints every card in full,
including the options every entry accepts beyond its card (a method's ``reduce``,
``chunk_size`` and ``seed``), so no default is hidden.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, is_dataclass
from typing import Any, Callable


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``methods``, ``evaluators`` and ``models`` to the ``gmxai-eval`` parser."""
    for kind, what in (("methods", "attribution methods"), ("evaluators", "evaluators"),
                       ("models", "model architectures")):
        q = subparsers.add_parser(kind, help=f"list registered {what} with their cards")
        q.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. '*cam*'")
        q.add_argument("--json", action="store_true", help="every card in full, as JSON")
        q.set_defaults(func=_list, kind=kind)


def _plain(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):  # a nested record (an evaluator's ``degenerate``)
        return {f.name: _plain(getattr(v, f.name)) for f in fields(v)} | {"text": str(v)}
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    return v


def card_record(kind: str, name: str, card: Any) -> dict[str, Any]:
    """A registry entry's card as a JSON-able dict with its complete defaults."""
    d = {f.name: _plain(getattr(card, f.name)) for f in fields(card)} if is_dataclass(card) else {}
    d["name"] = name
    if kind == "methods":
        from gmxai_eval.methods.base import BASE_CONFIG, METHODS

        d["default_config"] = {**BASE_CONFIG, **dict(card.default_config)}
        d["needs_masks"] = bool(getattr(METHODS.get(name), "needs_masks", False))
    return d


def _registry(kind: str) -> tuple[Any, list[str], Callable[[str, Any], list[Any]]]:
    if kind == "methods":
        from gmxai_eval.methods import METHODS

        return METHODS, ["name", "family", "signed", "control", "needs layer", "defaults", "paper"], \
            lambda n, c: [n, c.family, c.signed, c.control, c.needs_layer, _cfg(c.default_config), c.paper]
    if kind == "evaluators":
        from gmxai_eval.evaluators import EVALUATORS

        return EVALUATORS, ["name", "category", "higher is better", "scope", "needs", "degenerate (zero / constant)",
                            "defaults", "paper"], \
            lambda n, c: [n, c.category, c.higher_is_better, c.scope, ",".join(sorted(c.needs)),
                          f"{c.degenerate.zero} / {c.degenerate.constant}" if c.degenerate else "undeclared",
                          _cfg(c.default_config), c.paper]
    from gmxai_eval.models import MODELS

    return MODELS, ["name", "input", "embedding", "cam layer", "description"], \
        lambda n, c: [n, f"{c.input_channels}x{c.input_size[0]}x{c.input_size[1]}" if c else "",
                      getattr(c, "embedding_dim", ""), getattr(c, "cam_layer", ""), getattr(c, "description", "")]


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    reg, head, row = _registry(args.kind)
    names = reg.list(args.pattern)
    if args.json:
        print(json.dumps([card_record(args.kind, n, reg.card(n)) for n in names], indent=1, default=str))
        return 0
    rows = [row(n, reg.card(n)) for n in names]
    print(tabulate(rows, headers=head, tablefmt="github", disable_numparse=True))
    if args.kind == "evaluators" and len(names) == 1 and reg.card(names[0]).degenerate is not None:
        print(f"degenerate maps: {reg.card(names[0]).degenerate}")
    print(f"{len(rows)} {args.kind}" + (f" matching {args.pattern!r}" if args.pattern != "*" else "")
          + " (--json for every default)")
    return 0


def _cfg(d: Any) -> str:
    s = ", ".join(f"{k}={v!r}" for k, v in dict(d).items())
    return s if len(s) <= 60 else s[:57] + "..."
