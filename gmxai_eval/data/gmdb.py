"""GestaltMatcher Database (GMDB) releases (controlled access; nothing is downloaded here).

Layout of a release folder ``GestaltMatcherDB/<v>/`` (``<v>`` like ``v1.0.3``)::

    gmdb_align/{image_id}_rot_aligned.jpg          aligned 112x112 faces
    gmdb_metadata/gmdb_{train,val,test}_images_<v>.csv
    gmdb_metadata/gmdb_{frequent,rare}_{gallery,test}_images_<v>.csv
    gmdb_metadata/gmdb_syndromes_<v>.tsv

Image lists have columns ``image_id,subject,label`` (+ ``split`` 0-9 in the rare files, where
every rare image appears once per split); ``label`` is the ``syndrome_id`` of the syndromes TSV
(columns ``syndrome_id, syndrome_name, image_ids, subject_ids, num_of_images,
num_of_subjects, train, OMIM``; only the first two are required here).

Class indices (``label_space``): like the reference lookup table, a partition's class ``k`` is
the ``k``-th smallest syndrome id of a label space:

* ``"train"`` - ids in the train list (default for train / val / test),
* ``"frequent"`` - ids in the frequent gallery and test lists (default for ``frequent_*``),
* ``"rare"`` - ids in the rare gallery and test lists (default for ``rare_*``),
* ``"all"`` - every syndrome of the TSV.

``classes`` are syndrome names; ``dataset.syndrome_ids`` the matching ids.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gmxai_eval.data.base import DATASETS
from gmxai_eval.data.images import check_mode
from gmxai_eval.data.manifest import (
    VERIFY_LEVELS,
    ImageListDataset,
    ImageRecord,
    Table,
    check_subject_splits,
    check_unique_ids,
    parse_int,
    read_table,
    require_cell,
    verify_images,
)
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.types import DatasetCard

#: Partition name -> file stem (``gmdb_<stem>_images_<v>.csv``).
GMDB_PARTITIONS: dict[str, str] = {
    "train": "train", "val": "val", "test": "test",
    "frequent_gallery": "frequent_gallery", "frequent_test": "frequent_test",
    "rare_gallery": "rare_gallery", "rare_test": "rare_test",
}
#: Partitions whose subjects must be disjoint (checked when ``check_subjects=True``).
SUBJECT_DISJOINT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("train", "val", "test"), ("frequent_gallery", "frequent_test"), ("rare_gallery", "rare_test"))
LABEL_SPACES: dict[str, tuple[str, ...]] = {
    "train": ("train",), "frequent": ("frequent_gallery", "frequent_test"),
    "rare": ("rare_gallery", "rare_test"), "all": (),
}
GMDB_IMAGE_SIZE = (112, 112)
IMAGE_COLUMNS = ("image_id", "subject", "label")
SYNDROME_COLUMNS = ("syndrome_id", "syndrome_name")
_TSV = re.compile(r"^gmdb_syndromes_(?P<v>.+)\.tsv$")


def is_gmdb_release(path: str | Path) -> bool:
    """Whether ``path`` is a release folder (``<v>/``) or a folder holding release folders."""
    p = Path(path)
    return p.is_dir() and ((p / "gmdb_metadata").is_dir()
                           or any((c / "gmdb_metadata").is_dir() for c in p.iterdir() if c.is_dir()))


def find_release(root: str | Path, version: str | None = None) -> tuple[Path, str]:
    """Resolve ``root`` (``GestaltMatcherDB/`` or ``GestaltMatcherDB/<v>/``) to the release folder
    and the file version suffix ``<v>`` (taken from ``gmdb_syndromes_<v>.tsv``)."""
    p = Path(root)
    if not p.is_dir():
        raise DataError("expected a GMDB release folder, got no folder", path=p)
    if not (p / "gmdb_metadata").is_dir():
        if version is not None:
            cand = p / version
            if not (cand / "gmdb_metadata").is_dir():
                raise DataError(f"expected a release folder {version}/gmdb_metadata, got none",
                                path=p)
            p = cand
        else:
            found = sorted(c.name for c in p.iterdir() if (c / "gmdb_metadata").is_dir())
            if len(found) != 1:
                raise DataError(f"expected one release folder with gmdb_metadata/ (or pass version=), "
                                f"got {found}", path=p)
            p = p / found[0]
    tsvs = sorted(f.name for f in (p / "gmdb_metadata").iterdir() if _TSV.match(f.name))
    if len(tsvs) != 1:
        raise DataError(f"expected one gmdb_syndromes_<v>.tsv, got {tsvs}", path=p / "gmdb_metadata")
    v = _TSV.match(tsvs[0]).group("v")  # type: ignore[union-attr]
    if version is not None and v != version:
        raise DataError(f"expected release version {version!r}, got files of {v!r}", path=p)
    return p, v


def partition_file(release: Path, v: str, partition: str) -> Path:
    return release / "gmdb_metadata" / f"gmdb_{GMDB_PARTITIONS[partition]}_images_{v}.csv"


def read_syndromes(release: Path, v: str) -> dict[int, str]:
    """``syndrome_id -> syndrome_name`` from the syndromes TSV (validated)."""
    f = release / "gmdb_metadata" / f"gmdb_syndromes_{v}.tsv"
    t = read_table(f, SYNDROME_COLUMNS, delimiter="\t")
    out: dict[int, str] = {}
    for n, c in t.rows:
        sid = parse_int(c["syndrome_id"], path=f, row=n, column="syndrome_id")
        if sid in out:
            raise DataError(f"expected unique syndrome ids, got {sid} again", path=f, row=n,
                            column="syndrome_id")
        out[sid] = require_cell(c["syndrome_name"], path=f, row=n, column="syndrome_name")
    return out


_ListRow = tuple[int, str, str, int, int | None]


def _read_list(release: Path, v: str, partition: str,
               syndromes: dict[int, str]) -> tuple[Table, list[_ListRow]]:
    """Rows ``(line, image_id, subject, syndrome_id, split_or_None)`` of one image list."""
    f = partition_file(release, v, partition)
    rare = partition.startswith("rare_")
    t = read_table(f, IMAGE_COLUMNS + (("split",) if rare else ()))
    rows = []
    for n, c in t.rows:
        iid = require_cell(c["image_id"], path=f, row=n, column="image_id")
        subj = require_cell(c["subject"], path=f, row=n, column="subject")
        sid = parse_int(c["label"], path=f, row=n, column="label")
        if sid not in syndromes:
            raise DataError(f"expected a syndrome id of gmdb_syndromes_{v}.tsv, got {sid}",
                            path=f, row=n, column="label")
        split = parse_int(c["split"], path=f, row=n, column="split") if rare else None
        rows.append((n, iid, subj, sid, split))
    return t, rows


def load_gmdb(root: str | Path, partition: str = "train", *, version: str | None = None,
              rare_split: int | None = None, label_space: str | None = None, mode: str = "RGB",
              image_size: tuple[int, int] = GMDB_IMAGE_SIZE, resize: bool = False,
              verify: str = "decode", check_subjects: bool = True) -> ImageListDataset:
    """Load one partition of a GMDB release, fully validated (see the module docstring).

    Args:
        root: ``GestaltMatcherDB/`` (with one version folder, or pass ``version``) or
            ``GestaltMatcherDB/<v>/``.
        partition: one of :data:`GMDB_PARTITIONS`.
        rare_split: required for ``rare_*`` partitions (the ``split`` column, 0-9); must be
            ``None`` otherwise.
        label_space: ``"train"``, ``"frequent"``, ``"rare"`` or ``"all"`` (default by partition).
        mode, image_size, resize, verify: as :func:`gmxai_eval.data.manifest.load_manifest`;
            aligned GMDB images are 112x112.
        check_subjects: raise if a subject of this partition is also in a partition that must be
            subject-disjoint from it (train/val/test; gallery/test of the same split).

    Raises:
        DataError: naming file, row and column (bad lists or TSV, unknown syndrome, duplicate
            image id, subject overlap, missing / corrupt / wrongly sized image).
        ConfigError: unknown partition / label space, missing or superfluous ``rare_split``.
    """
    check_mode(mode)
    if partition not in GMDB_PARTITIONS:
        raise ConfigError(f"expected partition in {list(GMDB_PARTITIONS)}, got {partition!r}")
    if verify not in VERIFY_LEVELS:
        raise ConfigError(f"expected verify in {VERIFY_LEVELS}, got {verify!r}")
    rare = partition.startswith("rare_")
    if rare and rare_split is None:
        raise ConfigError(f"expected rare_split (0-9) for partition {partition!r}, got None")
    if not rare and rare_split is not None:
        raise ConfigError(f"expected rare_split=None for partition {partition!r}, got {rare_split!r}")
    if label_space is None:
        label_space = "rare" if rare else ("frequent" if partition.startswith("frequent_") else "train")
    if label_space not in LABEL_SPACES:
        raise ConfigError(f"expected label_space in {list(LABEL_SPACES)}, got {label_space!r}")

    release, v = find_release(root, version)
    syndromes = read_syndromes(release, v)
    lists: dict[str, list] = {}

    def rows_of(part: str) -> list:
        if part not in lists:
            lists[part] = _read_list(release, v, part, syndromes)[1]
        return lists[part]

    src = partition_file(release, v, partition)
    rows = rows_of(partition)
    if rare:
        splits = sorted({r[4] for r in rows})
        if rare_split not in splits:
            raise ConfigError(f"expected rare_split in {splits}, got {rare_split!r}")
        rows = [r for r in rows if r[4] == rare_split]

    space_parts = LABEL_SPACES[label_space]
    ids = sorted(syndromes) if not space_parts else sorted(
        {r[3] for p in space_parts for r in rows_of(p)})
    index = {sid: i for i, sid in enumerate(ids)}
    align = release / "gmdb_align"
    records = []
    for n, iid, subj, sid, _ in rows:
        if sid not in index:
            raise DataError(f"expected a syndrome of label space {label_space!r} "
                            f"({len(ids)} syndromes), got {sid}", path=src, row=n, column="label")
        records.append(ImageRecord(path=align / f"{iid}_rot_aligned.jpg", label=index[sid],
                                   image_id=iid, subject=subj, split=partition, source=src, row=n))
    check_unique_ids(records)
    if check_subjects:
        group = next(g for g in SUBJECT_DISJOINT_GROUPS if partition in g)
        others = []
        for part in group:
            if part == partition or not partition_file(release, v, part).is_file():
                continue
            pf = partition_file(release, v, part)
            others += [ImageRecord(path=align / f"{iid}_rot_aligned.jpg", label=0, image_id=iid,
                                   subject=subj, split=part, source=pf, row=n)
                       for n, iid, subj, _, s in rows_of(part) if s == rare_split]
        check_subject_splits(others + records)
    sizes = verify_images(records, image_size=image_size, resize=resize, verify=verify)
    card: dict[str, Any] = {
        "name": "gmdb", "source": str(release), "version": v, "partition": partition,
        "rare_split": rare_split, "label_space": label_space, "num_images": len(records),
        "num_classes": len(ids), "mode": mode, "image_size": list(image_size),
        "resized": bool(resize), "verify": verify,
    }
    ds = ImageListDataset(records, [syndromes[s] for s in ids], mode=mode,
                          image_size=tuple(image_size), stored_sizes=sizes, card=card)
    ds.syndrome_ids = ids  # type: ignore[attr-defined]
    return ds


DATASETS.register(load_gmdb, name="gmdb", card=DatasetCard(
    name="gmdb",
    description="a partition of a GestaltMatcher Database release folder (aligned 112x112 faces)",
    default_config={"root": None, "partition": "train", "version": None, "rare_split": None,
                    "label_space": None, "mode": "RGB", "image_size": GMDB_IMAGE_SIZE,
                    "resize": False, "verify": "decode", "check_subjects": True}))
