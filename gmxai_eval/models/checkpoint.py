"""Checkpoints: ``<stem>.pt`` (state dict only, loadable with ``weights_only=True``) plus
``<stem>.json`` (card: architecture and constructor kwargs, classes, preprocessing, dataset
card hash, training config, metrics). Both are written atomically; the JSON goes last, so a
checkpoint is complete exactly when its card exists."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from gmxai_eval.errors import DataError
from gmxai_eval.models.base import MODELS, GMXModel
from gmxai_eval.utils import atomic_path, write_atomic

CHECKPOINT_VERSION = 1


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".pt", ".json") else p
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def save_checkpoint(model: GMXModel, path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` and ``card`` (must hold ``arch`` and ``arch_kwargs``).

    Returns the ``.pt`` path."""
    missing = {"arch", "arch_kwargs"} - set(card)
    if missing:
        raise DataError(f"expected card keys arch and arch_kwargs, got no {sorted(missing)}")
    pt, js = _paths(path)
    with atomic_path(pt) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    full = {"checkpoint_version": CHECKPOINT_VERSION, **card}
    write_atomic(js, json.dumps(full, indent=1, sort_keys=True, default=str))
    return pt


def read_checkpoint_card(path: str | os.PathLike) -> dict[str, Any]:
    _, js = _paths(path)
    try:
        return json.loads(js.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"expected a checkpoint card, got {type(e).__name__}: {e}", path=js) from None


def load_checkpoint(path: str | os.PathLike) -> tuple[GMXModel, dict[str, Any]]:
    """Rebuild the architecture from the card and load the weights (``weights_only=True``,
    ``strict=True``). Returns ``(model in eval mode, card)``."""
    pt, _ = _paths(path)
    card = read_checkpoint_card(path)
    model = MODELS.create(card["arch"], **card["arch_kwargs"])
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise DataError(f"expected a readable state dict, got {type(e).__name__}: {e}", path=pt) from None
    model.load_state_dict(state, strict=True)
    return model.eval(), card
