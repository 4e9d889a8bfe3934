"""One patient photo explained (the computation behind ``gmxai-eval explain``).

:func:`check_aligned` is the alignment check: the photo's five landmarks (left eye, right eye,
nose tip, left and right mouth corner, image left/right as seen) must each lie within
``tolerance`` (default 11 % of the image width: 12.3 px at 112 px) of the ArcFace template
scaled to the image size, the geometry every aligned face of this package shares. There is no
landmark detector here: the landmarks come from the user's alignment step (a JSON file with
five ``[x, y]`` pairs). On the synthetic test photos, whose nuisances move the face, the largest
landmark offset is 3.9 px in the median photo and 11.2 px at most (measured 2026-11-30 on 451
test photos), so every synthetic test photo passes.

:func:`explain_image` computes, for one aligned ``(C, H, W)`` image: the top-``k`` syndromes
with their probabilities, each method's map for each of them, the region table row of the
top-1 map (template region masks: a pixel belongs to a region when the region's mask covers it
in at least half of the gallery's aligned faces), and the nearest gallery images by cosine
similarity of the embeddings, with maps explaining that similarity on both images
(:func:`gmxai_eval.methods.similarity.explain_pair`, first method).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.analysis.views import BACKGROUND, region_area, region_mass, region_table
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.errors import DataError, ShapeError
from gmxai_eval.methods.similarity import explain_pair
from gmxai_eval.models.base import require_eval_mode

#: Default landmark tolerance as a fraction of the image width.
LANDMARK_TOLERANCE = 0.11


def read_landmarks(path: str | Path) -> torch.Tensor:
    """``(5, 2)`` landmarks from a JSON file holding five ``[x, y]`` pairs (pixels).

    Raises:
        DataError: unreadable file, invalid JSON or not five pairs of numbers, naming the file.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"expected a JSON file of five [x, y] landmarks, got {type(err).__name__}: {err}",
                        path=p) from None
    pts = raw.get("landmarks") if isinstance(raw, dict) else raw
    ok = (isinstance(pts, list) and len(pts) == 5 and all(
        isinstance(q, list) and len(q) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in q)
        for q in pts))
    if not ok:
        raise DataError(f"expected five [x, y] landmark pairs (eyes, nose tip, mouth corners), got {pts!r:.80}",
                        path=p)
    return torch.tensor(pts, dtype=torch.float32)


def check_aligned(landmarks: torch.Tensor, size: tuple[int, int], tolerance: float = LANDMARK_TOLERANCE,
                  where: str = "image") -> float:
    """The largest landmark offset (pixels) from the ArcFace template scaled to ``size``
    ``(H, W)``; raises :class:`DataError` when it exceeds ``tolerance * W``."""
    if tuple(landmarks.shape) != (5, 2):
        raise ShapeError(f"{where}: expected landmarks (5, 2), got {tuple(landmarks.shape)}")
    h, w = size
    template = ARCFACE_TEMPLATE_112 * torch.tensor([w / 112.0, h / 112.0])
    off = (landmarks.float() - template).norm(dim=1)
    worst = float(off.max())
    if not worst <= tolerance * w:
        names = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")
        k = int(off.argmax())
        raise DataError(f"{where}: expected an aligned frontal face (each landmark within {tolerance * w:.1f} px of "
                        f"the ArcFace template), got the {names[k]} {worst:.1f} px away")
    return worst


def template_regions(region_masks: torch.Tensor) -> torch.Tensor:
    """``(R, H, W)`` bool: the regions covering a pixel in at least half of ``region_masks
    (N, R, H, W)`` (the aligned faces of a gallery)."""
    if region_masks.ndim != 4:
        raise ShapeError(f"expected region masks (N, R, H, W), got {tuple(region_masks.shape)}")
    return region_masks.float().mean(0) >= 0.5


@torch.no_grad()
def _embed(model: nn.Module, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.embed(x[i: i + batch]).float() for i in range(0, len(x), batch)])  # type: ignore[operator]


