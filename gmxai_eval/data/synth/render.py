"""Vectorised renderer of synthetic frontal faces (the drawing half of :mod:`.synth`).

Faces are drawn part by part (background, hair, ears, head, forehead, cheeks, brows, eyes,
nose, philtrum, lips, optional shortcut sticker) as soft ellipses evaluated on a coordinate
grid, in batches, with torch. Every part is evaluated only inside a fixed image window that
contains it under every pose jitter, which keeps rendering cheap.

Geometry lives in a *face frame* aligned to the ArcFace 112x112 template; each photo maps the
face frame to the image with a small similarity transform (pose jitter), so landmarks are the
transformed template points of that face.

Parameters are dicts of ``(B,)`` float32 tensors (see :data:`PATIENT_PARAMS` and
:func:`photo_params`); :func:`render` returns images ``(B, 3, H, W)`` in ``[0, 1]``,
region label maps ``(B, H, W)`` uint8 (0 = no region, ``r + 1`` = ``REGION_NAMES[r]``),
sticker masks ``(B, H, W)`` bool and landmarks ``(B, 5, 2)``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112, REGION_NAMES

SIZE = 112
_T = ARCFACE_TEMPLATE_112
CX = float((_T[0, 0] + _T[1, 0]) / 2)  # face midline x in the face frame
CY = 62.0  # centre of the pose transform

#: Patient-level (face) parameters: name -> (mean, sd). Phenotypes shift these in sd units.
PATIENT_PARAMS: dict[str, tuple[float, float]] = {
    "eye_spacing": (float(_T[1, 0] - _T[0, 0]), 2.2),   # px between eye centres
    "eye_y": (float(_T[:2, 1].mean()), 0.8),
    "eye_w": (6.6, 0.6),          # half-width of the palpebral fissure
    "eye_h": (2.9, 0.4),           # half-height
    "eye_tilt": (0.0, 0.1),       # radians, + = outer canthus up (upslant)
    "lid_drop": (0.0, 0.6),       # px of upper lid covering the eye (ptosis +)
    "brow_y": (39.0, 1.0),
    "brow_spacing": (float(_T[1, 0] - _T[0, 0]) + 2.0, 1.2),  # px between brow centres
    "brow_len": (10.0, 0.8),
    "brow_thick": (1.6, 0.4),
    "brow_join": (0.0, 0.2),      # 0..1 strength of hair between the brows (synophrys +)
    "nose_tip_y": (float(_T[2, 1]), 1.6),
    "nose_tip_w": (5.6, 0.9),
    "bridge_w": (4.2, 0.9),
    "philtrum_len": (12.0, 1.5),
    "mouth_w": (float(_T[4, 0] - _T[3, 0]), 2.5),
    "upper_lip": (2.8, 0.5),
    "lower_lip": (3.4, 0.6),
    "ear_y": (62.0, 2.2),
    "ear_size": (11.0, 1.3),
    "jaw": (1.0, 0.06),           # scale of the lower face (micrognathia -)
    "head_w": (39.0, 1.5),
    "forehead": (0.0, 0.06),      # forehead highlight strength (prominent forehead +)
    "cheek": (0.0, 0.06),          # cheek fullness highlight (full cheeks +, malar flattening -)
    "hairline": (22.0, 2.0),
    "hair_density": (0.95, 0.1),
    "skin_tone": (0.0, 1.0),
    "hair_tone": (0.0, 1.0),
    "iris_tone": (0.0, 1.0),
    "lip_tone": (0.0, 1.0),
}


def _ramp(d2: torch.Tensor, m: torch.Tensor, soft: float) -> torch.Tensor:
    # squared normalised distance d2 -> alpha with an edge of ~`soft` px (1 - d ~ (1 - d2) / 2)
    return ((1.0 - d2) * (m / (2.0 * soft)) + 0.5).clamp_(0.0, 1.0)


def _col(p: torch.Tensor) -> torch.Tensor:
    return p.view(-1, 1, 1)


class Canvas:
    """Batch of images being drawn, with per-image face-frame coordinates ``u, v``."""

    def __init__(self, affine: torch.Tensor, background: torch.Tensor) -> None:
        # affine (B, 2, 3) maps face-frame (u, v, 1) -> image (x, y); we need its inverse
        b = affine.shape[0]
        ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32) + 0.0,
                                torch.arange(SIZE, dtype=torch.float32) + 0.0, indexing="ij")
        a = affine[:, :, :2]
        t = affine[:, :, 2]
        inv = torch.linalg.inv(a)  # (B, 2, 2)
        dx = xs.view(1, SIZE, SIZE) - _col(t[:, 0])
        dy = ys.view(1, SIZE, SIZE) - _col(t[:, 1])
        self.u = _col(inv[:, 0, 0]) * dx + _col(inv[:, 0, 1]) * dy
        self.v = _col(inv[:, 1, 0]) * dx + _col(inv[:, 1, 1]) * dy
        self.img = background.view(b, 3, 1, 1).expand(b, 3, SIZE, SIZE).clone()

    def ellipse(self, win: tuple[int, int, int, int], cx: torch.Tensor, cy: torch.Tensor,
                a: torch.Tensor, b: torch.Tensor, theta: torch.Tensor | None = None,
                soft: float = 0.7) -> torch.Tensor:
        """Soft ellipse alpha ``(B, h, w)`` inside ``win = (y0, y1, x0, x1)``."""
        y0, y1, x0, x1 = win
        du = self.u[:, y0:y1, x0:x1] - _col(cx)
        dv = self.v[:, y0:y1, x0:x1] - _col(cy)
        if theta is not None:
            c, s = _col(torch.cos(theta)), _col(torch.sin(theta))
            du, dv = du * c + dv * s, dv * c - du * s
        a, b = _col(a), _col(b)
        d2 = (du / a) ** 2 + (dv / b) ** 2
        return _ramp(d2, torch.minimum(a, b), soft)

    def halfplane(self, win: tuple[int, int, int, int], y: torch.Tensor, below: bool,
                  soft: float = 0.7) -> torch.Tensor:
        y0, y1, x0, x1 = win
        d = self.v[:, y0:y1, x0:x1] - _col(y)
        return ((d if below else -d) / soft + 0.5).clamp_(0.0, 1.0)

    def paint(self, win: tuple[int, int, int, int], alpha: torch.Tensor, color: torch.Tensor) -> None:
        """Composite ``color (B, 3)`` with ``alpha (B, h, w)`` into the window."""
        y0, y1, x0, x1 = win
        view = self.img[:, :, y0:y1, x0:x1]
        al = alpha.unsqueeze(1)
        view.mul_(1 - al).add_(al * color.view(-1, 3, 1, 1))

    def shade(self, win: tuple[int, int, int, int], alpha: torch.Tensor, gain: torch.Tensor) -> None:
        """Multiply the window by ``1 + alpha * gain`` (``gain (B,)``, highlight + / shadow -)."""
        y0, y1, x0, x1 = win
        self.img[:, :, y0:y1, x0:x1].mul_(1 + (alpha * _col(gain)).unsqueeze(1))


# Windows (y0, y1, x0, x1) in image pixels, generous enough for every pose jitter.
W_FULL = (0, SIZE, 0, SIZE)
W_EARS = (36, 96, 0, SIZE)
W_UPPER = (0, 64, 0, SIZE)
W_BROWS = (26, 54, 16, 96)
W_EYES = (36, 68, 14, 98)
W_NOSE = (44, 88, 36, 76)
W_MID = (72, 112, 24, 88)
W_CHEEKS = (58, 98, 14, 98)


def _tone(t: torch.Tensor, dark: tuple[float, float, float], light: tuple[float, float, float]) -> torch.Tensor:
    w = torch.sigmoid(t).view(-1, 1)
    return torch.tensor(dark).view(1, 3) * (1 - w) + torch.tensor(light).view(1, 3) * w


def face_colors(p: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-patient colours ``(B, 3)`` from the tone parameters."""
    skin = _tone(p["skin_tone"], (0.42, 0.28, 0.20), (0.93, 0.78, 0.66))
    return {
        "skin": skin,
        "ear": skin * 0.9,
        "neck": skin * 0.85,
        "hair": _tone(p["hair_tone"], (0.08, 0.06, 0.05), (0.62, 0.45, 0.25)),
        "iris": _tone(p["iris_tone"], (0.20, 0.12, 0.06), (0.35, 0.50, 0.65)),
        "lip": skin * _tone(p["lip_tone"], (0.70, 0.45, 0.45), (0.85, 0.55, 0.55)),
    }


