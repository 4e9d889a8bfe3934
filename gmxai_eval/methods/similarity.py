"""Explaining matching models: cosine similarity as the explained scalar.

GestaltMatcher predicts by the cosine distance of a query's embedding to gallery embeddings.
Two ways to explain a similarity with any gradient, perturbation or CAM method:

* :class:`SimilarityModel` ``(model, references (R, D))``: ``x -> cos(embed(x), references)``
  of shape ``(B, R)``; the target is a reference index (a gallery image, or a class centroid via
  :meth:`SimilarityModel.from_gallery`)::

      sim = SimilarityModel(model, gallery_embeddings)
      maps = create_method("grad_cam")(sim, x, torch.tensor([3, 3]))   # similarity to ref 3

* :class:`EmbeddingModel` + :class:`CosineTarget` for per-sample references: the model
  outputs embeddings ``(B, D)`` and the target scores ``cos(z_i, r_i)`` with image ``i``'s own
  reference (``select`` narrows the references with the batch's chunks)::

      maps = explainer(EmbeddingModel(model), x, CosineTarget(reference_embeddings))

* :func:`explain_pair` explains a query/reference pair both ways.

Both wrappers keep the wrapped model's ``cam_layer`` (prefixed with ``model.``), so CAM methods
find their default layer; a layer given by name must also carry the ``model.`` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError


def _embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise ConfigError(f"expected a model with embed(x) -> (B, D) (a GMXModel), got {type(model).__name__}")
    z = embed(x)
    if z.ndim != 2:
        raise ShapeError(f"expected embeddings (B, D), got {tuple(z.shape)}")
    return z


class _Wrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        layer = getattr(model, "cam_layer", "")
        self.cam_layer = f"model.{layer}" if layer else ""
        self.train(model.training)


class EmbeddingModel(_Wrapper):
    """``x (B, C, H, W) -> model.embed(x) (B, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _embed(self.model, x)


class SimilarityModel(_Wrapper):
    """``x -> scale * cos(model.embed(x), references)`` of shape ``(B, R)``.

    Args:
        model: a model with ``embed``.
        references: ``(R, D)`` reference embeddings (gallery images or class centroids);
            normalised here.
        scale: multiplies the similarities (1 keeps them in [-1, 1]).
    """

    def __init__(self, model: nn.Module, references: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__(model)
        if references.ndim != 2:
            raise ShapeError(f"expected references (R, D), got {tuple(references.shape)}")
        self.register_buffer("references", F.normalize(references.detach().float(), dim=1))
        self.scale = float(scale)

    @classmethod
    @torch.no_grad()
    def from_gallery(cls, model: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, scale: float = 1.0) -> "SimilarityModel":
        """Class centroids of L2-normalised gallery ``embeddings (N, D)`` by ``labels (N,)``;
        the target is then a class index (cosine similarity to the class centroid)."""
        z = F.normalize(embeddings.float(), dim=1)
        c = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device)
        c.index_add_(0, labels.long().to(z.device), z)
        return cls(model, c, scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = _embed(self.model, x)
        return self.scale * F.normalize(z, dim=1) @ self.references.to(z).t()


class CosineTarget:
    """Target ``embeddings (b, D) -> cos(z_i, references_i) (b,)`` with one reference per image.

    Use with :class:`EmbeddingModel`. ``select(index)`` returns the target narrowed to a chunk.
    A batch that is a whole multiple of the references (Captum's expanded batches) is scored
    block by block."""

    def __init__(self, references: torch.Tensor) -> None:
        if references.ndim != 2:
            raise ShapeError(f"expected references (B, D), got {tuple(references.shape)}")
        self.references = references.detach()

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        r = self.references.to(z)
        if z.ndim != 2 or z.shape[1] != r.shape[1] or z.shape[0] % max(r.shape[0], 1):
            raise ShapeError(f"expected embeddings ({r.shape[0]}·m, {r.shape[1]}), got {tuple(z.shape)}")
        r = r.repeat(z.shape[0] // r.shape[0], 1)
        return F.cosine_similarity(z, r, dim=1)

    def select(self, index: torch.Tensor) -> "CosineTarget":
        return CosineTarget(self.references[index.to(self.references.device)])


def explain_pair(explainer, model: nn.Module, query: torch.Tensor, reference: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``(B, H, W)`` on both images of each pair for their cosine similarity.

    The query map explains ``cos(embed(query), embed(reference))`` with the reference embedding
    fixed; the reference map explains the same similarity with the query embedding fixed."""
    if query.shape[0] != reference.shape[0]:
        raise ShapeError(f"expected as many references as queries, got {reference.shape[0]} and {query.shape[0]}")
    wrapped = EmbeddingModel(model)
    with torch.no_grad():
        zq, zr = _embed(model, query), _embed(model, reference)
    return (explainer(wrapped, query, CosineTarget(zr)),
            explainer(wrapped, reference, CosineTarget(zq)))
