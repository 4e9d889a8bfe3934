"""Sub-commands of the data area (see gmxai_eval.cli)."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``gmxai-eval`` parser."""
