"""CSV manifests of real images, and the validated image-list dataset shared with the GMDB loader.

Manifest format (comma-separated, UTF-8, one header row)::

    path,label,subject,split,image_id,lx0,ly0,lx1,ly1,lx2,ly2,lx3,ly3,lx4,ly4
    faces/p01_a.png,CDLS,p01,train,,38.3,51.7,73.5,51.5,56.0,71.7,41.5,92.4,70.7,92.2

* ``path`` (required): image file, relative to the CSV's folder (absolute paths are kept).
* ``label`` (required): class name. ``classes`` is the sorted set of labels (numerically
  sorted when every label is an integer), or the list you pass (then other labels raise).
* ``subject`` (optional): patient id; images of one subject must not span two splits. When
  the column is absent every image is its own subject.
* ``split`` (optional): free text (``train``, ``test``, ...); an empty cell is split ``""``.
* ``image_id`` (optional): unique id; defaults to ``path`` as written.
* landmarks (optional, all ten or none): ``lx{i}, ly{i}`` for ``i = 0..4`` are pixel
  coordinates (x right, y down, origin at the top-left pixel corner, in the image file as stored)
  of the five ArcFace points in this order: left eye, right eye, nose tip, left mouth corner,
  right mouth corner (see :data:`LANDMARK_NAMES`). They are rescaled when images are resized.
  Each must be finite and inside the stored image (``0 <= x <= W``, ``0 <= y <= H``), else a
  DataError names the file, row and column.
* other columns are ignored and listed in ``card["extra_columns"]``.

Rows are reported as line numbers of the file (the header is row 1), so a DataError's
``row`` is where an editor shows it.

Nothing is half-loaded: :func:`load_manifest` parses and validates every row and opens every
image (full decode by default, ``verify="header"`` for header only) before it returns.
"""

from __future__ import annotations

import csv
import io
import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from gmxai_eval.data.base import DATASETS, Sample
from gmxai_eval.data.images import check_mode, probe_image, read_image
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.types import DatasetCard
from gmxai_eval.utils import read_text

#: The five landmark points, in column order ``lx0,ly0 .. lx4,ly4`` (ArcFace template order).
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
#: Landmark columns of a manifest: ``("lx0", "ly0", ..., "lx4", "ly4")``.
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"l{a}{i}" for i in range(5) for a in "xy")
MANIFEST_REQUIRED: tuple[str, ...] = ("path", "label")
MANIFEST_OPTIONAL: tuple[str, ...] = ("subject", "split", "image_id") + LANDMARK_COLUMNS
VERIFY_LEVELS: tuple[str, ...] = ("decode", "header")


# -- tables ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A parsed delimited file: ``columns`` and ``rows`` as ``(line_number, {column: cell})``."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]


