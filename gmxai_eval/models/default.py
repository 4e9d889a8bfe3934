"""The embedded default: synthetic phenotype faces + a trained ``gmx_small``.

:func:`load_default` generates (or reuses) the data and trains (or reuses) the model, both
cached under the data root (argument, else ``$GMXAI_DATA``, else ``./datasets``)::

    <root>/synthetic_faces/            the data (see gmxai_eval.data.synth)
    <root>/synthetic_faces/models/gmx_small-<key>.{pt,json}   the checkpoint and its card

The checkpoint is reused when its card names the same dataset content hash, training config
and training platform (the key of its path holds all three: :func:`~gmxai_eval.models.train.recipe_key_dict`);
otherwise it is retrained. Each preset trains with a fixed intra-op thread count (part of its
recipe, whatever the process's thread count: the weights depend on it). Presets:

* ``"default"``: 6,000 images, 12 syndromes + unaffected, 8 epochs on 2 threads.
* ``"tiny"``: 240 images, 3 syndromes + unaffected, 2 epochs on 1 thread, for end-to-end tests
  (seconds from nothing). Its model is at chance level (too few images and steps to
  learn the phenotypes): use it to exercise plumbing, never to draw conclusions.
* ``"shortcut"``: 2 threads, :data:`SHORTCUT_DATA` (1,200 images, 3 syndromes + unaffected, a corner
  sticker on 90 % of class 1's photos and 3 % of the others; class 1 has no phenotype) for the
  ``shortcut`` benchmark preset. After training, :func:`sticker_removal` re-renders the
  stickered class-1 test photos without the sticker and records in the card (key
  ``sticker_removal``) how much the class-1 probability drops.

Generation and training times and the default model's accuracy (gallery and classifier
top-k on the patient-disjoint test split) are recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from gmxai_eval.data import synth
from gmxai_eval.errors import ConfigError
from gmxai_eval.models.base import GMXModel
from gmxai_eval.models.checkpoint import load_checkpoint, read_checkpoint_card, save_checkpoint
from gmxai_eval.models.small import CARD as SMALL_CARD
from gmxai_eval.models.train import (TrainConfig, config_dict, evaluate, recipe_key_dict, train_model,
                                     training_platform)
from gmxai_eval.utils import stable_hash


@dataclass(frozen=True)
class DefaultPreset:
    """A data preset (a name in :data:`gmxai_eval.data.synth.PRESETS` or a full
    :class:`~gmxai_eval.data.synth.SynthConfig`) and how to train on it."""

    data: str | synth.SynthConfig
    train: TrainConfig


#: The ``shortcut`` preset's data: the tiny preset's 3 syndromes + unaffected at 1,200 images,
#: with a class-correlated corner sticker on 90 % of class 1's photos (class 1's phenotypes are
#: switched off, so the sticker is its only evidence) and on 3 % of the other photos.
SHORTCUT_DATA = synth.SynthConfig(num_images=1200, num_syndromes=3, imbalance=1.5, effect=4.0,
                                  shortcut=True, shortcut_class=1)

PRESETS: dict[str, DefaultPreset] = {
    # threads: the recipe's fixed intra-op count (the weights depend on it). 2 for the full-size
    # presets: what their checkpoints were trained with on 2-core machines (the process's count
    # before the count was fixed), so those checkpoints stay bitwise the same; 1 for tiny: what
    # the test suite (one thread per worker) trained it with, and the cheapest
    "default": DefaultPreset("default", TrainConfig(threads=2)),
    "tiny": DefaultPreset("tiny", TrainConfig(epochs=2, batch_size=32, threads=1)),
    # 30 epochs of 16 images (1,350 steps): with 6-16 epochs of 32 the model had not yet picked
    # up the sticker (removing it changed p(class 1) by < 0.03)
    "shortcut": DefaultPreset(SHORTCUT_DATA, TrainConfig(epochs=30, batch_size=16, bn_images=1024, threads=2)),
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

    #: the split views, by name (``[dataset] split`` of a run on the default data)
    SPLITS = ("train", "val", "test", "gallery")

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def view(self, split: str) -> synth.SyntheticFaces:
        """The view of ``split`` (one of :attr:`SPLITS`; ``""`` = every split); another name
        raises :class:`ConfigError` listing the valid ones."""
        if not split:
            return self.dataset
        if split not in self.SPLITS:
            from difflib import get_close_matches

            close = get_close_matches(split, self.SPLITS, n=1)
            raise ConfigError(f"expected dataset.split in {list(self.SPLITS)} (or '' for every split), got "
                              f"{split!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        return getattr(self, split)


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
    card["path"] = str(save_checkpoint(model, path, card))
    return model, card


def _ckpt_path(folder: str | os.PathLike, cfg: TrainConfig, data_card: dict[str, Any]) -> Path:
    key = stable_hash(recipe_key_dict(cfg), data_card["content_hash"], n=10)
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
        "platform": training_platform(),
        "history": {k: v for k, v in hist.items() if k != "arch_kwargs"},
        "metrics": metrics,
        "metrics_note": "macro over classes on the patient-disjoint test split; gallery_* = "
                        "GestaltMatcher nearest-gallery-image ranking (cosine) against the train split",
    }


def default_data(preset: str = "default", root: str | os.PathLike | None = None,
                 progress: bool = True) -> DefaultBundle:
    """The splits of preset ``preset``'s synthetic data (generated on first use), without its model."""
    if preset not in PRESETS:
        raise ConfigError(f"expected preset in {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    ds = synth.load(p.data, root=root, progress=progress,
                    cache_name=f"synthetic_faces_{preset}" if isinstance(p.data, synth.SynthConfig) else None)
    return open_splits(ds.folder)


