"""The GestaltMatcher architectures, with the module names of the released weights.

``gestaltmatcher_v1``: the original encoder ("FaceRecogNet" / DeepGestalt), 1x100x100
grayscale in ``[0, 1]``. :class:`FaceRecogNet` reproduces the released module tree
(``base`` ModuleList with one shared ``MaxPool2d(2, 2, ceil_mode=True)`` at indices 2, 5, 8, 11,
conv blocks ``.conv/.norm/.act``, plain conv ``base.13``, ``AvgPool2d(7)`` at 14, ``Dropout(0.5)``,
``classifier.0 = Linear(320, C)``) and returns ``(logits, embedding)`` like the original.

Inside a :class:`~gmxai_eval.models.base.GMXModel` the classifier is *not* part of the backbone:
``backbone`` is a :class:`FaceRecogNetBackbone` (``base`` only, returns the 320-d embedding)
and ``head`` a :class:`DropoutClassifierHead` (``dropout -> fc``). So no parameter is dead
(parameter randomisation tests see every weight that matters) and no module is shared between
backbone and head. :func:`load_released` loads a released state dict with ``strict=True`` into a
:class:`FaceRecogNet` (so the key set and every shape are checked) and copies ``base.*`` into
the backbone and ``classifier.0.*`` into ``head.fc``; the wrapped model's logits equal the
released network's logits (tested). :func:`to_face_recog_net` goes back.

**The shared max-pool is a reused module.** Its hooks fire four times per forward, and
:func:`~gmxai_eval.models.base.check_no_reused_modules` raises on it. DeepLIFT (which hooks
every module and keeps per-call state) refuses it with ``ModelStateError``; guided backprop and
deconvolution only override ReLUs and give the same maps as on the unshared model (tested);
gradient, path, perturbation and CAM methods (CAM layer ``backbone.base.13``) are unaffected.
:func:`unshare_pooling` replaces it by four independent identical pools (no parameters, identical
numbers, identical state dict); ``gestaltmatcher_v1(share_pool=False)`` builds it that way.

``gestaltmatcher_arc``: insightface iResNet-100 (:mod:`gmxai_eval.models.iresnet`), 512-d
embedding, ``Linear(512, C)``; 112x112 RGB scaled to ``[-1, 1]``; CAM layer ``backbone.bn2``.

Test-time augmentation (GestaltMatcher-Arc): horizontal flip x grayscale,
:func:`tta_views` / :func:`unflip_maps` / :func:`tta_merge_maps`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError, ShapeError
from gmxai_eval.models.base import MODELS, ClassifierHead, GMXModel, Preprocess
from gmxai_eval.models.checkpoint import load_state_dict_file, load_state_dict_into, read_state_dict
from gmxai_eval.models.iresnet import build_iresnet
from gmxai_eval.types import ModelCard

#: ``(in, out)`` channels of the conv blocks at each ``base`` index; ``None`` marks the pool.
V1_LAYOUT: tuple[tuple[int, int] | None, ...] = (
    (1, 32), (32, 64), None, (64, 64), (64, 128), None, (128, 96), (96, 192), None,
    (192, 128), (128, 256), None, (256, 160),
)
V1_POOL_INDICES: tuple[int, ...] = (2, 5, 8, 11)
V1_EMBEDDING_DIM = 320
V1_CAM_LAYER = "backbone.base.13"


class ConvNormAct(nn.Module):
    """``conv (3x3, stride 1, pad 1, bias) -> norm (BatchNorm2d) -> act (ReLU, not in place)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=True)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _scaled(c: int, width: float) -> int:
    return c if width == 1.0 else max(4, int(round(c * width)))


