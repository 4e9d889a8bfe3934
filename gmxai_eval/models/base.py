"""The model contract every evaluator and method relies on.

A :class:`GMXModel` maps pixel-space images ``(B, C, H, W)`` in ``[0, 1]`` to logits
``(B, K)``::

    x --preprocess--> backbone --> embedding (B, D) --head--> logits (B, K)

* ``preprocess``: resize / grayscale / normalisation as the architecture expects.
* ``backbone``: any ``nn.Module`` returning the embedding ``(B, D)``; its state-dict keys are
  the architecture's own (so released weights load into ``model.backbone`` with ``strict=True``).
* ``head``: :class:`ClassifierHead` (linear) or :class:`GalleryHead` (cosine similarity to
  class centroids of a gallery, how GestaltMatcher predicts). Either way the output is
  "logits", so evaluators need no special path.
* ``cam_layer``: dotted module name (relative to the ``GMXModel``) of the default CAM layer.

Registered architectures (``MODELS``) are constructors ``(num_classes=..., **kw) -> GMXModel``.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ModelStateError, ShapeError
from gmxai_eval.registry import Registry

#: Architectures: ``MODELS.create(name, num_classes=K, **kw) -> GMXModel``.
MODELS: Registry = Registry("model", entry_point_group="gmxai_eval.models")


class Preprocess(nn.Module):
    """Pixel space ``[0, 1]`` -> the architecture's input space (differentiable).

    Args:
        mean, std: per-channel normalisation applied after the optional grayscale / resize.
        grayscale: convert RGB to one channel (ITU-R 601 luma) first.
        size: ``(H, W)`` to resize to (bilinear, no antialias), or ``None``.
    """

    def __init__(self, mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 grayscale: bool = False, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.grayscale = grayscale
        self.size = None if size is None else tuple(size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grayscale and x.shape[1] == 3:
            w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"grayscale={self.grayscale}, size={self.size}"


class ClassifierHead(nn.Module):
    """Linear classifier over the embedding: ``(B, D) -> (B, K)``."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class GalleryHead(nn.Module):
    """Cosine similarity to class centroids of a gallery: ``(B, D) -> (B, K)``.

    GestaltMatcher ranks syndromes by cosine distance to gallery embeddings; using the
    centroid of each class's (L2-normalised) gallery embeddings makes that a fixed linear map
    of the normalised embedding, so every gradient and CAM method works on it unchanged.

    Args:
        centroids: ``(K, D)`` class centroids (normalised here).
        scale: multiplies the cosine similarities (a temperature; 1 keeps them in [-1, 1]).
    """

    def __init__(self, centroids: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__()
        if centroids.ndim != 2:
            raise ShapeError(f"expected centroids (K, D), got {tuple(centroids.shape)}")
        self.register_buffer("centroids", F.normalize(centroids.detach().float(), dim=1))
        self.scale = float(scale)

    @classmethod
    @torch.no_grad()
    def from_gallery(cls, embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     scale: float = 1.0) -> "GalleryHead":
        """Centroids of L2-normalised gallery ``embeddings (N, D)`` per ``labels (N,)``.

        A class without gallery images gets a zero centroid (cosine 0 to everything)."""
        z = F.normalize(embeddings.float(), dim=1)
        c = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device)
        c.index_add_(0, labels.long(), z)
        return cls(c, scale=scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=1) @ self.centroids.t()


class GMXModel(nn.Module):
    """``preprocess -> backbone -> head``; see the module docstring for the contract.

    Args:
        backbone: module returning the embedding ``(B, D)``.
        head: ``(B, D) -> (B, K)``.
        preprocess: pixel space -> backbone input space.
        cam_layer: dotted name (relative to this module, e.g. ``"backbone.features.4"``) of the
            default layer for CAM methods.
        arch: registry name of the architecture (stored in checkpoints).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, preprocess: nn.Module | None = None,
                 cam_layer: str = "", arch: str = "") -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.backbone = backbone
        self.head = head
        self.cam_layer = cam_layer
        self.arch = arch

    @property
    def num_classes(self) -> int:
        """Number of outputs ``K`` of the head."""
        if isinstance(self.head, ClassifierHead):
            return int(self.head.fc.out_features)
        if isinstance(self.head, GalleryHead):
            return int(self.head.centroids.shape[0])
        out = getattr(self.head, "out_features", None)
        if out is None:
            raise AttributeError(f"cannot infer num_classes from head {type(self.head).__name__}")
        return int(out)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel-space ``(B, C, H, W)`` -> embedding ``(B, D)``."""
        z = self.backbone(self.preprocess(x))
        if isinstance(z, tuple):  # architectures returning (logits, embedding)
            z = z[-1]
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel-space ``(B, C, H, W)`` -> logits ``(B, K)``."""
        return self.head(self.embed(x))


def check_no_reused_modules(model: nn.Module) -> None:
    """Raise :class:`ModelStateError` if one module object is registered under several names
    (e.g. GestaltMatcher's shared max-pool) or an activation runs in place. Both break
    module-hook based methods (DeepLIFT, guided backprop, deconvolution, LRP).

    This is a static check of the module tree; a module registered once but called twice in
    ``forward`` is caught at run time by the methods that hook modules
    (``gmxai_eval.methods._common.check_hook_safe``).
    """
    counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    reused = [n for n, m in model.named_modules(remove_duplicate=False)
              if counts[id(m)] > 1 and not isinstance(m, (nn.Identity,))]
    if reused:
        raise ModelStateError(f"expected every module to be used once, got modules registered "
                              f"under several names: {reused[:6]}")
    inplace = [n for n, m in model.named_modules() if getattr(m, "inplace", False)]
    if inplace:
        raise ModelStateError(f"expected no in-place activations, got inplace=True at {inplace[:6]}")


def training_modules(model: nn.Module) -> list[str]:
    """Dotted names of the modules of ``model`` in training mode (``""`` is the model itself).

    ``model.training`` alone is not enough: ``model.eval()`` followed by ``layer.train()``
    leaves a dropout or batch-norm layer in training mode under an eval-mode parent."""
    return [n for n, m in model.named_modules() if m.training]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put **every** module of ``model`` in eval mode inside the block and give each its own
    ``training`` flag back afterwards, also after an exception.

    Usage::

        with eval_mode(model):
            logits = model(x)      # no dropout, batch-norm running statistics
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, t in flags:
            m.training = t


def require_eval_mode(model: nn.Module, what: str = "the model", owner: str = "") -> None:
    """:class:`ModelStateError` naming the modules in training mode, if any (``owner``: who
    refuses, the message's prefix).

    The one rule of every entry point that explains or scores a model (methods, evaluators,
    the runner, ``explain``, gaze scoring, the questionnaire): a module in training mode makes
    dropout draw new masks and batch-norm use batch statistics, so two identical calls give
    different maps and scores; it is refused, never silently switched to eval mode."""
    names = training_modules(model)
    if names:
        shown = [n or "<root>" for n in names[:6]]
        raise ModelStateError(f"{owner + ': ' if owner else ''}expected every module of {what} in eval mode "
                              "(call model.eval() or use "
                              f"gmxai_eval.models.base.eval_mode), got training mode at {shown}"
                              + (f" (+{len(names) - 6} more)" if len(names) > 6 else ""))
