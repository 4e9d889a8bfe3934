"""Reading image files (PIL) into the pixel-space tensor contract.

* :func:`probe_image` opens a file and checks it without keeping it: header only
  (``decode=False``, fast) or a full decode (``decode=True``, catches truncated files).
* :func:`read_image` returns ``(C, H, W)`` float32 in ``[0, 1]``; ``mode="RGB"`` gives
  ``C = 3``, ``mode="L"`` (grayscale, PIL's ITU-R 601 luma) gives ``C = 1``.

Every file mode is decoded by its real range: 8-bit modes (:data:`EIGHT_BIT_MODES`: ``1``,
``L``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ...) are converted by PIL and divided by 255; 16-bit
grayscale (``I;16*``, and ``I`` read from a PNG, whose samples are at most 16 bits) is divided
by 65535 (converting it with PIL would clip it to 255: all white). Other modes
(32-bit integer ``I`` from TIFF, float ``F``, ``LAB``, ``HSV``, ...) are refused with a
:class:`~gmxai_eval.errors.DataError` naming the file and the mode.

Every failure is a :class:`~gmxai_eval.errors.DataError` naming the file (and the manifest row
when the caller passes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.utils import atomic_path

ImageMode = Literal["RGB", "L"]
IMAGE_MODES: tuple[str, ...] = ("RGB", "L")

#: File modes PIL converts to 8-bit ``RGB`` / ``L`` without losing their range.
EIGHT_BIT_MODES: frozenset[str] = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr",
                                             "LA", "La", "PA"})
#: 16-bit grayscale file modes (divided by 65535).
SIXTEEN_BIT_MODES: frozenset[str] = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _pil():
    from PIL import Image  # local import: PIL is only needed when files are read

    return Image


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is ``"RGB"`` or ``"L"``, else raise :class:`ConfigError`."""
    if mode not in IMAGE_MODES:
        raise ConfigError(f"expected image mode 'RGB' or 'L', got {mode!r}")
    return mode


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe_image` found: ``size`` is ``(H, W)``; ``mode`` is the file's PIL mode."""

    size: tuple[int, int]
    mode: str
    format: str


def _existing(path: str | Path, source: str | Path | None, row: int | None) -> tuple[Path, dict]:
    """``(path, error location)``; :class:`DataError` naming the manifest row if no file is there."""
    p = Path(path)
    where = dict(path=source if source is not None else p, row=row)
    if not p.is_file():
        raise DataError(f"expected an image file, got no file at {str(p)!r}", **where)
    return p, where


def _is_16bit(mode: str, fmt: str | None) -> bool:
    return mode in SIXTEEN_BIT_MODES or (mode == "I" and fmt == "PNG")


def check_file_mode(mode: str, fmt: str | None, path: str | Path, where: dict) -> None:
    """:class:`DataError` naming the file and mode unless the mode has a known range."""
    if mode not in EIGHT_BIT_MODES and not _is_16bit(mode, fmt):
        raise DataError(f"expected an image of an 8-bit mode ({', '.join(sorted(EIGHT_BIT_MODES))}) or "
                        f"16-bit grayscale (I;16), got mode {mode!r} ({fmt or 'unknown'} format), which has no "
                        "defined [0, 1] decoding; convert the file to 8-bit RGB / L or 16-bit grayscale",
                        **where)


def _decode_16bit(im, mode: str, size: tuple[int, int] | None, p: Path, where: dict) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1] from a 16-bit grayscale image (values / 65535)."""
    Image = _pil()
    a = np.asarray(im).astype(np.float32)
    if a.ndim != 2:
        raise DataError(f"expected 16-bit grayscale pixels (H, W), got shape {a.shape}", **where)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise DataError(f"expected 16-bit values in [0, 65535], got [{a.min():g}, {a.max():g}] "
                        f"(mode {im.mode!r})", **where)
    a /= np.float32(65535.0)
    if size is not None and a.shape != tuple(size):
        a = np.asarray(Image.fromarray(a, mode="F").resize((int(size[1]), int(size[0])), Image.BILINEAR),
                       dtype=np.float32)
    a = np.clip(a, 0.0, 1.0)[None]
    return np.ascontiguousarray(np.repeat(a, 3, axis=0) if mode == "RGB" else a)


def probe_image(path: str | Path, *, decode: bool = True, source: str | Path | None = None,
                row: int | None = None) -> ImageInfo:
    """Open ``path`` and verify it is a readable image.

    Args:
        path: the image file.
        decode: decode all pixels (catches truncated / corrupt data); ``False`` reads only the
            header (catches missing files, non-images and unknown formats).
        source, row: the manifest and row that named the file, reported in the error.

    Raises:
        DataError: missing, unreadable or corrupt file.
    """
    Image = _pil()
    p, where = _existing(path, source, row)
    try:
        with Image.open(p) as im:
            info = ImageInfo(size=(int(im.height), int(im.width)), mode=str(im.mode),
                             format=str(im.format))
            if decode:
                im.load()
    except DataError:
        raise
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise DataError(f"expected a readable image at {str(p)!r}, got {type(e).__name__}: {e}",
                        **where) from e
    check_file_mode(info.mode, info.format, p, where)
    return info


def read_image(path: str | Path, mode: str = "RGB", size: tuple[int, int] | None = None, *,
               source: str | Path | None = None, row: int | None = None) -> torch.Tensor:
    """Read an image as ``(C, H, W)`` float32 in ``[0, 1]``.

    Args:
        path: the image file.
        mode: ``"RGB"`` (``C = 3``) or ``"L"`` (``C = 1``); the file is converted with PIL.
        size: ``(H, W)`` to resize to (PIL bilinear) when the file differs, or ``None`` to keep.
        source, row: the manifest and row that named the file, reported in errors.

    Raises:
        DataError: missing, unreadable or corrupt file, or a file mode without a defined range
            (see the module docstring).
    """
    check_mode(mode)
    Image = _pil()
    p, where = _existing(path, source, row)
    try:
        with Image.open(p) as im:
            check_file_mode(str(im.mode), im.format, p, where)
            if _is_16bit(str(im.mode), im.format):
                return torch.from_numpy(_decode_16bit(im, mode, size, p, where))
            im = im.convert(mode)
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((int(size[1]), int(size[0])), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"expected a readable image at {str(p)!r}, got {type(e).__name__}: {e}",
                        **where) from e
    if a.ndim == 2:
        a = a[:, :, None]
    # convert in NumPy (single-threaded): torch's threaded kernels cost ms per small image
    # on a busy machine; float32 division by 255 is correctly rounded either way.
    out = np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)
    out /= np.float32(255.0)
    return torch.from_numpy(out)


def write_image(path: str | Path, image: torch.Tensor) -> Path:
    """Write ``(C, H, W)`` float in ``[0, 1]`` (``C`` = 1 or 3) as an 8-bit image; the format
    follows the suffix. Used by tests and by export tools."""
    Image = _pil()
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"expected an image (C, H, W) with C in (1, 3), got {tuple(image.shape)}",
                        path=path)
    a = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a, mode="L" if a.shape[2] == 1 else "RGB")
    p = Path(path)
    with atomic_path(p) as tmp:
        im.save(tmp, format=Image.registered_extensions().get(p.suffix.lower()))
    return p
