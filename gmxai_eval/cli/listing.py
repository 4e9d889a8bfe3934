"""``gmxai-eval methods [PATTERN]`` and ``gmxai-eval evaluators [PATTERN]``: the registries
with their cards."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``methods`` and ``evaluators`` to the ``gmxai-eval`` parser."""
    for kind in ("methods", "evaluators"):
        q = subparsers.add_parser(kind, help=f"list registered {kind} with their cards")
        q.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. '*cam*'")
        q.set_defaults(func=_list, kind=kind)


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.kind == "methods":
        from gmxai_eval.methods import METHODS as reg

        head = ["name", "family", "signed", "control", "needs layer", "defaults", "paper"]
        row = lambda n, c: [n, c.family, c.signed, c.control, c.needs_layer,  # noqa: E731
                            _cfg(c.default_config), c.paper]
    else:
        from gmxai_eval.evaluators import EVALUATORS as reg

        head = ["name", "category", "higher is better", "scope", "needs", "defaults", "paper"]
        row = lambda n, c: [n, c.category, c.higher_is_better, c.scope,  # noqa: E731
                            ",".join(sorted(c.needs)), _cfg(c.default_config), c.paper]
    names = reg.list(args.pattern)
    rows = [row(n, reg.card(n)) for n in names]
    print(tabulate(rows, headers=head, tablefmt="github", disable_numparse=True))
    print(f"{len(rows)} {args.kind}" + (f" matching {args.pattern!r}" if args.pattern != "*" else ""))
    return 0


def _cfg(d: Any) -> str:
    s = ", ".join(f"{k}={v!r}" for k, v in dict(d).items())
    return s if len(s) <= 60 else s[:57] + "..."
