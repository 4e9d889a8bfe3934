"""gmxai_eval: rank attribution (saliency-map) methods by faithfulness.

Data flows one way: ``data -> models -> methods -> evaluators -> runner -> report``.
A module may import from the left of that line, never from the right.

Tensor contract used everywhere (batch first):

* images ``x``: ``(B, C, H, W)`` float32 **pixel space** in ``[0, 1]``. Every model
  registered here takes pixel-space input and applies its own preprocessing
  (``GMXModel.preprocess``), so perturbations are always made in pixel space.
* targets: ``(B,)`` int64 class indices, or a callable ``output (B, K) -> (B,)``.
* attribution maps: ``(B, H, W)`` float32 at input resolution, signed, unnormalised.
* masks: ``(B, H, W)`` bool.
* per-sample scores: ``(B,)`` float64.
"""

from gmxai_eval.errors import (  # noqa: F401
    ConfigError,
    DataError,
    GMXError,
    ModelStateError,
    NonFiniteError,
    ShapeError,
    UnknownNameError,
)

__version__ = "0.2.0"
