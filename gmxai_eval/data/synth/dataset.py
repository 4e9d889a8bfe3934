"""The generated dataset as :class:`SyntheticFaces` (items are :class:`~gmxai_eval.data.base.Sample`) and :func:`load`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gmxai_eval.data.synth import render as R
from gmxai_eval.data.base import DATASETS, Sample
from gmxai_eval.data.synth.config import PRESETS, SPLITS, SynthConfig
from gmxai_eval.data.synth.counterfactual import CounterfactualRenderer
from gmxai_eval.data.synth.build import load_or_generate, read_card
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.types import DatasetCard


# --------------------------------------------------------------------------- dataset
class SyntheticFaces(torch.utils.data.Dataset):
    """Items are :class:`~gmxai_eval.data.base.Sample` of a generated synthetic dataset.

    Args:
        folder: a folder written by :func:`generate`.
        split: ``None`` (all), ``"train"``, ``"val"``, ``"test"``, ``"gallery"`` (= train) or a
            sequence of those.
        with_masks: attach ``region_masks (R, H, W)`` bool and ``evidence (H, W)`` bool (on
            shortcut data the last plane, named ``"sticker"``, is the sticker's mask).

    Attributes:
        classes: class names (index = label; ``0`` is ``unaffected``).
        card: the dataset card (dict).
        indices: rows of the full dataset in this view.
    """

    def __init__(self, folder: str | os.PathLike, split: str | Sequence[str] | None = None,
                 with_masks: bool = True) -> None:
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        self.classes: list[str] = list(self.card["classes"])
        #: facial regions, plus a ``"sticker"`` plane (the shortcut sticker's mask) on shortcut data
        self.has_sticker = bool(self.card.get("config", {}).get("shortcut", False))
        self.region_names = tuple(self.card["region_names"]) + (("sticker",) if self.has_sticker else ())
        try:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
            with np.load(self.folder / "arrays.npz") as z:
                self._a = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"expected images.npy and arrays.npz, got {type(e).__name__}: {e}",
                            path=self.folder) from None
        self.with_masks = with_masks
        codes = self._a["splits"]
        if split is None:
            keep = np.ones(len(codes), bool)
        else:
            names = [split] if isinstance(split, str) else list(split)
            keep = np.zeros(len(codes), bool)
            for s in names:
                s2 = "train" if s == "gallery" else s
                if s2 not in SPLITS:
                    raise ConfigError(f"expected split in {SPLITS + ('gallery',)}, got {s!r}")
                keep |= codes == SPLITS.index(s2)
        self.split = split
        self.indices = np.nonzero(keep)[0]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` int64 labels of this view."""
        return torch.as_tensor(self._a["labels"][self.indices].astype(np.int64))

    @property
    def subjects(self) -> list[str]:
        return [f"p{p:05d}" for p in self._a["patients"][self.indices]]

    @property
    def splits(self) -> list[str]:
        """The split name of every item of this view."""
        return [SPLITS[c] for c in self._a["splits"][self.indices]]

    def uint8_images(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Images of this view (or ``rows`` of it) as stored: ``(n, 3, H, W)`` uint8, in memory."""
        idx = self.indices if rows is None else self.indices[rows]
        return np.ascontiguousarray(self._images[idx])

    def images(self, rows: np.ndarray | slice | None = None) -> torch.Tensor:
        """Images of this view (or ``rows`` of it) as ``(n, 3, H, W)`` float32 in [0, 1]."""
        return torch.from_numpy(self.uint8_images(rows)).float().div_(255)

    def sticker_mask(self, i: int) -> torch.Tensor:
        """``(H, W)`` bool: the shortcut sticker of item ``i`` (all False without one)."""
        j = self.indices[i]
        return torch.from_numpy(np.unpackbits(self._a["sticker"][j])[: R.SIZE * R.SIZE]
                                .reshape(R.SIZE, R.SIZE).astype(bool))

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"expected index in [0, {len(self)}), got {i}")
        j = int(self.indices[i])
        img = torch.from_numpy(np.array(self._images[j])).float().div_(255)
        masks = ev = None
        if self.with_masks:
            reg = torch.from_numpy(self._a["regions"][j])
            masks = reg.unsqueeze(0) == torch.arange(1, len(self.card["region_names"]) + 1).view(-1, 1, 1)
            if self.has_sticker:
                masks = torch.cat([masks, self.sticker_mask(i).unsqueeze(0)])
            ev = torch.from_numpy(np.unpackbits(self._a["evidence"][j])[: R.SIZE * R.SIZE]
                                  .reshape(R.SIZE, R.SIZE).astype(bool))
        code = int(self._a["splits"][j])
        return Sample(image=img, label=int(self._a["labels"][j]), image_id=f"img{j:06d}",
                      subject=f"p{int(self._a['patients'][j]):05d}", split=SPLITS[code],
                      region_masks=masks, region_names=self.region_names, evidence=ev,
                      landmarks=torch.from_numpy(self._a["landmarks"][j].copy()))

    def counterfactual_renderer(self) -> "CounterfactualRenderer":
        """A picklable :class:`CounterfactualRenderer` re-rendering this dataset's images with
        chosen planted traits switched off (sample ids are this dataset's ``image_id``)."""
        return CounterfactualRenderer(self.folder)

    def __repr__(self) -> str:
        return (f"SyntheticFaces({self.folder.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)})")


def dataset_name(cfg: SynthConfig, preset: str = "custom") -> str:
    """Default folder name: ``synthetic_faces`` for the default preset,
    ``synthetic_faces_<preset>`` for another unchanged preset, else ``synthetic_faces_<hash8>``."""
    if cfg == PRESETS["default"]:
        return "synthetic_faces"
    if preset in PRESETS and cfg == PRESETS[preset]:
        return f"synthetic_faces_{preset}"
    digest = hashlib.sha256(json.dumps(cfg.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    return f"synthetic_faces_{digest}"


def load(preset: str | SynthConfig = "default", split: str | Sequence[str] | None = None,
         cache_name: str | None = None, root: str | os.PathLike | None = None,
         progress: bool = True, **overrides: Any) -> SyntheticFaces:
    """Generate or reuse a synthetic dataset and open it.

    Args:
        preset: a name in :data:`PRESETS` or a :class:`SynthConfig`.
        cache_name: folder name under ``root`` (default ``synthetic_faces`` for the default preset,
            ``synthetic_faces_<preset>`` for other presets, ``synthetic_faces_<hash>`` when
            overrides are given).
        overrides: :class:`SynthConfig` fields replacing the preset's.
    """
    if isinstance(preset, SynthConfig):
        cfg, pname = preset, "custom"
    else:
        if preset not in PRESETS:
            raise ConfigError(f"expected a preset in {sorted(PRESETS)}, got {preset!r}")
        cfg, pname = PRESETS[preset], preset
    if overrides:
        known = set(SynthConfig.__dataclass_fields__)
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown synthetic-data option(s) {bad}; expected a subset of {sorted(known)}")
        cfg = replace(cfg, **overrides)
    folder = load_or_generate(cfg, cache_name or dataset_name(cfg, pname), root, progress=progress)
    return SyntheticFaces(folder, split=split)


DATASETS.register(load, name="synthetic_faces", card=DatasetCard(
    name="synthetic_faces",
    description="procedural frontal faces (112x112, ArcFace-aligned) with planted HPO-linked "
                "phenotypes, region/evidence masks and landmarks; generated on first use",
    default_config={"preset": "default", "split": None, "cache_name": None, "root": None, "progress": True},
))
