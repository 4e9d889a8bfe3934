"""``gmxai-eval cache prune``: remove retraining files (masked datasets, rankings, leakage
results, retrained models) that no current key of the given specs references."""

from __future__ import annotations

import argparse

from gmxai_eval.runner.spec import PRESETS


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cache prune`` to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("cache", help="manage the cache folder")
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    q = sub.add_parser("prune", help="remove retraining files no current key of the given specs references",
                       description="Keep the retraining files (masked datasets, rankings, leakage results, "
                                   "retrained models) that the given specs' retraining evaluators reference "
                                   "and remove the others under <cache>/retraining. Files of a spec not "
                                   "given are removed too. Loads each spec's model and data; trains "
                                   "nothing. Run it when no run uses the cache.")
    q.add_argument("spec", nargs="*", help="TOML spec files whose files to keep")
    q.add_argument("--preset", action="append", choices=PRESETS, default=[],
                   help="packaged spec whose files to keep (repeatable)")
    q.add_argument("--cache", help="cache folder (default: the first spec's, <output>/.cache)")
    q.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    q.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.runner.prune import prune_retraining_cache
    from gmxai_eval.runner.spec import load_spec, preset_spec

    specs = [load_spec(s) for s in args.spec] + [preset_spec(p) for p in args.preset]
    if not specs:
        raise ConfigError("expected at least one SPEC file or --preset whose retraining files to keep, got none")
    removed = prune_retraining_cache(specs, cache=args.cache, dry_run=args.dry_run)
    size = sum(p.stat().st_size for p in removed if p.exists()) if args.dry_run else None
    for p in removed:
        print(("would remove " if args.dry_run else "removed ") + str(p))
    print(f"{len(removed)} file(s) {'removable' if args.dry_run else 'removed'}"
          + (f", {size / 1e6:.1f} MB" if size is not None else ""))
    return 0
