"""Recognition metrics: GestaltMatcher's gallery top-k and classifier top-k.

GestaltMatcher ranks syndromes for a query by cosine distance between its embedding and every
gallery embedding; a syndrome's rank is the position of its *nearest* gallery image among the
syndromes. Top-k accuracy is computed per syndrome (share of its test images whose true
syndrome ranks within k) and averaged over syndromes (macro).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from gmxai_eval.errors import ShapeError


def syndrome_scores(query: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Per-class score ``(Q, K)``: cosine similarity of each query ``(Q, D)`` to the nearest
    gallery image ``(N, D)`` of each class (``-inf`` for a class without gallery images)."""
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ShapeError(f"expected query (Q, D) and gallery (N, D), got {tuple(query.shape)} and "
                         f"{tuple(gallery.shape)}")
    if gallery_labels.shape != (gallery.shape[0],):
        raise ShapeError(f"expected gallery_labels ({gallery.shape[0]},), got {tuple(gallery_labels.shape)}")
    sim = F.normalize(query.double(), dim=1) @ F.normalize(gallery.double(), dim=1).t()  # (Q, N)
    out = torch.full((query.shape[0], num_classes), float("-inf"), dtype=torch.float64)
    idx = gallery_labels.long().view(1, -1).expand_as(sim)
    return out.scatter_reduce(1, idx, sim, reduce="amax", include_self=True)


def ranks(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1-based rank ``(Q,)`` of the true class in ``scores (Q, K)`` (ties count against it:
    rank = 1 + number of classes scoring strictly higher)."""
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ShapeError(f"expected scores (Q, K) and labels (Q,), got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    true = scores.gather(1, labels.long().view(-1, 1))
    return 1 + (scores > true).sum(1)


def macro_topk(rank: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
               ) -> dict[str, float]:
    """Macro top-k: per class, the share of its queries with ``rank <= k``; mean over the
    classes present in ``labels``. Returns ``{"top1": .., "top5": .., ...}`` in [0, 1]."""
    classes = labels.unique()
    out = {}
    for k in ks:
        hit = (rank <= k).double()
        per = torch.stack([hit[labels == c].mean() for c in classes])
        out[f"top{k}"] = float(per.mean())
    return out


def gallery_topk(query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                 gallery_labels: torch.Tensor, num_classes: int, ks: Sequence[int] = (1, 5, 10)
                 ) -> dict[str, float]:
    """GestaltMatcher's macro per-syndrome top-k of test embeddings against a gallery."""
    s = syndrome_scores(query, gallery, gallery_labels, num_classes)
    return macro_topk(ranks(s, query_labels), query_labels, ks)


def classifier_topk(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5, 10),
                    macro: bool = True) -> dict[str, float]:
    """Top-k of classifier ``logits (Q, K)``; macro (per-class mean) or micro (per image)."""
    r = ranks(logits.double(), labels)
    if macro:
        return macro_topk(r, labels, ks)
    return {f"top{k}": float((r <= k).double().mean()) for k in ks}