def landmarks_face(p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Five face-frame landmarks ``(B, 5, 2)``: eyes, nose tip, mouth corners."""
    half = p["eye_spacing"] / 2
    mouth_y = mouth_line(p)
    mw = p["mouth_w"] / 2
    cx = torch.full_like(half, CX)
    pts = [(cx - half, p["eye_y"]), (cx + half, p["eye_y"]), (cx, p["nose_tip_y"]),
           (cx - mw, mouth_y), (cx + mw, mouth_y)]
    return torch.stack([torch.stack(q, dim=-1) for q in pts], dim=1)


def mouth_line(p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    # nostril base sits 3.5 px below the tip; the philtrum runs from there to the upper lip
    base = PATIENT_PARAMS["nose_tip_y"][0] + 3.5
    return base + p["philtrum_len"] + p["upper_lip"] + (_T[3, 1] + _T[4, 1]).item() / 2 - (
        base + PATIENT_PARAMS["philtrum_len"][0] + PATIENT_PARAMS["upper_lip"][0])


def region_map(cv: Canvas, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Partition of the image into named regions, ``(B, H, W)`` uint8 (0 = none).

    Drawn from the *unaffected* geometry of the face with margins wide enough to contain every
    phenotype shift, so phenotype-on and phenotype-off renderings share their regions.
    Priority (first wins): eyes, brows, nose, mouth, philtrum, hair, ears, chin, cheeks, forehead.
    """
    u, v = cv.u, cv.v
    idx = {n: i + 1 for i, n in enumerate(REGION_NAMES)}
    half = _col(p["eye_spacing"] / 2)
    ey = _col(p["eye_y"])
    lm_mouth = _col(mouth_line(p))

    def ell(cx, cy, a, b):
        return ((u - cx) / a) ** 2 + ((v - cy) / b) ** 2 <= 1.0

    eyes = ell(CX - half, ey, 13.5, 7.0) | ell(CX + half, ey, 13.5, 7.0)
    by = _col(p["brow_y"])
    bh = _col(p["brow_spacing"] / 2)
    brows = ell(CX - bh, by, 12.5, 5.5) | ell(CX + bh, by, 12.5, 5.5) | ell(CX, by, 9.0, 5.5)
    tip = _col(p["nose_tip_y"])
    nose = ((u - CX).abs() <= 10.0) & (v >= ey - 6.0) & (v <= tip + 5.5) | ell(CX, tip, 12.0, 5.5)
    mouth = ell(CX, lm_mouth + 1.0, _col(p["mouth_w"]) / 2 + 8.0, 11.0)
    philtrum = ((u - CX).abs() <= 7.0) & (v > tip + 5.0) & (v < lm_mouth)
    hw = _col(p["head_w"])
    ey3 = _col(p["ear_y"]) + 3.0
    ears = (ell(CX - hw - 1.0, ey3, 9.0, 21.0) | ell(CX + hw + 1.0, ey3, 9.0, 21.0)) & ~ell(CX, torch.full_like(ey, 56.0), hw - 3.0, 44.0)
    hair = _hair_alpha(cv, p, W_FULL) > 0.3
    chin = (v > lm_mouth + 4.0) & ell(CX, torch.full_like(ey, 86.0), hw + 4.0, 34.0)
    chin = chin | ((v > lm_mouth + 4.0) & ((u - CX).abs() < hw + 4.0))
    cheeks = ell(CX - 23.0, torch.full_like(ey, 76.0), 12.0, 11.0) | ell(CX + 23.0, torch.full_like(ey, 76.0), 12.0, 11.0)
    forehead = ell(CX, torch.full_like(ey, 58.0), hw, 50.0) & (v < by - 4.0)
    out = torch.zeros(u.shape, dtype=torch.uint8)
    for name, m in [("forehead", forehead), ("cheeks", cheeks), ("chin", chin), ("ears", ears),
                    ("hair", hair), ("philtrum", philtrum), ("mouth", mouth), ("nose", nose),
                    ("brows", brows), ("eyes", eyes)]:  # later wins
        out[m] = idx[name]
    return out


def _hair_alpha(cv: Canvas, p: Mapping[str, torch.Tensor], win) -> torch.Tensor:
    y0, y1, x0, x1 = win
    hw = p["head_w"]
    n = hw.shape[0]
    cap = cv.ellipse(win, torch.full((n,), CX), torch.full((n,), 52.0), hw + 3.0, torch.full((n,), 48.0))
    # hairline: a parabola, lower at the temples
    u = cv.u[:, y0:y1, x0:x1]
    hl = _col(p["hairline"]) + 0.018 * (u - CX) ** 2
    above = ((hl - cv.v[:, y0:y1, x0:x1]) / 0.8 + 0.5).clamp_(0.0, 1.0)
    return cap * above


def render(p: Mapping[str, torch.Tensor], photo: Mapping[str, torch.Tensor],
           sticker: torch.Tensor | None = None, with_regions: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Render a batch.

    Args:
        p: patient parameters (after phenotype shifts), each ``(B,)``.
        photo: photo parameters from :func:`photo_params` (pose, lighting, noise, clutter).
        sticker: ``(B,)`` bool, draw the shortcut sticker.
        with_regions: also compute the region label map.

    Returns:
        ``images (B, 3, H, W)`` float in [0, 1], ``regions (B, H, W)`` uint8 or ``None``,
        ``sticker_mask (B, H, W)`` bool, ``landmarks (B, 5, 2)`` image pixels.
    """
    cv = Canvas(photo["affine"], photo["bg"])
    c = face_colors(p)
    _paint_head(cv, p, photo, c)
    _paint_brows_eyes(cv, p, c)
    _paint_nose_mouth(cv, p, c)
    regions = region_map(cv, p) if with_regions else None
    img, smask = _photo_finish(cv.img, photo, sticker)
    lm = _to_image(photo["affine"], landmarks_face(p))
    return img, regions, smask, lm


def _paint_head(cv: Canvas, p: Mapping[str, torch.Tensor], photo: Mapping[str, torch.Tensor],
                c: Mapping[str, torch.Tensor]) -> None:
    """Background clutter, hair behind the head, ears, neck, head, skin shading, hair in front."""
    one = torch.ones(p["eye_spacing"].shape[0])
    for k in range(photo["clutter_xy"].shape[1]):
        al = cv.ellipse(W_FULL, photo["clutter_xy"][:, k, 0], photo["clutter_xy"][:, k, 1],
                        photo["clutter_ab"][:, k, 0], photo["clutter_ab"][:, k, 1], soft=1.5)
        cv.paint(W_FULL, al * 0.8, photo["clutter_rgb"][:, k])
    hw = p["head_w"]
    # hair volume behind the head
    back = cv.ellipse(W_FULL, CX * one, 50.0 * one, hw + 6.0, 46.0 * one, soft=1.2)
    cv.paint(W_FULL, back * _col(0.95 * photo["hair_back"]), c["hair"])
    # ears
    for s in (-1.0, 1.0):
        ex = CX + s * (hw + 1.0)
        al = cv.ellipse(W_EARS, ex, p["ear_y"], 0.45 * p["ear_size"], p["ear_size"])
        cv.paint(W_EARS, al, c["ear"])
        inner = cv.ellipse(W_EARS, ex + s * 0.8, p["ear_y"], 0.2 * p["ear_size"], 0.65 * p["ear_size"], soft=1.0)
        cv.shade(W_EARS, inner, -0.25 * one)
    # neck, head (cranium + jaw)
    neck = cv.ellipse(W_MID, CX * one, 112.0 * one, 0.55 * hw, 30.0 * one)
    cv.paint(W_MID, neck, c["neck"])
    jaw = p["jaw"]
    head = torch.maximum(
        cv.ellipse(W_FULL, CX * one, 56.0 * one, hw, 47.0 * one, soft=0.9),
        cv.ellipse(W_FULL, CX * one, 80.0 - 6.0 * (1 - jaw), hw * (0.86 * jaw), 26.0 * jaw, soft=0.9))
    cv.paint(W_FULL, head, c["skin"])
    # forehead highlight, cheeks
    fh = cv.ellipse(W_UPPER, CX * one, 30.0 * one, 22.0 * one, 12.0 * one, soft=6.0)
    cv.shade(W_UPPER, fh, 0.06 + p["forehead"])
    for s in (-1.0, 1.0):
        ch = cv.ellipse(W_CHEEKS, CX + s * 23.0 * one, 77.0 * one, 9.0 * one, 7.0 * one, soft=4.0)
        cv.shade(W_CHEEKS, ch, 0.05 + p["cheek"])
    # hair in front (cap above the hairline)
    cv.paint(W_UPPER, _hair_alpha(cv, p, W_UPPER) * _col(p["hair_density"]), c["hair"])


def _paint_brows_eyes(cv: Canvas, p: Mapping[str, torch.Tensor], c: Mapping[str, torch.Tensor]) -> None:
    """Brows (and hair between them), then the eyes with lids, iris and pupil."""
    b = p["eye_spacing"].shape[0]
    one = torch.ones(b)
    half = p["eye_spacing"] / 2
    bhalf = p["brow_spacing"] / 2
    brow_col = c["hair"] * 0.8
    for s in (-1.0, 1.0):
        al = cv.ellipse(W_BROWS, CX + s * bhalf, p["brow_y"], p["brow_len"], p["brow_thick"],
                        theta=-s * 0.08 * one, soft=0.6)
        cv.paint(W_BROWS, al * 0.9, brow_col)
    glab = cv.ellipse(W_BROWS, CX * one, p["brow_y"] + 0.5, bhalf - p["brow_len"] + 3.0, p["brow_thick"] * 0.8, soft=0.8)
    cv.paint(W_BROWS, glab * _col(p["brow_join"].clamp(0.0, 0.95)), brow_col)
    for s in (-1.0, 1.0):
        ex = CX + s * half
        th = -s * p["eye_tilt"]  # + tilt raises the outer canthus on both sides
        sclera = cv.ellipse(W_EYES, ex, p["eye_y"], p["eye_w"], p["eye_h"], theta=th, soft=0.5)
        lid = cv.ellipse(W_EYES, ex, p["eye_y"], p["eye_w"] + 0.7, p["eye_h"] + 0.7, theta=th, soft=0.5)
        cv.paint(W_EYES, lid, c["skin"] * 0.55)
        cv.paint(W_EYES, sclera, torch.tensor([0.93, 0.92, 0.9]).expand(b, 3))
        iris = cv.ellipse(W_EYES, ex, p["eye_y"], 2.7 * one, 2.7 * one, soft=0.5) * sclera
        cv.paint(W_EYES, iris, c["iris"])
        pupil = cv.ellipse(W_EYES, ex, p["eye_y"], 1.1 * one, 1.1 * one, soft=0.5) * sclera
        cv.paint(W_EYES, pupil, torch.full((b, 3), 0.05))
        # upper lid: skin over the top of the fissure (ptosis lowers it)
        top = cv.halfplane(W_EYES, p["eye_y"] - p["eye_h"] + 0.6 + p["lid_drop"].clamp(min=0.0), below=False)
        cv.paint(W_EYES, top * sclera, c["skin"] * 0.8)


def _paint_nose_mouth(cv: Canvas, p: Mapping[str, torch.Tensor], c: Mapping[str, torch.Tensor]) -> None:
    """Nose (bridge highlight, tip shading, nostrils), philtrum groove and lips."""
    one = torch.ones(p["eye_spacing"].shape[0])
    tip = p["nose_tip_y"]
    bridge = cv.ellipse(W_NOSE, CX * one, (p["eye_y"] + tip) / 2, p["bridge_w"] / 2, (tip - p["eye_y"]) / 2 + 1.0, soft=1.5)
    cv.shade(W_NOSE, bridge, 0.12 * one)
    tipal = cv.ellipse(W_NOSE, CX * one, tip, p["nose_tip_w"], 0.5 * p["nose_tip_w"], soft=1.5)
    cv.shade(W_NOSE, tipal, -0.15 * one)
    for s in (-1.0, 1.0):
        nos = cv.ellipse(W_NOSE, CX + s * 0.55 * p["nose_tip_w"], tip + 2.0, 0.38 * p["nose_tip_w"], 1.2 * one, soft=0.6)
        cv.paint(W_NOSE, nos, c["skin"] * 0.35)
    # philtrum groove
    my = mouth_line(p)
    top_ph = tip + 6.5
    grove = cv.ellipse(W_MID, CX * one, (top_ph + my - p["upper_lip"]) / 2, 2.2 * one,
                       (my - p["upper_lip"] - top_ph) / 2, soft=1.0)
    cv.shade(W_MID, grove, -0.07 * one)
    # lips
    mw = p["mouth_w"] / 2
    up = cv.ellipse(W_MID, CX * one, my, mw, p["upper_lip"], soft=0.6) * cv.halfplane(W_MID, my, below=False)
    lo = cv.ellipse(W_MID, CX * one, my, 0.9 * mw, p["lower_lip"], soft=0.6) * cv.halfplane(W_MID, my, below=True)
    cv.paint(W_MID, torch.maximum(up, lo), c["lip"])
    line = cv.ellipse(W_MID, CX * one, my, mw, 0.55 * one, soft=0.5)
    cv.paint(W_MID, line, c["lip"] * 0.45)


def _photo_finish(face: torch.Tensor, photo: Mapping[str, torch.Tensor], sticker: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Photo nuisances on the painted ``face``: lighting gradient, gain (brightness and colour
    cast), the sticker, blur and noise. Returns the image in [0, 1] and the sticker mask."""
    b = face.shape[0]
    g = photo["light"]
    light = 1 + _col(g[:, 0]) * (torch.arange(SIZE) / SIZE - 0.5).view(1, 1, SIZE) + \
        _col(g[:, 1]) * (torch.arange(SIZE) / SIZE - 0.5).view(1, SIZE, 1)
    img = face * light.unsqueeze(1) * photo["gain"].view(b, 3, 1, 1)
    # sticker in a corner (drawn on the photo, after lighting: a flat printed label)
    smask = torch.zeros(b, SIZE, SIZE, dtype=torch.bool)
    if sticker is not None and bool(sticker.any()):
        i = sticker.nonzero().flatten()
        ys, xs = photo["sticker_yx"][i, 0].long(), photo["sticker_yx"][i, 1].long()
        for j, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
            smask[i[j], y:y + 12, x:x + 12] = True
        sm = smask[i].unsqueeze(1)
        col = photo["sticker_rgb"][i].view(-1, 3, 1, 1)
        img[i] = torch.where(sm, col, img[i])
    img = _blur(img.clamp_(0, 1), photo["blur"])
    img = img + photo["noise_sd"].view(b, 1, 1, 1) * photo["noise"]
    return img.clamp_(0.0, 1.0), smask


def _to_image(affine: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    return pts @ affine[:, :, :2].transpose(1, 2) + affine[:, :, 2].unsqueeze(1)


def _blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-image ``sigma (B,)`` (0 = none), 5-tap kernel."""
    r = torch.arange(-2, 3, dtype=torch.float32)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (r.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, 5)
    b, ch, h, w = img.shape
    x = img.reshape(1, b * ch, h, w)
    kk = k.repeat_interleave(ch, 0)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kk.view(b * ch, 1, 1, 5), groups=b * ch)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kk.view(b * ch, 1, 5, 1), groups=b * ch)
    return x.view(b, ch, h, w)


def photo_params(rng: np.random.Generator, n: int, nuisance: float = 1.0) -> dict[str, torch.Tensor]:
    """Draw per-photo nuisances for ``n`` photos (pose, lighting, blur, noise, clutter).

    ``nuisance`` scales every nuisance (0 = a clean, frontal, template-aligned photo)."""
    f = float(nuisance)
    ang = rng.normal(0, 0.04, n) * f
    scale = 1 + rng.normal(0, 0.025, n) * f
    t = rng.normal(0, 1.2, (n, 2)) * f
    ca, sa = np.cos(ang) * scale, np.sin(ang) * scale
    aff = np.zeros((n, 2, 3))
    aff[:, 0, 0], aff[:, 0, 1], aff[:, 1, 0], aff[:, 1, 1] = ca, -sa, sa, ca
    # rotate/scale about (CX, CY), then translate
    aff[:, 0, 2] = CX - (ca * CX - sa * CY) + t[:, 0]
    aff[:, 1, 2] = CY - (sa * CX + ca * CY) + t[:, 1]
    k = 3
    out = {
        "affine": aff,
        "bg": rng.uniform(0.15, 0.85, (n, 3)),
        "clutter_xy": rng.uniform(0, SIZE, (n, k, 2)),
        "clutter_ab": rng.uniform(4, 18, (n, k, 2)),
        "clutter_rgb": rng.uniform(0.05, 0.95, (n, k, 3)),
        "hair_back": rng.uniform(0.6, 1.0, n),
        "light": rng.normal(0, 0.18, (n, 2)) * f,
        "gain": np.clip(1 + rng.normal(0, 0.06, (n, 1)) * f + rng.normal(0, 0.025, (n, 3)) * f, 0.7, 1.3),
        "blur": np.abs(rng.normal(0, 0.5, n)) * f,
        "noise_sd": rng.uniform(0.0, 0.03, n) * f,
        "noise": rng.standard_normal((n, 3, SIZE, SIZE), dtype=np.float32),
        "sticker_yx": np.stack([rng.choice([2, SIZE - 14], n), rng.choice([2, SIZE - 14], n)], 1),
        "sticker_rgb": rng.uniform(0.0, 1.0, (n, 3)),
    }
    if f == 0:
        out["bg"][:] = 0.5
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in out.items()}


def patient_params(rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
    """Draw normal (unaffected) face parameters for ``n`` patients, each ``(n,)``."""
    return {k: torch.as_tensor(rng.normal(m, s, n), dtype=torch.float32)
            for k, (m, s) in PATIENT_PARAMS.items()}


def take(d: Mapping[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in d.items()}


__all__ = ["PATIENT_PARAMS", "render", "photo_params", "patient_params", "region_map",
           "landmarks_face", "take", "SIZE"]
