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

Keys of ``train`` that choose the training images (the conditions of the class-imbalance
experiment, ``imbalance-quick`` / ``imbalance-full``), checked here and applied by
:func:`select_rows`:

* ``classes``: class names to train on (default: every class);
* ``patients``: ``{class name: n}``, only the first ``n`` training patients of that class (0 = all);
* ``max_per_class``: at most this many training images per class (0 = no cap);
* ``balanced``: every kept class cut to the size of the smallest kept class;
* ``data_seed``: seed of the patient order (default 0).

A class's images are taken patient by patient in one order seeded by ``data_seed`` and the
class, so a smaller set is a subset of a larger one. A model trained on some classes keeps the
dataset's outputs (the others are never a training target) and its top-1 is measured on the run
split's images of its classes; its result records ``classes``, ``train_sizes`` and
``train_patients`` (per class name).

Each training is a :class:`~gmxai_eval.models.train.TrainTask`: content-addressed by the recipe,
the training images and labels and the seed, stored under ``<cache>/models/`` (weights and a
result JSON written atomically, the JSON last), and run by the run's executor (``local``,
``processes``, ``ray``): a stopped run resumes and a finished training is never redone. The
recipe's ``threads`` is a fixed count (default 1), so the weights do not depend on the machine's
load (:mod:`gmxai_eval.threads`).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, DataError, GMXError
from gmxai_eval.execution import BaseExecutor
from gmxai_eval.utils import stable_hash

#: Key of ``train`` naming the default data's preset (only with ``[dataset] name = "default"``).
DATA_KEY = "data"

#: Keys of ``train`` choosing the training images: ``{key: (type, what it must be)}``.
SUBSET_KEYS: dict[str, tuple[type, str]] = {
    "classes": (list, "a non-empty list of distinct class names"),
    "patients": (dict, "a table {class name = patients >= 0}"), "max_per_class": (int, "an int >= 0"),
    "balanced": (bool, "true or false"), "data_seed": (int, "an int >= 0")}


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
    for k, (kind, what) in SUBSET_KEYS.items():
        if k not in t:
            continue
        v = t[k]
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if kind is int:
            ok = ok and v >= 0
        elif kind is list:
            ok = ok and bool(v) and all(isinstance(c, str) and c for c in v) and len(set(v)) == len(v)
        elif kind is dict:
            ok = ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in v.values())
        if not ok:
            raise ConfigError(f"{src}: expected {where}.{k} to be {what}, got {v!r}")
    try:
        TrainConfig(**{k: v for k, v in t.items() if k in cfg_fields})
    except ConfigError as e:
        raise ConfigError(f"{src}: {where}: {e}") from None
    return t


@dataclass(frozen=True)
class TrainedModel:
    """A model the ``train`` stage made: ``model`` (eval mode), the stored ``result`` (top-1 on the
    run's split, seconds, ``cached``, and ``classes`` / ``train_sizes`` / ``train_patients``) and
    the ``key`` of its cache entry."""

    model: torch.nn.Module
    result: Mapping[str, Any]
    key: str


@dataclass(frozen=True)
class TrainData:
    """The images ``source = "train"`` models are trained and scored on: uint8 ``(N, C, H, W)``
    arrays with int64 labels, the training images' subjects and the dataset's class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    subjects: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def dataset_arrays(dataset: Any, what: str, rows: Sequence[int] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(uint8 images, int64 labels, subjects)`` of a dataset's items ``rows`` (default: all):
    the stored arrays of the synthetic faces (``uint8_images``), otherwise item by item."""
    idx = np.arange(len(dataset) if dataset is not None else 0) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(idx) == 0:
        raise DataError(f"expected {what} images to train a model on, got none")
    if hasattr(dataset, "uint8_images"):
        return (dataset.uint8_images(idx), np.asarray(dataset.labels, dtype=np.int64)[idx],
                np.asarray(dataset.subjects, dtype=str)[idx])
    items = [dataset[int(i)] for i in idx]
    x = torch.stack([(it.image * 255 + 0.5).clamp(0, 255).to(torch.uint8) for it in items]).numpy()
    return (x, np.array([it.label for it in items], dtype=np.int64),
            np.array([it.subject or it.image_id for it in items], dtype=str))


