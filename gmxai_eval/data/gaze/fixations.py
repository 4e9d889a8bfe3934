"""Fixation files: long format, one fixation per row, validated with row/column errors.

Columns (CSV header or Parquet schema)::

    observer_id, image_id, x, y, onset_ms, duration_ms   [, trial, eye, valid]

* ``x, y``: 0-based image pixels, origin top-left; the fixated pixel is ``(floor(y), floor(x))``
  (the pysaliency convention), so valid coordinates satisfy ``0 <= x < W`` and ``0 <= y < H``
  (``W``, ``H``: the image's size when known, else :data:`MAX_COORD`).
* ``onset_ms`` in ``[0, MAX_ONSET_MS]`` (one day) and ``duration_ms`` in
  ``[0, MAX_DURATION_MS]`` (one hour), milliseconds.
* ``trial`` (free text), ``eye`` (free text, e.g. ``L`` / ``R``) are kept as they are;
  ``valid`` (``1/0``, ``true/false``) marks rows the recording software rejected: rows with
  ``valid`` false are always excluded and counted under ``"marked_invalid"``.

Row numbers in errors are **1-based data rows** (the header is not counted; for a CSV file
without quoted line breaks, data row ``r`` is on line ``r + 1``).

Invalid rows (``on_invalid="raise"``, the default) raise :class:`~gmxai_eval.errors.DataError`
naming the file, row and column. With ``on_invalid="drop"`` they are removed and counted per
reason in :attr:`FixationTable.dropped` (reasons: ``missing_value``, ``non_numeric``,
``non_finite``, ``negative_onset``, ``negative_duration``, ``onset_out_of_range``,
``duration_out_of_range``, ``unknown_image``, ``out_of_bounds``);
nothing is dropped silently: :meth:`FixationTable.summary` reports the counts and the ``gaze``
command prints them. Missing columns and malformed CSV always raise.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping

import numpy as np
import pandas as pd

from gmxai_eval.utils import read_text
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.utils import atomic_path

REQUIRED_COLUMNS: tuple[str, ...] = ("observer_id", "image_id", "x", "y", "onset_ms", "duration_ms")
OPTIONAL_COLUMNS: tuple[str, ...] = ("trial", "eye", "valid")
NUMERIC_COLUMNS: tuple[str, ...] = ("x", "y", "onset_ms", "duration_ms")
#: Reasons a row can be invalid, in the order they are checked.
DROP_REASONS: tuple[str, ...] = ("missing_value", "non_numeric", "non_finite", "negative_onset",
                                 "negative_duration", "onset_out_of_range", "duration_out_of_range",
                                 "unknown_image", "out_of_bounds")
#: Upper ends of the numeric columns: a coordinate (image pixels; for an image of unknown
#: size, the largest image side a study may declare), an onset (one day of recording) and a
#: fixation duration (one hour), in ms. Larger values are recording or export errors.
MAX_COORD = 65536.0
MAX_ONSET_MS = 86_400_000.0
MAX_DURATION_MS = 3_600_000.0
OnInvalid = Literal["raise", "drop"]
ImageSizes = Mapping[str, tuple[int, int]] | tuple[int, int] | None

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


@dataclass(frozen=True)
class FixationTable:
    """Validated fixations.

    Attributes:
        data: one row per fixation; columns :data:`REQUIRED_COLUMNS` (ids as ``str``,
            numbers as ``float64``) plus any optional column present; ``row`` is the 1-based
            data row of the source file.
        source: the file read (or ``"<dataframe>"``).
        dropped: ``{reason: count}`` of excluded rows (empty when nothing was excluded).
    """

    data: pd.DataFrame
    source: str = "<dataframe>"
    dropped: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.data))

    @property
    def image_ids(self) -> list[str]:
        """Sorted ids of the images that have fixations."""
        return sorted(self.data["image_id"].unique().tolist())

    @property
    def observers(self) -> list[str]:
        """Sorted observer ids."""
        return sorted(self.data["observer_id"].unique().tolist())

    def for_image(self, image_id: str, observer: str | None = None) -> pd.DataFrame:
        """Rows of one image (optionally one observer), in file order."""
        d = self.data
        m = d["image_id"] == image_id
        if observer is not None:
            m &= d["observer_id"] == observer
        return d[m]

    def points(self, image_id: str, observer: str | None = None) -> np.ndarray:
        """``(N, 2)`` float64 ``(x, y)`` of one image (optionally one observer)."""
        return self.for_image(image_id, observer)[["x", "y"]].to_numpy(np.float64)

    def summary(self) -> str:
        """One line: counts of fixations, observers, images and excluded rows per reason."""
        drop = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        return (f"{len(self)} fixations, {len(self.observers)} observers, {len(self.image_ids)} "
                f"images from {self.source}; excluded rows: {drop}")


def _read_raw(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataError("expected pyarrow to read a Parquet fixation file, got no pyarrow "
                            "installed (pip install pyarrow, or convert the file to CSV)", path=path) from None
        df = pd.read_parquet(path)
        return df.astype({c: str for c in df.columns if c in ("observer_id", "image_id", "trial", "eye")})
    if suffix not in (".csv", ".txt", ".tsv"):
        raise DataError(f"expected a .csv or .parquet fixation file, got suffix {path.suffix!r}", path=path)
    text = read_text(path, "fixation file")
    sep = "\t" if suffix == ".tsv" else ","
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                           skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        row = _find_bad_csv_row(text, sep)
        raise DataError(f"expected well-formed CSV, got {type(e).__name__}: {str(e).strip()}",
                        path=path, row=row) from e


def _find_bad_csv_row(text: str, sep: str) -> int | None:
    """1-based data row whose field count differs from the header (for the error message)."""
    reader = csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True)
    try:
        header = next(reader)
    except StopIteration:
        return None
    for i, rec in enumerate(reader, start=1):
        if len(rec) != len(header):
            return i
    return None


def read_fixations(path: str | Path, *, known_images: Iterable[str] | None = None,
                   image_sizes: ImageSizes = None, on_invalid: OnInvalid = "raise") -> FixationTable:
    """Read and validate a fixation file (CSV, or Parquet when pyarrow is installed).

    Args:
        path: ``.csv`` / ``.tsv`` / ``.parquet``.
        known_images: ids of the images of the dataset; other ids are invalid
            (``unknown_image``). ``None`` accepts every id.
        image_sizes: ``{image_id: (H, W)}`` or one ``(H, W)`` for all images; coordinates
            outside ``[0, W) x [0, H)`` are invalid (``out_of_bounds``). ``None`` skips the check.
        on_invalid: ``"raise"`` (first invalid row -> :class:`DataError` naming row and column)
            or ``"drop"`` (remove invalid rows, counted per reason in ``dropped``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"expected a fixation file, got no file at {str(p)!r}", path=p)
    return validate_fixations(_read_raw(p), known_images=known_images, image_sizes=image_sizes,
                              on_invalid=on_invalid, source=str(p))


