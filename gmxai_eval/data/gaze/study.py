"""Study description: screen geometry, viewing distance and image display scale.

A study file (JSON or TOML) describes how the images were shown, so that degrees of visual
angle can be converted to image pixels::

    {
      "name": "clinician_gaze",
      "simulated": false,
      "screen_px": [1920, 1080],        # screen width, height in pixels
      "screen_cm": [53.1, 29.9],        # screen width, height in centimetres
      "distance_cm": 60.0,              # eye-to-screen distance
      "image_scale": 4.0,               # screen pixels per image pixel (images shown scaled)
      "sigma_deg": 1.0,                 # Gaussian sigma of fixation densities, degrees
      "image_size": [112, 112],         # optional (H, W) of the images the coordinates refer to
      "description": "..."
    }

Fixation coordinates are always in *image* pixels (0-based, origin top-left), so one degree of
visual angle is ``2 d tan(0.5 deg) * px_per_cm / image_scale`` image pixels, with ``px_per_cm``
the mean of the horizontal and vertical screen resolutions (square pixels are assumed; a
difference above 5 % is rejected).

Every number is range-checked (:data:`RANGES`; a value outside raises
:class:`~gmxai_eval.errors.DataError` naming the key), and so is the density sigma the geometry
gives (at most :data:`MAX_SIGMA_PX` image pixels): an absurd geometry is a bad file, not an
out-of-memory error in the density filter.
"""

from __future__ import annotations

import json
import math
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from gmxai_eval.utils import read_text
from gmxai_eval.errors import DataError
from gmxai_eval.utils import write_atomic

_REQUIRED = ("screen_px", "screen_cm", "distance_cm")

#: ``key: (low, high)``: the accepted range of each number of a study file (both ends
#: included). Wide enough for any real set-up (a phone to a wall projection, a 16k screen, a
#: 100 m viewing distance), narrow enough that the pixel geometry stays finite and small.
RANGES: dict[str, tuple[float, float]] = {
    "screen_px": (1, 65536),        # pixels per screen side
    "screen_cm": (1.0, 10000.0),    # 1 cm to 100 m per screen side
    "distance_cm": (1.0, 10000.0),  # 1 cm to 100 m
    "image_scale": (1e-3, 1e3),     # screen pixels per image pixel
    "sigma_deg": (1e-3, 45.0),      # degrees of visual angle
    "image_size": (1, 65536),       # image pixels per side
}
#: The largest density sigma (image pixels) a study's geometry may give: the Gaussian filter's
#: kernel spans 8 sigma, so a larger one only costs memory and time on any real image.
MAX_SIGMA_PX = 10000.0


