"""The embedded default: synthetic phenotype faces + a trained ``gmx_small``.

:func:`load_default` generates (or reuses) the data and trains (or reuses) the model, both
cached under the data root (argument, else ``$GMXAI_DATA``, else ``./datasets``)::

    <root>/synthetic_faces/            the data (see gmxai_eval.data.synth)
    <root>/synthetic_faces/models/gmx_small-<key>.{pt,json}   the checkpoint and its card

The checkpoint is reused when its card names the same dataset content hash and training
config; otherwise it is retrained. Presets:

* ``"default"``: 6,000 images, 12 syndromes + unaffected, 8 epochs on one thread (about
  2-3 min of training on a shared 2-core machine; about 1-2 min to generate the data).
* ``"tiny"``: 240 images, 3 syndromes + unaffected, 2 epochs, for end-to-end tests (about 5 s
  from nothing, 0.05 s cached). Its model is at chance level (too few images and steps to
  learn the phenotypes): use it to exercise plumbing, never to draw conclusions.

Measured for ``"default"`` (shared 2-core CPU, torch 2.13): gallery top-1 / 5 / 10 =
0.792 / 0.967 / 0.997, classifier top-1 / 5 = 0.838 / 0.981 (macro over the 13 classes,
patient-disjoint test split), 143 s of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmxai_eval.data import synth
from gmxai_eval.errors import ConfigError
from gmxai_eval.models.base import GMXModel
from gmxai_eval.models.checkpoint import load_checkpoint, read_checkpoint_card, save_checkpoint
from gmxai_eval.models.small import CARD as SMALL_CARD
from gmxai_eval.models.train import TrainConfig, config_dict, evaluate, train_model
from gmxai_eval.utils import stable_hash


@dataclass(frozen=True)
class DefaultPreset:
    data: str
    train: TrainConfig


PRESETS: dict[str, DefaultPreset] = {
    "default": DefaultPreset("default", TrainConfig()),
    "tiny": DefaultPreset("tiny", TrainConfig(epochs=2, batch_size=32)),
}


@dataclass
class DefaultBundle:
    """What :func:`load_default` returns besides the model.

    Attributes:
        train, val, test, gallery: dataset views (gallery = the train split, as in
            GestaltMatcher's frequent-syndrome protocol; test is patient-disjoint from it).
        dataset: the full dataset (all splits).
        classes: class names.
    """

    dataset: synth.SyntheticFaces
    train: synth.SyntheticFaces
    val: synth.SyntheticFaces
    test: synth.SyntheticFaces
    gallery: synth.SyntheticFaces

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes


def open_splits(folder: str | os.PathLike) -> DefaultBundle:
    """All split views of a generated synthetic dataset folder."""
    return DefaultBundle(*(synth.SyntheticFaces(folder, split=s)
                           for s in (None, "train", "val", "test", "gallery")))


def train_on(folder: str | os.PathLike, config: TrainConfig | None = None, progress: bool = True,
             out: str | os.PathLike | None = None) -> tuple[GMXModel, dict[str, Any]]:
    """Train on a generated dataset folder, evaluate (gallery and classifier top-k on the test
    split), save a checkpoint (``out``, default ``<folder>/models/<arch>-<key>``) and return
    ``(model, card)``."""
    cfg = config or TrainConfig()
    b = open_splits(folder)
    model, hist = train_model(b.train, len(b.classes), cfg, val=b.val, progress=progress)
    metrics = evaluate(model, b.gallery, b.test)
    card = _card(b, cfg, hist, metrics)
    path = Path(out) if out is not None else _ckpt_path(folder, cfg, b.dataset.card)
    save_checkpoint(model, path, card)
    card["path"] = str(path.with_suffix(".pt"))
    return model, card


def _ckpt_path(folder: str | os.PathLike, cfg: TrainConfig, data_card: dict[str, Any]) -> Path:
    key = stable_hash(config_dict(cfg), data_card["content_hash"], n=10)
    return Path(folder) / "models" / f"{cfg.arch}-{key}"


def _card(b: DefaultBundle, cfg: TrainConfig, hist: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "arch": cfg.arch,
        "arch_kwargs": hist["arch_kwargs"],
        "classes": b.classes,
        "preprocessing": {"mean": [0.5] * 3, "std": [0.5] * 3, "input": "RGB [0,1] 3x112x112",
                          "alignment": "ArcFace 5-point template 112x112"},
        "cam_layer": SMALL_CARD.cam_layer if cfg.arch == "gmx_small" else None,
        "dataset": {"name": b.dataset.card["name"], "content_hash": b.dataset.card["content_hash"],
                    "generator_version": b.dataset.card["generator_version"]},
        "train_config": config_dict(cfg),
        "history": {k: v for k, v in hist.items() if k != "arch_kwargs"},
        "metrics": metrics,
        "metrics_note": "macro over classes on the patient-disjoint test split; gallery_* = "
                        "GestaltMatcher nearest-gallery-image ranking (cosine) against the train split",
    }


def load_default(root: str | os.PathLike | None = None, progress: bool = True,
                 preset: str = "default", retrain: bool = False
                 ) -> tuple[GMXModel, DefaultBundle, dict[str, Any]]:
    """The embedded default ``(model, splits, card)``.

    Args:
        root: data root (else ``$GMXAI_DATA``, else ``./datasets``).
        progress: show progress bars.
        preset: ``"default"`` or ``"tiny"`` (see module docstring).
        retrain: ignore a cached checkpoint.

    Returns:
        ``model``: trained ``gmx_small`` with a classifier head, eval mode (use
        :func:`gmxai_eval.models.small.with_gallery_head` for GestaltMatcher-style cosine
        logits); ``splits``: a :class:`DefaultBundle`; ``card``: the checkpoint card
        (metrics, dataset hash, training config, ``path``).
    """
    if preset not in PRESETS:
        raise ConfigError(f"expected preset in {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    ds = synth.load(p.data, root=root, progress=progress)
    path = _ckpt_path(ds.folder, p.train, ds.card)
    if not retrain and path.with_suffix(".json").exists() and path.with_suffix(".pt").exists():
        card = read_checkpoint_card(path)
        if (card.get("dataset", {}).get("content_hash") == ds.card["content_hash"]
                and card.get("train_config") == config_dict(p.train)):
            model, card = load_checkpoint(path)
            card["path"] = str(path.with_suffix(".pt"))
            return model, open_splits(ds.folder), card
    model, card = train_on(ds.folder, p.train, progress=progress, out=path)
    return model, open_splits(ds.folder), card