def write_array(path: Path, a: np.ndarray) -> str:
    """Save ``a`` to ``path`` (``.npy``) unless it exists, atomically; returns the path as text."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(a))
        tmp.replace(path)
    return str(path)


def select_rows(labels: np.ndarray, subjects: np.ndarray, class_names: Sequence[str], t: Mapping[str, Any],
                where: str = "train") -> np.ndarray:
    """Sorted rows of the training images that ``train`` table ``t`` keeps (its :data:`SUBSET_KEYS`,
    see the module docstring); every row without them.

    Raises:
        ConfigError: a class name of ``classes`` / ``patients`` not in ``class_names``, or a
            ``patients`` class outside ``classes``.
        DataError: a kept class with no training image.
    """
    names = list(class_names)
    if not any(k in t for k in SUBSET_KEYS):
        return np.arange(len(labels))

    def index(name: str, key: str) -> int:
        if name not in names:
            near = difflib.get_close_matches(name, names, n=2)
            raise ConfigError(f"expected {where}.{key} to name classes of the dataset, got {name!r}"
                              + (f" (did you mean {near}?)" if near else ""))
        return names.index(name)

    keep = sorted({index(c, "classes") for c in t.get("classes", names)})
    limit = {index(c, "patients"): n for c, n in t.get("patients", {}).items()}
    if set(limit) - set(keep):
        raise ConfigError(f"expected {where}.patients to name classes of {where}.classes, got "
                          f"{sorted(names[c] for c in set(limit) - set(keep))}")
    cap, rows = int(t.get("max_per_class", 0)), {}
    for c in keep:
        idx = np.nonzero(labels == c)[0]
        people = np.unique(subjects[idx])
        order = np.random.default_rng([int(t.get("data_seed", 0)), 15, c]).permutation(len(people))
        groups = [idx[subjects[idx] == people[j]] for j in order][:limit.get(c) or None]
        r = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        rows[c] = r[:cap] if cap > 0 else r
        if len(rows[c]) == 0:
            raise DataError(f"expected training images of class {names[c]!r} for {where}, got none", column=names[c])
    if t.get("balanced", False):
        m = min(len(r) for r in rows.values())
        rows = {c: r[:m] for c, r in rows.items()}
    return np.sort(np.concatenate(list(rows.values())))


def make_task(entry: Mapping[str, Any], data: TrainData, cache: Path, device: str = "cpu",
              where: str = "train") -> tuple[Any, dict[str, Any]]:
    """The :class:`~gmxai_eval.models.train.TrainTask` of model table ``entry`` (``source =
    "train"``) on ``data`` (its training images chosen by :func:`select_rows`), with its data
    written to ``cache``, and what it was trained on (``classes``, ``train_sizes``,
    ``train_patients``)."""
    from gmxai_eval.models.train import RetrainRecipe, TrainConfig, TrainTask

    t = entry["train"]
    recipe_raw = {k: v for k, v in t.items() if k != DATA_KEY and k not in SUBSET_KEYS}
    cfg_keys = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in recipe_raw.items() if k in cfg_keys})
    arch_kw = {k: v for k, v in recipe_raw.items() if k not in cfg_keys}
    recipe = RetrainRecipe(cfg, arch_kw, len(data.classes), str(cache), device=device, gallery=False)
    rows = select_rows(data.y_train, data.subjects, data.classes, t, where)
    kept = sorted(set(data.y_train[rows].tolist()))
    test = np.nonzero(np.isin(data.y_test, kept))[0] if any(k in t for k in SUBSET_KEYS) else slice(None)
    xtr, ytr = data.x_train[rows], torch.as_tensor(data.y_train[rows]).long()
    xte, yte = data.x_test[test], torch.as_tensor(data.y_test[test]).long()
    if len(yte) == 0:
        raise DataError(f"expected test images of the classes of {where} to score it on, got none")
    dtr, dte = stable_hash(xtr.tobytes(), ytr), stable_hash(xte.tobytes(), yte)
    key = stable_hash("train-stage/1", recipe.key(), dtr, dte, cfg.seed)
    task = TrainTask(key=key, train_path=write_array(cache / "data" / f"{dtr}.npy", xtr),
                     test_path=write_array(cache / "data" / f"{dte}.npy", xte), train_labels=ytr,
                     test_labels=yte, recipe=recipe, seed=cfg.seed, result_path=str(cache / f"{key}.json"))
    lab = data.y_train[rows]
    info = {"classes": [data.classes[c] for c in kept],
            "train_sizes": {data.classes[c]: int((lab == c).sum()) for c in kept},
            "train_patients": {data.classes[c]: len(np.unique(data.subjects[rows][lab == c])) for c in kept}}
    return task, info


def train_models(jobs: Sequence[tuple[str, Mapping[str, Any], TrainData]], cache_root: Path, executor: Any,
                 device: str = "cpu") -> dict[str, TrainedModel]:
    """Train (or find in the cache) every ``(label, model table, data)`` of ``jobs``;
    ``{label: TrainedModel}``. The trainings go through ``executor`` in one batch, so a pool
    trains them in parallel."""
    from gmxai_eval.models.train import load_task_model, run_train_task, task_threads

    cache = Path(cache_root) / "models"
    made = [make_task(e, data, cache, device, f"models[{label}].train") for label, e, data in jobs]
    tasks = [m[0] for m in made]
    if isinstance(executor, BaseExecutor):  # a pool runs no more threads than it has
        outs = sorted(executor.outcomes(run_train_task, tasks, threads=max([task_threads(t) for t in tasks] + [1])),
                      key=lambda o: o.index)
        for o in outs:
            o.raise_failure(executor.name)
        results: Any = [o.value for o in outs]
    else:
        results = executor.imap(run_train_task, tasks)
    out = {}
    for (label, _, _), (task, info), res in zip(jobs, made, results):
        out[label] = TrainedModel(load_task_model(task), {**dict(res), **info}, task.key)
    return out