@dataclass(frozen=True)
class Study:
    """How a gaze study showed its images (see the module docstring for the file format).

    Attributes:
        screen_px: ``(width, height)`` of the screen in pixels.
        screen_cm: ``(width, height)`` of the screen in centimetres.
        distance_cm: viewing distance in centimetres.
        image_scale: screen pixels per image pixel (1.0 = shown at native size).
        sigma_deg: Gaussian sigma of fixation densities in degrees of visual angle.
        image_size: optional ``(H, W)`` of the images the fixation coordinates refer to.
        simulated: ``True`` for simulated observers (labelled in every table).
        name, description: free text.
    """

    screen_px: tuple[float, float]
    screen_cm: tuple[float, float]
    distance_cm: float
    image_scale: float = 1.0
    sigma_deg: float = 1.0
    image_size: tuple[int, int] | None = None
    simulated: bool = False
    name: str = "study"
    description: str = ""

    @property
    def px_per_cm(self) -> float:
        """Screen pixels per centimetre (mean of both axes)."""
        return 0.5 * (self.screen_px[0] / self.screen_cm[0] + self.screen_px[1] / self.screen_cm[1])

    def deg_to_px(self, deg: float) -> float:
        """Image pixels spanned by ``deg`` degrees of visual angle centred on the line of sight."""
        cm = 2.0 * self.distance_cm * math.tan(math.radians(deg) / 2.0)
        return cm * self.px_per_cm / self.image_scale

    @property
    def pixels_per_degree(self) -> float:
        """Image pixels per degree (``deg_to_px(1.0)``)."""
        return self.deg_to_px(1.0)

    @property
    def sigma_px(self) -> float:
        """The density sigma ``sigma_deg`` in image pixels."""
        return self.deg_to_px(self.sigma_deg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["screen_px"] = list(self.screen_px)
        d["screen_cm"] = list(self.screen_cm)
        d["image_size"] = None if self.image_size is None else list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | Path | None = None) -> "Study":
        """Validate a mapping (as read from JSON/TOML); errors name the offending key."""
        if not isinstance(d, Mapping):
            raise DataError(f"expected a table/object at the top level, got {type(d).__name__}", path=path)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown study key(s) {unknown}; expected a subset of {sorted(known)}", path=path)
        for k in _REQUIRED:
            if k not in d:
                raise DataError(f"expected key {k!r} in the study file, got keys {sorted(d)}", path=path, column=k)

        def pair(k: str, kind: type = float) -> tuple:
            v = d[k]
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise DataError(f"expected [width, height] (two numbers), got {v!r}", path=path, column=k)
            return tuple(_positive(x, k, path, kind) for x in v)

        size = d.get("image_size")
        if size is not None:
            if not isinstance(size, (list, tuple)) or len(size) != 2:
                raise DataError(f"expected [H, W], got {size!r}", path=path, column="image_size")
            size = tuple(_positive(x, "image_size", path, int) for x in size)
        sim = d.get("simulated", False)
        if not isinstance(sim, bool):
            raise DataError(f"expected true/false, got {sim!r}", path=path, column="simulated")
        study = cls(screen_px=pair("screen_px"), screen_cm=pair("screen_cm"),
                    distance_cm=_positive(d["distance_cm"], "distance_cm", path),
                    image_scale=_positive(d.get("image_scale", 1.0), "image_scale", path),
                    sigma_deg=_positive(d.get("sigma_deg", 1.0), "sigma_deg", path),
                    image_size=size, simulated=sim, name=str(d.get("name", "study")),
                    description=str(d.get("description", "")))
        if not study.sigma_px <= MAX_SIGMA_PX:
            raise DataError(f"expected a geometry whose density sigma is at most {MAX_SIGMA_PX:g} image pixels, "
                            f"got {study.sigma_px:.4g} (sigma_deg {study.sigma_deg:g} at distance_cm "
                            f"{study.distance_cm:g}, {study.px_per_cm:.4g} screen px/cm, image_scale "
                            f"{study.image_scale:g})", path=path, column="sigma_deg")
        rx = study.screen_px[0] / study.screen_cm[0]
        ry = study.screen_px[1] / study.screen_cm[1]
        if abs(rx - ry) > 0.05 * max(rx, ry):
            raise DataError(f"expected square screen pixels (px/cm within 5 % on both axes), got "
                            f"{rx:.2f} px/cm horizontally and {ry:.2f} px/cm vertically",
                            path=path, column="screen_cm")
        return study


def _positive(v: Any, key: str, path: str | Path | None, kind: type = float) -> Any:
    """``v`` as ``kind`` if it is a finite number in ``RANGES[key]`` (positive without a range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise DataError(f"expected a positive finite number, got {v!r}", path=path, column=key)
    if kind is int:
        if int(v) != v:
            raise DataError(f"expected a positive integer, got {v!r}", path=path, column=key)
    lo, hi = RANGES.get(key, (0.0, math.inf))
    if not lo <= v <= hi:
        raise DataError(f"expected a number in [{lo:g}, {hi:g}], got {v!r}", path=path, column=key)
    return int(v) if kind is int else float(v)


def load_study(path: str | Path) -> Study:
    """Read a study file (``.json`` or ``.toml``).

    Raises:
        DataError: missing file, unparsable content, missing / invalid keys (the key is named).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"expected a study file, got no file at {str(p)!r}", path=p)
    text = read_text(p, "study file", encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            d = json.loads(text)
        elif suffix == ".toml":
            d = tomllib.loads(text)
        else:
            raise DataError(f"expected a .json or .toml study file, got suffix {p.suffix!r}", path=p)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise DataError(f"expected valid {suffix[1:].upper()}, got {type(e).__name__}: {e}", path=p) from e
    return Study.from_dict(d, path=p)


def write_study(study: Study, path: str | Path) -> Path:
    """Write ``study`` as JSON (atomically)."""
    return write_atomic(path, json.dumps(study.to_dict(), indent=2, sort_keys=True) + "\n")
