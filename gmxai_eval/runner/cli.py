"""Sub-commands of the runner area (see gmxai_eval.cli): ``run``, ``compare``, ``methods``,
``evaluators``."""

from __future__ import annotations

import argparse
from typing import Any

from gmxai_eval.errors import ConfigError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("run", help="run a benchmark spec (default: the packaged default spec)",
                              description="Run a benchmark. With no SPEC the packaged 'default' spec "
                                          "runs; --preset picks another packaged spec.")
    p.add_argument("spec", nargs="?", help="TOML spec file")
    from gmxai_eval.runner.spec import PRESETS

    p.add_argument("--preset", choices=PRESETS, help="packaged spec to run")
    p.add_argument("--output", help="parent folder of run folders (overrides run.output)")
    p.add_argument("--run-id", help="run folder name (default: <name>-<spec hash>)")
    p.add_argument("--cache", help="cache folder (default: <output>/.cache)")
    p.add_argument("--device", help="cpu | cuda | cuda:i (overrides run.device)")
    p.add_argument("--n-images", type=int, help="overrides run.n_images")
    p.add_argument("--batch-size", type=int, help="overrides run.batch_size")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument("--reliability", action="store_true", help="enable the metric-reliability stage")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--executor", help="where units and trainings run: local | processes | ray "
                                      "(overrides run.executor)")
    p.add_argument("--workers", type=int, help="worker processes / Ray CPUs of the executor")
    p.add_argument("--address", help="Ray cluster address (auto | HOST:PORT; default: a local instance)")
    p.set_defaults(func=_run)

    c = subparsers.add_parser("compare", help="compare two results.json; exit 1 on a regression",
                              description="Print what moved per evaluator and method; exit status 1 "
                                          "when a score got worse beyond the baseline's 95%% CI "
                                          "(or beyond --tolerance).")
    c.add_argument("baseline")
    c.add_argument("candidate")
    c.add_argument("--tolerance", type=float, help="absolute worsening allowed (instead of the CI rule)")
    c.add_argument("--strict", action="store_true", help="a pair missing from either file is a regression")
    c.add_argument("--method", action="append", help="compare only this method label (repeatable)")
    c.set_defaults(func=_compare)

    for kind in ("methods", "evaluators"):
        q = subparsers.add_parser(kind, help=f"list registered {kind} with their cards")
        q.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. '*cam*'")
        q.set_defaults(func=_list, kind=kind)


def _run(args: argparse.Namespace) -> int:
    from gmxai_eval.runner.run import run_benchmark
    from gmxai_eval.runner.spec import load_spec, preset_spec

    if args.spec and args.preset:
        raise ConfigError(f"expected a SPEC file or --preset, got both ({args.spec!r}, {args.preset!r})")
    spec = load_spec(args.spec) if args.spec else preset_spec(args.preset or "default")
    changes: dict[str, Any] = {}
    if args.device:
        changes["device"] = args.device
    if args.n_images is not None:
        changes["n_images"] = args.n_images
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.no_html:
        changes["html"] = False
    if args.reliability:
        changes["reliability"] = {**spec.to_dict()["reliability"], "enabled": True}
    if changes:
        spec = spec.replace(**changes)
    executor = None
    if args.executor or args.workers is not None or args.address:
        from gmxai_eval.execution import create_executor

        kw: dict[str, Any] = {"address": args.address} if args.address else {}
        executor = create_executor(args.executor or spec.executor, workers=args.workers, **kw)
    try:
        run_benchmark(spec, output=args.output, run_id=args.run_id, cache=args.cache,
                      progress=False if args.no_progress else None, executor=executor)
    finally:
        if executor is not None and hasattr(executor, "close"):
            executor.close()
    return 0


def _compare(args: argparse.Namespace) -> int:
    from gmxai_eval.report.compare import compare_results, load_results

    cmp = compare_results(load_results(args.baseline), load_results(args.candidate),
                          tolerance=args.tolerance, strict=args.strict,
                          methods=set(args.method) if args.method else None)
    print(cmp.table())
    return 0 if cmp.ok else 1


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