def load_default(root: str | os.PathLike | None = None, progress: bool = True,
                 preset: str = "default", retrain: bool = False
                 ) -> tuple[GMXModel, DefaultBundle, dict[str, Any]]:
    """The embedded default ``(model, splits, card)``.

    Args:
        root: data root (else ``$GMXAI_DATA``, else ``./datasets``).
        progress: show progress bars.
        preset: ``"default"``, ``"tiny"`` or ``"shortcut"`` (see module docstring).
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
    ds = synth.load(p.data, root=root, progress=progress,
                    cache_name=f"synthetic_faces_{preset}" if isinstance(p.data, synth.SynthConfig) else None)
    path = _ckpt_path(ds.folder, p.train, ds.card)
    if not retrain:
        found = _cached(path, ds, p)
        if found is not None:
            return found
    with _training_lock(path):  # one process trains; another waiting here then loads its checkpoint
        found = None if retrain else _cached(path, ds, p)
        if found is not None:
            return found
        model, card = train_on(ds.folder, p.train, progress=progress, out=path)
    bundle = open_splits(ds.folder)
    if _is_shortcut(p):
        card["sticker_removal"] = sticker_removal(model, bundle, p.data)
        save_checkpoint(model, path, {k: v for k, v in card.items() if k != "path"})
    return model, bundle, card


def _cached(path: Path, ds: Any, p: DefaultPreset) -> tuple[GMXModel, DefaultBundle, dict[str, Any]] | None:
    """The checkpoint at ``path`` when it was trained by this recipe on this data and platform."""
    if not (path.with_suffix(".json").exists() and path.with_suffix(".pt").exists()):
        return None
    card = read_checkpoint_card(path)
    if not (card.get("dataset", {}).get("content_hash") == ds.card["content_hash"]
            and recipe_key_dict(card.get("train_config") or {}) == recipe_key_dict(p.train)
            and card.get("platform") == training_platform()):
        return None
    model, card = load_checkpoint(path)
    bundle = open_splits(ds.folder)
    if _is_shortcut(p) and "sticker_removal" not in card:  # a checkpoint saved without the check
        card["sticker_removal"] = sticker_removal(model, bundle, p.data)  # type: ignore[arg-type]
        save_checkpoint(model, path, {k: v for k, v in card.items() if k != "checkpoint_version"})
    card["path"] = str(path.with_suffix(".pt"))
    return model, bundle, card


@contextlib.contextmanager
def _training_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<checkpoint>.lock`` while a default model trains: processes that
    need the same checkpoint at once (test workers, parallel runs) train it once instead of
    each training it on the recipe's threads side by side. Without ``fcntl`` it does nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_shortcut(p: DefaultPreset) -> bool:
    return isinstance(p.data, synth.SynthConfig) and p.data.shortcut


def unstickered_images(cfg: synth.SynthConfig) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8: every photo of the shortcut dataset ``cfg`` re-rendered without
    its sticker (same faces, phenotypes, photo nuisances and draws: the sticker flags are the
    only change, so photos without a sticker come out bit-identical)."""
    if not cfg.shortcut:
        raise ConfigError(f"expected a shortcut data config (shortcut=True), got {cfg}")
    clean = synth.render_arrays(replace(cfg, shortcut_rate=0.0, shortcut_noise_rate=0.0))
    return torch.from_numpy(clean["images"])


@torch.no_grad()
def sticker_removal(model: torch.nn.Module, bundle: DefaultBundle, cfg: synth.SynthConfig,
                    split: str = "test") -> dict[str, Any]:
    """Does the model use the sticker? On the ``split`` photos of the shortcut class that carry
    a sticker: the mean probability of the shortcut class and the share of photos predicted as
    it, with the sticker and re-rendered without it (:func:`unstickered_images`)."""
    view = bundle.view(split)
    k = cfg.shortcut_class
    rows = [i for i in range(len(view)) if int(view.labels[i]) == k and bool(view.sticker_mask(i).any())]
    if not rows:
        raise ConfigError(f"expected {split} photos of class {k} with a sticker, got none")
    x = view.images(np.asarray(rows))
    x0 = unstickered_images(cfg)[torch.as_tensor(view.indices[rows])].float().div_(255)
    p, p0 = model(x).softmax(1), model(x0).softmax(1)
    return {"split": split, "class": k, "images": len(rows),
            "p_class_with_sticker": float(p[:, k].mean()), "p_class_without_sticker": float(p0[:, k].mean()),
            "predicted_with_sticker": float((p.argmax(1) == k).double().mean()),
            "predicted_without_sticker": float((p0.argmax(1) == k).double().mean())}
