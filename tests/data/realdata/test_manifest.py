"""CSV manifest loader: exact contents on the happy path, a located DataError for each defect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gmxai_eval.data import DATASETS, collate
from gmxai_eval.data.images import probe_image, read_image, write_image
from gmxai_eval.data.manifest import LANDMARK_COLUMNS, load_manifest
from gmxai_eval.errors import ConfigError, DataError

from realdata_builders import MANIFEST_ROWS, make_image, write_csv

HEADER = ["path", "label", "subject", "split"]


def test_happy_path_exact_contents(manifest_dir: Path) -> None:
    ds = load_manifest(manifest_dir / "manifest.csv")
    assert ds.classes == ["CDLS", "KS", "WS"]  # sorted label names
    assert [ds[i].label for i in range(len(ds))] == [0, 0, 1, 1, 2, 0]
    assert [ds[i].subject for i in range(len(ds))] == ["p1", "p1", "p2", "p3", "p4", "p5"]
    assert [ds[i].split for i in range(len(ds))] == ["train"] * 3 + ["test"] * 3
    assert [ds[i].image_id for i in range(len(ds))] == [r[0] for r in MANIFEST_ROWS]
    for i, (p, *_r) in enumerate(MANIFEST_ROWS):  # PNG is lossless: pixels / 255 exactly
        want = torch.from_numpy(np.array(Image.open(manifest_dir / p))).permute(2, 0, 1).float() / 255
        assert ds[i].image.dtype == torch.float32
        assert torch.equal(ds[i].image, want)
    assert ds.image_size == (8, 10)
    assert ds.card["num_images"] == 6 and ds.card["name"] == "csv_manifest"
    s = ds.summary()
    assert s["images_per_class"] == {"CDLS": 3, "KS": 2, "WS": 1}
    assert s["subjects_per_split"] == {"test": 3, "train": 2}
    batch = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate)))
    assert batch.images.shape == (6, 3, 8, 10)
    assert batch.labels.tolist() == [0, 0, 1, 1, 2, 0]


def test_registry_and_split_filter(manifest_dir: Path) -> None:
    ds = DATASETS.create("csv_manifest", path=manifest_dir / "manifest.csv", split="test")
    assert [s.image_id for s in ds] == ["img/b1.png", "img/c0.png", "img/c1.png"]
    assert ds.classes == ["CDLS", "KS", "WS"]  # classes come from the whole manifest
    with pytest.raises(ConfigError, match="val"):
        load_manifest(manifest_dir / "manifest.csv", split="val")


def test_grayscale_mode(tmp_path: Path) -> None:
    a = make_image(tmp_path / "g.png", seed=3, gray_rgb=True)  # R = G = B: luma is that value
    write_csv(tmp_path / "m.csv", ["path", "label"], [["g.png", "x"]])
    img = load_manifest(tmp_path / "m.csv", mode="L")[0].image
    assert img.shape == (1, 8, 10)
    assert torch.equal(img[0], torch.from_numpy(a[:, :, 0]).float() / 255)


def test_numeric_labels_sort_numerically_and_subject_defaults(tmp_path: Path) -> None:
    for i in range(3):
        make_image(tmp_path / f"{i}.png", seed=i)
    write_csv(tmp_path / "m.csv", ["path", "label"], [["0.png", "10"], ["1.png", "2"], ["2.png", "2"]])
    ds = load_manifest(tmp_path / "m.csv")
    assert ds.classes == ["2", "10"]
    assert ds.labels == [1, 0, 0]
    assert [s.subject for s in ds] == ["0.png", "1.png", "2.png"]  # own subject per image


def test_landmarks_and_resize(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", h=8, w=10)
    lm = [1.0, 2.0, 3.0, 2.0, 5.0, 4.0, 2.0, 6.0, 8.0, 6.0]
    write_csv(tmp_path / "m.csv", ["path", "label", *LANDMARK_COLUMNS], [["a.png", "x", *lm]])
    s = load_manifest(tmp_path / "m.csv")[0]
    assert torch.equal(s.landmarks, torch.tensor(lm).view(5, 2))
    r = load_manifest(tmp_path / "m.csv", image_size=(16, 40), resize=True)[0]
    assert r.image.shape == (3, 16, 40)
    assert torch.allclose(r.landmarks, torch.tensor(lm).view(5, 2) * torch.tensor([4.0, 2.0]))
    with pytest.raises(DataError) as e:
        load_manifest(tmp_path / "m.csv", image_size=(16, 40))
    assert (e.value.row, e.value.column) == (2, "path")
    with pytest.raises(ConfigError):
        load_manifest(tmp_path / "m.csv", resize=True)


def _manifest(tmp_path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    for r in rows:
        if r and isinstance(r[0], str) and r[0].endswith(".png") and not (tmp_path / r[0]).exists():
            make_image(tmp_path / r[0], seed=len(r[0]))
    return write_csv(tmp_path / "m.csv", header, rows)


# (rows, header, expected row, expected column, message fragment); data rows start at row 2
BAD = {
    "unknown label": ([["a.png", "CDLS", "p1", "train"], ["b.png", "XX", "p2", "train"]],
                      HEADER, 3, "label", "XX"),
    "duplicate id": ([["a.png", "CDLS", "p1", "train", "i1"], ["b.png", "CDLS", "p2", "train", "i1"]],
                     HEADER + ["image_id"], 3, "image_id", "i1"),
    "duplicate file": ([["a.png", "CDLS", "p1", "train"], ["a.png", "CDLS", "p1", "train"]],
                       HEADER, 3, "image_id", "a.png"),
    "subject in two splits": ([["a.png", "CDLS", "p1", "train"], ["b.png", "CDLS", "p2", "train"],
                               ["c.png", "CDLS", "p1", "test"]], HEADER, 4, "subject", "p1"),
    "empty label": ([["a.png", "", "p1", "train"]], HEADER, 2, "label", "empty"),
    "empty path": ([["a.png", "CDLS", "p1", "train"], ["", "CDLS", "p2", "train"]],
                   HEADER, 3, "path", "empty"),
    "empty subject": ([["a.png", "CDLS", "", "train"]], HEADER, 2, "subject", "empty"),
    "NUL in label": ([["a.png", "CD\x00LS", "p1", "train"]], HEADER, 2, "label", "control characters"),
    "escape in path": ([["a\x1b.png", "CDLS", "p1", "train"]], HEADER, 2, "path", "control characters"),
    "bad landmark": ([["a.png", "CDLS", "1", "2", "3", "4", "5", "6", "7", "8", "9", "ten"]],
                     ["path", "label", *LANDMARK_COLUMNS], 2, "ly4", "ten"),
    "partial landmarks": ([["a.png", "CDLS", "1", "2"]], ["path", "label", "lx0", "ly0"], 1, "lx1",
                          "landmark"),
    "missing column": ([["a.png", "p1"]], ["path", "subject"], 1, "label", "missing"),
    "missing image": ([["a.png", "CDLS", "p1", "train"], ["nothere.jpg", "CDLS", "p2", "train"]],
                      HEADER, 3, None, "nothere.jpg"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifest_raises_located_error(tmp_path: Path, case: str) -> None:
    rows, header, row, column, fragment = BAD[case]
    csv_path = _manifest(tmp_path, rows, header)
    classes = ["CDLS", "KS"] if case == "unknown label" else None
    with pytest.raises(DataError) as e:
        load_manifest(csv_path, classes=classes)
    assert e.value.path == str(csv_path)
    assert e.value.row == row
    assert e.value.column == column
    assert fragment in str(e.value)
    assert str(csv_path) in str(e.value) and f"row {row}" in str(e.value)


def test_ragged_row_and_empty_files(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    p = tmp_path / "m.csv"
    p.write_text("path,label\na.png,x\na.png,x,extra\n")
    with pytest.raises(DataError, match="expected 2 fields, got 3") as e:
        load_manifest(p)
    assert e.value.row == 3
    p.write_text("")
    with pytest.raises(DataError, match="empty file") as e:
        load_manifest(p)
    assert e.value.path == str(p) and e.value.row is None
    p.write_text("path,label\n")
    with pytest.raises(DataError, match="only the header"):
        load_manifest(p)
    with pytest.raises(DataError, match="no file"):
        load_manifest(tmp_path / "absent.csv")


def test_corrupt_and_truncated_images(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    full = (tmp_path / "a.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(full[: len(full) // 2])
    write_csv(tmp_path / "m.csv", ["path", "label"], [["a.png", "x"], ["junk.png", "x"]])
    with pytest.raises(DataError) as e:
        load_manifest(tmp_path / "m.csv", verify="header")
    assert e.value.row == 3 and "junk.png" in str(e.value)
    write_csv(tmp_path / "t.csv", ["path", "label"], [["a.png", "x"], ["trunc.png", "y"]])
    with pytest.raises(DataError) as e:  # full decode catches the truncation ...
        load_manifest(tmp_path / "t.csv")
    assert e.value.row == 3 and "trunc.png" in str(e.value)
    ds = load_manifest(tmp_path / "t.csv", verify="header")  # ... the header check does not
    assert len(ds) == 2
    with pytest.raises(DataError) as e:  # and reading the item then fails, still located
        ds[1]
    assert e.value.row == 3


def test_inconsistent_sizes_without_image_size(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", h=8, w=10)
    make_image(tmp_path / "b.png", h=9, w=10)
    write_csv(tmp_path / "m.csv", ["path", "label"], [["a.png", "x"], ["b.png", "x"]])
    with pytest.raises(DataError, match=r"\(9, 10\)") as e:
        load_manifest(tmp_path / "m.csv")
    assert e.value.row == 3
    ds = load_manifest(tmp_path / "m.csv", image_size=(8, 10), resize=True)
    assert ds[1].image.shape == (3, 8, 10)
    assert torch.equal(ds[0].image, read_image(tmp_path / "a.png"))  # right size: not resampled


def test_classes_file_and_options(tmp_path: Path, manifest_dir: Path) -> None:
    (tmp_path / "classes.txt").write_text("WS\nKS\nCDLS\nOTHER\n")
    ds = load_manifest(manifest_dir / "manifest.csv", classes=tmp_path / "classes.txt")
    assert ds.classes == ["WS", "KS", "CDLS", "OTHER"]
    assert ds.labels == [2, 2, 1, 1, 0, 2]
    with pytest.raises(ConfigError):
        load_manifest(manifest_dir / "manifest.csv", mode="CMYK")
    with pytest.raises(ConfigError):
        load_manifest(manifest_dir / "manifest.csv", verify="none")


def test_image_roundtrip_helpers(tmp_path: Path) -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(3, 2, 4) / 255
    write_image(tmp_path / "x.png", x)
    assert torch.equal(read_image(tmp_path / "x.png"), x)
    assert probe_image(tmp_path / "x.png").size == (2, 4)
