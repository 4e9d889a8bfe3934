"""``gmxai-eval data check PATH``: detect, validate and summarise a dataset.

``PATH`` may be

* a CSV manifest (a file; see :mod:`gmxai_eval.data.manifest`),
* a GMDB release folder (``GestaltMatcherDB/`` or ``GestaltMatcherDB/<v>/``; every partition
  present is loaded and validated, rare partitions once per split),
* a synthetic dataset folder (holding ``card.json``, written by ``gmxai-eval data synth``;
  opened with :class:`gmxai_eval.data.synth.SyntheticFaces`, every item read once).

Bad input exits with status 1 and the typed error (file, row, column). ``--json`` prints the
summary as JSON instead of tables.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gmxai_eval import cli_args as ca
from gmxai_eval.data.gmdb import GMDB_PARTITIONS, find_release, is_gmdb_release, load_gmdb, partition_file
from gmxai_eval.data.manifest import load_manifest, parse_int, read_table
from gmxai_eval.errors import ConfigError, DataError

@dataclass(frozen=True)
class CheckOptions:
    mode: str = "RGB"
    image_size: tuple[int, int] | None = None
    resize: bool = False
    verify: str = "decode"
    classes: str | None = None
    version: str | None = None


def _dataset_summary(ds: Any) -> dict[str, Any]:
    if hasattr(ds, "summary"):
        return ds.summary()
    # a generic dataset of Samples: count by iterating (synthetic sets are small)
    from collections import Counter

    per_class: Counter = Counter()
    per_split: Counter = Counter()
    per_cs: Counter = Counter()
    subjects: dict[str, set] = {}
    size = None
    for i in range(len(ds)):
        s = ds[i]
        per_class[ds.classes[s.label]] += 1
        per_split[s.split] += 1
        per_cs[(ds.classes[s.label], s.split)] += 1
        subjects.setdefault(s.split, set()).add(s.subject)
        size = list(s.image.shape[-2:])
        channels = int(s.image.shape[0])
    return {"num_images": len(ds), "num_classes": len(ds.classes),
            "num_subjects": len(set().union(*subjects.values())) if subjects else 0,
            "image_size": size, "channels": channels if len(ds) else None,
            "images_per_class": {c: per_class.get(c, 0) for c in ds.classes},
            "images_per_split": dict(sorted(per_split.items())),
            "subjects_per_split": {k: len(v) for k, v in sorted(subjects.items())},
            "images_per_class_split": {f"{c}|{k}": n for (c, k), n in sorted(per_cs.items())}}


def check_manifest(path: Path, opt: CheckOptions) -> dict[str, Any]:
    ds = load_manifest(path, classes=opt.classes, mode=opt.mode, image_size=opt.image_size,
                       resize=opt.resize, verify=opt.verify)
    return {"kind": "csv_manifest", "source": str(path), "summary": ds.summary()}


def check_gmdb(path: Path, opt: CheckOptions) -> dict[str, Any]:
    release, v = find_release(path, opt.version)
    parts: dict[str, Any] = {}
    size = opt.image_size if opt.image_size is not None else (112, 112)
    kw = dict(version=None, mode=opt.mode, image_size=size, resize=opt.resize, verify=opt.verify)
    for part in GMDB_PARTITIONS:
        f = partition_file(release, v, part)
        if not f.is_file():
            continue
        if part.startswith("rare_"):
            t = read_table(f, ("split",))
            splits = sorted({parse_int(c["split"], path=f, row=n, column="split") for n, c in t.rows})
            for s in splits:
                parts[f"{part}[{s}]"] = load_gmdb(release, part, rare_split=s, **kw).summary()
        else:
            parts[part] = load_gmdb(release, part, **kw).summary()
    if not parts:
        raise DataError(f"expected at least one image list gmdb_<partition>_images_{v}.csv, got none",
                        path=release / "gmdb_metadata")
    return {"kind": "gmdb", "source": str(release), "version": v, "partitions": parts}


def check_synthetic(path: Path, opt: CheckOptions) -> dict[str, Any]:
    card_file = path / "card.json"
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"expected a JSON dataset card, got {type(e).__name__}: {e}",
                        path=card_file) from e
    except RecursionError:
        raise DataError("expected a JSON dataset card, got JSON nested too deep", path=card_file) from None
    if not isinstance(card, dict):
        raise DataError(f"expected a JSON object as dataset card, got {type(card).__name__}", path=card_file)
    out: dict[str, Any] = {"kind": "synthetic", "source": str(path), "card": card}
    try:
        synth = importlib.import_module("gmxai_eval.data.synth")
    except ModuleNotFoundError as e:
        if e.name != "gmxai_eval.data.synth":
            raise
        out["loaded"] = False
        out["note"] = "gmxai_eval.data.synth is not available: only card.json was read"
        return out
    loader: Callable[..., Any] | None = getattr(synth, "SyntheticFaces", None)
    if loader is None:
        out["loaded"] = False
        out["note"] = "gmxai_eval.data.synth offers no SyntheticFaces: only card.json was read"
        return out
    ds = loader(path, with_masks=False)  # reads every image once below
    out["loaded"] = True
    out["summary"] = _dataset_summary(ds)
    return out


@dataclass(frozen=True)
class Detector:
    """A dataset kind ``check data`` recognises: ``matches(path)`` and ``check(path, options)``."""

    kind: str
    matches: Callable[[Path], bool]
    check: Callable[[Path, CheckOptions], dict[str, Any]]


#: Tried in order; the first match wins.
DETECTORS: tuple[Detector, ...] = (
    Detector("csv_manifest", lambda p: p.is_file() and p.suffix.lower() == ".csv", check_manifest),
    Detector("synthetic", lambda p: p.is_dir() and (p / "card.json").is_file(), check_synthetic),
    Detector("gmdb", is_gmdb_release, check_gmdb),
)


#: options that apply to one dataset kind only: ``{CheckOptions field: (kind, command-line flag)}``;
#: given for another kind they are a ConfigError, never silently ignored
OPTION_KINDS: dict[str, tuple[str, str]] = {"version": ("gmdb", "--version"), "classes": ("csv_manifest", "--classes")}


def check_path(path: str | Path, options: CheckOptions | None = None) -> dict[str, Any]:
    """Detect what ``path`` is, validate it fully and return a JSON-able report.

    Raises:
        DataError: unrecognised path or invalid data.
        ConfigError: an option of another dataset kind (:data:`OPTION_KINDS`).
    """
    p = Path(path)
    opt = options or CheckOptions()
    if not p.exists():
        raise DataError("expected a CSV manifest, a GMDB release folder or a synthetic dataset "
                        "folder, got nothing at this path", path=p)
    for d in DETECTORS:
        if d.matches(p):
            for key, (kind, flag) in OPTION_KINDS.items():
                if getattr(opt, key) is not None and d.kind != kind:
                    raise ConfigError(f"expected {flag} only with a {kind} path, got a {d.kind} at {str(p)!r}")
            return d.check(p, opt)
    raise DataError("expected a CSV manifest (*.csv), a GMDB release folder (with gmdb_metadata/) "
                    "or a synthetic dataset folder (with card.json), got none of these", path=p)


# -- printing ---------------------------------------------------------------------------------------
def _table(rows: list[list[Any]], headers: list[str]) -> str:
    try:
        from tabulate import tabulate
    except ImportError:  # pragma: no cover - tabulate is a dependency
        return "\n".join("  ".join(map(str, r)) for r in [headers, *rows])
    return tabulate(rows, headers=headers, tablefmt="simple")


def _print_summary(title: str, s: dict[str, Any], max_rows: int) -> None:
    size = s.get("image_size")
    print(f"{title}: {s['num_images']} images, {s['num_classes']} classes, "
          f"{s['num_subjects']} subjects, image size "
          f"{'x'.join(map(str, size)) if size else '?'} x {s.get('channels')} channels")
    splits = list(s["images_per_split"])
    if len(splits) > 1 or splits != [""]:
        print(_table([[k or "(none)", n, s["subjects_per_split"].get(k, 0)]
                      for k, n in s["images_per_split"].items()], ["split", "images", "subjects"]))
    per_cs = s.get("images_per_class_split", {})
    rows = []
    for c, n in s["images_per_class"].items():
        rows.append([c, *[per_cs.get(f"{c}|{k}", 0) for k in splits], n] if per_cs else [c, n])
    headers = ["class", *[k or "(none)" for k in splits], "total"] if per_cs else ["class", "images"]
    shown = rows if max_rows <= 0 else rows[:max_rows]
    print(_table(shown, headers))
    if len(shown) < len(rows):
        print(f"... {len(rows) - len(shown)} more classes (--max-rows 0 shows all)")


def print_report(report: dict[str, Any], max_rows: int = 30) -> None:
    print(f"{report['kind']} at {report['source']}: OK")
    if report["kind"] == "gmdb":
        rows = [[k, s["num_images"], s["num_subjects"], s["num_classes"]]
                for k, s in report["partitions"].items()]
        print(f"version {report['version']}")
        print(_table(rows, ["partition", "images", "subjects", "classes"]))
        for k, s in report["partitions"].items():
            print()
            _print_summary(k, s, max_rows)
    elif "summary" in report:
        _print_summary("dataset", report["summary"], max_rows)
    else:
        print(report.get("note", ""))
        print(json.dumps(report.get("card"), indent=2, sort_keys=True))


def _run(args: argparse.Namespace) -> int:
    opt = CheckOptions(mode=args.mode, image_size=tuple(args.image_size) if args.image_size else None,
                       resize=args.resize, verify="header" if args.header_only else "decode",
                       classes=args.classes, version=args.version)
    report = check_path(args.path, opt)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report, args.max_rows)
    return 0


def add_data_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check", help="validate a CSV manifest, GMDB release or synthetic dataset and summarise it",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="CSV manifest, GMDB release folder or synthetic dataset folder")
    p.add_argument("--mode", choices=("RGB", "L"), default="RGB", help="colour mode to load")
    p.add_argument("--image-size", type=ca.positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="expected image size (default: manifest: the first image's; GMDB: 112 112)")
    p.add_argument("--resize", action="store_true", help="resize images of another size instead of failing")
    p.add_argument("--header-only", action="store_true", help="read image headers only (skip decoding)")
    p.add_argument("--classes", default=None, help="manifest: file with the class names, one per line")
    p.add_argument("--version", default=None, help="GMDB: release version folder (e.g. v1.0.3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-rows", type=ca.non_negative_int, default=30, help="classes shown per table (0: all)")
    p.set_defaults(func=_run)
