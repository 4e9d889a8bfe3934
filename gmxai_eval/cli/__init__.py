"""``gmxai-eval`` command line: one module per command in this package (``add_commands``),
plus the gaze commands (``gmxai_eval.cli.gaze``). The top layer: it may import every other."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from gmxai_eval import cli_args
from gmxai_eval.errors import GMXError
from gmxai_eval.threads import ThreadPolicy, restored_threads

#: Modules contributing sub-commands, in help order. Each has ``add_commands(subparsers)``;
#: a sub-command sets ``func=callable(args) -> int`` via ``set_defaults``.
COMMAND_MODULES = (
    "gmxai_eval.cli.run",       # run
    "gmxai_eval.cli.compare",   # compare
    "gmxai_eval.cli.report",    # report
    "gmxai_eval.cli.listing",   # methods, evaluators
    "gmxai_eval.cli.data",      # data synth, data check
    "gmxai_eval.cli.train",     # train
    "gmxai_eval.cli.gaze",      # gaze, gaze-simulate
    "gmxai_eval.cli.questionnaire",  # questionnaire make|analyse
    "gmxai_eval.cli.explain",   # explain
    "gmxai_eval.cli.cache",     # cache prune
)

#: Commands that render data or run models without a policy of their own: they start on the
#: thread policy's count for the machine's current load (``run`` and ``explain`` also weigh the
#: model's cost; ``train`` uses its recipe's fixed count, see :mod:`gmxai_eval.threads`).
MACHINE_POLICY_COMMANDS = ("data", "gaze", "gaze-simulate", "questionnaire")


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(  # usage errors: one line, exit status 1
        prog="gmxai-eval",
        description="Rank attribution methods by faithfulness (GestaltMatcher-style models, "
                    "synthetic phenotype faces by default).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with restored_threads():  # main() called in-process (tests, notebooks) leaves the count as it was
            if args.command in MACHINE_POLICY_COMMANDS:
                ThreadPolicy().apply(args.command, force=True)
            return int(args.func(args) or 0)
    except GMXError as e:
        print(f"gmxai-eval: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk or no permission met where no stage typed it: still one line
        from gmxai_eval.errors import OutputError
        from gmxai_eval.utils import _OS_ERRORS

        if e.errno not in _OS_ERRORS:
            raise
        err = OutputError(f"expected to be able to use its files, got {_OS_ERRORS[e.errno]} ({type(e).__name__})",
                          path=e.filename)
        print(f"gmxai-eval: error: OutputError: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
