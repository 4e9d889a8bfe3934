"""GMDB release loader on a fake release tree (realdata_builders.make_gmdb)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from realdata_builders import GMDB_LISTS, GMDB_SYNDROMES, GMDB_VERSION, make_gmdb, make_image

from gmxai_eval.data import DATASETS
from gmxai_eval.data.gmdb import load_gmdb
from gmxai_eval.errors import ConfigError, DataError


def _meta(root: Path, part: str) -> Path:
    return root / GMDB_VERSION / "gmdb_metadata" / f"gmdb_{part}_images_{GMDB_VERSION}.csv"


def test_train_partition_exact(gmdb_root: Path) -> None:
    ds = load_gmdb(gmdb_root, "train")
    # label space "train": syndrome ids {3, 7, 12} sorted -> indices 0, 1, 2
    assert ds.syndrome_ids == [3, 7, 12]
    assert ds.classes == ["Cornelia de Lange", "Kabuki", "Williams"]
    assert [s.image_id for s in ds] == ["101", "102", "103", "104"]
    assert [s.label for s in ds] == [0, 0, 1, 2]
    assert [s.subject for s in ds] == ["s1", "s1", "s2", "s3"]
    assert {s.split for s in ds} == {"train"}
    jpg = gmdb_root / GMDB_VERSION / "gmdb_align" / "101_rot_aligned.jpg"
    want = torch.from_numpy(np.array(Image.open(jpg).convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.equal(ds[0].image, want)  # oracle: PIL's own decode of the JPEG
    assert ds.card["version"] == GMDB_VERSION and ds.image_size == (112, 112)


def test_partitions_label_spaces_and_rare_splits(gmdb_root: Path) -> None:
    val = load_gmdb(gmdb_root / GMDB_VERSION, "val", verify="header")  # release folder directly
    assert [s.label for s in val] == [1]  # syndrome 7 in the train label space
    fg = load_gmdb(gmdb_root, "frequent_test")
    assert fg.syndrome_ids == [3, 7, 12] and [s.label for s in fg] == [2, 0]
    r1 = load_gmdb(gmdb_root, "rare_test", rare_split=1)
    assert r1.syndrome_ids == [20, 25]
    assert [(s.image_id, s.subject, s.label) for s in r1] == [("201", "r1", 0), ("202", "r2", 1)]
    allspace = load_gmdb(gmdb_root, "test", label_space="all")
    assert allspace.syndrome_ids == sorted(GMDB_SYNDROMES)
    assert [s.label for s in allspace] == [2, 0]
    gray = DATASETS.create("gmdb", root=gmdb_root, partition="rare_gallery", rare_split=0, mode="L")
    assert gray[0].image.shape == (1, 112, 112)


def test_option_errors(gmdb_root: Path) -> None:
    with pytest.raises(ConfigError, match="rare_split"):
        load_gmdb(gmdb_root, "rare_test")
    with pytest.raises(ConfigError, match="rare_split"):
        load_gmdb(gmdb_root, "train", rare_split=0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        load_gmdb(gmdb_root, "rare_test", rare_split=7)
    with pytest.raises(ConfigError, match="partition"):
        load_gmdb(gmdb_root, "gallery")
    with pytest.raises(ConfigError, match="label_space"):
        load_gmdb(gmdb_root, "train", label_space="everything")


def test_version_resolution(tmp_path: Path) -> None:
    root = make_gmdb(tmp_path)
    (root / "v0.0.1" / "gmdb_metadata").mkdir(parents=True)
    with pytest.raises(DataError, match="one release folder"):
        load_gmdb(root, "train")
    assert len(load_gmdb(root, "train", version=GMDB_VERSION)) == 4


def _with(part: str, rows: list) -> dict:
    return {**GMDB_LISTS, part: rows}


# case -> (lists, broken partition, loaded partition, expected row, column, fragment)
BAD = {
    "unknown syndrome": (_with("train", [(101, "s1", 3), (102, "s1", 99)]), "train", "train", 3,
                         "label", "99"),
    "label not an int": (_with("train", [(101, "s1", "three")]), "train", "train", 2, "label",
                         "three"),
    "val label not in train space": (_with("val", [(105, "s4", 20)]), "val", "val", 2, "label",
                                     "label space"),
    "duplicate image id": (_with("test", [(106, "s5", 12), (106, "s6", 3)]), "test", "test", 3,
                           "image_id", "106"),
    "subject in train and test": (_with("test", [(106, "s5", 12), (107, "s2", 3)]), "test", "test", 3,
                                  "subject", "s2"),
    "gallery/test overlap in one rare split": (
        _with("rare_test", [(203, "r3", 20, 0), (204, "r1", 25, 0)]), "rare_test", "rare_test", 3,
        "subject", "r1"),
    "empty subject": (_with("val", [(105, "", 7)]), "val", "val", 2, "subject", "empty"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_release_raises_located_error(tmp_path: Path, case: str) -> None:
    lists, broken, part, row, column, fragment = BAD[case]
    root = make_gmdb(tmp_path, lists=lists)
    with pytest.raises(DataError) as e:
        load_gmdb(root, part, rare_split=0 if part.startswith("rare") else None)
    assert e.value.path == str(_meta(root, broken))
    assert (e.value.row, e.value.column) == (row, column)
    assert fragment in str(e.value)


def test_subject_check_can_be_disabled(tmp_path: Path) -> None:
    root = make_gmdb(tmp_path, lists=_with("test", [(106, "s5", 12), (107, "s2", 3)]))
    assert len(load_gmdb(root, "test", check_subjects=False)) == 2


def test_image_defects(tmp_path: Path) -> None:
    root = make_gmdb(tmp_path)
    align = root / GMDB_VERSION / "gmdb_align"
    (align / "103_rot_aligned.jpg").unlink()
    with pytest.raises(DataError, match="103_rot_aligned.jpg") as e:
        load_gmdb(root, "train")
    assert e.value.path == str(_meta(root, "train")) and e.value.row == 4
    make_image(align / "103_rot_aligned.jpg", h=100, w=100)
    with pytest.raises(DataError, match=r"\(112, 112\)") as e:
        load_gmdb(root, "train")
    assert e.value.row == 4
    ds = load_gmdb(root, "train", resize=True)
    assert ds[2].image.shape == (3, 112, 112)


def test_syndromes_tsv_defects(tmp_path: Path) -> None:
    root = make_gmdb(tmp_path)
    tsv = root / GMDB_VERSION / "gmdb_metadata" / f"gmdb_syndromes_{GMDB_VERSION}.tsv"
    tsv.write_text("syndrome_id\tname\n3\tX\n")
    with pytest.raises(DataError, match="syndrome_name") as e:
        load_gmdb(root, "train")
    assert e.value.path == str(tsv) and e.value.row == 1
    tsv.write_text("syndrome_id\tsyndrome_name\n3\tX\n3\tY\n")
    with pytest.raises(DataError, match="unique syndrome ids") as e:
        load_gmdb(root, "train")
    assert e.value.row == 3
