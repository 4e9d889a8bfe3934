"""``gmxai-eval imbalance SPEC|--preset NAME``: the class-imbalance experiment
(:mod:`gmxai_eval.runner.imbalance`): trainings on different class choices and sizes of one
dataset, map similarity, localisation and deletion against the class's training size."""

from __future__ import annotations

import argparse
from typing import Any

from gmxai_eval import cli_args as ca
from gmxai_eval.errors import ConfigError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``imbalance`` to the ``gmxai-eval`` parser."""
    from gmxai_eval.runner.imbalance import PRESETS

    p = subparsers.add_parser("imbalance", help="class-imbalance experiment (trainings on class choices and sizes)",
                              description="Train models on different class choices and class sizes of the same "
                                          "data and score their maps on the same test images against each "
                                          "class's training size. Writes imbalance.json/.md/.csv/.png and "
                                          "report.html into <output>/<run id>.")
    p.add_argument("spec", nargs="?", help="TOML file with an [imbalance] table")
    p.add_argument("--preset", choices=PRESETS, help="packaged imbalance spec")
    p.add_argument("--output", help="parent folder of run folders (overrides imbalance.output)")
    p.add_argument("--run-id", type=ca.run_id, help="run folder name (default: <name>-<spec hash>)")
    p.add_argument("--cache", help="cache folder of the trained models (default: <output>/.cache)")
    p.add_argument("--executor", help="where trainings run: local | processes | ray (overrides imbalance.executor)")
    p.add_argument("--workers", type=ca.positive_int, help="worker processes / Ray CPUs")
    p.add_argument("--address", type=ca.ray_address, help="Ray cluster address (auto | HOST:PORT; default: a local instance)")
    p.add_argument("--no-progress", action="store_true", help="hide progress lines")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder of another spec with the same run id")
    p.set_defaults(func=_imbalance)


def _imbalance(args: argparse.Namespace) -> int:
    from gmxai_eval.execution import create_executor
    from gmxai_eval.runner.imbalance import load_imbalance_spec, preset_imbalance_spec, run_imbalance

    if args.spec and args.preset:
        raise ConfigError(f"expected a SPEC file or --preset, got both ({args.spec!r}, {args.preset!r})")
    if not args.spec and not args.preset:
        raise ConfigError("expected a SPEC file or --preset NAME, got neither")
    spec = load_imbalance_spec(args.spec) if args.spec else preset_imbalance_spec(args.preset)
    kw: dict[str, Any] = {"address": args.address} if args.address else {}
    name = args.executor or spec.executor
    # the spec's workers belong to the spec's executor; another executor gets --workers or its default
    workers = args.workers if args.workers is not None else (spec.workers if name == spec.executor else None)
    ex = create_executor(name, workers=workers, **kw)
    try:
        doc = run_imbalance(spec, output=args.output, run_id=args.run_id, cache=args.cache, executor=ex,
                            progress=not args.no_progress, overwrite=args.overwrite)
    finally:
        ex.close()
    from pathlib import Path

    folder = Path(args.output or spec.output) / doc["run_id"]
    c = doc["costs"]
    print(f"imbalance: {folder} ({c['trainings']} trainings, {c['trained now']} trained now, "
          f"{c['s per training']} s/training, {c['total wall s']} s in all)")
    return 0