def _v1_base(in_channels: int, share_pool: bool, width: float = 1.0) -> nn.ModuleList:
    base = nn.ModuleList()
    shared = nn.MaxPool2d(2, 2, ceil_mode=True)
    for spec in V1_LAYOUT:
        if spec is None:
            base.append(shared if share_pool else nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            cin, cout = spec
            base.append(ConvNormAct(in_channels if cin == 1 else _scaled(cin, width), _scaled(cout, width)))
    base.append(nn.Conv2d(_scaled(160, width), _scaled(V1_EMBEDDING_DIM, width), 3, stride=1, padding=1,
                          bias=True))  # base.13
    base.append(nn.AvgPool2d(7))  # base.14
    return base


class FaceRecogNetBackbone(nn.Module):
    """The v1 encoder without classifier: ``(B, 1, 100, 100) -> (B, 320)``.

    Maps: 100 (base.0-1) -> 50 (2-4) -> 25 (5-7) -> 13 (8-10) -> 7 (11-13) -> 1 (14).
    """

    def __init__(self, in_channels: int = 1, share_pool: bool = True, width: float = 1.0) -> None:
        super().__init__()
        self.base = _v1_base(in_channels, share_pool, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.base:
            x = m(x)
        return torch.flatten(x, 1)


class FaceRecogNet(nn.Module):
    """The released v1 network (state-dict keys ``base.*``, ``classifier.0.*``).

    ``forward(x (B, 1, 100, 100)) -> (logits (B, C), embedding (B, 320))``; the embedding is
    taken before dropout, the logits after it.
    """

    def __init__(self, num_classes: int = 139, in_channels: int = 1, share_pool: bool = True) -> None:
        super().__init__()
        self.base = _v1_base(in_channels, share_pool)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.ModuleList([nn.Linear(V1_EMBEDDING_DIM, num_classes)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for m in self.base:
            x = m(x)
        z = torch.flatten(x, 1)
        return self.classifier[0](self.dropout(z)), z


class DropoutClassifierHead(ClassifierHead):
    """``dropout(p) -> fc``: ``(B, D) -> (B, K)`` (dropout is the identity in eval mode)."""

    def __init__(self, embedding_dim: int, num_classes: int, p: float = 0.5) -> None:
        super().__init__(embedding_dim, num_classes)
        self.dropout = nn.Dropout(p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(z))


def v1_preprocess() -> Preprocess:
    """Pixel space ``[0, 1]`` (RGB or gray) -> 1x100x100 grayscale ``[0, 1]`` (no mean/std)."""
    return Preprocess(mean=(0.0,), std=(1.0,), grayscale=True, size=(100, 100))


_V1_CARD = ModelCard(
    name="gestaltmatcher_v1", input_channels=1, input_size=(100, 100),
    embedding_dim=V1_EMBEDDING_DIM, cam_layer=V1_CAM_LAYER,
    paper="Hsieh et al., GestaltMatcher, Nature Genetics 2022; Gurovich et al., DeepGestalt, "
          "Nature Medicine 2019",
    description="original GestaltMatcher encoder (shared max-pool; see unshare_pooling), "
                "1x100x100 grayscale, 320-d embedding, Linear(320, C)")


@MODELS.register(name="gestaltmatcher_v1", card=_V1_CARD)
def gestaltmatcher_v1(num_classes: int = 139, share_pool: bool = True,
                      seed: int | None = 0, width: float = 1.0) -> GMXModel:
    """The v1 encoder as a :class:`GMXModel` (C = 139 for GMDB v1, 204 for v1.0.1, 10575 CASIA).

    ``share_pool=True`` reproduces the released module tree (one reused max-pool);
    ``False`` gives independent pools (same numbers, same state dict). ``width`` scales every
    conv's channels and the embedding (at least 4 each; the same layers, pools and max-pooling
    behaviour): a CPU-sized v1 for training on the synthetic faces. Released weights need 1."""
    if seed is not None:
        torch.manual_seed(seed)
    return GMXModel(FaceRecogNetBackbone(1, share_pool, width),
                    DropoutClassifierHead(_scaled(V1_EMBEDDING_DIM, width), num_classes),
                    v1_preprocess(), cam_layer=V1_CAM_LAYER, arch="gestaltmatcher_v1").eval()


@MODELS.register(name="gestaltmatcher_arc", card=ModelCard(
    name="gestaltmatcher_arc", input_channels=3, input_size=(112, 112), embedding_dim=512,
    cam_layer="backbone.bn2",
    paper="Hustinx et al., Improving deep facial phenotyping for ultra-rare disorder verification "
          "using model ensembles, WACV 2023",
    description="GestaltMatcher-Arc: insightface iResNet-100, 512-d embedding, Linear(512, C)"))
def gestaltmatcher_arc(num_classes: int = 204, seed: int | None = 0) -> GMXModel:
    """iResNet-100 + 512-d embedding + ``Linear(512, C)`` (C = 204 for GMDB v1.0.3)."""
    m = build_iresnet("iresnet100", num_classes, seed=seed)
    m.arch = "gestaltmatcher_arc"
    return m


# -- shared pooling -----------------------------------------------------------------------------------
def unshare_pooling(model: nn.Module) -> nn.Module:
    """Replace every module registered under several names inside any ``base`` ModuleList
    (the v1 shared max-pool) by independent copies, in place; returns ``model``.

    Pooling has no parameters or buffers, so outputs and the state dict are unchanged; afterwards
    :func:`~gmxai_eval.models.base.check_no_reused_modules` passes and hook-based methods work.
    """
    import copy

    seen: set[int] = set()
    bases = [b for _, mod in model.named_modules()
             if isinstance(b := getattr(mod, "base", None), nn.ModuleList)]
    for base in bases:
        for i, m in enumerate(base):
            if id(m) in seen:
                base[i] = copy.deepcopy(m)
            seen.add(id(base[i]))
    return model


# -- loading -----------------------------------------------------------------------------------------
@torch.no_grad()
def from_face_recog_net(net: FaceRecogNet, share_pool: bool = True) -> GMXModel:
    """Copy a released-format :class:`FaceRecogNet` into a ``gestaltmatcher_v1`` GMXModel."""
    k = net.classifier[0].out_features
    cin = net.base[0].conv.in_channels
    if cin != 1:
        raise ShapeError(f"expected a 1-channel FaceRecogNet, got in_channels={cin}")
    m = gestaltmatcher_v1(num_classes=k, share_pool=share_pool, seed=None)
    sd = net.state_dict()
    m.backbone.load_state_dict({k_: v for k_, v in sd.items() if k_.startswith("base.")}, strict=True)
    m.head.fc.load_state_dict({"weight": sd["classifier.0.weight"], "bias": sd["classifier.0.bias"]},
                              strict=True)
    return m.eval()


@torch.no_grad()
def to_face_recog_net(model: GMXModel) -> FaceRecogNet:
    """The inverse of :func:`from_face_recog_net` (to save in the released key layout)."""
    if not isinstance(model.backbone, FaceRecogNetBackbone):
        raise ConfigError(f"expected a gestaltmatcher_v1 model, got backbone "
                          f"{type(model.backbone).__name__}")
    net = FaceRecogNet(model.num_classes, 1)
    sd = dict(model.backbone.state_dict())
    sd.update({"classifier.0.weight": model.head.fc.weight, "classifier.0.bias": model.head.fc.bias})
    net.load_state_dict(sd, strict=True)
    return net.eval()


def load_released(path: str | Path, *, num_classes: int | None = None, share_pool: bool = True,
                  strip_prefix: str | None = None) -> GMXModel:
    """Load released GestaltMatcher v1 weights (a ``FaceRecogNet`` state dict) as a GMXModel.

    Args:
        path: weights file (``torch.save`` of the state dict).
        num_classes: expected ``C``; default: the rows of ``classifier.0.weight``.
        share_pool: keep the released shared max-pool (see the module docstring).
        strip_prefix: e.g. ``"module."`` for DataParallel checkpoints.
    """
    sd = read_state_dict(path, strip_prefix=strip_prefix)
    w = sd.get("classifier.0.weight")
    k = int(w.shape[0]) if isinstance(w, torch.Tensor) and w.ndim == 2 else (num_classes or 139)
    if num_classes is not None and k != num_classes:
        raise ModelStateError(f"{path}: expected {num_classes} classes, got classifier.0.weight "
                              f"with {k} rows")
    net = load_state_dict_into(FaceRecogNet(k, 1, share_pool=share_pool), sd, strict=True, source=path)
    return from_face_recog_net(net, share_pool=share_pool)


def load_insightface(path: str | Path, arch: str = "iresnet100", num_classes: int = 204, *,
                     strip_prefix: str | None = None) -> GMXModel:
    """An insightface iResNet state dict (e.g. Glint360K ArcFace ``backbone.pth``) loaded with
    ``strict=True`` into the backbone of ``MODELS.create(arch, num_classes=...)``; the head stays
    freshly initialised (train or fit a :class:`~gmxai_eval.models.base.GalleryHead`)."""
    m = MODELS.create(arch, num_classes=num_classes)
    load_state_dict_file(m.backbone, path, strict=True, strip_prefix=strip_prefix)
    return m.eval()


# -- test-time augmentation ------------------------------------------------------------------------
#: Whether each of the four :func:`tta_views` is horizontally flipped.
TTA_FLIPPED: tuple[bool, ...] = (False, True, False, True)
#: Whether each of the four :func:`tta_views` is grayscale.
TTA_GRAY: tuple[bool, ...] = (False, False, True, True)


def _gray3(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()


def tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The four GestaltMatcher-Arc test-time views of pixel-space ``x (B, C, H, W)``:
    ``[x, flip(x), gray(x), flip(gray(x))]`` (see :data:`TTA_FLIPPED`, :data:`TTA_GRAY`).

    ``flip`` mirrors the width axis; ``gray`` replaces each channel by the ITU-R 601 luma, so
    every view keeps ``C`` channels."""
    if x.ndim != 4:
        raise ShapeError(f"expected images (B, C, H, W), got {tuple(x.shape)}")
    g = _gray3(x)
    return [x, x.flip(-1), g, g.flip(-1)]


def unflip_maps(maps: torch.Tensor, flipped: bool) -> torch.Tensor:
    """Map ``(B, H, W)`` computed on a (possibly) flipped view back to the original geometry."""
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    return maps.flip(-1) if flipped else maps


def tta_merge_maps(maps: Sequence[torch.Tensor], flipped: Sequence[bool] = TTA_FLIPPED) -> torch.Tensor:
    """Average attribution maps ``(B, H, W)`` of the views, each un-flipped first."""
    if len(maps) != len(flipped):
        raise ShapeError(f"expected {len(flipped)} maps (one per view), got {len(maps)}")
    return torch.stack([unflip_maps(m, f) for m, f in zip(maps, flipped)]).mean(0)


@torch.no_grad()
def tta_embed(model: GMXModel, x: torch.Tensor) -> torch.Tensor:
    """Mean of the embeddings ``(B, D)`` of the four :func:`tta_views`."""
    return torch.stack([model.embed(v) for v in tta_views(x)]).mean(0)
