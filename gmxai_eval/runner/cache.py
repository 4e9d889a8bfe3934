"""On-disk caches keyed by content, so a changed spec recomputes only what is new.

* :class:`MapCache`: attribution maps, one ``.pt`` file per (model weights, method + config),
  holding ``{sample key: (H, W) float32}``. A sample key is the image id plus a hash of the
  image tensor and the explained target, so a regenerated dataset never reuses stale maps.
* :class:`UnitStore`: per-sample results of units of work (evaluator x method x batch), one
  JSON file per unit, written atomically as each unit completes (a killed run resumes).

Layout under the cache root::

    maps/<model hash>/<method>-<config hash>.pt
    units/<evaluator>-<config hash>/<method>-<config hash>/<unit hash>.json
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.errors import ResumeError
from gmxai_eval.evaluators.base import EvalResult
from gmxai_eval.utils import atomic_path, stable_hash, write_atomic

#: Bump when the stored layout or the meaning of cached values changes.
CACHE_VERSION = 1


def model_hash(model: nn.Module) -> str:
    """Content hash of the model's state dict (names, dtypes, shapes and values) plus its class."""
    sd = model.state_dict()
    parts: list[Any] = [type(model).__qualname__, getattr(model, "arch", "")]
    for k in sorted(sd):
        t = sd[k]
        parts.append([k, str(t.dtype), list(t.shape)])
        parts.append(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8)
                     if t.numel() else b"")
    return stable_hash(*parts)


def image_keys(x: torch.Tensor, sample_ids: Sequence[str], target: torch.Tensor) -> list[str]:
    """``"<id>|<image hash>|<target>"`` per sample of ``x (B, C, H, W)``."""
    xs = x.detach().to("cpu", torch.float32)
    return [f"{sid}|{stable_hash(xs[i], n=12)}|{int(t)}" for i, (sid, t) in
            enumerate(zip(sample_ids, target.tolist()))]


def entry_hash(name: str, config: Mapping[str, Any], cls: type | None = None) -> str:
    """Hash of a registered entry's name, merged config and implementing class."""
    return stable_hash(CACHE_VERSION, name, dict(config),
                       None if cls is None else f"{cls.__module__}.{cls.__qualname__}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]


class MapCache:
    """Attribution maps on disk, one file per (model, method config).

    Args:
        root: cache folder.
        model_key: :func:`model_hash` of the explained model.
    """

    def __init__(self, root: str | Path, model_key: str) -> None:
        self.root = Path(root) / "maps" / model_key
        self._loaded: dict[str, dict[str, torch.Tensor]] = {}

    def path(self, method: str, method_key: str) -> Path:
        return self.root / f"{_safe(method)}-{method_key}.pt"

    def _table(self, method: str, method_key: str) -> dict[str, torch.Tensor]:
        k = f"{method}-{method_key}"
        if k not in self._loaded:
            p = self.path(method, method_key)
            if p.is_file():
                try:
                    self._loaded[k] = dict(torch.load(p, map_location="cpu", weights_only=True))
                except Exception as e:  # a corrupt file must not be reused silently
                    raise ResumeError(f"expected a readable map cache at {p}, got "
                                      f"{type(e).__name__}: {e}; delete the file to recompute") from e
            else:
                self._loaded[k] = {}
        return self._loaded[k]

    def get(self, method: str, method_key: str, keys: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """``({key: (H, W) map} for cached keys, positions of the missing keys)``."""
        table = self._table(method, method_key)
        found = {k: table[k] for k in keys if k in table}
        return found, [i for i, k in enumerate(keys) if k not in table]

    def put(self, method: str, method_key: str, keys: Sequence[str], maps: torch.Tensor) -> None:
        """Store ``maps (B, H, W)`` under ``keys`` and rewrite the file atomically."""
        table = self._table(method, method_key)
        for k, m in zip(keys, maps.detach().to("cpu", torch.float32)):
            table[k] = m.clone()
        with atomic_path(self.path(method, method_key)) as tmp:
            torch.save(table, tmp)


def _num(v: float) -> Any:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf: store them as strings


def _unnum(v: Any) -> float:
    return float(v)


class UnitStore:
    """Per-sample results of finished units of work, one atomic JSON file per unit."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "units"

    def path(self, evaluator: str, evaluator_key: str, method: str, method_key: str, unit_key: str) -> Path:
        return (self.root / f"{_safe(evaluator)}-{evaluator_key}" / f"{_safe(method)}-{method_key}"
                / f"{unit_key}.json")

    def has(self, *key: str) -> bool:
        return self.path(*key).is_file()

    def save(self, key: tuple[str, str, str, str, str], sample_ids: Sequence[str], result: EvalResult) -> None:
        """Write ``result`` (one method, one batch) atomically."""
        n = len(result)
        if n != len(sample_ids):
            raise ResumeError(f"expected {len(sample_ids)} scores for the unit, got {n}")
        extras = {}
        for k, v in result.extras.items():
            if v.ndim >= 1 and v.shape[0] == n:
                extras[k] = [[_num(float(z)) for z in row.reshape(-1).tolist()] if row.ndim else
                             _num(float(row)) for row in v.to(torch.float64)]
        doc = {
            "version": CACHE_VERSION,
            "sample_ids": list(sample_ids),
            "scores": [_num(float(s)) for s in result.scores.tolist()],
            "curves": None if result.curves is None else
            [[_num(float(z)) for z in row] for row in result.curves.tolist()],
            "curve_x": None if result.curve_x is None else [float(z) for z in result.curve_x.tolist()],
            "curve_labels": list(result.curve_labels),
            "extras": extras,
            "conventions": json.loads(json.dumps(result.conventions, default=str)),
        }
        write_atomic(self.path(*key), json.dumps(doc))

    def load(self, *key: str) -> dict[str, Any]:
        p = self.path(*key)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ResumeError(f"expected a readable unit result at {p}, got {type(e).__name__}: {e}; "
                              "delete the file to recompute") from e
        if doc.get("version") != CACHE_VERSION:
            raise ResumeError(f"expected unit result version {CACHE_VERSION} at {p}, got {doc.get('version')}")
        doc["scores"] = [_unnum(s) for s in doc["scores"]]
        if doc["curves"] is not None:
            doc["curves"] = [[_unnum(z) for z in row] for row in doc["curves"]]
        return doc
