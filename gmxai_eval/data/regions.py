"""Canonical facial regions and the ArcFace 112x112 alignment template.

Every dataset with region masks uses these names (in this order) so that localisation per
region, gaze areas of interest and the synthetic generator agree.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch

from gmxai_eval.errors import DataError

#: ArcFace 5-point template for 112x112 aligned faces, (x, y) pixels: left eye, right eye,
#: nose tip, left mouth corner, right mouth corner (image left/right as seen).
ARCFACE_TEMPLATE_112 = torch.tensor([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])

#: Named facial regions (mask order in ``Sample.region_masks``).
REGION_NAMES: tuple[str, ...] = (
    "forehead", "brows", "eyes", "nose", "philtrum", "mouth", "chin", "ears", "cheeks", "hair",
)


#: The packaged table of facial HPO terms and the named regions each one changes
#: (``hpo,label,regions`` with ``;``-separated regions). Copy and edit it, then pass its path.
HPO_REGIONS_FILE = Path(__file__).with_name("hpo_regions.csv")


def load_hpo_regions(path: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """``{HPO id: regions}`` from a CSV with columns ``hpo, label, regions`` (default: the
    packaged :data:`HPO_REGIONS_FILE`). Region names must be among :data:`REGION_NAMES`.

    Raises:
        DataError: unreadable or non-UTF-8 file, missing column, malformed HPO id, unknown
            region or duplicate term, naming the file and row.
    """
    p = Path(path) if path is not None else HPO_REGIONS_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"expected a UTF-8 CSV of HPO terms and regions, got {type(e).__name__}", path=p) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"hpo", "regions"} <= set(rows[0]):
        raise DataError("expected columns hpo,label,regions, got "
                        f"{sorted(rows[0]) if rows else 'no rows'}", path=p)
    out: dict[str, tuple[str, ...]] = {}
    for i, r in enumerate(rows, start=2):  # row 1 is the header
        hpo = (r.get("hpo") or "").strip()
        if not re.fullmatch(r"HP:\d{7}", hpo):
            raise DataError(f"expected an HPO id like HP:0000316, got {hpo!r}", path=p, row=i, column="hpo")
        regions = tuple(x.strip() for x in (r.get("regions") or "").split(";") if x.strip())
        bad = [x for x in regions if x not in REGION_NAMES]
        if not regions or bad:
            raise DataError(f"expected regions among {list(REGION_NAMES)}, got {bad or 'none'}", path=p,
                            row=i, column="regions")
        if hpo in out:
            raise DataError(f"expected each HPO term once, got {hpo} again", path=p, row=i, column="hpo")
        out[hpo] = regions
    return out


def class_regions(hpo_per_class: Mapping[str, Sequence[str]],
                  table: Mapping[str, Sequence[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """``{class: regions}`` from each class's HPO terms through ``table`` (default: the packaged
    one). A term missing from the table raises :class:`DataError` naming it and the class."""
    t = load_hpo_regions() if table is None else table
    out = {}
    for cls, terms in hpo_per_class.items():
        missing = [h for h in terms if h not in t]
        if missing:
            raise DataError(f"class {cls!r}: expected its HPO terms in the HPO-region table, got unknown "
                            f"{missing} (add them to a copy of the table)")
        out[cls] = tuple(dict.fromkeys(r for h in terms for r in t[h]))
    return out
