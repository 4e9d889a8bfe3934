"""``gmxai-eval train``: train a model on a synthetic dataset and save a checkpoint."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from gmxai_eval import cli_args as ca
from gmxai_eval.errors import ConfigError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser(
        "train", help="train a model on a synthetic dataset and save a checkpoint",
        description="Train (seeded, deterministic on CPU) and write <out>.pt + <out>.json with "
                    "test metrics (GestaltMatcher gallery top-k and classifier top-k).")
    p.add_argument("--data", default="synthetic_faces",
                   help="dataset folder name under the data root; the preset folders "
                        "'synthetic_faces' / 'synthetic_faces_tiny' are generated if missing")
    p.add_argument("--root", default=None, help="data root (default $GMXAI_DATA or ./datasets)")
    p.add_argument("--arch", default="gmx_small")
    p.add_argument("--epochs", type=ca.positive_int, default=None)
    p.add_argument("--batch-size", type=ca.positive_int, default=None)
    p.add_argument("--lr", type=ca.positive_float, default=None)
    p.add_argument("--seed", type=ca.non_negative_int, default=None)
    p.add_argument("--threads", type=ca.positive_int, default=None,
                   help="intra-op threads of the training: the recipe's fixed count (the weights depend on it; "
                        "part of the checkpoint key), whatever the process's thread count (default 1)")
    p.add_argument("--out", default=None,
                   help="checkpoint path stem (default <data>/models/<arch>-<key>); checked before "
                        "training: an existing checkpoint there needs --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from gmxai_eval.data import synth
    from gmxai_eval.models import MODELS
    from gmxai_eval.models.default import train_on
    from gmxai_eval.models.train import TrainConfig

    MODELS.get(args.arch)  # an unknown architecture (with close matches) before any data generation
    over = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                              ("seed", args.seed), ("threads", args.threads)) if v is not None}
    cfg = replace(TrainConfig(arch=args.arch), **over)
    if args.out is not None:  # before any data generation or training; writes nothing
        from gmxai_eval.models.checkpoint import check_checkpoint_target

        check_checkpoint_target(args.out, overwrite=args.overwrite)
    folder = synth.default_root(args.root) / args.data
    if not folder.exists():
        presets = {synth.dataset_name(cfg, name): name for name, cfg in synth.PRESETS.items()}
        if args.data not in presets:
            raise ConfigError(f"expected a generated dataset at {folder} (run `gmxai-eval data synth "
                              f"--name {args.data}`) or one of {sorted(presets)}, got none")
        folder = synth.load(presets[args.data], root=args.root, progress=not args.quiet).folder
    _, card = train_on(folder, cfg, progress=not args.quiet, out=args.out)
    m = card["metrics"]
    print(json.dumps({"checkpoint": card["path"], "seconds": round(card["history"]["seconds"], 1),
                      **{k: round(v, 4) for k, v in m.items()}}, indent=1))
    return 0
