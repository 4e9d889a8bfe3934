"""The sample contract shared by every dataset (synthetic, CSV manifest, GMDB).

A dataset is a ``torch.utils.data.Dataset`` whose items are :class:`Sample` and that has
``classes: list[str]`` (index = label) and ``card: dict`` (JSON-serialisable description).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from gmxai_eval.errors import ShapeError
from gmxai_eval.registry import Registry

#: Dataset sources: ``DATASETS.create(name, **config)`` returns a dataset object.
DATASETS: Registry = Registry("dataset", entry_point_group="gmxai_eval.datasets")


@dataclass
class Sample:
    """One image and what is known about it.

    Attributes:
        image: ``(C, H, W)`` float32 in ``[0, 1]``.
        label: class index into ``dataset.classes``.
        image_id: unique id within the dataset.
        subject: patient / subject id (images of one subject never span two splits).
        split: ``"train"``, ``"val"``, ``"test"``, ``"gallery"``, ... or ``""``.
        region_masks: optional ``(R, H, W)`` bool, one mask per named facial region.
        region_names: names of the ``R`` regions (same order).
        evidence: optional ``(H, W)`` bool, where the class evidence was planted.
        landmarks: optional ``(5, 2)`` float (x, y) pixels: eyes, nose tip, mouth corners.
    """

    image: torch.Tensor
    label: int
    image_id: str
    subject: str = ""
    split: str = ""
    region_masks: torch.Tensor | None = None
    region_names: tuple[str, ...] = ()
    evidence: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None


@dataclass
class FaceBatch:
    """A collated batch: ``images (B, C, H, W)``, ``labels (B,)`` int64, optional
    ``region_masks (B, R, H, W)`` bool, ``evidence (B, H, W)`` bool, ``landmarks (B, 5, 2)``."""

    images: torch.Tensor
    labels: torch.Tensor
    image_ids: list[str]
    subjects: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    region_masks: torch.Tensor | None = None
    region_names: tuple[str, ...] = ()
    evidence: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: str | torch.device) -> "FaceBatch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return FaceBatch(self.images.to(device), self.labels.to(device), self.image_ids,
                         self.subjects, self.splits, mv(self.region_masks), self.region_names,
                         mv(self.evidence), mv(self.landmarks))


def _stack_optional(items: list[torch.Tensor | None], what: str) -> torch.Tensor | None:
    present = [t is not None for t in items]
    if not any(present):
        return None
    if not all(present):
        raise ShapeError(f"cannot collate {what}: expected it on every sample, got it on "
                         f"{sum(present)} of {len(items)}")
    return torch.stack(items)  # type: ignore[arg-type]


def collate(samples: Sequence[Sample]) -> FaceBatch:
    """Stack samples into a :class:`FaceBatch` (use as a DataLoader ``collate_fn``)."""
    if not samples:
        raise ShapeError("cannot collate an empty list of samples")
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise ShapeError(f"expected images of one shape in a batch, got {sorted(shapes)}")
    names = {s.region_names for s in samples}
    if len(names) != 1:
        raise ShapeError("expected the same region_names on every sample of a batch")
    return FaceBatch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        image_ids=[s.image_id for s in samples],
        subjects=[s.subject for s in samples],
        splits=[s.split for s in samples],
        region_masks=_stack_optional([s.region_masks for s in samples], "region_masks"),
        region_names=samples[0].region_names,
        evidence=_stack_optional([s.evidence for s in samples], "evidence"),
        landmarks=_stack_optional([s.landmarks for s in samples], "landmarks"),
    )
