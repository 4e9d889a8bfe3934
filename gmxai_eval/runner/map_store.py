"""The run's map cache as the :class:`~gmxai_eval.evaluators.randomisation.MapStore` of
re-explained maps (randomised models, smooth_mprt's noisy inputs).

A stored map is keyed like the attribution maps of :class:`~gmxai_eval.runner.cache.MapCache`:
the model hash (the folder), the method name and config hash, the image key
(``"<id>|<image hash>|<target>"``), plus the evaluator's key of what else the map depends on
(randomised layers, seed, target rule, noise settings) folded into the file's method key. So a
unit that is recomputed (a new similarity, another MPRT evaluator over the same states, a
resumed run) re-explains nothing it has explained before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.runner.cache import MapCache
from gmxai_eval.utils import stable_hash


class RunMapStore:
    """:class:`MapStore` over a :class:`MapCache` of one run.

    Args:
        root: the run's cache folder; model_key: :func:`~gmxai_eval.runner.cache.model_hash`.
        methods: ``{method label: (method name, method config hash)}``.
        image_keys: ``{sample id: image key}`` of every selected image.
    """

    def __init__(self, root: str | Path, model_key: str, methods: Mapping[str, tuple[str, str]],
                 image_keys: Mapping[str, str]) -> None:
        self.cache = MapCache(root, model_key)
        self.methods = dict(methods)
        self.image_keys = dict(image_keys)

    def _where(self, method: str, key: str, sample_ids: Sequence[str]) -> tuple[str, str, list[str]]:
        if method not in self.methods:
            raise ConfigError(f"expected a method of the run {sorted(self.methods)}, got {method!r}")
        missing = [s for s in sample_ids if s not in self.image_keys]
        if missing:
            raise ConfigError(f"expected sample ids of the run, got unknown {missing[:4]}")
        name, mk = self.methods[method]
        return name, stable_hash(mk, "reexplained", key), [self.image_keys[s] for s in sample_ids]

    def load(self, method: str, key: str, sample_ids: Sequence[str]) -> torch.Tensor | None:
        name, mk, keys = self._where(method, key, sample_ids)
        found, missing = self.cache.get(name, mk, keys)
        if missing:
            return None
        return torch.stack([found[k] for k in keys])

    def save(self, method: str, key: str, sample_ids: Sequence[str], maps: torch.Tensor) -> None:
        name, mk, keys = self._where(method, key, sample_ids)
        self.cache.put(name, mk, keys, maps)
