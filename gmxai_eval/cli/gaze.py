"""``gmxai-eval gaze`` (score methods against fixations) and ``gmxai-eval gaze-simulate``.

``gaze``: read and validate a fixation file and its study file, load the images (a synthetic
dataset folder, a CSV manifest, ``synthetic[:preset]`` or a ``.npz`` with ``images (N, C, H, W)``
and ``image_ids``; the images with fixations are scored), then run the benchmark runner on a
spec it builds (:func:`gaze_spec`: the methods, one ``gaze_<metric>`` evaluator per metric, the
``[gaze]`` table with the two files, the ``gaze`` section; the model ``default``, a checkpoint
``.pt``/``.json``, or a registered architecture name, untrained). The run folder is
``<out>/gaze`` (``results.json``, the leaderboard of the gaze evaluators) with its map cache and
unit store in ``<out>/.cache``, so a rerun reuses every map and score. From the run's section it
writes, atomically, into ``--out``: ``gaze_table.md``, ``gaze_table.csv`` (methods + human
ceiling + centre-bias floor), ``gaze_per_image.csv`` (long format) and, with region masks,
``gaze_aoi.csv``.

``gaze-simulate``: write simulated clinician gaze (``fixations.csv`` + ``study.json`` with
``"simulated": true``) for images that have landmarks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval import cli_args as ca
from gmxai_eval.data.base import Sample
from gmxai_eval.errors import ConfigError, DataError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("gaze", help="score attribution methods against eye-tracking fixations",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixations", required=True, help="fixation file (.csv, or .parquet with pyarrow)")
    p.add_argument("--study", required=True, help="study file (.json or .toml)")
    _images_args(p)
    p.add_argument("--methods", required=True, help="comma-separated method names (see `gmxai-eval methods`)")
    p.add_argument("--model", default="default",
                   help="'default' or 'default:tiny' (the embedded default model), a checkpoint "
                        "(.pt/.json) or a registered architecture name (untrained weights)")
    p.add_argument("--metrics", default=None, help="comma-separated gaze metrics (default: all)")
    p.add_argument("--preset", action="append", default=[], metavar="METRIC=PRESET",
                   help="metric variant, e.g. sim=pysaliency, kl=pysaliency, nss=mit (repeatable)")
    p.add_argument("--transform", default="abs", help="map transform before scoring: abs | relu | none")
    p.add_argument("--target", default="predicted", choices=("predicted", "label"))
    p.add_argument("--on-invalid", default="raise", choices=("raise", "drop"),
                   help="invalid fixation rows: raise (default) or drop and report counts")
    p.add_argument("--duration-weighted", action="store_true", help="weight densities by fixation duration")
    p.add_argument("--batch-size", type=ca.positive_int, default=16)
    p.add_argument("--n-boot", type=ca.positive_int, default=1000)
    p.add_argument("--seed", type=ca.non_negative_int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_gaze)

    s = subparsers.add_parser("gaze-simulate", help="write simulated clinician gaze (labelled simulated)")
    _images_args(s)
    s.add_argument("--observers", type=ca.positive_int, default=6)
    s.add_argument("--seed", type=ca.non_negative_int, default=0)
    s.add_argument("--out", required=True, help="output folder (fixations.csv, study.json)")
    s.set_defaults(func=_cmd_simulate)


def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True,
                   help="synthetic dataset folder, CSV manifest, 'synthetic[:preset]' or .npz")
    p.add_argument("--split", default=None, help="dataset split to use (default: all)")
    p.add_argument("--limit", type=ca.positive_int, default=None, help="use at most this many images")


# ------------------------------------------------------------------------------------------------
def load_images(spec: str, split: str | None = None, limit: int | None = None) -> tuple[list[Sample], list[str]]:
    """``(samples, classes)`` from a dataset folder, a CSV manifest, ``synthetic[:preset]`` or
    a ``.npz`` (``images (N, C, H, W)`` float in [0, 1] or uint8, ``image_ids (N,)``; optional
    ``labels``, ``landmarks (N, 5, 2)``, ``evidence (N, H, W)``, ``region_masks (N, R, H, W)``,
    ``region_names``, ``classes``)."""
    p = Path(spec)
    if spec.startswith("synthetic") and not p.exists():
        from gmxai_eval.data import synth

        preset = spec.split(":", 1)[1] if ":" in spec else "default"
        ds: Any = synth.load(preset, split=split, progress=False)
    elif p.is_dir():
        from gmxai_eval.data.synth import SyntheticFaces

        ds = SyntheticFaces(p, split=split)
    elif p.suffix.lower() == ".csv":
        from gmxai_eval.data.manifest import load_manifest

        ds = load_manifest(p, split=split)
    elif p.suffix.lower() == ".npz":
        return _load_npz(p, limit)
    else:
        raise DataError(f"expected a dataset folder, a .csv manifest, 'synthetic[:preset]' or a .npz, "
                        f"got {spec!r}", path=spec)
    n = len(ds) if limit is None else min(limit, len(ds))
    return [ds[i] for i in range(n)], list(ds.classes)


def _load_npz(p: Path, limit: int | None) -> tuple[list[Sample], list[str]]:
    if not p.is_file():
        raise DataError(f"expected a .npz file, got no file at {str(p)!r}", path=p)
    with np.load(p, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    for k in ("images", "image_ids"):
        if k not in a:
            raise DataError(f"expected array {k!r} in the .npz, got {sorted(a)}", path=p, column=k)
    imgs = a["images"]
    if imgs.ndim != 4:
        raise DataError(f"expected images (N, C, H, W), got shape {imgs.shape}", path=p, column="images")
    x = torch.from_numpy(imgs.astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0))
    n = len(x) if limit is None else min(limit, len(x))
    labels = a.get("labels", np.zeros(len(x), np.int64))
    names = tuple(str(r) for r in a.get("region_names", ()))
    opt = lambda k, i: None if k not in a else torch.from_numpy(np.ascontiguousarray(a[k][i]))  # noqa: E731
    samples = [Sample(x[i], int(labels[i]), str(a["image_ids"][i]), region_masks=opt("region_masks", i),
                      region_names=names, evidence=opt("evidence", i),
                      landmarks=None if "landmarks" not in a else torch.from_numpy(a["landmarks"][i]).float())
               for i in range(n)]
    classes = [str(c) for c in a["classes"]] if "classes" in a else [str(k) for k in range(int(labels.max()) + 1)]
    return samples, classes


def model_table(model: str, num_classes: int, seed: int = 0) -> dict[str, Any]:
    """The ``[model]`` table of ``--model``: ``default`` / ``default:<preset>`` (the embedded
    default model), a checkpoint path (``.pt`` / ``.json``) or a registered architecture
    (untrained, ``num_classes`` outputs, weights drawn with ``seed``)."""
    if model == "default" or model.startswith("default:"):
        return {"source": "default", "config": {"preset": model.split(":", 1)[1]} if ":" in model else {}}
    if model.endswith((".pt", ".json")):
        return {"source": "checkpoint", "checkpoint": str(Path(model).resolve())}
    print(f"gmxai-eval gaze: note: {model!r} is an architecture name; its weights are untrained "
          f"(seed {seed})", file=sys.stderr)
    return {"source": "registry", "arch": model, "config": {"num_classes": num_classes, "seed": seed}}


def _presets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"expected --preset METRIC=PRESET, got {it!r}")
        m, v = it.split("=", 1)
        out.setdefault(m.strip(), {})["preset"] = v.strip()
    return out


def gaze_spec(args: argparse.Namespace, n_images: int, num_classes: int) -> Any:
    """The runner spec of a ``gmxai-eval gaze`` command: every method, one ``gaze_<metric>``
    evaluator per metric (its ``--preset``, the ``--transform``), the ``[gaze]`` table with the
    fixation and study files, the ``gaze`` section; run ``gaze`` under ``--out``."""
    from gmxai_eval.evaluators.gaze_reference import DEFAULT_METRICS
    from gmxai_eval.runner.spec import parse_spec

    options = _presets(args.preset)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else DEFAULT_METRICS
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError(f"expected at least one method in --methods, got {args.methods!r}")
    unused = sorted(set(options) - set(metrics))
    if unused:
        raise ConfigError(f"expected --preset only for the scored metrics {list(metrics)}, got {unused}")
    data = {
        "run": {"name": "gaze", "n_images": n_images, "seeds": [args.seed], "target": args.target,
                "batch_size": args.batch_size, "bootstrap": max(args.n_boot, 100), "select": "first", "html": False,
                "examples": 0, "output": str(Path(args.out).resolve())},
        "model": model_table(args.model, num_classes, args.seed),
        "methods": [{"name": m} for m in methods],
        "evaluators": [{"name": f"gaze_{m}", "config": {**options.get(m, {}), "transform": args.transform}}
                       for m in metrics],
        "gaze": {"fixations": str(Path(args.fixations).resolve()), "study": str(Path(args.study).resolve()),
                 "on_invalid": args.on_invalid, "duration_weighted": bool(args.duration_weighted),
                 "n_boot": args.n_boot},
        "report": {"sections": ["gaze"]},
    }
    return parse_spec(data, source="gmxai-eval gaze")


def _cmd_gaze(args: argparse.Namespace) -> int:
    from gmxai_eval.data.gaze.fixations import read_fixations
    from gmxai_eval.evaluators import EVALUATORS
    from gmxai_eval.functional.gaze import MAP_TRANSFORMS
    from gmxai_eval.methods.base import METHODS
    from gmxai_eval.runner.run import run_benchmark
    from gmxai_eval.utils import check_output_folder

    # every option first (one typed line, nothing loaded, nothing written), then the files
    for m in [*(args.metrics.split(",") if args.metrics else ()), *_presets(args.preset)]:
        if m.strip():
            EVALUATORS.get(f"gaze_{m.strip()}")  # unknown metric: with close matches
    MAP_TRANSFORMS.get(args.transform)
    for m in args.methods.split(","):
        if m.strip():
            METHODS.get(m.strip())
    if not (args.model == "default" or args.model.startswith("default:") or args.model.endswith((".pt", ".json"))):
        from gmxai_eval.models import MODELS

        MODELS.get(args.model)
    check_output_folder(args.out)
    from gmxai_eval.data.gaze.study import load_study

    study = load_study(args.study)  # a bad study file fails before the images are loaded
    samples, classes = load_images(args.images, args.split)
    sizes = {s.image_id: (int(s.image.shape[-2]), int(s.image.shape[-1])) for s in samples}
    table = read_fixations(args.fixations, known_images=sizes, image_sizes=sizes, on_invalid=args.on_invalid)
    print(f"gmxai-eval gaze: {table.summary()}")  # stdout: stderr keeps one line per error
    with_fix = set(table.image_ids)
    samples = [s for s in samples if s.image_id in with_fix]
    spec = gaze_spec(args, args.limit or 0, len(classes))
    # the run folder <out>/gaze and the map cache / unit store <out>/.cache: a rerun reuses both
    res = run_benchmark(spec, samples=samples, run_id="gaze", progress=False, verbose=False, overwrite=True)
    write_gaze_files(res.results["sections"]["gaze"], Path(args.out), study, args.transform, args.target,
                     table.summary())
    return 0


def write_gaze_files(data: Mapping[str, Any], out: Path, study: Any, transform: str, target: str,
                     fixations_summary: str) -> None:
    """``gaze_table.md`` / ``.csv``, ``gaze_per_image.csv`` and (with region masks)
    ``gaze_aoi.csv`` in ``out`` from the run's ``gaze`` section data, atomically; prints the
    Markdown table."""
    import pandas as pd

    from gmxai_eval.report.gaze import gaze_aoi, gaze_per_image, gaze_table, render_gaze_markdown
    from gmxai_eval.utils import atomic_path, csv_safe_frame, markdown_cell, markdown_text, write_atomic

    table, per_image, aoi = gaze_table(data), gaze_per_image(data), gaze_aoi(data)
    md = render_gaze_markdown(data)
    # the study name, file names, ids and region names come from the user's files: escaped
    md += "\n" + markdown_text(f"Fixations: {fixations_summary}. Study: {study.name}"
                               f"{' (SIMULATED)' if study.simulated else ''}, sigma = {study.sigma_deg:g} deg = "
                               f"{study.sigma_px:.2f} px. Map transform: {transform}; target: {target}.") + "\n"
    if aoi is not None:
        md += "\n**Areas of interest: share of dwell time vs share of positive attribution per region**\n\n"
        md += aoi.rename(index=markdown_cell, columns=markdown_cell).to_markdown(floatfmt=".3f") + "\n"
    write_atomic(out / "gaze_table.md", md)
    with atomic_path(out / "gaze_table.csv") as tmp:
        csv_safe_frame(table).to_csv(tmp)
    long = pd.concat([df.rename_axis("image_id").reset_index().melt("image_id", var_name="metric")
                      .assign(method=name) for name, df in per_image.items()], ignore_index=True)
    long["simulated"] = study.simulated
    with atomic_path(out / "gaze_per_image.csv") as tmp:
        csv_safe_frame(long[["method", "image_id", "metric", "value", "simulated"]]).to_csv(tmp, index=False)
    if aoi is not None:
        with atomic_path(out / "gaze_aoi.csv") as tmp:
            csv_safe_frame(aoi.assign(simulated=study.simulated)).to_csv(tmp)
    print(md)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gmxai_eval.data.gaze.simulate import write_simulated_study

    from gmxai_eval.utils import check_output_folder

    check_output_folder(args.out)
    samples, _ = load_images(args.images, args.split, args.limit)
    fx, st = write_simulated_study(samples, args.out, args.observers, seed=args.seed)
    print(f"wrote SIMULATED gaze of {args.observers} observers on {len(samples)} images: {fx}, {st}")
    return 0
