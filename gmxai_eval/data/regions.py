"""Canonical facial regions and the ArcFace 112x112 alignment template.

Every dataset with region masks uses these names (in this order) so that localisation per
region, gaze areas of interest and the synthetic generator agree.
"""

from __future__ import annotations

import torch

#: ArcFace 5-point template for 112x112 aligned faces, (x, y) pixels: left eye, right eye,
#: nose tip, left mouth corner, right mouth corner (image left/right as seen).
ARCFACE_TEMPLATE_112 = torch.tensor([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])

#: Named facial regions (mask order in ``Sample.region_masks``).
REGION_NAMES: tuple[str, ...] = (
    "forehead", "brows", "eyes", "nose", "philtrum", "mouth", "chin", "ears", "cheeks", "hair",
)
