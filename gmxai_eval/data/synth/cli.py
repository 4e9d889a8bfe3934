"""``gmxai-eval data synth``."""

from __future__ import annotations

import argparse
from dataclasses import replace


from gmxai_eval.data.synth.config import ENV_ROOT, PRESETS, SynthConfig
from gmxai_eval.data.synth.dataset import SyntheticFaces, dataset_name
from gmxai_eval.data.synth.build import load_or_generate


# --------------------------------------------------------------------------- CLI
def add_data_command(subparsers: argparse._SubParsersAction) -> None:
    """``gmxai-eval data synth``: generate (or reuse) a synthetic dataset."""
    from gmxai_eval import cli_args as ca
    d = SynthConfig()
    p = subparsers.add_parser("synth", help="generate the synthetic phenotype-face dataset")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--name", type=ca.folder_name, default=None, help="folder name under the data root")
    p.add_argument("--num-images", type=ca.positive_int, default=None, help=f"default {d.num_images}")
    p.add_argument("--classes", type=ca.positive_int, default=None, dest="num_syndromes",
                   help=f"number of syndromes besides 'unaffected' (default {d.num_syndromes})")
    p.add_argument("--seed", type=ca.non_negative_int, default=None)
    p.add_argument("--shortcut", action="store_true", help="plant a class-correlated corner sticker")
    p.add_argument("--out", default=None, help=f"data root (default ${ENV_ROOT} or ./datasets)")
    p.add_argument("--overwrite", action="store_true", help="regenerate a folder with another config")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    over = {k: v for k, v in (("num_images", args.num_images), ("num_syndromes", args.num_syndromes),
                              ("seed", args.seed)) if v is not None}
    if args.shortcut:
        over["shortcut"] = True
    cfg = replace(PRESETS[args.preset], **over)
    name = args.name or dataset_name(cfg, args.preset)
    folder = load_or_generate(cfg, name, args.out, overwrite=args.overwrite, progress=not args.quiet)
    ds = SyntheticFaces(folder)
    c = ds.card
    sizes = [d["images"] for d in c["class_details"]]
    print(f"{ds.folder}: {c['num_images']} images, {c['num_patients']} patients, "
          f"{len(c['classes'])} classes (sizes {max(sizes)}..{min(sizes)}), splits {c['splits']}, "
          f"hash {c['content_hash']}")
    return 0