def validate_fixations(df: pd.DataFrame, *, known_images: Iterable[str] | None = None,
                       image_sizes: ImageSizes = None, on_invalid: OnInvalid = "raise",
                       source: str = "<dataframe>") -> FixationTable:
    """Validate an in-memory table with the columns of the file format (see :func:`read_fixations`)."""
    if on_invalid not in ("raise", "drop"):
        raise ConfigError(f"expected on_invalid 'raise' or 'drop', got {on_invalid!r}")
    df = df.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"expected columns {list(REQUIRED_COLUMNS)}, got {list(df.columns)} "
                        f"(missing {missing})", path=source, column=missing[0])
    df = df.reset_index(drop=True)
    n = len(df)
    rows = np.arange(1, n + 1)
    bad: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # reason -> (row mask, column index per row)
    cols = list(REQUIRED_COLUMNS)

    def flag(reason: str, mask_by_col: dict[str, np.ndarray]) -> None:
        if not mask_by_col:
            return
        stack = np.stack([mask_by_col[c] for c in mask_by_col])  # (k, n)
        any_ = stack.any(0)
        first = np.array(list(mask_by_col))[stack.argmax(0)]
        bad[reason] = (any_, first)

    # missing values: empty text / NA
    text = {c: None if pd.api.types.is_numeric_dtype(df[c]) else df[c].astype(str).str.strip()
            for c in cols}
    flag("missing_value", {c: (df[c].isna().to_numpy() | (text[c] == "").to_numpy() if text[c] is not None
                               else df[c].isna().to_numpy()) for c in cols})
    num: dict[str, np.ndarray] = {}
    non_num: dict[str, np.ndarray] = {}
    non_fin: dict[str, np.ndarray] = {}
    for c in NUMERIC_COLUMNS:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        num[c] = v
        raw = text[c]
        empty = df[c].isna().to_numpy() | ((raw == "").to_numpy() if raw is not None else False)
        nan_text = (raw.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy() if raw is not None
                    else np.zeros(n, bool))
        non_num[c] = np.isnan(v) & ~empty & ~nan_text
        non_fin[c] = np.isinf(v) | (np.isnan(v) & nan_text)
    flag("non_numeric", non_num)
    flag("non_finite", non_fin)
    flag("negative_onset", {"onset_ms": num["onset_ms"] < 0})
    flag("negative_duration", {"duration_ms": num["duration_ms"] < 0})
    flag("onset_out_of_range", {"onset_ms": num["onset_ms"] > MAX_ONSET_MS})
    flag("duration_out_of_range", {"duration_ms": num["duration_ms"] > MAX_DURATION_MS})
    ids = text["image_id"].to_numpy(dtype=object) if text["image_id"] is not None else df["image_id"].astype(str).to_numpy()
    obs = (text["observer_id"].to_numpy(dtype=object) if text["observer_id"] is not None
           else df["observer_id"].astype(str).to_numpy())
    if known_images is not None:
        known = set(map(str, known_images))
        flag("unknown_image", {"image_id": ~pd.Series(ids).isin(known).to_numpy()})
    h, w = _sizes_for(ids, image_sizes)
    x, y = num["x"], num["y"]
    with np.errstate(invalid="ignore"):
        flag("out_of_bounds", {"x": (x < 0) | (x >= w), "y": (y < 0) | (y >= h)})

    if on_invalid == "raise" and bad:
        # the first invalid row of the file; on that row, the first reason in DROP_REASONS
        i, reason = min((int(np.flatnonzero(m)[0]), r) for r, (m, _) in bad.items() if m.any()
                        ) if any(m.any() for m, _ in bad.values()) else (-1, "")
        if i >= 0:
            reason = min((r for r, (m, _) in bad.items() if m[i]), key=DROP_REASONS.index)
            col = str(bad[reason][1][i])
            raise DataError(_describe(reason, df, col, i, num, ids, image_sizes),
                            path=source, row=int(rows[i]), column=col)
    # a row invalid for several reasons is counted once, under the first reason
    taken = np.zeros(n, bool)
    counts: dict[str, int] = {}
    for reason in DROP_REASONS:
        if reason in bad:
            mask = bad[reason][0] & ~taken
            if mask.any():
                counts[reason] = int(mask.sum())
                taken |= mask

    out = pd.DataFrame({"observer_id": obs, "image_id": ids,
                        **{c: num[c] for c in NUMERIC_COLUMNS}, "row": rows})
    for c in ("trial", "eye"):
        if c in df.columns:
            out[c] = df[c].astype(str).to_numpy()
    keep = ~taken
    if "valid" in df.columns:
        v = df["valid"].astype(str).str.strip().str.lower().to_numpy()
        unknown = ~np.isin(v, list(_TRUE | _FALSE))
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(f"expected 1/0 or true/false, got {df['valid'].iloc[i]!r}",
                            path=source, row=int(rows[i]), column="valid")
        marked = np.isin(v, list(_FALSE)) & keep
        if marked.any():
            counts["marked_invalid"] = int(marked.sum())
        keep &= ~marked
    out = out[keep].reset_index(drop=True)
    return FixationTable(out, source, counts)


