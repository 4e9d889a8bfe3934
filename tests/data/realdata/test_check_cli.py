"""``gmxai-eval data check``: exit codes, detection and the summary numbers."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from realdata_builders import GMDB_VERSION, make_image, write_csv

from gmxai_eval.cli import main
from gmxai_eval.data.base import Sample


def _json(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(["data", "check", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_manifest_summary(manifest_dir: Path, capsys: pytest.CaptureFixture) -> None:
    r = _json(capsys, [str(manifest_dir / "manifest.csv")])
    s = r["summary"]
    assert r["kind"] == "csv_manifest"
    assert (s["num_images"], s["num_classes"], s["num_subjects"]) == (6, 3, 5)
    assert s["images_per_split"] == {"test": 3, "train": 3}
    assert s["subjects_per_split"] == {"test": 3, "train": 2}
    assert s["images_per_class_split"] == {"CDLS|test": 1, "CDLS|train": 2, "KS|test": 1,
                                           "KS|train": 1, "WS|test": 1}
    assert s["image_size"] == [8, 10] and s["channels"] == 3


def test_manifest_table_output(manifest_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(manifest_dir / "manifest.csv"), "--mode", "L"]) == 0
    out = capsys.readouterr().out
    assert "6 images, 3 classes, 5 subjects, image size 8x10 x 1 channels" in out
    cdls = next(line for line in out.splitlines() if line.startswith("CDLS"))
    assert cdls.split() == ["CDLS", "1", "2", "3"]  # test, train, total


def test_bad_manifest_exit_code(manifest_dir: Path, capsys: pytest.CaptureFixture) -> None:
    (manifest_dir / "img" / "b1.png").unlink()
    assert main(["data", "check", str(manifest_dir / "manifest.csv")]) == 1
    err = capsys.readouterr().err
    assert "DataError" in err and "manifest.csv" in err and "row 5" in err and "b1.png" in err


def test_gmdb_summary(gmdb_root: Path, capsys: pytest.CaptureFixture) -> None:
    r = _json(capsys, [str(gmdb_root), "--header-only"])
    assert r["kind"] == "gmdb" and r["version"] == GMDB_VERSION
    counts = {k: (v["num_images"], v["num_subjects"], v["num_classes"])
              for k, v in r["partitions"].items()}
    assert counts == {"train": (4, 3, 3), "val": (1, 1, 3), "test": (2, 2, 3),
                      "frequent_gallery": (3, 3, 3), "frequent_test": (2, 2, 3),
                      "rare_gallery[0]": (2, 2, 2), "rare_gallery[1]": (2, 2, 2),
                      "rare_test[0]": (2, 2, 2), "rare_test[1]": (2, 2, 2)}
    assert main(["data", "check", str(gmdb_root)]) == 0  # table output runs too
    assert "rare_test[1]" in capsys.readouterr().out


def test_gmdb_bad_exit_code(gmdb_root: Path, capsys: pytest.CaptureFixture) -> None:
    f = gmdb_root / GMDB_VERSION / "gmdb_metadata" / f"gmdb_rare_test_images_{GMDB_VERSION}.csv"
    f.write_text(f.read_text() + "205,r9,20,x\n")
    assert main(["data", "check", str(gmdb_root)]) == 1
    err = capsys.readouterr().err
    assert f.name in err and "row 6" in err and "'split'" in err


def test_unrecognised_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "none of these" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "missing.csv")]) == 1
    assert "nothing at this path" in capsys.readouterr().err


def test_synthetic_folder_protocol(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    (tmp_path / "card.json").write_text(json.dumps({"name": "toy"}))
    seen = []

    class Tiny(torch.utils.data.Dataset):
        classes = ["a", "b"]

        def __init__(self, path, with_masks=True):
            seen.append((Path(path), with_masks))

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> Sample:
            return Sample(torch.zeros(3, 4, 5), label=[0, 1, 1][i], image_id=str(i),
                          subject=f"s{i}", split=["train", "train", "test"][i])

    fake = types.ModuleType("gmxai_eval.data.synth")
    fake.SyntheticFaces = Tiny
    fake.add_data_command = lambda subparsers: None  # the CLI asks every data module for one
    monkeypatch.setitem(sys.modules, "gmxai_eval.data.synth", fake)
    r = _json(capsys, [str(tmp_path)])
    assert seen == [(tmp_path, False)]
    assert r["kind"] == "synthetic" and r["card"] == {"name": "toy"}
    s = r["summary"]
    assert s["images_per_class"] == {"a": 1, "b": 2}
    assert s["images_per_split"] == {"test": 1, "train": 2}
    assert s["images_per_class_split"] == {"a|train": 1, "b|test": 1, "b|train": 1}
    assert s["image_size"] == [4, 5] and s["channels"] == 3


def test_synthetic_folder_bad_card(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "card.json").write_text("{not json")
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "card.json" in capsys.readouterr().err


def test_image_size_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_image(tmp_path / "a.png", h=8, w=10)
    write_csv(tmp_path / "m.csv", ["path", "label"], [["a.png", "x"]])
    assert main(["data", "check", str(tmp_path / "m.csv"), "--image-size", "4", "4"]) == 1
    assert "(4, 4)" in capsys.readouterr().err
    r = _json(capsys, [str(tmp_path / "m.csv"), "--image-size", "4", "4", "--resize"])
    assert r["summary"]["image_size"] == [4, 4]


def test_real_synthetic_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gmxai_eval.data.synth import SynthConfig, SyntheticFaces, generate

    folder = generate(SynthConfig(num_images=24, num_syndromes=2, imbalance=1.0), name="t",
                      root=tmp_path, progress=False)
    r = _json(capsys, [str(folder)])
    ds = SyntheticFaces(folder, with_masks=False)  # oracle: the dataset's own counts
    s = r["summary"]
    assert r["kind"] == "synthetic" and r["loaded"] is True
    assert s["num_images"] == 24 == len(ds)
    want = {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.classes)}
    assert s["images_per_class"] == want
    assert s["num_subjects"] == len(set(ds.subjects))
    assert s["image_size"] == [112, 112] and s["channels"] == 3
