"""The per-sample results table of a run.

One row per (seed, evaluator, method, sample)::

    run, seed, evaluator, method, sample_id, subject, score, curve, curve_x, extras

``curve`` / ``curve_x`` / ``extras`` are JSON strings (empty when absent). The table is written
atomically as ``samples.csv`` (and ``samples.parquet`` when pyarrow is installed). Text cells of
the CSV are neutralised against CSV injection (:func:`~gmxai_eval.utils.csv_safe`: a label or id
starting with ``= + - @`` gets a leading ``'``) and restored by :func:`read_table`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from gmxai_eval.errors import DataError
from gmxai_eval.utils import atomic_path, csv_safe_frame, csv_unescape

COLUMNS: tuple[str, ...] = ("run", "seed", "evaluator", "method", "sample_id", "subject", "score",
                            "curve", "curve_x", "extras")


def rows_from_unit(run: str, seed: int, evaluator: str, method: str, doc: Mapping[str, Any],
                   subjects: Mapping[str, str]) -> list[dict[str, Any]]:
    """Table rows of one stored unit document (see :class:`~gmxai_eval.runner.cache.UnitStore`)."""
    rows = []
    curve_x = json.dumps(doc["curve_x"]) if doc.get("curve_x") is not None else ""
    for i, sid in enumerate(doc["sample_ids"]):
        extras = {k: v[i] for k, v in doc.get("extras", {}).items()}
        rows.append({
            "run": run, "seed": int(seed), "evaluator": evaluator, "method": method,
            "sample_id": str(sid), "subject": subjects.get(str(sid), ""),
            "score": float(doc["scores"][i]),
            "curve": json.dumps(doc["curves"][i]) if doc.get("curves") is not None else "",
            "curve_x": curve_x,
            "extras": json.dumps(extras) if extras else "",
        })
    return rows


def make_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with :data:`COLUMNS`, sorted deterministically."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if len(df):
        df = df.sort_values(["evaluator", "method", "seed", "sample_id"], kind="stable").reset_index(drop=True)
    return df


def write_table(df: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write ``samples.csv`` (and ``samples.parquet`` if pyarrow is importable) atomically."""
    folder = Path(folder)
    out = []
    with atomic_path(folder / "samples.csv") as tmp:
        csv_safe_frame(df).to_csv(tmp, index=False, float_format="%.17g")
    out.append(folder / "samples.csv")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return out
    with atomic_path(folder / "samples.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    out.append(folder / "samples.parquet")
    return out


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``samples.csv`` back (ids and text columns stay strings)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("expected a per-sample results file, got no file", path=p)
    df = pd.read_csv(p, dtype={"run": str, "evaluator": str, "method": str, "sample_id": str,
                               "subject": str, "curve": str, "curve_x": str, "extras": str},
                     keep_default_na=False, na_values={"score": ["nan", "NaN"]})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"expected columns {list(COLUMNS)}, missing {missing}", path=p)
    for c in ("run", "evaluator", "method", "sample_id", "subject", "curve", "curve_x", "extras"):
        df[c] = df[c].map(csv_unescape)
    try:
        df["score"] = pd.to_numeric(df["score"], errors="raise")
    except (ValueError, TypeError) as e:
        raise DataError(f"expected numbers in column 'score', got {e}", path=p, column="score") from None
    return df