def _sizes_for(ids: np.ndarray, image_sizes: ImageSizes) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W)`` per row: the image's size, or :data:`MAX_COORD` where it is not known."""
    if image_sizes is None:
        return np.full(len(ids), MAX_COORD), np.full(len(ids), MAX_COORD)
    if isinstance(image_sizes, tuple):
        return np.full(len(ids), float(image_sizes[0])), np.full(len(ids), float(image_sizes[1]))
    s = pd.Series(ids, dtype=object)
    # ids without a known size are checked against MAX_COORD (unknown ids are flagged separately)
    h = s.map({k: float(v[0]) for k, v in image_sizes.items()}).astype(np.float64).fillna(MAX_COORD)  # type: ignore[union-attr]
    w = s.map({k: float(v[1]) for k, v in image_sizes.items()}).astype(np.float64).fillna(MAX_COORD)  # type: ignore[union-attr]
    return h.to_numpy(), w.to_numpy()


def _describe(reason: str, df: pd.DataFrame, col: str, i: int, num: dict[str, np.ndarray],
              ids: np.ndarray, image_sizes: ImageSizes) -> str:
    raw = df[col].iloc[i]
    if reason == "missing_value":
        return "expected a value, got an empty cell"
    if reason == "non_numeric":
        return f"expected a number, got {raw!r}"
    if reason == "non_finite":
        return f"expected a finite number, got {raw!r}"
    if reason in ("negative_onset", "negative_duration"):
        return f"expected a non-negative time in ms, got {num[col][i]!r}"
    if reason in ("onset_out_of_range", "duration_out_of_range"):
        top = MAX_ONSET_MS if reason == "onset_out_of_range" else MAX_DURATION_MS
        return f"expected a time in [0, {top:.0f}] ms, got {num[col][i]!r}"
    if reason == "unknown_image":
        return f"expected an image id of the dataset, got unknown id {ids[i]!r}"
    h, w = _sizes_for(ids[i:i + 1], image_sizes)
    lim = w[0] if col == "x" else h[0]
    size = (f"image {ids[i]!r} is {h[0]:g}x{w[0]:g} H x W" if lim != MAX_COORD or isinstance(image_sizes, tuple)
            else "the largest image side; the image's size is not known")
    return f"expected 0 <= {col} < {lim:g} ({size}), got {num[col][i]!r}"


def write_fixations(data: pd.DataFrame | FixationTable, path: str | Path) -> Path:
    """Write fixations as CSV (atomically) with the standard columns first."""
    df = data.data if isinstance(data, FixationTable) else data
    cols = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in df.columns]
    p = Path(path)
    with atomic_path(p) as tmp:
        df[cols].to_csv(tmp, index=False, float_format="%.3f")
    return p
