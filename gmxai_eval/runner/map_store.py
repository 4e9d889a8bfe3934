"""The run's map cache as the :class:`~gmxai_eval.evaluators.randomisation.MapStore` of
re-explained maps (randomised models, smooth_mprt's noisy inputs).

A stored map is keyed like the attribution maps of :class:`~gmxai_eval.runner.cache.MapCache`:
the model hash (the folder), the method name and config hash, the image key
(``"<id>|<image hash>|<target>"``), plus the evaluator's key of what else the map depends on
(randomised layers, seed, target rule, noise settings) folded into the file's method key. So a
unit that is recomputed (a new similarity, another MPRT evaluator over the same states, a
resumed run) re-explains nothing it has explained before. :meth:`RunMapStore.maps` reads the
run's own attribution maps back (the sections that compare the models of a run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from gmxai_eval.errors import ConfigError, DataError
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

    def _where(self, method: str, sample_ids: Sequence[str]) -> tuple[str, str, list[str]]:
        if method not in self.methods:
            raise ConfigError(f"expected a method of the run {sorted(self.methods)}, got {method!r}")
        missing = [s for s in sample_ids if s not in self.image_keys]
        if missing:
            raise ConfigError(f"expected sample ids of the run, got unknown {missing[:4]}")
        name, mk = self.methods[method]
        return name, mk, [self.image_keys[s] for s in sample_ids]

    def load(self, method: str, key: str, sample_ids: Sequence[str]) -> torch.Tensor | None:
        name, mk, keys = self._where(method, sample_ids)
        found, missing = self.cache.get(name, stable_hash(mk, "reexplained", key), keys)
        if missing:
            return None
        return torch.stack([found[k] for k in keys])

    def save(self, method: str, key: str, sample_ids: Sequence[str], maps: torch.Tensor) -> None:
        name, mk, keys = self._where(method, sample_ids)
        self.cache.put(name, stable_hash(mk, "reexplained", key), keys, maps)

    def maps(self, method: str, sample_ids: Sequence[str]) -> torch.Tensor:
        """The run's own maps of ``method`` (its attribution stage) for ``sample_ids``: ``(n, H, W)``.

        The file is read afresh (nothing is kept in memory).

        Raises:
            DataError: a map is not in the cache (naming the method and the first missing ids).
            ResumeError: the cache file is unreadable or fails its check.
        """
        name, mk, keys = self._where(method, sample_ids)
        table = self.cache.read(name, mk)
        missing = [sid for sid, k in zip(sample_ids, keys) if k not in table]
        if missing:
            raise DataError(f"expected the run's cached maps of {method!r}, got none for {missing[:4]}")
        return torch.stack([table[k] for k in keys])
