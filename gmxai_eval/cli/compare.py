"""``gmxai-eval compare BASELINE CANDIDATE``: what moved; exit 1 on a regression."""

from __future__ import annotations

import argparse

from gmxai_eval import cli_args as ca


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the ``gmxai-eval`` parser."""
    c = subparsers.add_parser("compare", help="compare two results.json; exit 1 on a regression",
                              description="Print what moved per evaluator and method; exit status 1 "
                                          "when a score got worse beyond the baseline's 95%% CI "
                                          "(or beyond --tolerance).")
    c.add_argument("baseline")
    c.add_argument("candidate")
    c.add_argument("--tolerance", type=ca.non_negative_float, help="absolute worsening allowed (instead of the CI rule)")
    c.add_argument("--strict", action="store_true", help="a pair missing from either file is a regression")
    c.add_argument("--method", action="append", help="compare only this method label (repeatable)")
    c.set_defaults(func=_compare)



def _compare(args: argparse.Namespace) -> int:
    from gmxai_eval.report.compare import compare_results, load_results

    cmp = compare_results(load_results(args.baseline), load_results(args.candidate),
                          tolerance=args.tolerance, strict=args.strict,
                          methods=set(args.method) if args.method else None)
    print(cmp.table())
    return 0 if cmp.ok else 1
