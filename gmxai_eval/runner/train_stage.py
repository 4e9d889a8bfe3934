"""Stage ``train``: the models of a spec with ``source = "train"``, trained before anything else.

A model table (``[model]`` or one of ``[[models]]``) may say how to make the model instead of
where to find it::

    [[models]]
    label = "v1"
    source = "train"
    train = { arch = "gestaltmatcher_v1", epochs = 4, seed = 0, width = 16 }

``train`` holds :class:`~gmxai_eval.models.train.TrainConfig` fields (``arch`` is required and
must be registered) and the architecture's keywords (``width``, ``embedding_dim``, ...); with the
embedded default's data (``[dataset] name = "default"``) ``data`` names the data preset
(``"default"``, ``"tiny"``, ...). The model is trained on the training split of the run's
dataset (the default data's ``train`` split; for other datasets the items whose ``split`` is
``"train"``) and scored (top-1) on the run's split.

Each training is a :class:`~gmxai_eval.models.train.TrainTask`: content-addressed by the recipe,
the training images and labels and the seed, stored under ``<cache>/models/`` (weights and a
result JSON written atomically, the JSON last), and run by the run's executor (``local``,
``processes``, ``ray``): a stopped run resumes and a finished training is never redone. The
recipe's ``threads`` is a fixed count (default 1), so the weights do not depend on the machine's
load (:mod:`gmxai_eval.threads`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, DataError, GMXError
from gmxai_eval.utils import stable_hash

#: Key of ``train`` naming the default data's preset (only with ``[dataset] name = "default"``).
DATA_KEY = "data"


def check_recipe(src: str, where: str, raw: Any) -> dict[str, Any]:
    """Validate a ``train`` table: a registered ``arch``, :class:`TrainConfig` fields of the right
    kind; other keys are the architecture's keywords (checked when the model is built)."""
    from gmxai_eval.models.base import MODELS
    from gmxai_eval.models.train import TrainConfig

    if not isinstance(raw, Mapping) or not raw.get("arch"):
        raise ConfigError(f"{src}: expected {where} to be a table with a registered 'arch', got {raw!r}")
    t = dict(raw)
    if t["arch"] not in MODELS:
        try:
            MODELS.get(t["arch"])
        except GMXError as e:  # unknown name, with close matches
            raise ConfigError(f"{src}: {where}.arch: {e}") from None
    cfg_fields = {f.name: f.default for f in fields(TrainConfig)}
    for k, v in t.items():
        if k in cfg_fields and not isinstance(v, type(cfg_fields[k])) and not (
                isinstance(cfg_fields[k], float) and isinstance(v, int) and not isinstance(v, bool)):
            raise ConfigError(f"{src}: expected {where}.{k} like its default {cfg_fields[k]!r}, got {v!r}")
    if DATA_KEY in t and not isinstance(t[DATA_KEY], str):
        raise ConfigError(f"{src}: expected {where}.{DATA_KEY} to be a data preset name, got {t[DATA_KEY]!r}")
    try:
        TrainConfig(**{k: v for k, v in t.items() if k in cfg_fields})
    except ConfigError as e:
        raise ConfigError(f"{src}: {where}: {e}") from None
    return t


@dataclass(frozen=True)
class TrainedModel:
    """A model the ``train`` stage made: ``model`` (eval mode), the stored ``result`` (top-1 on the
    run's split, seconds, ``cached``) and the ``key`` of its cache entry."""

    model: torch.nn.Module
    result: Mapping[str, Any]
    key: str


def write_array(path: Path, a: np.ndarray) -> str:
    """Save ``a`` to ``path`` (``.npy``) unless it exists, atomically; returns the path as text."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(a))
        tmp.replace(path)
    return str(path)


def _arrays(dataset: Any, what: str) -> tuple[np.ndarray, torch.Tensor]:
    from gmxai_eval.models.train import to_uint8

    if dataset is None or len(dataset) == 0:
        raise DataError(f"expected {what} images to train a model on, got none")
    return to_uint8(dataset)


def make_task(entry: Mapping[str, Any], train: Any, test: Any, num_classes: int, cache: Path,
              device: str = "cpu") -> Any:
    """The :class:`~gmxai_eval.models.train.TrainTask` of model table ``entry`` (``source =
    "train"``) on the ``train`` / ``test`` datasets, with its data written to ``cache``."""
    from gmxai_eval.models.train import RetrainRecipe, TrainConfig, TrainTask

    recipe_raw = {k: v for k, v in entry["train"].items() if k != DATA_KEY}
    cfg_keys = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in recipe_raw.items() if k in cfg_keys})
    arch_kw = {k: v for k, v in recipe_raw.items() if k not in cfg_keys}
    recipe = RetrainRecipe(cfg, arch_kw, num_classes, str(cache), device=device, gallery=False)
    xtr, ytr = _arrays(train, "training")
    xte, yte = _arrays(test, "test")
    dtr, dte = stable_hash(xtr.tobytes(), ytr), stable_hash(xte.tobytes(), yte)
    key = stable_hash("train-stage/1", recipe.key(), dtr, dte, cfg.seed)
    return TrainTask(key=key, train_path=write_array(cache / "data" / f"{dtr}.npy", xtr),
                     test_path=write_array(cache / "data" / f"{dte}.npy", xte), train_labels=ytr,
                     test_labels=yte, recipe=recipe, seed=cfg.seed, result_path=str(cache / f"{key}.json"))


def train_models(entries: Sequence[Mapping[str, Any]], train: Any, test: Any, num_classes: int,
                 cache_root: Path, executor: Any, device: str = "cpu") -> dict[str, TrainedModel]:
    """Train (or find in the cache) every ``source = "train"`` entry; ``{label: TrainedModel}``.

    ``entries`` are model tables with a ``label`` (a one-model spec's ``[model]`` gets the label
    ``"model"``). Trainings go through ``executor`` in one batch, so a pool trains them in
    parallel."""
    from gmxai_eval.models.train import load_task_model, run_train_task

    todo = [e for e in entries if e.get("source") == "train"]
    if not todo:
        return {}
    cache = Path(cache_root) / "models"
    tasks = [make_task(e, train, test, num_classes, cache, device) for e in todo]
    out = {}
    for e, task, res in zip(todo, tasks, executor.imap(run_train_task, tasks)):
        out[e.get("label", "model")] = TrainedModel(load_task_model(task), dict(res), task.key)
    return out
