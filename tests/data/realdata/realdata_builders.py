"""Builders of small on-disk datasets: CSV manifests and fake GMDB release trees."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, h: int = 8, w: int = 10, seed: int = 0, gray_rgb: bool = False) -> np.ndarray:
    """Write a random 8-bit image (format by suffix) and return its uint8 array (H, W, 3)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    if gray_rgb:
        a[:, :, 1] = a[:, :, 0]
        a[:, :, 2] = a[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return a


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


#: (path, label, subject, split) of the standard manifest; image i is written with seed i.
MANIFEST_ROWS = [
    ["img/a0.png", "CDLS", "p1", "train"],
    ["img/a1.png", "CDLS", "p1", "train"],
    ["img/b0.png", "KS", "p2", "train"],
    ["img/b1.png", "KS", "p3", "test"],
    ["img/c0.png", "WS", "p4", "test"],
    ["img/c1.png", "CDLS", "p5", "test"],
]


# -- fake GMDB release ---------------------------------------------------------------------------------
GMDB_VERSION = "v9.9.9"
#: syndrome_id -> name
GMDB_SYNDROMES = {3: "Cornelia de Lange", 7: "Kabuki", 12: "Williams", 20: "Rare A", 25: "Rare B"}
#: partition -> rows (image_id, subject, label[, split])
GMDB_LISTS = {
    "train": [(101, "s1", 3), (102, "s1", 3), (103, "s2", 7), (104, "s3", 12)],
    "val": [(105, "s4", 7)],
    "test": [(106, "s5", 12), (107, "s6", 3)],
    "frequent_gallery": [(101, "s1", 3), (103, "s2", 7), (104, "s3", 12)],
    "frequent_test": [(106, "s5", 12), (107, "s6", 3)],
    "rare_gallery": [(201, "r1", 20, 0), (202, "r2", 25, 0), (203, "r3", 20, 1), (204, "r4", 25, 1)],
    "rare_test": [(203, "r3", 20, 0), (204, "r4", 25, 0), (201, "r1", 20, 1), (202, "r2", 25, 1)],
}


def make_gmdb(root: Path, lists: dict | None = None, syndromes: dict | None = None,
              size: int = 112) -> Path:
    """Write ``root/GestaltMatcherDB/<v>/`` and return the ``GestaltMatcherDB`` folder."""
    lists = GMDB_LISTS if lists is None else lists
    syndromes = GMDB_SYNDROMES if syndromes is None else syndromes
    rel = root / "GestaltMatcherDB" / GMDB_VERSION
    meta = rel / "gmdb_metadata"
    ids = sorted({r[0] for rows in lists.values() for r in rows})
    for i in ids:
        make_image(rel / "gmdb_align" / f"{i}_rot_aligned.jpg", h=size, w=size, seed=i)
    for part, rows in lists.items():
        header = ["image_id", "subject", "label"] + (["split"] if part.startswith("rare") else [])
        write_csv(meta / f"gmdb_{part}_images_{GMDB_VERSION}.csv", header, [list(r) for r in rows])
    write_csv(meta / f"gmdb_syndromes_{GMDB_VERSION}.tsv",
              ["syndrome_id", "syndrome_name", "image_ids", "subject_ids", "num_of_images",
               "num_of_subjects", "train", "OMIM"],
              [[k, v, "[]", "[]", 0, 0, "True", ""] for k, v in syndromes.items()], delimiter="\t")
    return root / "GestaltMatcherDB"