def explain_image(model: nn.Module, image: torch.Tensor, explainers: Mapping[str, Any], classes: Sequence[str], *,
                  top_k: int = 3, regions: torch.Tensor | None = None, region_names: Sequence[str] = (),
                  class_regions: Mapping[str, Sequence[str]] | None = None,
                  gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None,
                  gallery_ids: Sequence[str] = (), matches: int = 3) -> dict[str, Any]:
    """Everything ``gmxai-eval explain`` shows for one image.

    Args:
        model: eval-mode classifier ``(B, C, H, W) -> (B, K)`` logits (with ``embed`` for the
            gallery matches); a module in training mode is refused (:class:`~gmxai_eval.errors.ModelStateError`).
        image: ``(C, H, W)`` in ``[0, 1]``.
        explainers: ``{label: explainer}`` (``explainer(model, x, target) -> (B, H, W)``).
        classes: the ``K`` class names.
        regions: ``(R, H, W)`` bool template region masks with ``region_names`` (None: no row).
        class_regions: ``{class: annotated regions}``.
        gallery / gallery_labels / gallery_ids: ``(G, C, H, W)`` aligned gallery images, their
            labels and ids (None: no matches).

    Returns:
        ``{"top_k": [(class, probability)], "maps": {label: (k, H, W)}, "region_row": {column:
        value} or None, "region_mass": {label: {region: share}}, "matches": [{"id", "class",
        "cosine"}], "match_images": (M, C, H, W), "query_maps" / "match_maps": (M, H, W),
        "similarity_method"}``.
    """
    if image.ndim != 3:
        raise ShapeError(f"expected one image (C, H, W), got {tuple(image.shape)}")
    if not explainers:
        raise ShapeError("expected at least one method, got none")
    require_eval_mode(model, owner="explain")
    x = image.unsqueeze(0).float()
    with torch.no_grad():
        logits = model(x)
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        raise ShapeError(f"expected logits (1, {len(classes)}), got {tuple(logits.shape)}")
    k = min(int(top_k), len(classes))
    p, top = logits.float().softmax(1)[0].topk(k)
    xs = x.expand(k, -1, -1, -1)
    maps = {lab: ex(model, xs, top.clone()).detach().cpu() for lab, ex in explainers.items()}
    out: dict[str, Any] = {"top_k": [(str(classes[c]), float(v)) for c, v in zip(top.tolist(), p.tolist())],
                           "maps": maps, "region_row": None, "region_mass": {}, "matches": [],
                           "similarity_method": None}
    if regions is not None:
        names = [*region_names, BACKGROUND]
        for lab, m in maps.items():
            s = region_mass(m[:1], regions)
            out["region_mass"][lab] = {r: float(v) for r, v in zip(names, s[0].tolist())}
        first = next(iter(maps))
        m = maps[first][:1]
        tab = region_table(region_mass(m, regions), top[:1].cpu(), region_names, classes, class_regions or {},
                           area=region_area(tuple(m.shape), regions))
        row = tab.reset_index().iloc[0].to_dict()
        out["region_row"] = {"method": first, **{str(c): (v.item() if hasattr(v, "item") else v) for c, v in row.items()}}
    if gallery is not None and callable(getattr(model, "embed", None)) and matches > 0 and len(gallery):
        zq = F.normalize(_embed(model, x), dim=1)[0]
        zg = F.normalize(_embed(model, gallery.float()), dim=1)
        sim = zg @ zq
        best = sim.argsort(descending=True)[: int(matches)]
        label = next(iter(explainers))
        qm, rm = explain_pair(explainers[label], model, x.expand(len(best), -1, -1, -1), gallery[best].float())
        out.update(similarity_method=label, match_images=gallery[best], query_maps=qm.detach().cpu(),
                   match_maps=rm.detach().cpu(),
                   matches=[{"id": str(gallery_ids[b]) if b < len(gallery_ids) else str(b),
                             "class": str(classes[int(gallery_labels[b])]) if gallery_labels is not None else "",
                             "cosine": float(sim[b])} for b in best.tolist()])
    return out
