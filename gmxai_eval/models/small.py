"""``gmx_small``: a small GestaltMatcher-style CNN for the synthetic default.

Layout (input 3x112x112 RGB, ArcFace-like ``(x - 0.5) / 0.5``)::

    backbone.base.0   CNA  3 -> 16, stride 2    16x56x56
    backbone.base.1   CNA 16 -> 32, stride 2    32x28x28
    backbone.base.2   CNA 32 -> 32              32x28x28
    backbone.base.3   CNA 32 -> 64, stride 2    64x14x14
    backbone.base.4   CNA 64 -> 64              64x14x14
    backbone.base.5   CNA 64 -> 128, stride 2  128x7x7
    backbone.base.6   Conv2d 128 -> D (3x3, no norm, no activation)    Dx7x7   <- cam_layer
    backbone.pool     global average pool -> embedding (B, D)
    head              ClassifierHead(D, K) or GalleryHead

A ``CNA`` block has ``.conv`` (3x3, no bias), ``.norm`` (BatchNorm2d) and ``.act`` (its own
non-in-place ReLU) like GestaltMatcher's ``Conv_Norm_Act``. As in GestaltMatcher, the embedding
is the global average of a plain convolution, so CAM = Grad-CAM = HiResCAM at ``cam_layer`` for
targets linear in the embedding. No module is used twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.models.base import MODELS, ClassifierHead, GalleryHead, GMXModel, Preprocess
from gmxai_eval.types import ModelCard

#: (in, out, stride) of the conv-norm-act blocks.
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (3, 16, 2), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2))
CAM_LAYER = f"backbone.base.{len(BLOCKS)}"


class ConvNormAct(nn.Module):
    """3x3 conv (no bias) -> BatchNorm2d -> ReLU (own module, not in place)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SmallBackbone(nn.Module):
    """``(B, 3, 112, 112)`` preprocessed -> embedding ``(B, D)``."""

    def __init__(self, embedding_dim: int = 128, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout, s in BLOCKS:
            layers.append(ConvNormAct(3 if cin == 3 else int(cin * width), int(cout * width), s))
        layers.append(nn.Conv2d(int(BLOCKS[-1][1] * width), embedding_dim, 3, padding=1))
        self.base = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.base(x)))


CARD = ModelCard(
    name="gmx_small", input_channels=3, input_size=(112, 112), embedding_dim=128,
    cam_layer=CAM_LAYER,
    paper="architecture in the style of Hsieh et al., GestaltMatcher, Nature Genetics 2022",
    description="6 conv-BN-ReLU blocks + plain conv, GAP embedding (128), linear or gallery head; "
                "ArcFace-like preprocessing (x - 0.5) / 0.5")


@MODELS.register(name="gmx_small", card=CARD)
def gmx_small(num_classes: int = 13, head: str = "classifier", embedding_dim: int = 128,
              width: float = 1.0, seed: int | None = 0, gallery: torch.Tensor | None = None,
              gallery_labels: torch.Tensor | None = None) -> GMXModel:
    """Build ``gmx_small`` (eval mode).

    Args:
        num_classes: outputs ``K`` of the head.
        head: ``"classifier"`` (linear) or ``"gallery"`` (cosine to class centroids; needs
            ``gallery (N, D)`` embeddings and ``gallery_labels (N,)``; without them the
            centroids are zeros, to be filled by ``load_state_dict``; or use
            :func:`with_gallery_head` on a trained model).
        embedding_dim: ``D``.
        width: channel multiplier of the conv blocks.
        seed: seeds the initialisation (``None`` = global RNG).
    """
    heads = {"classifier", "gallery"}
    if head not in heads:
        raise ConfigError(f"expected head in {sorted(heads)}, got {head!r}")
    if seed is not None:
        torch.manual_seed(seed)
    backbone = SmallBackbone(embedding_dim, width)
    if head == "gallery":
        if (gallery is None) != (gallery_labels is None):
            raise ConfigError("expected both gallery and gallery_labels or neither, got one of them")
        h: nn.Module = (GalleryHead(torch.zeros(num_classes, embedding_dim)) if gallery is None
                        else GalleryHead.from_gallery(gallery, gallery_labels, num_classes))
    else:
        h = ClassifierHead(embedding_dim, num_classes)
    pre = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return GMXModel(backbone, h, pre, cam_layer=CAM_LAYER, arch="gmx_small").eval()


@torch.no_grad()
def embed_dataset(model: GMXModel, dataset: Any, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(N, D)`` and labels ``(N,)`` of a dataset (model put in eval mode).

    ``dataset`` is a :class:`~gmxai_eval.data.synth.SyntheticFaces` (fast path through
    ``images()``) or any dataset of :class:`~gmxai_eval.data.base.Sample`."""
    was = model.training
    model.eval()
    try:
        n = len(dataset)
        zs, ys = [], []
        for s in range(0, n, batch_size):
            if hasattr(dataset, "images"):
                x = dataset.images(slice(s, s + batch_size))
                y = dataset.labels[s:s + batch_size]
            else:
                items = [dataset[i] for i in range(s, min(n, s + batch_size))]
                x = torch.stack([it.image for it in items])
                y = torch.tensor([it.label for it in items])
            zs.append(model.embed(x))
            ys.append(y)
        return torch.cat(zs), torch.cat(ys).long()
    finally:
        model.train(was)


def with_gallery_head(model: GMXModel, gallery: Any, scale: float = 1.0,
                      batch_size: int = 256) -> GMXModel:
    """A new :class:`GMXModel` sharing ``model``'s preprocessing and backbone with a
    :class:`GalleryHead` built from the embeddings of ``gallery`` (a dataset, e.g. the
    ``"gallery"`` split). The result ranks classes by cosine similarity to class centroids."""
    z, y = embed_dataset(model, gallery, batch_size)
    head = GalleryHead.from_gallery(z, y, model.num_classes, scale=scale)
    return GMXModel(model.backbone, head, model.preprocess, cam_layer=model.cam_layer,
                    arch=model.arch).eval()