def read_table(path: str | Path, required: Sequence[str], *, delimiter: str = ",",
               allow_empty: bool = False) -> Table:
    """Parse a delimited text file with a header row; cells are stripped strings.

    Raises:
        DataError: missing/unreadable file, empty file, missing or duplicate columns, a row
            with the wrong number of fields, or no data rows (unless ``allow_empty``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"expected a {'TSV' if delimiter == chr(9) else 'CSV'} file, got no file",
                        path=p)
    text = read_text(p, f"{'TSV' if delimiter == chr(9) else 'CSV'} file")
    # io.StringIO: rows end only at \n, \r, \r\n (str.splitlines would also split at \x1c-\x1e, \x85, U+2028)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue  # blank line
            if header is None:
                header = [f.strip() for f in fields]
                dup = [c for c, n in Counter(header).items() if n > 1]
                if dup:
                    raise DataError(f"expected unique column names, got duplicates {dup}",
                                    path=p, row=reader.line_num)
                missing = [c for c in required if c not in header]
                if missing:
                    raise DataError(f"expected columns {list(required)}, got {header} "
                                    f"(missing {missing})", path=p, row=reader.line_num,
                                    column=missing[0])
                continue
            if len(fields) != len(header):
                raise DataError(f"expected {len(header)} fields, got {len(fields)}",
                                path=p, row=reader.line_num)
            rows.append((reader.line_num, {c: f.strip() for c, f in zip(header, fields)}))
    except csv.Error as e:
        raise DataError(f"expected well-formed delimited text, got {e}", path=p,
                        row=reader.line_num) from e
    if header is None:
        raise DataError(f"expected a header row with columns {list(required)}, got an empty file",
                        path=p)
    if not rows and not allow_empty:
        raise DataError("expected at least one data row, got only the header", path=p)
    return Table(p, tuple(header), tuple(rows))


def parse_int(cell: str, *, path: Path, row: int, column: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise DataError(f"expected an integer, got {cell!r}", path=path, row=row,
                        column=column) from None


def parse_float(cell: str, *, path: Path, row: int, column: str) -> float:
    try:
        v = float(cell)
    except ValueError:
        raise DataError(f"expected a number, got {cell!r}", path=path, row=row,
                        column=column) from None
    if not math.isfinite(v):
        raise DataError(f"expected a finite number, got {cell!r}", path=path, row=row, column=column)
    return v


def require_cell(cell: str, *, path: Path, row: int, column: str) -> str:
    if not cell:
        raise DataError("expected a value, got an empty cell", path=path, row=row, column=column)
    bad = next((ch for ch in cell if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise DataError(f"expected text without control characters, got {bad!r} in {cell!r}", path=path,
                        row=row, column=column)
    return cell


# -- records and validation -----------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRecord:
    """One validated row: resolved image ``path``, ``label`` index, ids, the ``source`` file and
    ``row`` that named it, and optional ``landmarks`` ``((x, y), ...)`` x5 in file pixels."""

    path: Path
    label: int
    image_id: str
    subject: str
    split: str
    source: Path
    row: int
    landmarks: tuple[tuple[float, float], ...] | None = None


def check_unique_ids(records: Sequence[ImageRecord]) -> None:
    """Raise :class:`DataError` at the second row that repeats an image id or an image file."""
    seen: dict[str, dict[object, ImageRecord]] = {"image_id": {}, "path": {}}
    for r in records:
        for column, key, expected in (("image_id", r.image_id, "unique image ids"),
                                      ("path", r.path, "each image file once")):
            if key in seen[column]:
                f = seen[column][key]
                raise DataError(f"expected {expected}, got {str(key)!r} again (first at {f.source} row {f.row})",
                                path=r.source, row=r.row, column=column)
            seen[column][key] = r


def check_subject_splits(records: Iterable[ImageRecord]) -> None:
    """Raise :class:`DataError` at the first row whose subject already appeared in another split."""
    first: dict[str, ImageRecord] = {}
    for r in records:
        f = first.setdefault(r.subject, r)
        if f.split != r.split:
            raise DataError(f"expected subject {r.subject!r} in one split, got it in {f.split!r} "
                            f"({f.source} row {f.row}) and in {r.split!r}", path=r.source,
                            row=r.row, column="subject")


def check_landmarks(record: ImageRecord, stored_hw: tuple[int, int]) -> None:
    """Raise :class:`DataError` naming the file, row and column of the first landmark coordinate
    of ``record`` that is not finite or lies outside its stored image: ``0 <= x <= W`` and
    ``0 <= y <= H`` (pixel-corner coordinates, so the far edge ``W`` / ``H`` is inside)."""
    if record.landmarks is None:
        return
    h, w = stored_hw
    for i, (x, y) in enumerate(record.landmarks):
        for axis, v, hi in (("x", x, w), ("y", y, h)):
            if not (math.isfinite(v) and 0.0 <= v <= hi):
                raise DataError(f"expected the {LANDMARK_NAMES[i]} landmark's {axis} inside the {w}x{h} image "
                                f"{record.path.name!r} (0 <= {axis} <= {hi}), got {v!r}", path=record.source,
                                row=record.row, column=f"l{axis}{i}")


def verify_images(records: Sequence[ImageRecord], *, image_size: tuple[int, int] | None,
                  resize: bool, verify: str = "decode") -> dict[Path, tuple[int, int]]:
    """Open every image (``verify="decode"``: decode all pixels; ``"header"``: header only).

    Size rule: with ``image_size`` every file must be that ``(H, W)`` unless ``resize``; without
    it every file must share the size of the first one (a dataset must collate into batches).
    Landmarks must be finite and inside their stored image (:func:`check_landmarks`).

    Returns:
        the stored ``(H, W)`` of every image path.
    """
    if verify not in VERIFY_LEVELS:
        raise ConfigError(f"expected verify in {VERIFY_LEVELS}, got {verify!r}")
    sizes: dict[Path, tuple[int, int]] = {}
    ref: tuple[tuple[int, int], ImageRecord] | None = None
    for r in records:
        if r.path not in sizes:
            sizes[r.path] = probe_image(r.path, decode=verify == "decode", source=r.source,
                                        row=r.row).size
        hw = sizes[r.path]
        check_landmarks(r, hw)
        if image_size is not None:
            if not resize and hw != tuple(image_size):
                raise DataError(f"expected image size (H, W) = {tuple(image_size)}, got {hw} for "
                                f"{str(r.path)!r} (pass resize=True to resize)", path=r.source,
                                row=r.row, column="path")
        elif ref is None:
            ref = (hw, r)
        elif hw != ref[0]:
            raise DataError(f"expected every image the size of the first ({ref[0]} at row "
                            f"{ref[1].row}), got {hw} for {str(r.path)!r} (pass image_size and "
                            "resize=True to resize)", path=r.source, row=r.row, column="path")
    return sizes


# -- the dataset ----------------------------------------------------------------------------------
class ImageListDataset(Dataset):
    """A validated list of image files; items are :class:`~gmxai_eval.data.base.Sample`.

    Built by :func:`load_manifest` and :func:`gmxai_eval.data.gmdb.load_gmdb`; construct it
    directly only from records that went through the checks above.

    Attributes:
        classes: class names, index = label.
        card: JSON-serialisable description (source, counts, mode, image size).
        records: the validated rows.
        image_size: ``(H, W)`` of every returned image.
        mode: ``"RGB"`` or ``"L"``.
    """

    def __init__(self, records: Sequence[ImageRecord], classes: Sequence[str], *, mode: str,
                 image_size: tuple[int, int], stored_sizes: dict[Path, tuple[int, int]],
                 card: dict[str, Any]) -> None:
        self.records = tuple(records)
        self.classes = list(classes)
        self.mode = mode
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._stored = dict(stored_sizes)
        self.card = card

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        r = self.records[i]
        resize = self._stored.get(r.path) != self.image_size
        img = read_image(r.path, self.mode, self.image_size if resize else None, source=r.source,
                         row=r.row)
        lm = None
        if r.landmarks is not None:
            lm = torch.tensor(r.landmarks, dtype=torch.float32)
            if resize:
                h0, w0 = self._stored[r.path]
                lm = lm * lm.new_tensor([self.image_size[1] / w0, self.image_size[0] / h0])
        return Sample(image=img, label=r.label, image_id=r.image_id, subject=r.subject,
                      split=r.split, landmarks=lm)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def summary(self) -> dict[str, Any]:
        """Counts for reports: images per class and split, subjects per split."""
        per_class: Counter = Counter(self.classes[r.label] for r in self.records)
        per_split: Counter = Counter(r.split for r in self.records)
        per_class_split: Counter = Counter((self.classes[r.label], r.split) for r in self.records)
        subj: dict[str, set[str]] = {}
        for r in self.records:
            subj.setdefault(r.split, set()).add(r.subject)
        return {
            "num_images": len(self.records),
            "num_classes": len(self.classes),
            "num_subjects": len({r.subject for r in self.records}),
            "image_size": list(self.image_size),
            "channels": 3 if self.mode == "RGB" else 1,
            "images_per_class": {c: per_class.get(c, 0) for c in self.classes},
            "images_per_split": dict(sorted(per_split.items())),
            "subjects_per_split": {k: len(v) for k, v in sorted(subj.items())},
            "images_per_class_split": {f"{c}|{s}": n for (c, s), n in sorted(per_class_split.items())},
            "landmarks": any(r.landmarks is not None for r in self.records),
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes, "
                f"mode={self.mode}, size={self.image_size}, source={self.card.get('source')!r})")


def _sorted_labels(labels: Iterable[str]) -> list[str]:
    u = set(labels)
    try:
        return sorted(u, key=int)
    except ValueError:
        return sorted(u)


def _read_classes(classes: Sequence[str] | str | Path) -> list[str]:
    if isinstance(classes, (str, Path)):
        p = Path(classes)
        if not p.is_file():
            raise DataError("expected a classes file (one class name per line), got no file", path=p)
        names = [ln.strip() for ln in read_text(p, "classes file").splitlines() if ln.strip()]
        src: Any = p
    else:
        names = [str(c) for c in classes]
        src = None
    dup = [c for c, n in Counter(names).items() if n > 1]
    if dup or not names:
        raise DataError(f"expected a non-empty list of unique class names, got duplicates {dup}"
                        if dup else "expected a non-empty list of class names, got none", path=src)
    return names


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_manifest(path: str | Path, *, classes: Sequence[str] | str | Path | None = None,
                  mode: str = "RGB", image_size: tuple[int, int] | None = None,
                  resize: bool = False, verify: str = "decode",
                  split: str | Sequence[str] | None = None) -> ImageListDataset:
    """Load and fully validate a CSV manifest (format in the module docstring).

    Args:
        path: the CSV file; image paths are relative to its folder.
        classes: class names in index order (a list, or a text file with one per line); labels
            not in it raise. Default: the sorted labels of the manifest.
        mode: ``"RGB"`` (images ``(3, H, W)``) or ``"L"`` (``(1, H, W)``).
        image_size: expected ``(H, W)``. A file of another size raises, unless ``resize=True``
            (then it is resized, bilinear). ``None``: every file must have the first file's size.
        resize: see ``image_size``.
        verify: ``"decode"`` (default; decode every image) or ``"header"`` (headers only).
        split: keep only rows of this split (or these splits). All rows are validated first.

    Returns:
        :class:`ImageListDataset` of :class:`~gmxai_eval.data.base.Sample`.

    Raises:
        DataError: naming file, row and column: empty file, missing columns, bad numbers,
            empty required cells, unknown label, duplicate image id or file, a subject in two
            splits, missing / corrupt image, wrong image size, a landmark that is not finite or
            lies outside its image.
        ConfigError: invalid options.
    """
    check_mode(mode)
    if verify not in VERIFY_LEVELS:
        raise ConfigError(f"expected verify in {VERIFY_LEVELS}, got {verify!r}")
    if resize and image_size is None:
        raise ConfigError("expected image_size=(H, W) with resize=True, got image_size=None")
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))
    src = Path(path)
    table = read_table(src, MANIFEST_REQUIRED)
    cols = set(table.columns)
    lm_present = [c for c in LANDMARK_COLUMNS if c in cols]
    if lm_present and len(lm_present) != len(LANDMARK_COLUMNS):
        missing = [c for c in LANDMARK_COLUMNS if c not in cols]
        raise DataError(f"expected all landmark columns {list(LANDMARK_COLUMNS)} or none, got "
                        f"{lm_present} (missing {missing})", path=src, row=1, column=missing[0])
    fixed = list(_read_classes(classes)) if classes is not None else None
    labels_raw = [require_cell(c["label"], path=src, row=n, column="label") for n, c in table.rows]
    names = fixed if fixed is not None else _sorted_labels(labels_raw)
    index = {c: i for i, c in enumerate(names)}
    root = src.parent
    records: list[ImageRecord] = []
    for (n, cells), lab in zip(table.rows, labels_raw):
        rel = require_cell(cells["path"], path=src, row=n, column="path")
        if lab not in index:
            raise DataError(f"expected a label in the {len(names)} given classes, got {lab!r}",
                            path=src, row=n, column="label")
        subject = (require_cell(cells["subject"], path=src, row=n, column="subject")
                   if "subject" in cols else "")
        image_id = cells.get("image_id") or rel
        lm = None
        if lm_present:
            v = [parse_float(cells[c], path=src, row=n, column=c) for c in LANDMARK_COLUMNS]
            lm = tuple((v[2 * i], v[2 * i + 1]) for i in range(5))
        records.append(ImageRecord(path=root / rel, label=index[lab], image_id=image_id,
                                   subject=subject or image_id, split=cells.get("split", ""),
                                   source=src, row=n, landmarks=lm))
    check_unique_ids(records)
    check_subject_splits(records)
    if split is not None:
        wanted = {split} if isinstance(split, str) else set(split)
        present = {r.split for r in records}
        if not wanted <= present:
            raise ConfigError(f"expected split(s) among {sorted(present)}, got {sorted(wanted)}")
        records = [r for r in records if r.split in wanted]
    sizes = verify_images(records, image_size=image_size, resize=resize, verify=verify)
    final_size = image_size if image_size is not None else sizes[records[0].path]
    extra = [c for c in table.columns if c not in MANIFEST_REQUIRED + MANIFEST_OPTIONAL]
    card = {
        "name": "csv_manifest", "source": str(src), "sha256_16": _file_digest(src),
        "num_images": len(records), "num_classes": len(names), "mode": mode,
        "image_size": list(final_size), "resized": bool(resize), "verify": verify,
        "split": split if split is None or isinstance(split, str) else list(split),
        "landmarks": list(LANDMARK_NAMES) if lm_present else None, "extra_columns": extra,
    }
    return ImageListDataset(records, names, mode=mode, image_size=final_size, stored_sizes=sizes,
                            card=card)


DATASETS.register(load_manifest, name="csv_manifest", card=DatasetCard(
    name="csv_manifest",
    description="images listed in a CSV manifest (path,label[,subject,split,image_id,lx0..ly4])",
    default_config={"path": None, "classes": None, "mode": "RGB", "image_size": None,
                    "resize": False, "verify": "decode", "split": None}))
