"""Manifest landmarks outside their image (or not finite) are a DataError naming the file, the
row and the column. Oracle: the bounds of the stored image (pixel-corner coordinates, so
``x = W`` and ``y = H`` are inside) and the cell we broke."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmxai_eval.data.manifest import LANDMARK_COLUMNS, load_manifest
from gmxai_eval.errors import DataError

H, W = 20, 30
OK = [5.0, 6.0, 25.0, 6.0, 15.0, 10.0, 8.0, 16.0, 22.0, 16.0]  # lx0, ly0, ..., lx4, ly4


def _manifest(tmp_path, rows):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((H, W, 3), 9, np.uint8)).save(tmp_path / "b.png")
    lines = ["path,label," + ",".join(LANDMARK_COLUMNS)]
    for name, lm in zip(("a.png", "b.png"), rows):
        lines.append(f"{name},A," + ",".join(str(v) for v in lm))
    p = tmp_path / "m.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_points_on_the_far_edges_are_inside(tmp_path):
    edge = list(OK)
    edge[2], edge[9] = float(W), float(H)  # right eye on the right edge, a mouth corner on the bottom
    edge[0], edge[1] = 0.0, 0.0
    ds = load_manifest(_manifest(tmp_path, [OK, edge]))
    assert ds[1].landmarks.tolist()[1] == [W, 6.0] and ds[1].landmarks.tolist()[4] == [22.0, H]


@pytest.mark.parametrize("col, value, match", [
    ("lx1", W + 0.5, "right_eye landmark's x inside the 30x20 image 'b.png'"),
    ("ly4", H + 1, "mouth_right landmark's y"),
    ("lx0", -0.25, "left_eye landmark's x"),
    ("ly2", "nan", "finite"),
    ("lx3", "inf", "finite"),
    ("ly3", "-inf", "finite"),
])
def test_out_of_bounds_or_non_finite_names_file_row_column(tmp_path, col, value, match):
    bad = list(OK)
    bad[LANDMARK_COLUMNS.index(col)] = value
    path = _manifest(tmp_path, [OK, bad])
    with pytest.raises(DataError, match=match) as e:
        load_manifest(path)
    assert e.value.path == str(path) and e.value.row == 3 and e.value.column == col
    assert str(e.value).startswith(f"{path}, row 3, column '{col}'")


def test_bounds_are_the_stored_image_also_when_resized(tmp_path):
    """The check is against the file as stored; resizing rescales valid points afterwards."""
    bad = list(OK)
    bad[0] = W + 1.0
    with pytest.raises(DataError, match="lx0"):
        load_manifest(_manifest(tmp_path, [OK, bad]), image_size=(2 * H, 2 * W), resize=True)
    ds = load_manifest(_manifest(tmp_path, [OK, OK]), image_size=(2 * H, 2 * W), resize=True)
    assert ds[0].landmarks.tolist()[0] == [10.0, 12.0]
