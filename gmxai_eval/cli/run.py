"""``gmxai-eval run``: run a benchmark spec (default: the packaged default spec)."""

from __future__ import annotations

import argparse
from typing import Any

from gmxai_eval import cli_args as ca
from gmxai_eval.errors import ConfigError
from gmxai_eval.runner.spec import PRESETS


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("run", help="run a benchmark spec (default: the packaged default spec)",
                              description="Run a benchmark. With no SPEC the packaged 'default' spec "
                                          "runs; --preset picks another packaged spec.")
    p.add_argument("spec", nargs="?", help="TOML spec file")
    p.add_argument("--preset", choices=PRESETS, help="packaged spec to run")
    p.add_argument("--output", help="parent folder of run folders (overrides run.output)")
    p.add_argument("--run-id", type=ca.run_id, help="run folder name (default: <name>-<spec hash>)")
    p.add_argument("--cache", help="cache folder (default: <output>/.cache)")
    p.add_argument("--device", help="cpu | cuda | cuda:i (overrides run.device)")
    p.add_argument("--n-images", type=ca.non_negative_int, help="overrides run.n_images")
    p.add_argument("--batch-size", type=ca.positive_int, help="overrides run.batch_size")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument("--reliability", action="store_true", help="enable the metric-reliability stage")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--executor", help="where units and trainings run: local | processes | ray "
                                      "(overrides run.executor)")
    p.add_argument("--workers", type=ca.positive_int, help="worker processes / Ray CPUs of the executor")
    p.add_argument("--address", type=ca.ray_address, help="Ray cluster address (auto | HOST:PORT; default: a local instance)")
    p.add_argument("--threads", type=ca.threads, help="torch intra-op threads: auto (default: chosen from the "
                   "free cores and the model's cost, re-checked during the run) or a fixed N (overrides run.threads)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder of another spec under the same run id")
    p.set_defaults(func=_run)


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
        from gmxai_eval.runner.devices import executor_for

        kw: dict[str, Any] = {"address": args.address} if args.address else {}
        executor = executor_for(spec, args.executor, workers=args.workers, **kw)
    try:
        run_benchmark(spec, output=args.output, run_id=args.run_id, cache=args.cache,
                      progress=False if args.no_progress else None, overwrite=args.overwrite,
                      executor=executor, threads=args.threads)
    finally:
        if executor is not None and hasattr(executor, "close"):
            executor.close()
    return 0
