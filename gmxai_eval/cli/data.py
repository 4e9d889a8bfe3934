"""``gmxai-eval data ...`` sub-commands. Each module in ``DATA_COMMAND_MODULES`` has
``add_data_command(subparsers)`` adding one ``data`` sub-command."""

from __future__ import annotations

import argparse
import importlib

DATA_COMMAND_MODULES = (
    "gmxai_eval.data.synth",   # data synth
    "gmxai_eval.data.check",   # data check
)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="generate, inspect and validate datasets")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    for mod in DATA_COMMAND_MODULES:
        importlib.import_module(mod).add_data_command(sub)
