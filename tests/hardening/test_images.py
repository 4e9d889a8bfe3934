"""Every PIL mode is decoded to [0, 1] by its real range or refused with a DataError naming the
file and mode. Oracle: the pixel values written into the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gmxai_eval.data.images import probe_image, read_image
from gmxai_eval.errors import DataError


def test_16bit_grayscale_png_is_divided_by_65535(tmp_path):
    a = np.array([[0, 1, 32768], [65535, 1000, 65534]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I")  # what PIL reads: not 8-bit
    got = read_image(tmp_path / "g.png", mode="L")
    torch.testing.assert_close(got[0], torch.from_numpy(a.astype(np.float32) / 65535.0), rtol=0, atol=1e-7)
    rgb = read_image(tmp_path / "g.png", mode="RGB")
    assert rgb.shape == (3, 2, 3) and torch.equal(rgb[0], rgb[2]) and torch.equal(rgb[1], got[0])


def test_16bit_big_endian_tiff_and_resize_keep_the_range(tmp_path):
    a = np.full((8, 8), 40000, dtype=np.uint16)
    Image.frombytes("I;16B", (8, 8), a.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    got = read_image(tmp_path / "b.tif", mode="L", size=(4, 4))
    torch.testing.assert_close(got, torch.full((1, 4, 4), 40000 / 65535.0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode,value,expected", [
    ("1", 1, 1.0), ("L", 51, 0.2), ("RGB", (255, 0, 51), (1.0, 0.0, 0.2)), ("RGBA", (255, 0, 51, 7), (1.0, 0.0, 0.2)),
    ("LA", (102, 3), 0.4), ("CMYK", (0, 0, 0, 0), 1.0)])
def test_8bit_modes_by_their_range(tmp_path, mode, value, expected):
    f = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (3, 2), value).save(f)
    got = read_image(f, mode="RGB")
    want = torch.tensor(expected if isinstance(expected, tuple) else (expected,) * 3).view(3, 1, 1).expand(3, 2, 3)
    torch.testing.assert_close(got, want.float(), rtol=0, atol=1e-6)


def test_palette_image_decoded_through_its_palette(tmp_path):
    im = Image.new("P", (2, 2), 1)
    im.putpalette([0, 0, 0, 255, 0, 51] + [0] * 762)
    im.save(tmp_path / "p.png")
    torch.testing.assert_close(read_image(tmp_path / "p.png")[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda p: Image.fromarray(np.random.rand(4, 4).astype(np.float32)).save(p / "x.tif"),
    lambda p: Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)).save(p / "x.tif"),
    lambda p: Image.new("LAB", (4, 4)).save(p / "x.tif"),
], ids=["float F", "32-bit I", "LAB"])
def test_modes_without_a_defined_range_are_refused_naming_file_and_mode(tmp_path, make):
    make(tmp_path)
    f = tmp_path / "x.tif"
    mode = Image.open(f).mode
    for call in (lambda: read_image(f), lambda: probe_image(f, decode=False)):
        with pytest.raises(DataError, match=f"got mode '{mode}'") as e:
            call()
        assert str(f) in str(e.value)
